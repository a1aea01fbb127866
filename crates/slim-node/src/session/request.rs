//! What JavaScript asked a session to send: one message or several (`publishMany`), with
//! the options and the target they share, taken apart into messages as they leave; and
//! the session's backlog, the bound on what waits to leave.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use slim_datapath::api::ProtoName;
use tokio::sync::mpsc;

use crate::errors::{Code, Error, Result};
use crate::session::options::PublishOptions;
use crate::session::outcomes::{PublishOutcomes, Tally};

#[derive(Clone)]
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

/// The bytes a session's queue may hold before SLIM takes them. Publishes are queued
/// synchronously, so a caller that fires them without awaiting would otherwise grow
/// memory without limit; past it a publish fails with `BUSY`.
pub const BACKLOG_LIMIT: usize = 64 << 20;
/// What a queued message costs beside its payload (its options, target and bookkeeping),
/// so that empty messages count too.
const MESSAGE_COST: usize = 256;

/// The bytes waiting in one session's queue.
#[derive(Default)]
struct Backlog {
    bytes: AtomicUsize,
}

impl Backlog {
    fn cost(payload: &[u8]) -> usize {
        payload.len() + MESSAGE_COST
    }

    /// Takes room for `payloads`, or fails with `BUSY`. An empty queue takes any one
    /// request, so that a `publishMany` larger than the limit can still go alone.
    fn admit(&self, session_id: u32, payloads: &[Vec<u8>]) -> Result<()> {
        let cost: usize = payloads.iter().map(|payload| Self::cost(payload)).sum();
        self.bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued == 0 || queued + cost <= BACKLOG_LIMIT).then_some(queued + cost)
            })
            .map(|_| ())
            .map_err(|queued| {
                Error::new(
                    Code::Busy,
                    format!(
                        "session {session_id}: {queued} bytes of publishes are waiting to leave,                          and {cost} more would pass the limit of {BACKLOG_LIMIT}; await some of                          them before publishing more"
                    ),
                )
            })
    }

    fn release(&self, payload: &[u8]) {
        self.bytes.fetch_sub(Self::cost(payload), Ordering::AcqRel);
    }
}

/// A session's publish queue: unbounded, so that queueing never blocks JavaScript, and
/// bounded by its backlog instead.
pub fn queue() -> (Queue, QueueReader) {
    let (requests, reader) = mpsc::unbounded_channel();
    let backlog = Arc::new(Backlog::default());
    (
        Queue {
            requests,
            backlog: backlog.clone(),
        },
        QueueReader {
            requests: reader,
            backlog,
        },
    )
}

/// Where JavaScript's publishes are queued.
pub struct Queue {
    requests: mpsc::UnboundedSender<PublishRequest>,
    backlog: Arc<Backlog>,
}

impl Queue {
    pub fn push(&self, session_id: u32, request: PublishRequest) -> Result<()> {
        self.backlog.admit(session_id, &request.payloads)?;
        self.requests
            .send(request)
            .map_err(|_| Error::session_closed(session_id))
    }
}

/// Where the publisher takes them from, in order.
pub struct QueueReader {
    requests: mpsc::UnboundedReceiver<PublishRequest>,
    backlog: Arc<Backlog>,
}

impl QueueReader {
    pub fn try_recv(&mut self) -> Option<PublishRequest> {
        self.requests.try_recv().ok()
    }

    pub async fn recv(&mut self) -> Option<PublishRequest> {
        self.requests.recv().await
    }

    /// Refuses further requests; those already queued can still be read.
    pub fn close(&mut self) {
        self.requests.close();
    }

    /// Starts sending `request`: its messages leave the backlog one by one.
    pub fn start(&self, request: PublishRequest, tally: &mut Tally) -> Sending {
        Sending::new(request, tally, self.backlog.clone())
    }
}

pub struct PublishRequest {
    /// One message, or several that leave in this order under one ticket; the backlog
    /// counts them until they leave the queue.
    pub payloads: Vec<Vec<u8>>,
    pub options: PublishOptions,
    pub target: Target,
    pub ticket: u32,
}

/// One message of a request, ready to leave.
pub struct Part {
    pub ticket: u32,
    pub index: u32,
    pub payload: Vec<u8>,
    pub options: PublishOptions,
    pub target: Target,
}

/// A request whose messages are leaving one by one.
pub struct Sending {
    ticket: u32,
    next_index: u32,
    payloads: std::vec::IntoIter<Vec<u8>>,
    options: PublishOptions,
    target: Target,
    backlog: Arc<Backlog>,
}

impl Sending {
    fn new(request: PublishRequest, tally: &mut Tally, backlog: Arc<Backlog>) -> Self {
        tally.open(request.ticket, request.payloads.len());
        Self {
            ticket: request.ticket,
            next_index: 0,
            payloads: request.payloads.into_iter(),
            options: request.options,
            target: request.target,
            backlog,
        }
    }

    /// The next message, out of the backlog: the last one takes the request's options,
    /// the others a copy.
    pub fn next(&mut self) -> Option<Part> {
        let payload = self.payloads.next()?;
        self.backlog.release(&payload);
        let (options, target) = if self.payloads.len() == 0 {
            let target = std::mem::replace(&mut self.target, Target::Destination);
            (std::mem::take(&mut self.options), target)
        } else {
            (self.options.clone(), self.target.clone())
        };
        let index = self.next_index;
        self.next_index += 1;
        Some(Part {
            ticket: self.ticket,
            index,
            payload,
            options,
            target,
        })
    }

    pub fn is_done(&self) -> bool {
        self.payloads.len() == 0
    }

    /// Fails the messages that did not leave.
    pub fn never_sent(self, why: &Error, tally: &mut Tally, into: &mut PublishOutcomes) {
        for payload in self.payloads.as_slice() {
            self.backlog.release(payload);
        }
        let left = u32::try_from(self.payloads.len()).unwrap_or(u32::MAX);
        tally.never_sent(self.ticket, self.next_index, left, why, into);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_refuses_past_its_limit_and_takes_any_one_request_when_empty() {
        let backlog = Backlog::default();
        let huge = vec![vec![0u8; BACKLOG_LIMIT]; 2];
        backlog.admit(1, &huge).unwrap();
        let err = backlog.admit(1, &[vec![]]).unwrap_err();
        assert_eq!(err.code, Code::Busy);
        for payload in &huge {
            backlog.release(payload);
        }
        let half = vec![vec![0u8; BACKLOG_LIMIT / 2 - MESSAGE_COST]];
        backlog.admit(1, &half).unwrap();
        backlog.admit(1, &half).unwrap();
        assert_eq!(backlog.admit(1, &[vec![]]).unwrap_err().code, Code::Busy);
    }
}
