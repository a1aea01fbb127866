//! A session's incoming messages. JavaScript asks for the next batch; one task per
//! session answers each request exactly once, with messages, a failure (timeout,
//! abort) or the session's end, through the session's long-lived delivery callback.
//! Messages nobody asked for stay in upstream's channel, but for the one the task took
//! while waiting (and holds until the next request).

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

/// What the receive loop needs of its session once the session's messages stop.
pub trait Ending: Send + Sync + 'static {
    /// Closes the session here too (upstream may have ended it, the moderator say), so
    /// that its publisher settles what is pending and stops.
    fn close(&self) -> impl Future<Output = ()> + Send;
    /// Why the session ended.
    fn closed_error(&self) -> Error;
}

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
    /// Set while the task holds a message and waits for a request: only then, or when a
    /// request has a deadline to arm, must asking wake it. Otherwise it is waiting for
    /// a message and finds the request when one comes, which saves a wake-up per batch.
    holding: AtomicBool,
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
        let timed = request.timeout.is_some();
        *self.abort.lock() = request.abortable.then(CancellationToken::new);
        *self.request.lock() = Some(request);
        if timed || self.holding.load(Ordering::SeqCst) {
            self.asked.notify_one();
        }
        Ok(())
    }

    /// Ends the pending request with ABORTED, if it is abortable and not yet answered.
    pub fn abort(&self) {
        if let Some(token) = self.abort.lock().as_ref() {
            token.cancel();
            self.asked.notify_one();
        }
    }

    fn take_request(&self) -> Option<Served> {
        let request = self.request.lock().take()?;
        Some(Served {
            deadline: request.timeout.map(|limit| Instant::now() + limit),
            abort: self.abort.lock().clone(),
            request,
        })
    }

    /// Marks whether the task waits for a request with a message in hand; then checks
    /// for a request made meanwhile, which may not have woken it.
    fn hold(&self, holding: bool) -> Option<Served> {
        self.holding.store(holding, Ordering::SeqCst);
        self.take_request()
    }

    fn answered(&self) {
        *self.abort.lock() = None;
        self.waiting.store(false, Ordering::Release);
    }
}

/// A request the task has taken on.
struct Served {
    request: Request,
    deadline: Option<Instant>,
    abort: Option<CancellationToken>,
}

/// Serves `inbox` from `rx` until the session ends, then says why.
pub async fn run(
    rx: AppChannelReceiver,
    inbox: Arc<Inbox>,
    deliver: Arc<Delivery<ReceivedBatch>>,
    closed: CancellationToken,
    session: Weak<impl Ending>,
    session_id: u32,
) {
    let served = std::panic::AssertUnwindSafe(serve(rx, &inbox, &deliver, &closed, session_id))
        .catch_unwind();
    let panicked = served.await.is_err();
    let core = session.upgrade();
    if let Some(core) = &core {
        core.close().await;
    }
    let ended = match core {
        _ if panicked => Error::new(Code::Internal, "the receive loop of the addon panicked"),
        Some(core) => core.closed_error(),
        None => Error::session_closed(session_id),
    };
    inbox.answered();
    let mut end = ReceivedBatch::end(&ended);
    end.release = Some(deliver.keep_alive_handle());
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
    let mut served: Option<Served> = None;
    // A message taken from upstream before anyone asked for it.
    let mut held = None;
    loop {
        if served.is_none() {
            served = inbox.hold(held.is_some());
        }
        if let Some(current) = &served
            && let Some(first) = held.take()
        {
            let mut batch = ReceivedBatch::begin(&mut envelopes);
            let max = current.request.max;
            let more = collect(&mut rx, &mut batch, &mut envelopes, first, max, session_id);
            if batch.messages() > 0 {
                served = None;
                if !answer(inbox, deliver, batch, None) {
                    return;
                }
            } else {
                // Only errors so far: report them now and keep waiting for a message.
                deliver.send(batch);
            }
            if !more {
                return;
            }
            continue;
        }
        let deadline = served.as_ref().and_then(|current| current.deadline);
        let timed_out = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        let abort = served
            .as_ref()
            .and_then(|current| current.abort.as_ref())
            .unwrap_or(&never);
        let failure = tokio::select! {
            biased;
            _ = closed.cancelled() => return,
            _ = abort.cancelled() => Error::new(Code::Aborted, "receive was aborted"),
            _ = timed_out => {
                let limit = served.as_ref().and_then(|current| current.request.timeout);
                Error::new(
                    Code::Timeout,
                    format!("receive timed out after {} ms", limit.unwrap_or_default().as_millis()),
                )
            }
            _ = inbox.asked.notified(), if served.is_none() => continue,
            next = rx.recv(), if held.is_none() => {
                let Some(next) = next else { return };
                held = Some(next);
                continue;
            }
        };
        served = None;
        let batch = ReceivedBatch::begin(&mut envelopes);
        if !answer(inbox, deliver, batch, Some(failure)) {
            return;
        }
    }
}

/// Sends `batch` as the answer to the request being served; false once JavaScript
/// can take no more.
fn answer(
    inbox: &Inbox,
    deliver: &Delivery<ReceivedBatch>,
    mut batch: ReceivedBatch,
    failure: Option<Error>,
) -> bool {
    inbox.answered();
    batch.extras.failure = failure.map(|err| err.info());
    batch.release = Some(deliver.keep_alive_handle());
    deliver.send(batch)
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
                    batch.push_error(&err);
                }
            }
            Err(err) => batch.push_error(&Error::from(err)),
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
