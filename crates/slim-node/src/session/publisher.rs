//! A session's outgoing messages. Publishes go through one ordered queue per session,
//! drained by a task that takes a slot of the process's `IN_FLIGHT` budget (at most
//! `SESSION_SLOTS` of them) for each message it hands to SLIM, until SLIM settles it:
//! callers awaiting their publish promises are paced by acknowledgements instead of
//! buffering freely. A publish returns a ticket at once; a request may carry several
//! messages (`publishMany`), which leave in order, one slot each, and settle under its
//! one ticket. Outcomes come back in batches through the session's outcome callback
//! (`outcomes`), so a burst of acknowledgements costs one JavaScript wake-up.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use slim_datapath::api::ProtoName;
use slim_datapath::messages::utils::SlimHeaderFlags;
use slim_session::CompletionHandle;
use slim_session::session_controller::SessionController;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::errors::{Code, Error};
use crate::session::outcomes::{OutcomeSink, PublishOutcomes, Settled, Tally};
use crate::session::request::{Part, QueueReader, Sending, Target};
use crate::session::watched::Watched;

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

async fn publish_one(
    controller: &SessionController,
    destination: &ProtoName,
    part: Part,
) -> std::result::Result<CompletionHandle, Error> {
    let Part {
        payload,
        options,
        target,
        ..
    } = part;
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

/// A queued message, with its in-flight slot or waiting for one.
enum Claim {
    Go(Part, SemaphorePermit<'static>),
    Wait(Part, Slot),
}

fn claim(part: Part, in_flight: usize) -> Claim {
    if in_flight < SESSION_SLOTS
        && let Ok(slot) = IN_FLIGHT.try_acquire()
    {
        return Claim::Go(part, slot);
    }
    Claim::Wait(part, Box::pin(async { IN_FLIGHT.acquire().await.ok() }))
}

/// A message SLIM took, holding its slot until SLIM settles it.
struct InFlight {
    ticket: u32,
    index: u32,
    handle: CompletionHandle,
    _slot: SemaphorePermit<'static>,
}

impl Future for InFlight {
    type Output = Settled;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Settled> {
        let this = &mut *self;
        this.handle.poll_unpin(cx).map(|done| Settled {
            ticket: this.ticket,
            index: this.index,
            outcome: done.map_err(Error::from),
        })
    }
}

/// What is in flight, and how its outcomes reach the callback.
struct Reporter<'a> {
    sink: &'a dyn OutcomeSink,
    watched: &'a Watched,
    tally: Tally,
    in_flight: FuturesUnordered<InFlight>,
}

impl Reporter<'_> {
    fn send(&self, batch: PublishOutcomes) {
        if !batch.is_empty() {
            let settled = self.watched.settle(&batch);
            self.sink.report(batch, settled);
        }
    }

    fn report(&mut self, settled: Settled) {
        let mut batch = PublishOutcomes::default();
        self.tally.record(settled, &mut batch);
        self.send(batch);
    }

    /// `first` and every other message already settled, for one call of the callback.
    fn report_with_settled(&mut self, first: Settled) {
        let mut batch = PublishOutcomes::default();
        self.tally.record(first, &mut batch);
        while let Some(Some(settled)) = self.in_flight.next().now_or_never() {
            self.tally.record(settled, &mut batch);
        }
        self.send(batch);
    }

    /// Nobody will answer: everything in flight ends now.
    fn fail_in_flight(&mut self, why: &Error) {
        let mut batch = PublishOutcomes::default();
        for message in std::mem::take(&mut self.in_flight) {
            let settled = Settled {
                ticket: message.ticket,
                index: message.index,
                outcome: Err(why.clone()),
            };
            self.tally.record(settled, &mut batch);
        }
        self.send(batch);
    }
}

/// Runs the publish loop, reporting outcomes through the callback and settling the
/// watched waits with them; a panic in it fails every pending publish with INTERNAL
/// rather than leaving their promises unsettled.
pub async fn run(
    controller: Weak<SessionController>,
    destination: ProtoName,
    session_id: u32,
    queue: QueueReader,
    (sink, watched): (Arc<dyn OutcomeSink>, Arc<Watched>),
    closed: CancellationToken,
    unanswerable: CancellationToken,
) {
    let drained = drain(
        controller,
        destination,
        session_id,
        queue,
        (&*sink, &watched),
        closed,
        unanswerable,
    );
    if std::panic::AssertUnwindSafe(drained)
        .catch_unwind()
        .await
        .is_err()
    {
        let ended = Error::new(Code::Internal, "the publish loop of the addon panicked");
        // It fails every pending publish in JavaScript, so none is awaited any more.
        sink.report(PublishOutcomes::ended(&ended), usize::MAX);
    }
    watched.settle_all();
}

/// Drains the session's publish queue in order, each message holding an in-flight slot
/// until SLIM settles it.
async fn drain(
    controller: Weak<SessionController>,
    destination: ProtoName,
    session_id: u32,
    mut queue: QueueReader,
    (sink, watched): (&dyn OutcomeSink, &Watched),
    closed: CancellationToken,
    unanswerable: CancellationToken,
) {
    let mut reporter = Reporter {
        sink,
        watched,
        tally: Tally::default(),
        in_flight: FuturesUnordered::new(),
    };
    let mut sending: Option<Sending> = None;
    let mut waiting: Option<(Part, Slot)> = None;
    loop {
        if closed.is_cancelled() {
            break;
        }
        // Settled publishes are reported before the next one goes out, so a long burst
        // that keeps the queue full does not hold back their promises.
        if let Some(Some(settled)) = reporter.in_flight.next().now_or_never() {
            reporter.report_with_settled(settled);
        }
        let claimed = match waiting.take() {
            Some((part, mut slot)) => tokio::select! {
                biased;
                _ = closed.cancelled() => {
                    waiting = Some((part, slot));
                    break;
                }
                Some(settled) = reporter.in_flight.next(), if !reporter.in_flight.is_empty() => {
                    reporter.report_with_settled(settled);
                    waiting = Some((part, slot));
                    continue;
                }
                permit = &mut slot, if reporter.in_flight.len() < SESSION_SLOTS => match permit {
                    Some(permit) => Claim::Go(part, permit),
                    None => {
                        waiting = Some((part, slot));
                        break;
                    }
                },
            },
            None => {
                if sending.is_none() {
                    // Drain what JavaScript queued without a trip through the scheduler each.
                    let request = match queue.try_recv() {
                        Some(request) => request,
                        None => tokio::select! {
                            biased;
                            _ = closed.cancelled() => break,
                            Some(settled) = reporter.in_flight.next(), if !reporter.in_flight.is_empty() => {
                                reporter.report_with_settled(settled);
                                continue;
                            }
                            request = queue.recv() => match request {
                                Some(request) => request,
                                None => break,
                            },
                        },
                    };
                    sending = Some(queue.start(request, &mut reporter.tally));
                }
                let part = sending.as_mut().and_then(Sending::next);
                if sending.as_ref().is_none_or(Sending::is_done) {
                    sending = None;
                }
                let Some(part) = part else { continue };
                claim(part, reporter.in_flight.len())
            }
        };
        let (part, slot) = match claimed {
            Claim::Go(part, slot) => (part, slot),
            Claim::Wait(part, slot) => {
                waiting = Some((part, slot));
                continue;
            }
        };
        let (ticket, index) = (part.ticket, part.index);
        let sent = match controller.upgrade() {
            Some(live) => publish_one(&live, &destination, part).await,
            None => Err(Error::session_closed(session_id)),
        };
        match sent {
            Ok(handle) => reporter.in_flight.push(InFlight {
                ticket,
                index,
                handle,
                _slot: slot,
            }),
            Err(err) => reporter.report(Settled {
                ticket,
                index,
                outcome: Err(err),
            }),
        }
    }
    // What never left ends with SESSION_CLOSED; what is in flight, as SLIM says.
    queue.close();
    let closed_error = Error::session_closed(session_id);
    let mut never_sent = PublishOutcomes::default();
    if let Some((part, _)) = waiting.take() {
        let settled = Settled {
            ticket: part.ticket,
            index: part.index,
            outcome: Err(closed_error.clone()),
        };
        reporter.tally.record(settled, &mut never_sent);
    }
    if let Some(rest) = sending.take() {
        rest.never_sent(&closed_error, &mut reporter.tally, &mut never_sent);
    }
    while let Some(request) = queue.recv().await {
        let unsent = queue.start(request, &mut reporter.tally);
        unsent.never_sent(&closed_error, &mut reporter.tally, &mut never_sent);
    }
    reporter.send(never_sent);
    // Once nobody can answer (the connection or the moderator is gone), waiting out
    // upstream's retries would only delay the same answer.
    let mut unanswered = pin!(unanswerable.cancelled());
    loop {
        tokio::select! {
            biased;
            settled = reporter.in_flight.next() => match settled {
                Some(settled) => reporter.report_with_settled(settled),
                None => break,
            },
            _ = &mut unanswered => {
                reporter.fail_in_flight(&closed_error);
                break;
            }
        }
    }
}
