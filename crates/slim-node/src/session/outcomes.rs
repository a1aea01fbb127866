//! How a session's publishes ended, on their way back to JavaScript. Every request has a
//! ticket; a request of several messages (`publishMany`) settles once, when the last of
//! them did, so a batch costs JavaScript one promise and one entry in an outcome call.

use std::collections::HashMap;

use napi::bindgen_prelude::{JsValuesTupleIntoVec, ToNapiValue};
use napi::{check_status, sys};
use napi_derive::napi;

use crate::errors::{Error, ErrorInfo, Result};

/// Where a session's publish outcomes go: its event callback (`session::events`).
/// `settled` counts the publishes whose awaiting ends with them, for the keep-alive.
pub trait OutcomeSink: Send + Sync + 'static {
    fn report(&self, outcomes: PublishOutcomes, settled: usize);
}

/// How one message of a request ended: its request's ticket, its place in the request.
pub struct Settled {
    pub ticket: u32,
    pub index: u32,
    pub outcome: Result<()>,
}

/// Publishes that did not complete, in one call of the outcome callback.
#[napi(object)]
#[derive(Default)]
pub struct PublishFailures {
    /// Tickets of publishes that failed, with why at the same index of `reasons`.
    pub tickets: Vec<u32>,
    pub reasons: Vec<ErrorInfo>,
    /// Set when the publisher stopped without reporting every ticket (it panicked):
    /// every publish still pending failed for this reason.
    pub ended: Option<ErrorInfo>,
}

/// One call of a session's outcome callback:
/// `(done: Uint32Array, failures: PublishFailures | null)`, where `done` lists the
/// tickets of publishes that completed (acknowledged, in a reliable session).
#[derive(Default)]
pub struct PublishOutcomes {
    done: Vec<u32>,
    failures: PublishFailures,
}

impl PublishOutcomes {
    fn push(&mut self, ticket: u32, outcome: Result<()>) {
        match outcome {
            Ok(()) => self.done.push(ticket),
            Err(err) => {
                self.failures.tickets.push(ticket);
                self.failures.reasons.push(err.info());
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.done.is_empty() && self.failures.tickets.is_empty()
    }

    /// One publish that failed now.
    pub fn failed(ticket: u32, why: Error) -> Self {
        let mut outcomes = Self::default();
        outcomes.push(ticket, Err(why));
        outcomes
    }

    /// The tickets reported, done or failed.
    pub fn tickets(&self) -> impl Iterator<Item = u32> + '_ {
        self.done.iter().chain(&self.failures.tickets).copied()
    }

    /// What a publisher that panicked reports: every pending publish failed.
    pub fn ended(reason: &Error) -> Self {
        let mut outcomes = Self::default();
        outcomes.failures.ended = Some(reason.info());
        outcomes
    }

    /// The tickets as a `Uint32Array` over memory V8 allocated.
    ///
    /// # Safety
    /// `env` must be the environment of the JavaScript thread this runs on.
    unsafe fn done_array(&self, env: sys::napi_env) -> napi::Result<sys::napi_value> {
        let bytes = std::mem::size_of_val(self.done.as_slice());
        let mut data = std::ptr::null_mut();
        let mut buffer = std::ptr::null_mut();
        let mut array = std::ptr::null_mut();
        // SAFETY: `env` is current (the caller's contract); napi gives `bytes` writable
        // bytes at `data`, which nothing else references before the copy.
        let status = unsafe {
            let status = sys::napi_create_arraybuffer(env, bytes, &mut data, &mut buffer);
            if status == sys::Status::napi_ok && bytes > 0 {
                std::ptr::copy_nonoverlapping(self.done.as_ptr(), data.cast(), self.done.len());
            }
            if status == sys::Status::napi_ok {
                sys::napi_create_typedarray(
                    env,
                    sys::TypedarrayType::uint32_array,
                    self.done.len(),
                    buffer,
                    0,
                    &mut array,
                )
            } else {
                status
            }
        };
        check_status!(status, "could not allocate publish outcomes")?;
        Ok(array)
    }
}

impl JsValuesTupleIntoVec for PublishOutcomes {
    fn into_vec(self, env: sys::napi_env) -> napi::Result<Vec<sys::napi_value>> {
        // SAFETY: napi converts callback values on the JavaScript thread, with its env.
        let done = unsafe { self.done_array(env)? };
        let failures = &self.failures;
        let failures =
            (!failures.tickets.is_empty() || failures.ended.is_some()).then_some(self.failures);
        // SAFETY: as above.
        Ok(vec![done, unsafe {
            ToNapiValue::to_napi_value(env, failures)?
        }])
    }
}

/// A request of several messages, while some of them have not settled.
struct Batch {
    size: u32,
    left: u32,
    failed: u32,
    /// The failed message that came first in the request: where it was, and why.
    first_failure: Option<(u32, Error)>,
}

impl Batch {
    /// The request's one outcome: done when every message was, else the first failure,
    /// with its code, saying how many failed.
    fn outcome(self) -> Result<()> {
        match self.first_failure {
            None => Ok(()),
            Some((index, first)) => Err(Error::new(
                first.code,
                format!(
                    "{} of the {} messages failed; the first, at index {index}: {}",
                    self.failed, self.size, first.message
                ),
            )),
        }
    }
}

/// Collects the settled messages of a session into what its callback reports.
#[derive(Default)]
pub struct Tally {
    batches: HashMap<u32, Batch>,
}

impl Tally {
    /// Starts counting a request of `size` messages; one of a single message needs none.
    pub fn open(&mut self, ticket: u32, size: usize) {
        if size > 1 {
            let size = u32::try_from(size).unwrap_or(u32::MAX);
            self.batches.insert(
                ticket,
                Batch {
                    size,
                    left: size,
                    failed: 0,
                    first_failure: None,
                },
            );
        }
    }

    /// Adds a message's outcome to `into`, or to its request's count until that is complete.
    pub fn record(&mut self, settled: Settled, into: &mut PublishOutcomes) {
        let Settled {
            ticket,
            index,
            outcome,
        } = settled;
        let Some(batch) = self.batches.get_mut(&ticket) else {
            into.push(ticket, outcome);
            return;
        };
        batch.left -= 1;
        if let Err(err) = outcome {
            batch.failed += 1;
            if batch
                .first_failure
                .as_ref()
                .is_none_or(|(first, _)| index < *first)
            {
                batch.first_failure = Some((index, err));
            }
        }
        if batch.left == 0
            && let Some(batch) = self.batches.remove(&ticket)
        {
            into.push(ticket, batch.outcome());
        }
    }

    /// `count` messages of a request, from `index` on, that will never be sent.
    pub fn never_sent(
        &mut self,
        ticket: u32,
        index: u32,
        count: u32,
        why: &Error,
        into: &mut PublishOutcomes,
    ) {
        for offset in 0..count {
            let settled = Settled {
                ticket,
                index: index + offset,
                outcome: Err(why.clone()),
            };
            self.record(settled, into);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::Code;

    fn settled(ticket: u32, index: u32, outcome: Result<()>) -> Settled {
        Settled {
            ticket,
            index,
            outcome,
        }
    }

    #[test]
    fn a_single_message_is_reported_at_once() {
        let (mut tally, mut outcomes) = (Tally::default(), PublishOutcomes::default());
        tally.open(7, 1);
        tally.record(settled(7, 0, Ok(())), &mut outcomes);
        assert_eq!(outcomes.done, [7]);
    }

    #[test]
    fn a_batch_is_reported_once_its_last_message_settled() {
        let (mut tally, mut outcomes) = (Tally::default(), PublishOutcomes::default());
        tally.open(3, 3);
        tally.record(settled(3, 1, Ok(())), &mut outcomes);
        tally.record(settled(3, 0, Ok(())), &mut outcomes);
        assert!(outcomes.is_empty());
        tally.record(settled(3, 2, Ok(())), &mut outcomes);
        assert_eq!(outcomes.done, [3]);
        assert!(tally.batches.is_empty());
    }

    #[test]
    fn a_batch_fails_with_its_earliest_failure_and_the_count() {
        let (mut tally, mut outcomes) = (Tally::default(), PublishOutcomes::default());
        tally.open(9, 4);
        let lost = |index: u32| Error::new(Code::DeliveryFailed, format!("lost {index}"));
        tally.record(settled(9, 3, Err(lost(3))), &mut outcomes);
        tally.record(settled(9, 0, Ok(())), &mut outcomes);
        tally.record(settled(9, 1, Err(lost(1))), &mut outcomes);
        tally.never_sent(9, 2, 1, &Error::session_closed(5), &mut outcomes);
        assert!(outcomes.done.is_empty());
        assert_eq!(outcomes.failures.tickets, [9]);
        let reason = &outcomes.failures.reasons[0];
        assert_eq!(reason.code, Code::DeliveryFailed);
        assert_eq!(
            reason.message,
            "3 of the 4 messages failed; the first, at index 1: lost 1"
        );
    }
}
