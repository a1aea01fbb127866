//! A session's incoming messages. JavaScript asks for the next batch; one task per
//! session answers each request exactly once, with messages, a failure (timeout,
//! abort) or the session's end, through the session's long-lived delivery callback.
//! Messages nobody asked for stay in upstream's channel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::FutureExt;
use parking_lot::Mutex;
use slim_datapath::api::ProtoMessage;
use slim_session::{AppChannelReceiver, SessionError};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::delivery::Delivery;
use crate::errors::{Code, Error, Result};
use crate::message::{Envelopes, ReceivedBatch};
use crate::session::SessionCore;

/// One receive, as JavaScript asked for it.
pub struct Request {
    pub max: usize,
    pub timeout: Option<Duration>,
    /// Whether [`Inbox::abort`] may end it early.
    pub abortable: bool,
}

/// The receive JavaScript is waiting on, if any.
#[derive(Default)]
pub struct Inbox {
    request: Mutex<Option<Request>>,
    /// Set from the moment a request is made until its answer is on its way.
    waiting: AtomicBool,
    asked: Notify,
    /// Cancels the abortable request being served, until it is answered.
    abort: Mutex<Option<CancellationToken>>,
}

impl Inbox {
    /// Records a request; a second one while the first is unanswered is refused.
    pub fn ask(&self, request: Request, session_id: u32) -> Result<()> {
        if self
            .waiting
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(Error::new(
                Code::Busy,
                format!(
                    "session {session_id} already has a pending receive; receive from one place at a time"
                ),
            ));
        }
        *self.abort.lock() = request.abortable.then(CancellationToken::new);
        *self.request.lock() = Some(request);
        self.asked.notify_one();
        Ok(())
    }

    /// Ends the pending request with ABORTED, if it is abortable and not yet answered.
    pub fn abort(&self) {
        if let Some(token) = self.abort.lock().as_ref() {
            token.cancel();
        }
    }

    async fn next_request(&self) -> (Request, Option<CancellationToken>) {
        loop {
            if let Some(request) = self.request.lock().take() {
                return (request, self.abort.lock().clone());
            }
            self.asked.notified().await;
        }
    }

    fn answered(&self) {
        *self.abort.lock() = None;
        self.waiting.store(false, Ordering::Release);
    }
}

/// Serves `inbox` from `rx` until the session ends, then says why.
pub async fn run(
    rx: AppChannelReceiver,
    inbox: Arc<Inbox>,
    deliver: Arc<Delivery<ReceivedBatch>>,
    closed: CancellationToken,
    session: Weak<SessionCore>,
    session_id: u32,
) {
    let served = std::panic::AssertUnwindSafe(serve(rx, &inbox, &deliver, &closed, session_id))
        .catch_unwind();
    let panicked = served.await.is_err();
    let core = session.upgrade();
    // Ended upstream (the moderator closed the group, say): close it here too, so its
    // publisher settles what is pending and stops.
    if let Some(core) = &core {
        let _ = core.close().await;
    }
    let ended = match core {
        _ if panicked => Error::new(Code::Internal, "the receive loop of the addon panicked"),
        Some(core) => core.closed_error(),
        None => Error::new(
            Code::SessionClosed,
            format!("session {session_id} is closed"),
        ),
    };
    inbox.answered();
    let mut end = ReceivedBatch::end(ended.to_reason());
    end.release = Some(deliver.hold_handle());
    deliver.send(end);
}

async fn serve(
    mut rx: AppChannelReceiver,
    inbox: &Inbox,
    deliver: &Delivery<ReceivedBatch>,
    closed: &CancellationToken,
    session_id: u32,
) {
    let never = CancellationToken::new();
    let mut envelopes = Envelopes::default();
    loop {
        let (request, abort) = tokio::select! {
            request = inbox.next_request() => request,
            _ = closed.cancelled() => return,
        };
        let deadline = request.timeout.map(|limit| Instant::now() + limit);
        let abort = abort.as_ref().unwrap_or(&never);
        let mut batch = ReceivedBatch::begin(&mut envelopes);
        let failure = loop {
            let timed_out = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                biased;
                _ = closed.cancelled() => return,
                _ = abort.cancelled() => break Some(Error::new(Code::Aborted, "receive was aborted")),
                _ = timed_out => break Some(Error::new(
                    Code::Timeout,
                    format!("receive timed out after {} ms", request.timeout.unwrap_or_default().as_millis()),
                )),
                next = rx.recv() => next,
            };
            let Some(first) = next else { return };
            let more = collect(
                &mut rx,
                &mut batch,
                &mut envelopes,
                first,
                request.max,
                session_id,
            );
            if batch.messages() > 0 {
                break None;
            }
            // Only errors so far: report them now and keep waiting for a message.
            deliver.send(std::mem::replace(
                &mut batch,
                ReceivedBatch::begin(&mut envelopes),
            ));
            if !more {
                return;
            }
        };
        inbox.answered();
        batch.extras.failure = failure.map(|err| err.to_reason());
        batch.release = Some(deliver.hold_handle());
        if !deliver.send(batch) {
            return;
        }
    }
}

/// Adds `first` and what is already queued behind it, up to `max` items. Returns false
/// when upstream closed the channel.
fn collect(
    rx: &mut AppChannelReceiver,
    batch: &mut ReceivedBatch,
    envelopes: &mut Envelopes,
    first: std::result::Result<ProtoMessage, SessionError>,
    max: usize,
    session_id: u32,
) -> bool {
    let _span = tracing::info_span!("slim.receive", session_id).entered();
    let mut next = first;
    loop {
        match next {
            Ok(message) => {
                if let Err(err) = batch.push(message, envelopes) {
                    batch.push_error(err.to_reason());
                }
            }
            Err(err) => batch.push_error(Error::from(err).to_reason()),
        }
        if batch.len() >= max {
            return true;
        }
        next = match rx.try_recv() {
            Ok(item) => item,
            Err(mpsc::error::TryRecvError::Empty) => return true,
            Err(mpsc::error::TryRecvError::Disconnected) => return false,
        };
    }
}
