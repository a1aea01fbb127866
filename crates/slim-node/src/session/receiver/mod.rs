//! A session's incoming messages, served on the JavaScript thread straight from
//! upstream's channel. A receive takes what is already queued at once, without leaving
//! the thread; only a receive that finds nothing waits, and then the channel's own
//! waker calls the session's delivery callback, so a message costs one wake-up of the
//! JavaScript thread and no tokio task in between. A receive's wait (its timeout, its
//! signal) is polled with the same waker, so ending it costs no task either: the
//! receive then answers with why, and takes nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Wake, Waker};

use napi::bindgen_prelude::JsValuesTupleIntoVec;
use napi::{Env, sys};
use parking_lot::Mutex;
use slim_datapath::api::ProtoName;
use slim_session::{AppChannelReceiver, SessionError};
use tokio_util::sync::CancellationToken;

use crate::delivery::Awake;
use crate::errors::{Code, Error, Result};
use crate::message::{Parts, ReceivedBatch};
use crate::name;
use crate::runtime::spawn;
use crate::wait::Limit;

mod state;
use state::{Item, Locked, Served, State};

/// What the receiver needs of its session once the session's messages stop.
pub trait Ending: Send + Sync + 'static {
    /// Closes the session here too (upstream may have ended it, the moderator say), so
    /// that its publisher settles what is pending and stops. `gone` is the member upstream
    /// last reported disconnected, if any.
    fn close(&self, gone: Option<String>) -> impl Future<Output = ()> + Send;
    /// Why the session ended.
    fn closed_error(&self) -> Error;
}

/// Where the receiver's answers go: the session's event callback (`session::events`).
pub trait MessageSink: Send + Sync + 'static {
    /// Calls the callback with `pump`.
    fn send_messages(&self, pump: Pump);
    /// Whether the callback keeps Node running.
    fn awake(&self) -> Arc<Awake>;
}

/// One call of the event callback for messages: it serves the waiting receive, if any,
/// when napi converts it on the JavaScript thread.
pub struct Pump(Arc<Receiver>);

impl JsValuesTupleIntoVec for Pump {
    fn into_vec(self, env: sys::napi_env) -> napi::Result<Vec<sys::napi_value>> {
        self.0.pump().into_vec(env)
    }
}

pub struct Receiver {
    session_id: u32,
    state: Mutex<State>,
    /// Set while a receive waits and nobody holds the state: the waker then calls
    /// JavaScript directly (see [`Locked`]).
    waiting: AtomicBool,
    waker: Waker,
    sink: Mutex<Option<Arc<dyn MessageSink>>>,
    /// The callback's keep-alive, usable until its last call is made.
    awake: Mutex<Option<Arc<Awake>>>,
    /// Cancelled once upstream closed the channel.
    disconnected: CancellationToken,
}

/// The channel's waker.
struct Doorbell(Weak<Receiver>);

impl Wake for Doorbell {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let Some(receiver) = self.0.upgrade() else {
            return;
        };
        if receiver.waiting.load(Ordering::SeqCst) {
            receiver.ring();
        } else {
            // Nobody waits: look at the channel off the JavaScript thread, which only
            // needs to hear of a message when it asks, or of the channel's end.
            spawn(async move { receiver.check_idle() });
        }
    }
}

impl Receiver {
    pub fn new(rx: AppChannelReceiver, session_id: u32) -> Arc<Self> {
        Arc::new_cyclic(|receiver| Self {
            session_id,
            state: Mutex::new(State::new(rx)),
            waiting: AtomicBool::new(false),
            waker: Waker::from(Arc::new(Doorbell(receiver.clone()))),
            sink: Mutex::new(None),
            awake: Mutex::new(None),
            disconnected: CancellationToken::new(),
        })
    }

    /// Starts delivering through `delivery`; the session ends its messages when `closed`
    /// is cancelled or upstream closes the channel.
    pub fn start(
        self: &Arc<Self>,
        sink: Arc<dyn MessageSink>,
        closed: CancellationToken,
        session: Weak<impl Ending>,
    ) {
        *self.awake.lock() = Some(sink.awake());
        *self.sink.lock() = Some(sink);
        let receiver = self.clone();
        spawn(async move {
            let gone = tokio::select! {
                _ = closed.cancelled() => None,
                _ = receiver.disconnected.cancelled() => receiver.lock().gone.take(),
            };
            let core = session.upgrade();
            if let Some(core) = &core {
                core.close(gone).await;
            }
            let why = match core {
                Some(core) => core.closed_error(),
                None => Error::session_closed(receiver.session_id),
            };
            receiver.end(why);
        });
        // Registers the waker, so that an end upstream is heard before any receive.
        self.check_idle();
    }

    /// Asks for up to `max` messages: returns what is there now, or waits (keeping
    /// Node alive, within `limit`) for the delivery callback to bring it. Called on the
    /// JavaScript thread.
    pub fn request(&self, env: &Env, max: usize, limit: &Limit) -> Result<Option<ReceivedBatch>> {
        let mut state = self.lock();
        if state.request.is_some() {
            return Err(Error::new(
                Code::Busy,
                format!(
                    "session {} already has a pending receive; receive from one place at a time",
                    self.session_id
                ),
            ));
        }
        if state.end_told {
            let ended = state.ended.clone();
            return Err(ended.unwrap_or_else(|| Error::session_closed(self.session_id)));
        }
        state.request = Some(max.max(1));
        state.wait_ended = None;
        let served = match self.serve(&mut state) {
            Served::Answer(batch) => return Ok(Some(batch)),
            waits => {
                if !state.wait.as_ref().is_some_and(|wait| wait.serves(limit)) {
                    state.wait = limit.poller();
                }
                // A wait that ended already (a timeout of 0) answers now.
                self.serve_ended_wait(&mut state, waits)
            }
        };
        match served {
            Served::Answer(batch) => Ok(Some(batch)),
            waits => {
                self.keep_node_alive(env, true)?;
                match waits {
                    Served::Warnings(batch) => Ok(Some(batch)),
                    _ => Ok(None),
                }
            }
        }
    }

    /// Where a reply to a message of envelope `number` (of numbering `generation`) goes:
    /// its sender and the connection it came on; none for a numbering gone by.
    pub fn reply_to(&self, generation: u32, number: u32) -> Option<(ProtoName, u64)> {
        self.lock().envelopes.reply_to(generation, number)
    }

    /// Ends the waiting receive without messages; false when none waits. Called on the
    /// JavaScript thread.
    pub fn cancel(&self, env: &Env) -> Result<bool> {
        let mut state = self.lock();
        (state.wait, state.wait_ended) = (None, None);
        if state.request.take().is_none() {
            return Ok(false);
        }
        drop(state);
        self.keep_node_alive(env, false)?;
        Ok(true)
    }

    fn keep_node_alive(&self, env: &Env, alive: bool) -> Result<()> {
        match &*self.awake.lock() {
            // SAFETY: called on the JavaScript thread with its env; a receive waits, so
            // the callback's last call (which answers it) is still to come.
            Some(awake) => Ok(unsafe { awake.receiving(env.raw(), alive) }?),
            None => Ok(()),
        }
    }

    /// Calls the event callback, which serves the waiting receive.
    fn ring(self: &Arc<Self>) {
        let sink = self.sink.lock().clone();
        if let Some(sink) = sink {
            sink.send_messages(Pump(self.clone()));
        }
    }

    /// The session ended: the last call of the callback says why.
    fn end(self: &Arc<Self>, why: Error) {
        self.lock().ended.get_or_insert(why);
        // Taken so that the callback (and the JavaScript session it refers to) is
        // released once this last call is made.
        let sink = self.sink.lock().take();
        if let Some(sink) = sink {
            sink.send_messages(Pump(self.clone()));
        }
    }

    fn lock(&self) -> Locked<'_> {
        let state = self.state.lock();
        self.waiting.store(false, Ordering::SeqCst);
        Locked {
            state,
            waiting: &self.waiting,
        }
    }

    /// Woken while nobody waited, or while the state was held: takes the message that
    /// came, and calls JavaScript if a receive waits for it by now.
    fn check_idle(self: &Arc<Self>) {
        let mut state = self.lock();
        self.idle(&mut state);
        self.poll_wait(&mut state);
        if state.request.is_some() && (state.held.is_some() || state.wait_ended.is_some()) {
            drop(state);
            self.ring();
        }
    }

    /// While nobody waits: registers the waker to hear of the channel's end, or keeps
    /// the message that is there for the next receive.
    fn idle(&self, state: &mut State) {
        if state.held.is_none()
            && state.ended.is_none()
            && let Poll::Ready(Some(item)) = self.poll(state)
        {
            state.held = Some(item);
        }
    }

    /// The next item of upstream's channel; hears its end.
    fn poll(&self, state: &mut State) -> Poll<Option<Item>> {
        let Some(rx) = state.rx.as_mut() else {
            return Poll::Pending;
        };
        match rx.poll_recv(&mut Context::from_waker(&self.waker)) {
            Poll::Ready(None) => {
                state.rx = None;
                self.disconnected.cancel();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(SessionError::ParticipantDisconnected(name)))) => {
                state.gone = Some(name::base(&name));
                Poll::Ready(Some(Err(SessionError::ParticipantDisconnected(name))))
            }
            other => other,
        }
    }

    /// One call of the delivery callback, on the JavaScript thread. A panic here would
    /// abort Node, so it ends the session instead.
    fn pump(self: &Arc<Self>) -> ReceivedBatch {
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut state = self.lock();
            let waited = state.request.is_some();
            match self.serve(&mut state) {
                Served::Answer(mut batch) => {
                    if waited {
                        batch.release = self.awake.lock().clone();
                    }
                    batch
                }
                Served::Warnings(batch) => batch,
                Served::Nothing => {
                    // The receive it was meant for was cancelled meanwhile.
                    self.idle(&mut state);
                    ReceivedBatch::default()
                }
            }
        }));
        served.unwrap_or_else(|_| {
            let why = Error::new(Code::Internal, "the addon panicked while receiving");
            let mut state = self.lock();
            state.ended = Some(why.clone());
            state.end_told = true;
            state.rx = None;
            let waited = state.request.take().is_some();
            drop(state);
            self.disconnected.cancel();
            let mut end = ReceivedBatch::end(&why);
            if waited {
                end.release = self.awake.lock().clone();
            }
            end
        })
    }

    /// What the waiting receive, if any, gets now; tells JavaScript of the end once.
    fn serve(&self, state: &mut State) -> Served {
        if let Some(why) = &state.ended {
            if state.end_told {
                return Served::Nothing;
            }
            state.end_told = true;
            let end = ReceivedBatch::end(why);
            state.rx = None;
            state.request = None;
            state.wait = None;
            return Served::Answer(end);
        }
        let Some(max) = state.request else {
            return Served::Nothing;
        };
        let mut batch = ReceivedBatch::begin(&mut state.envelopes);
        let _span = tracing::info_span!("slim.receive", session_id = self.session_id).entered();
        while batch.len() < max {
            let item = match state.held.take() {
                Some(item) => item,
                None => match self.poll(state) {
                    Poll::Ready(Some(item)) => item,
                    Poll::Ready(None) | Poll::Pending => break,
                },
            };
            match item {
                Ok(message) => match Parts::of(message) {
                    Ok(parts) => batch.push(parts, &mut state.envelopes),
                    Err(err) => batch.push_error(&err),
                },
                Err(err) => batch.push_error(&Error::from(err)),
            }
        }
        let served = if batch.messages() > 0 {
            state.request = None;
            // A signal's wait stays registered for the loop's next receive.
            state.wait.take_if(|wait| !wait.lasts());
            state.wait_ended = None;
            Served::Answer(batch)
        } else if batch.len() > 0 {
            Served::Warnings(batch)
        } else {
            Served::Nothing
        };
        self.serve_ended_wait(state, served)
    }

    /// What the waiting receive gets once its wait ended: nothing but why.
    fn serve_ended_wait(&self, state: &mut State, served: Served) -> Served {
        if matches!(served, Served::Answer(_)) {
            return served;
        }
        self.poll_wait(state);
        let Some(why) = state.wait_ended.take() else {
            return served;
        };
        state.request = None;
        let mut batch = match served {
            Served::Warnings(batch) => batch,
            _ => ReceivedBatch::default(),
        };
        batch.extras.wait_ended = Some(why.info());
        Served::Answer(batch)
    }

    /// Polls the waiting receive's wait with the channel's waker, which rings when it ends.
    fn poll_wait(&self, state: &mut State) {
        let Some(wait) = state.wait.as_mut().filter(|_| state.request.is_some()) else {
            return;
        };
        if let Poll::Ready(why) =
            wait.poll_ended(&mut Context::from_waker(&self.waker), "getMessage")
        {
            state.wait = None;
            state.wait_ended = Some(why);
        }
    }
}
