//! A session's outgoing messages. Publishes go through one ordered queue per session,
//! drained by a task that takes a slot of the process's `IN_FLIGHT` budget (at most
//! `SESSION_SLOTS` of them) for each message it hands to SLIM, until SLIM settles it:
//! callers awaiting their publish promises are paced by acknowledgements instead of
//! buffering freely. A publish returns a ticket at once; outcomes come back in batches
//! through the session's outcome callback, so a burst of acknowledgements costs one
//! JavaScript wake-up rather than one promise per message.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use napi::bindgen_prelude::{JsValuesTupleIntoVec, ToNapiValue};
use napi::{Status, sys};
use napi_derive::napi;
use slim_datapath::api::ProtoName;
use slim_datapath::messages::utils::SlimHeaderFlags;
use slim_session::CompletionHandle;
use slim_session::session_controller::SessionController;
use tokio::sync::{Semaphore, SemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::delivery::Delivery;
use crate::errors::{Code, Error, ErrorInfo, Result};
use crate::session::options::PublishOptions;

/// Messages handed to SLIM and not yet acknowledged, for the whole process, shared in turn
/// by its sessions (the semaphore is fair): with 512 in flight from each of five MLS
/// members of one process, upstream's bounded channels fill up in a cycle and every
/// session of the process stalls, while a small window per session starves a single
/// publisher.
const PROCESS_SLOTS: usize = 1024;
static IN_FLIGHT: Semaphore = Semaphore::const_new(PROCESS_SLOTS);
/// What one session may hold of them, so that a session whose members stopped answering
/// (each publish then waits out its retries) leaves room for the others.
const SESSION_SLOTS: usize = 512;

pub enum Target {
    Destination,
    Reply {
        name: ProtoName,
        connection: u64,
    },
    /// Explicit routing (upstream's `publish_with_params`): another name than the
    /// session's destination, the outgoing connection. (Its fanout is left out: upstream's
    /// session sender sets every message's fanout itself.)
    Routed {
        name: Option<ProtoName>,
        connection: Option<u64>,
    },
}

pub struct PublishRequest {
    pub payload: Vec<u8>,
    pub options: PublishOptions,
    pub target: Target,
    pub ticket: u32,
}

/// How each publish ended, by ticket.
type Outcome = (u32, Result<()>);

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
    fn push(&mut self, (ticket, outcome): Outcome) {
        match outcome {
            Ok(()) => self.done.push(ticket),
            Err(err) => {
                self.failures.tickets.push(ticket);
                self.failures.reasons.push(err.info());
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.done.is_empty() && self.failures.tickets.is_empty()
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
        if status != sys::Status::napi_ok {
            return Err(napi::Error::new(
                Status::from(status),
                "could not allocate publish outcomes",
            ));
        }
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

async fn publish_one(
    controller: &SessionController,
    destination: &ProtoName,
    request: PublishRequest,
) -> std::result::Result<CompletionHandle, Error> {
    let PublishRequest {
        payload,
        options,
        target,
        ..
    } = request;
    let span = tracing::info_span!(
        "slim.publish",
        session_id = controller.id(),
        bytes = payload.len()
    );
    let sent = async {
        match target {
            Target::Destination => {
                controller
                    .publish(destination, payload, options.payload_type, options.metadata)
                    .await
            }
            Target::Routed { name, connection } => {
                let mut flags = SlimHeaderFlags::default();
                if let Some(connection) = connection {
                    flags = flags.with_forward_to(connection);
                }
                let name = name.as_ref().unwrap_or(destination);
                controller
                    .publish_with_flags(
                        name,
                        flags,
                        payload,
                        options.payload_type,
                        options.metadata,
                    )
                    .await
            }
            Target::Reply { name, connection } => {
                controller
                    .publish_to(
                        &name,
                        connection,
                        payload,
                        options.payload_type,
                        options.metadata,
                    )
                    .await
            }
        }
    }
    .instrument(span)
    .await;
    sent.map_err(Error::from)
}

/// A slot of the in-flight budget, once there is one.
type Slot = Pin<Box<dyn Future<Output = Option<SemaphorePermit<'static>>> + Send>>;

/// A queued publish, with its in-flight slot or waiting for one.
enum Claim {
    Go(PublishRequest, SemaphorePermit<'static>),
    Wait(PublishRequest, Slot),
}

fn claim(request: PublishRequest, in_flight: usize) -> Claim {
    if in_flight < SESSION_SLOTS
        && let Ok(slot) = IN_FLIGHT.try_acquire()
    {
        return Claim::Go(request, slot);
    }
    Claim::Wait(request, Box::pin(async { IN_FLIGHT.acquire().await.ok() }))
}

/// Runs the publish loop; a panic in it fails every pending publish with INTERNAL
/// rather than leaving their promises unsettled.
pub async fn run(
    controller: Weak<SessionController>,
    destination: ProtoName,
    session_id: u32,
    queue: mpsc::UnboundedReceiver<PublishRequest>,
    outcomes: Arc<Delivery<PublishOutcomes>>,
    closed: CancellationToken,
    unanswerable: CancellationToken,
) {
    let drained = drain(
        controller,
        destination,
        session_id,
        queue,
        &outcomes,
        closed,
        unanswerable,
    );
    if std::panic::AssertUnwindSafe(drained)
        .catch_unwind()
        .await
        .is_err()
    {
        let ended = Error::new(Code::Internal, "the publish loop of the addon panicked");
        outcomes.send(PublishOutcomes::ended(&ended));
    }
}

/// Drains the session's publish queue in order, each message holding an in-flight slot
/// until SLIM settles it.
async fn drain(
    controller: Weak<SessionController>,
    destination: ProtoName,
    session_id: u32,
    mut queue: mpsc::UnboundedReceiver<PublishRequest>,
    outcomes: &Delivery<PublishOutcomes>,
    closed: CancellationToken,
    unanswerable: CancellationToken,
) {
    let report = |outcome: Outcome| {
        let mut batch = PublishOutcomes::default();
        batch.push(outcome);
        outcomes.send(batch);
    };
    let mut in_flight = FuturesUnordered::new();
    let mut waiting: Option<(PublishRequest, Slot)> = None;
    loop {
        if closed.is_cancelled() {
            break;
        }
        // Settled publishes are reported before the next one goes out, so a long burst
        // that keeps the queue full does not hold back their promises.
        if let Some(Some(outcome)) = in_flight.next().now_or_never() {
            outcomes.send(with_settled(outcome, &mut in_flight));
        }
        let claimed = match waiting.take() {
            Some((request, mut slot)) => tokio::select! {
                biased;
                _ = closed.cancelled() => {
                    waiting = Some((request, slot));
                    break;
                }
                Some(outcome) = in_flight.next(), if !in_flight.is_empty() => {
                    outcomes.send(with_settled(outcome, &mut in_flight));
                    waiting = Some((request, slot));
                    continue;
                }
                permit = &mut slot, if in_flight.len() < SESSION_SLOTS => match permit {
                    Some(permit) => Claim::Go(request, permit),
                    None => {
                        waiting = Some((request, slot));
                        break;
                    }
                },
            },
            // Drain what JavaScript queued without a trip through the scheduler each.
            None => match queue.try_recv() {
                Ok(request) => claim(request, in_flight.len()),
                Err(_) => tokio::select! {
                    biased;
                    _ = closed.cancelled() => break,
                    Some(outcome) = in_flight.next(), if !in_flight.is_empty() => {
                        outcomes.send(with_settled(outcome, &mut in_flight));
                        continue;
                    }
                    request = queue.recv() => match request {
                        Some(request) => claim(request, in_flight.len()),
                        None => break,
                    },
                },
            },
        };
        let (request, slot) = match claimed {
            Claim::Go(request, slot) => (request, slot),
            Claim::Wait(request, slot) => {
                waiting = Some((request, slot));
                continue;
            }
        };
        let ticket = request.ticket;
        let Some(live) = controller.upgrade() else {
            report((ticket, Err(Error::session_closed(session_id))));
            continue;
        };
        match publish_one(&live, &destination, request).await {
            Ok(handle) => {
                let unanswerable = unanswerable.clone();
                in_flight.push(async move {
                    let outcome = tokio::select! {
                        done = handle => done.map_err(Error::from),
                        _ = unanswerable.cancelled() => Err(Error::session_closed(session_id)),
                    };
                    drop(slot);
                    (ticket, outcome)
                })
            }
            Err(err) => report((ticket, Err(err))),
        }
    }
    // What never left the queue ends with SESSION_CLOSED; what is in flight, as SLIM says.
    queue.close();
    let mut never_sent = PublishOutcomes::default();
    if let Some((request, _)) = waiting.take() {
        never_sent.push((request.ticket, Err(Error::session_closed(session_id))));
    }
    while let Some(request) = queue.recv().await {
        never_sent.push((request.ticket, Err(Error::session_closed(session_id))));
    }
    if !never_sent.is_empty() {
        outcomes.send(never_sent);
    }
    while let Some(outcome) = in_flight.next().await {
        outcomes.send(with_settled(outcome, &mut in_flight));
    }
}

/// `first` and every other publish already settled, for one call of the callback.
fn with_settled<F: Future<Output = Outcome>>(
    first: Outcome,
    in_flight: &mut FuturesUnordered<F>,
) -> PublishOutcomes {
    let mut batch = PublishOutcomes::default();
    batch.push(first);
    while let Some(Some(outcome)) = in_flight.next().now_or_never() {
        batch.push(outcome);
    }
    batch
}
