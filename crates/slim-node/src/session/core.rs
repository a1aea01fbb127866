//! A session's state and lifecycle: made from upstream's session context, started once
//! JavaScript attached its callbacks, closed by the app, by JavaScript or by its end
//! upstream. What it sends goes through its publisher, what it receives through its
//! receiver; membership changes are in `membership`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use slim_datapath::api::ProtoName;
use slim_session::context::SessionContext;
use slim_session::controller_sender::PROBE_KEY;
use slim_session::session_controller::SessionController;
use slim_session::{CompletionHandle, SessionConfig};
use tokio_util::sync::CancellationToken;

use crate::delivery::Callback;
use crate::errors::{Code, Error, Result};
use crate::link::Link;
use crate::runtime::spawn;
use crate::session::events::{Events, SessionEvent};
use crate::session::moderator::{self, MODERATOR_KEY};
use crate::session::options::{PublishOptions, SessionType, check_size};
use crate::session::outcomes::OutcomeSink;
use crate::session::publisher;
use crate::session::receiver::{Ending, MessageSink, Receiver};
use crate::session::request::{self, PublishRequest, Queue, QueueReader, Target};
use crate::session::roster;
use crate::session::watched::Watched;
use crate::wait::Limit;

/// Upstream stores the join request's signature among the session metadata; it is
/// protocol state, not something the creator set.
const PAYLOAD_SIGNATURE_KEY: &str = "slim-payload-sig";
/// How long closing a session may wait for upstream to finish its teardown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a session needs once JavaScript attached its callbacks.
struct Unstarted {
    publishes: QueueReader,
}

/// The event callback, held weakly: the receiver and the publisher own it, so it is
/// released when both are done and never keeps a closed session (and its JavaScript
/// object) alive.
struct Callbacks {
    events: Weak<Events>,
}

pub struct SessionCore {
    pub id: u32,
    pub session_type: SessionType,
    pub source: ProtoName,
    pub destination: ProtoName,
    pub initiator: bool,
    pub config: SessionConfig,
    controller: Weak<SessionController>,
    unstarted: parking_lot::Mutex<Option<Unstarted>>,
    callbacks: parking_lot::Mutex<Option<Callbacks>>,
    receiver: Arc<Receiver>,
    publishes: Queue,
    next_ticket: AtomicU32,
    watched: Arc<Watched>,
    /// Stops reading the participant list for changes, while JavaScript listens for them.
    roster_watch: parking_lot::Mutex<Option<CancellationToken>>,
    closed: CancellationToken,
    /// Cancelled when the session closes with nobody left to acknowledge what is in flight.
    unanswerable: CancellationToken,
    /// Why the session ended, when something other than a close ended it.
    ended_because: parking_lot::Mutex<Option<String>>,
    pub link: Arc<Link>,
}

/// A wait that the session's closing interrupted reports the session as closed.
fn closed_as_session(err: Error, id: u32) -> Error {
    if err.code == Code::Closed {
        Error::session_closed(id)
    } else {
        err
    }
}

impl SessionCore {
    /// Takes over a session upstream made (created here or joined by invitation).
    pub fn start(context: SessionContext, link: Arc<Link>) -> Result<Arc<Self>> {
        let (controller, rx) = context.into_parts();
        let live = controller.upgrade().ok_or_else(|| {
            Error::new(
                Code::SessionClosed,
                "the session ended before it could be used",
            )
        })?;
        if let Err(err) = link.identity.check_can_join_sessions() {
            // Invited into a session this identity cannot take part in: leave it.
            link.abandon_session(&live);
            return Err(err);
        }
        let config = live.session_config();
        let (publishes, publish_rx) = request::queue();
        let core = Arc::new(SessionCore {
            id: live.id(),
            session_type: SessionType::of(&config),
            source: live.source().clone(),
            destination: live.dst().clone(),
            initiator: live.is_initiator(),
            config,
            controller: controller.clone(),
            unstarted: parking_lot::Mutex::new(Some(Unstarted {
                publishes: publish_rx,
            })),
            callbacks: parking_lot::Mutex::new(None),
            receiver: Receiver::new(rx, live.id()),
            publishes,
            next_ticket: AtomicU32::new(0),
            watched: Arc::default(),
            roster_watch: parking_lot::Mutex::new(None),
            closed: link.closed.child_token(),
            unanswerable: CancellationToken::new(),
            ended_because: parking_lot::Mutex::new(None),
            link,
        });
        if !core.initiator && core.session_type == SessionType::Group {
            let session = Arc::downgrade(&core);
            moderator::watch(controller, core.closed.clone(), |reason| async move {
                if let Some(core) = session.upgrade() {
                    core.end(&reason).await;
                }
            });
        }
        Ok(core)
    }

    pub fn controller(&self) -> Result<Arc<SessionController>> {
        if self.closed.is_cancelled() {
            return Err(Error::session_closed(self.id));
        }
        self.controller
            .upgrade()
            .ok_or_else(|| Error::session_closed(self.id))
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled() || self.controller.strong_count() == 0
    }

    /// The metadata the creator set, without what SLIM and slim-node keep there.
    pub fn metadata(&self) -> HashMap<String, String> {
        let mut metadata = self.config.metadata.clone();
        metadata.remove(PAYLOAD_SIGNATURE_KEY);
        metadata.remove(MODERATOR_KEY);
        metadata.remove(PROBE_KEY);
        metadata
    }

    /// Waits for an upstream completion while honouring close and abort.
    pub async fn complete(
        &self,
        handle: CompletionHandle,
        limit: &Limit,
        what: &str,
    ) -> Result<()> {
        let done = async { handle.await.map_err(Error::from) };
        limit
            .run(done, &self.closed, what)
            .await
            .map_err(|e| closed_as_session(e, self.id))
    }

    /// Ends the session because nobody can answer any more (the app's connection or the
    /// moderator is gone): what is in flight settles at once, receives learn why.
    pub async fn end(&self, reason: &str) {
        self.ended_because
            .lock()
            .get_or_insert_with(|| format!("session {} ended: {reason}", self.id));
        self.unanswerable.cancel();
        let _ = self.close().await;
    }

    /// The error for using the session after it ended, saying why when that is known.
    pub fn closed_error(&self) -> Error {
        match self.ended_because.lock().clone() {
            Some(reason) => Error::new(Code::SessionClosed, reason),
            None => Error::session_closed(self.id),
        }
    }

    /// Leaves the session (ending it for everyone when this app moderates a group).
    pub async fn close(&self) -> Result<()> {
        if self.closed.is_cancelled() {
            return Ok(());
        }
        let controller = self.controller.upgrade();
        self.closed.cancel();
        let Some(controller) = controller else {
            return Ok(());
        };
        let moderates_group = self.initiator && self.session_type == SessionType::Group;
        let has_members = !moderates_group || roster::has_others(&controller, &self.source).await;
        let handle = match self.link.delete_session(&controller) {
            Ok(handle) => handle,
            // Already removed upstream (e.g. the moderator ended it): nothing left to do.
            Err(_) => return Ok(()),
        };
        drop(controller);
        if !has_members {
            // Upstream still retransmits the close of an empty group to nobody until its
            // retries run out; there is nothing to wait for, nor any ack to come.
            self.unanswerable.cancel();
            spawn(async move {
                let _ = handle.await;
            });
            return Ok(());
        }
        match tokio::time::timeout(CLOSE_TIMEOUT, handle).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => match Error::from(err) {
                err if err.code == Code::SessionClosed => Ok(()),
                err => Err(err),
            },
            // Closed on this side already; a peer that no longer answers (a crashed
            // moderator, say) only keeps upstream's teardown retrying in the background.
            Err(_) => {
                tracing::debug!(
                    session_id = self.id,
                    "session teardown still running after {CLOSE_TIMEOUT:?}"
                );
                Ok(())
            }
        }
    }

    /// Starts delivery to JavaScript through the event callback. Once only.
    pub fn attach(self: &Arc<Self>, on_event: Callback<SessionEvent>) -> Result<()> {
        let Some(unstarted) = self.unstarted.lock().take() else {
            return Err(Error::new(
                Code::Busy,
                "the session's callback is already attached",
            ));
        };
        let events = Events::new(on_event);
        *self.callbacks.lock() = Some(Callbacks {
            events: Arc::downgrade(&events),
        });
        self.receiver.start(
            events.clone() as Arc<dyn MessageSink>,
            self.closed.clone(),
            Arc::downgrade(self),
        );
        spawn(publisher::run(
            self.controller.clone(),
            self.destination.clone(),
            self.id,
            unstarted.publishes,
            (events as Arc<dyn OutcomeSink>, self.watched.clone()),
            self.closed.clone(),
            self.unanswerable.clone(),
        ));
        Ok(())
    }

    /// The session's incoming messages.
    pub fn receiver(&self) -> &Receiver {
        &self.receiver
    }

    /// The event callback, while the receiver or the publisher has it.
    pub fn events(&self) -> Option<Arc<Events>> {
        self.callbacks.lock().as_ref()?.events.upgrade()
    }

    /// Starts or stops reporting the changes of the participant list as events.
    pub fn watch_participants(&self, on: bool) {
        let mut watching = self.roster_watch.lock();
        if let Some(stop) = watching.take() {
            stop.cancel();
        }
        let Some(events) = self.callbacks.lock().as_ref().map(|c| c.events.clone()) else {
            return;
        };
        if !on || self.closed.is_cancelled() {
            return;
        }
        let stop = self.closed.child_token();
        *watching = Some(stop.clone());
        let report = move |changes| {
            if let Some(events) = events.upgrade() {
                events.report_participants(changes);
            }
        };
        spawn(roster::watch(self.controller.clone(), report, stop));
    }

    /// Queues a publish of one message or several, in order, and returns its ticket; its
    /// outcome comes through the callback. Nothing is queued unless every message fits, and
    /// the session's backlog has room for them (else `BUSY`).
    pub fn enqueue(
        &self,
        payloads: Vec<Vec<u8>>,
        options: PublishOptions,
        target: Target,
        limit: Limit,
    ) -> Result<u32> {
        if self.closed.is_cancelled() {
            return Err(Error::session_closed(self.id));
        }
        if !self.link.direction.sends() {
            return Err(Error::invalid_argument(format!(
                "this app was created with direction {:?}: it sends no data messages",
                self.link.direction
            )));
        }
        if payloads.is_empty() {
            return Err(Error::invalid_argument(
                "a publish needs at least one message",
            ));
        }
        for (index, payload) in payloads.iter().enumerate() {
            check_size(payload.len(), &options).map_err(|err| match payloads.len() {
                1 => err,
                _ => Error::new(err.code, format!("message {index}: {}", err.message)),
            })?;
        }
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let request = PublishRequest {
            payloads,
            options,
            target,
            ticket,
        };
        if let Some(callbacks) = &*self.callbacks.lock() {
            let sink = callbacks.events.clone() as Weak<dyn OutcomeSink>;
            self.watched.watch(ticket, limit, sink);
        }
        self.publishes.push(self.id, request).inspect_err(|_| {
            self.watched.forget(ticket);
        })?;
        Ok(ticket)
    }
}

impl Ending for SessionCore {
    async fn close(&self, gone: Option<String>) {
        // Upstream ends a point-to-point session only once its peer is gone (session::peer).
        match gone.filter(|_| self.session_type == SessionType::PointToPoint) {
            Some(peer) => self.end(&format!("its peer {peer} went offline")).await,
            None => {
                let _ = SessionCore::close(self).await;
            }
        }
    }

    fn closed_error(&self) -> Error {
        SessionCore::closed_error(self)
    }
}
