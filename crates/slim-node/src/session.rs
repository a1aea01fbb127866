//! Sessions: group (multicast) and point-to-point conversations of an app. What a
//! session sends goes through its [`publisher`](crate::publisher), what it receives
//! through its [`receiver`](crate::receiver).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use napi::Env;
use napi::bindgen_prelude::{Either, PromiseRaw, Uint8ArraySlice};
use napi_derive::napi;
use slim_datapath::api::{ParticipantState, ProtoName, ProtoSessionType};
use slim_session::AppChannelReceiver;
use slim_session::context::SessionContext;
use slim_session::session_config::MlsSettings;
use slim_session::session_controller::SessionController;
use slim_session::{CompletionHandle, SessionConfig};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::app::AppCore;
use crate::cancel::{CancelToken, token_of};
use crate::delivery::{Callback, Delivery};
use crate::errors::{Code, Error, Result};
use crate::message::ReceivedBatch;
use crate::name;
use crate::publisher::{self, PublishOutcomes, PublishRequest, Target};
use crate::receiver::{self, Inbox, Request};
use crate::runtime::{bounded, millis, spawn, whole_number};

/// Defaults that make a session reliable when the caller sets only one knob.
const DEFAULT_MAX_RETRIES: u32 = 10;
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Upstream stores the join request's signature among the session metadata; it is
/// protocol state, not something the creator set.
const PAYLOAD_SIGNATURE_KEY: &str = "slim-payload-sig";
/// How long closing a session may wait for upstream to finish its teardown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// gRPC's default message limit, which SLIM nodes and apps keep: a larger message is
/// dropped by whoever decodes it, after the sender was told it left.
const GRPC_MESSAGE_LIMIT: usize = 4 * 1024 * 1024;
/// MLS pads a message to a multiple of an eighth of the next power of two, so the largest
/// padded message under the gRPC limit holds 3.5 MiB.
const MLS_PADDED_LIMIT: usize = GRPC_MESSAGE_LIMIT / 8 * 7;
/// Room kept for the SLIM header, the identity token and MLS framing.
const HEADER_ALLOWANCE: usize = 64 * 1024;

/// The most bytes of payload, payload type and metadata one message may carry, with or
/// without MLS (one limit, so turning encryption on never breaks a working sender).
#[napi]
pub const MAX_MESSAGE_BYTES: u32 = (MLS_PADDED_LIMIT - HEADER_ALLOWANCE) as u32;

/// Refuses a message SLIM would accept locally but no receiver could decode.
fn check_size(payload: usize, options: &PublishOptions) -> Result<()> {
    let payload_type = options.payload_type.as_ref().map_or(0, String::len);
    let metadata: usize = options
        .metadata
        .iter()
        .flatten()
        .map(|(key, value)| key.len() + value.len())
        .sum();
    let size = payload + payload_type + metadata;
    if size > MAX_MESSAGE_BYTES as usize {
        return Err(Error::new(
            Code::PayloadTooLarge,
            format!(
                "a message of {size} bytes (payload, payload type and metadata) exceeds the limit of \
                 {MAX_MESSAGE_BYTES} bytes: gRPC carries at most 4 MiB per message, and MLS padding and headers need room"
            ),
        ));
    }
    Ok(())
}

/// The two kinds of session, named as JavaScript sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionType {
    Group,
    PointToPoint,
}

impl SessionType {
    fn parse(text: &str) -> Result<Self> {
        match text {
            "group" => Ok(SessionType::Group),
            "point-to-point" => Ok(SessionType::PointToPoint),
            other => Err(Error::invalid_argument(format!(
                "session type must be 'group' or 'point-to-point', got {other:?}"
            ))),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            SessionType::Group => "group",
            SessionType::PointToPoint => "point-to-point",
        }
    }
}

/// How a session is created.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    #[napi(ts_type = "'group' | 'point-to-point'")]
    pub r#type: Option<String>,
    /// Retransmissions per message before delivery fails (reliable mode).
    pub max_retries: Option<f64>,
    /// Milliseconds between retransmissions (the seed's `timeout`).
    pub interval: Option<f64>,
    /// Reliable delivery with acknowledgements (default true).
    pub reliable: Option<bool>,
    /// End-to-end encryption with MLS (default false).
    pub mls: Option<bool>,
    /// Session metadata sent to every participant.
    pub metadata: Option<HashMap<String, String>>,
}

impl SessionOptions {
    pub fn to_config(&self) -> Result<SessionConfig> {
        let session_type = match self.r#type.as_deref().map(SessionType::parse).transpose()? {
            Some(SessionType::PointToPoint) => ProtoSessionType::PointToPoint,
            _ => ProtoSessionType::Multicast,
        };
        let interval = millis(self.interval, "interval")?;
        let max_retries = whole_number(self.max_retries, "maxRetries")?;
        if interval == Some(Duration::ZERO) {
            return Err(Error::invalid_argument(
                "interval must be greater than 0 ms",
            ));
        }
        let reliable = self.reliable.unwrap_or(true);
        if !reliable && (max_retries.is_some() || interval.is_some()) {
            return Err(Error::invalid_argument(
                "maxRetries and interval only apply to reliable sessions; drop them or set reliable: true",
            ));
        }
        let (max_retries, interval) = if reliable {
            (
                Some(max_retries.unwrap_or(DEFAULT_MAX_RETRIES)),
                Some(interval.unwrap_or(DEFAULT_INTERVAL)),
            )
        } else {
            (None, None)
        };
        Ok(SessionConfig {
            session_type,
            max_retries,
            interval,
            mls_settings: self.mls.unwrap_or(false).then_some(MlsSettings {
                header_integrity_validation_percent: 100,
                max_seen_control_message_ids_size: None,
            }),
            initiator: true,
            metadata: self.metadata.clone().unwrap_or_default(),
        })
    }
}

/// Publish options.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    pub payload_type: Option<String>,
    pub metadata: Option<HashMap<String, String>>,
}

/// Where a reply goes: the original sender, through the connection it came on.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct ReplyTarget {
    pub source: String,
    pub source_id: String,
    pub input_connection: i64,
}

/// A member of a group session as seen by this app.
#[napi(object)]
pub struct Participant {
    pub name: String,
    pub id: Option<String>,
    pub online: bool,
}

/// The effective configuration of a session.
#[napi(object)]
pub struct SessionSettings {
    pub max_retries: Option<u32>,
    pub interval: Option<f64>,
    pub mls: bool,
}

#[derive(Clone, Copy)]
enum Membership {
    Invite,
    Remove,
}

/// What a session needs once JavaScript attached its callbacks.
struct Unstarted {
    messages: AppChannelReceiver,
    publishes: mpsc::UnboundedReceiver<PublishRequest>,
}

/// The callbacks, held weakly: the tasks own them, so they are released when the
/// tasks end and never keep a closed session (and its JavaScript object) alive.
struct Callbacks {
    messages: Weak<Delivery<ReceivedBatch>>,
    outcomes: Weak<Delivery<PublishOutcomes>>,
}

pub struct SessionCore {
    id: u32,
    session_type: SessionType,
    source: ProtoName,
    destination: ProtoName,
    initiator: bool,
    config: SessionConfig,
    controller: Weak<SessionController>,
    unstarted: parking_lot::Mutex<Option<Unstarted>>,
    callbacks: parking_lot::Mutex<Option<Callbacks>>,
    inbox: Arc<Inbox>,
    publish_tx: mpsc::UnboundedSender<PublishRequest>,
    next_ticket: AtomicU32,
    closed: CancellationToken,
    /// Cancelled when the session closes with nobody left to acknowledge what is in flight.
    unanswerable: CancellationToken,
    /// Why the session ended, when something other than a close ended it.
    ended_because: parking_lot::Mutex<Option<String>>,
    app: Arc<AppCore>,
}

/// A group or point-to-point session.
#[napi]
pub struct Session {
    core: Arc<SessionCore>,
}

pub(crate) fn session_closed(id: u32) -> Error {
    Error::new(Code::SessionClosed, format!("session {id} is closed"))
}

impl SessionCore {
    pub fn controller(&self) -> Result<Arc<SessionController>> {
        if self.closed.is_cancelled() {
            return Err(session_closed(self.id));
        }
        self.controller
            .upgrade()
            .ok_or_else(|| session_closed(self.id))
    }

    /// Waits for an upstream completion while honouring close and abort.
    async fn complete(
        &self,
        handle: CompletionHandle,
        timeout: Option<Duration>,
        abort: Option<&CancellationToken>,
        what: &str,
    ) -> Result<()> {
        let done = async { handle.await.map_err(Error::from) };
        bounded(done, timeout, &self.closed, abort, what)
            .await
            .map_err(|e| closed_as_session(e, self.id))
    }

    /// Whether a group this app moderates still has members to tell that it ends.
    async fn has_members(&self, controller: &SessionController) -> bool {
        if !self.initiator || self.session_type != SessionType::Group {
            return true;
        }
        controller
            .participants_list()
            .await
            .map(|list| {
                list.iter()
                    .any(|(name, _)| !name.match_prefix(&self.source))
            })
            .unwrap_or(true)
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

    /// One of the callbacks, while the task that feeds it runs.
    fn callback<T: napi::bindgen_prelude::JsValuesTupleIntoVec>(
        &self,
        which: impl FnOnce(&Callbacks) -> &Weak<Delivery<T>>,
    ) -> Result<Arc<Delivery<T>>> {
        let callbacks = self.callbacks.lock();
        let Some(callbacks) = callbacks.as_ref() else {
            return Err(Error::new(
                Code::Internal,
                "the session's callbacks are not attached",
            ));
        };
        which(callbacks)
            .upgrade()
            .ok_or_else(|| self.closed_error())
    }

    /// The error for using the session after it ended, saying why when that is known.
    pub fn closed_error(&self) -> Error {
        match self.ended_because.lock().clone() {
            Some(reason) => Error::new(Code::SessionClosed, reason),
            None => session_closed(self.id),
        }
    }

    pub async fn close(&self) -> Result<()> {
        if self.closed.is_cancelled() {
            return Ok(());
        }
        let controller = self.controller.upgrade();
        self.closed.cancel();
        let Some(controller) = controller else {
            return Ok(());
        };
        let has_members = self.has_members(&controller).await;
        let handle = match self.app.delete_session(&controller) {
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
            Ok(Err(err)) => {
                let err = Error::from(err);
                if err.code == Code::SessionClosed {
                    Ok(())
                } else {
                    Err(err)
                }
            }
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
}

fn closed_as_session(err: Error, id: u32) -> Error {
    if err.code == Code::Closed {
        session_closed(id)
    } else {
        err
    }
}

fn participant_of(name: ProtoName, state: ParticipantState) -> Participant {
    Participant {
        name: name::base(&name),
        id: name::id(&name),
        online: state == ParticipantState::Online,
    }
}

impl Session {
    pub fn from_context(context: SessionContext, app: Arc<AppCore>) -> Result<Self> {
        let (controller, rx) = context.into_parts();
        let live = controller.upgrade().ok_or_else(|| {
            Error::new(
                Code::SessionClosed,
                "the session ended before it could be used",
            )
        })?;
        let config = live.session_config();
        if let Err(err) = crate::app::check_session_identity(app.identity) {
            // Invited into a session this identity cannot take part in: leave it.
            if let Ok(handle) = app.delete_session(&live) {
                spawn(async move {
                    let _ = handle.await;
                });
            }
            return Err(err);
        }
        let session_type = if live.session_type() == ProtoSessionType::PointToPoint {
            SessionType::PointToPoint
        } else {
            SessionType::Group
        };
        let (publish_tx, publish_rx) = mpsc::unbounded_channel();
        let core = SessionCore {
            id: live.id(),
            session_type,
            source: live.source().clone(),
            destination: live.dst().clone(),
            initiator: live.is_initiator(),
            config,
            controller: controller.clone(),
            unstarted: parking_lot::Mutex::new(Some(Unstarted {
                messages: rx,
                publishes: publish_rx,
            })),
            callbacks: parking_lot::Mutex::new(None),
            inbox: Arc::default(),
            publish_tx,
            next_ticket: AtomicU32::new(0),
            closed: app.closed.child_token(),
            unanswerable: CancellationToken::new(),
            ended_because: parking_lot::Mutex::new(None),
            app,
        };
        let core = Arc::new(core);
        core.app.register(&core);
        if !core.initiator && core.session_type == SessionType::Group {
            crate::moderator::watch(Arc::downgrade(&core), core.closed.clone());
        }
        Ok(Self { core })
    }

    /// Invites or removes `member`, resolving when upstream reports the change done.
    fn change_members<'env>(
        &self,
        env: &'env Env,
        change: Membership,
        member: String,
        timeout: Option<f64>,
        cancel: Option<&CancelToken>,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let member = name::parse(&member)?;
        let timeout = millis(timeout, "timeout")?;
        let abort = token_of(cancel);
        let core = self.core.clone();
        env.spawn_future(async move {
            let controller = core.controller()?;
            check_moderator(&core)?;
            match change {
                Membership::Invite => {
                    core.app.set_route(&member).await?;
                    match member_state(&controller, &member).await {
                        Some(ParticipantState::Online) => {
                            return Err(Error::invalid_argument(format!(
                                "{} is already a member of this group",
                                name::base(&member)
                            ))
                            .into());
                        }
                        // A member that crashed stays listed, offline, until it is removed.
                        Some(_) => remove_member(&core, &member, timeout, abort.as_ref()).await?,
                        None => {}
                    }
                    let handle = controller
                        .invite_participant(&member)
                        .await
                        .map_err(Error::from)?;
                    drop(controller);
                    core.complete(handle, timeout, abort.as_ref(), "invite")
                        .await?;
                }
                Membership::Remove => {
                    if member_state(&controller, &member).await.is_none() {
                        return Err(Error::new(
                            Code::NotMember,
                            format!("{} is not a member of this group", name::base(&member)),
                        )
                        .into());
                    }
                    drop(controller);
                    remove_member(&core, &member, timeout, abort.as_ref()).await?
                }
            }
            Ok(())
        })
    }

    fn enqueue(
        &self,
        data: Either<Uint8ArraySlice<'_>, String>,
        options: Option<PublishOptions>,
        target: Target,
    ) -> Result<u32> {
        let core = &self.core;
        if core.closed.is_cancelled() {
            return Err(session_closed(core.id));
        }
        let options = options.unwrap_or_default();
        // The only copy of the payload: JavaScript memory into the protobuf buffer.
        let payload = match data {
            Either::A(bytes) => bytes.to_vec(),
            Either::B(text) => text.into_bytes(),
        };
        check_size(payload.len(), &options)?;
        let ticket = core.next_ticket.fetch_add(1, Ordering::Relaxed);
        let request = PublishRequest {
            payload,
            options,
            target,
            ticket,
        };
        core.publish_tx
            .send(request)
            .map_err(|_| session_closed(core.id))?;
        Ok(ticket)
    }
}

#[napi]
impl Session {
    /// The session id, shared by every participant.
    #[napi(getter)]
    pub fn id(&self) -> u32 {
        self.core.id
    }

    #[napi(
        getter,
        js_name = "type",
        ts_return_type = "'group' | 'point-to-point'"
    )]
    pub fn session_type(&self) -> &'static str {
        self.core.session_type.as_str()
    }

    /// This app's name, `org/ns/app`.
    #[napi(getter)]
    pub fn source(&self) -> String {
        name::base(&self.core.source)
    }

    /// The group channel, or the peer of a point-to-point session.
    #[napi(getter)]
    pub fn destination(&self) -> String {
        name::base(&self.core.destination)
    }

    /// Whether this app created the session (and so moderates a group).
    #[napi(getter)]
    pub fn is_initiator(&self) -> bool {
        self.core.initiator
    }

    #[napi(getter)]
    pub fn metadata(&self) -> HashMap<String, String> {
        let mut metadata = self.core.config.metadata.clone();
        metadata.remove(PAYLOAD_SIGNATURE_KEY);
        metadata.remove(crate::moderator::MODERATOR_KEY);
        metadata
    }

    #[napi(getter)]
    pub fn settings(&self) -> SessionSettings {
        let config = &self.core.config;
        SessionSettings {
            max_retries: config.max_retries,
            interval: config.interval.map(|d| d.as_secs_f64() * 1000.0),
            mls: config.mls_settings.is_some(),
        }
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.core.closed.is_cancelled() || self.core.controller.strong_count() == 0
    }

    /// Queues a publish to the session and returns its ticket; `completions` reports
    /// when SLIM acknowledged it (reliable sessions) or took it (otherwise).
    #[napi(catch_unwind)]
    pub fn publish(
        &self,
        data: Either<Uint8ArraySlice<'_>, String>,
        options: Option<PublishOptions>,
    ) -> napi::Result<u32> {
        Ok(self.enqueue(data, options, Target::Destination)?)
    }

    /// Queues a reply to the sender of a received message; returns its ticket.
    #[napi(catch_unwind)]
    pub fn publish_to(
        &self,
        to: ReplyTarget,
        data: Either<Uint8ArraySlice<'_>, String>,
        options: Option<PublishOptions>,
    ) -> napi::Result<u32> {
        let mut full = to.source.clone();
        if !to.source_id.is_empty() {
            full = format!("{full}/{}", to.source_id);
        }
        let name = name::parse(&full)?;
        let connection = u64::try_from(to.input_connection).map_err(|_| {
            Error::invalid_argument(format!(
                "inputConnection {} is not valid",
                to.input_connection
            ))
        })?;
        Ok(self.enqueue(data, options, Target::Reply { name, connection })?)
    }

    /// Starts the session's delivery to JavaScript: `onMessages` answers each
    /// `requestMessages`, `onOutcomes` reports publishes as they settle. Called once.
    #[napi(
        catch_unwind,
        ts_args_type = "onMessages: (batch: ArrayBuffer, extras: BatchExtras | null) => void, onOutcomes: (done: Uint32Array, failures: PublishFailures | null) => void"
    )]
    pub fn attach(
        &self,
        on_messages: Callback<ReceivedBatch>,
        on_outcomes: Callback<PublishOutcomes>,
    ) -> napi::Result<()> {
        let core = &self.core;
        let Some(unstarted) = core.unstarted.lock().take() else {
            return Err(
                Error::new(Code::Busy, "the session's callbacks are already attached").into(),
            );
        };
        let messages = Arc::new(Delivery::new(on_messages));
        let outcomes = Arc::new(Delivery::new(on_outcomes));
        *core.callbacks.lock() = Some(Callbacks {
            messages: Arc::downgrade(&messages),
            outcomes: Arc::downgrade(&outcomes),
        });
        spawn(receiver::run(
            unstarted.messages,
            core.inbox.clone(),
            messages,
            core.closed.clone(),
            Arc::downgrade(core),
            core.id,
        ));
        spawn(publisher::run(
            core.controller.clone(),
            core.destination.clone(),
            core.id,
            unstarted.publishes,
            outcomes,
            core.closed.clone(),
            core.unanswerable.clone(),
        ));
        Ok(())
    }

    /// Asks for up to `max` messages: waits for the first, then takes what is already
    /// queued, so a burst costs one wake-up of the JavaScript thread. The answer (the
    /// messages, a timeout or abort, or the session's end) comes through `onMessages`;
    /// until then the session keeps Node running. An `abortable` request ends early
    /// with ABORTED on `abortReceive`.
    #[napi(catch_unwind)]
    pub fn request_messages(
        &self,
        env: &Env,
        max: u32,
        timeout: Option<f64>,
        abortable: bool,
    ) -> napi::Result<()> {
        let core = &self.core;
        let request = Request {
            max: max.max(1) as usize,
            timeout: millis(timeout, "timeout")?,
            abortable,
        };
        let messages = core.callback(|callbacks| &callbacks.messages)?;
        core.inbox.ask(request, core.id)?;
        messages.hold(env, true)
    }

    /// Ends the pending abortable request with ABORTED; a no-op once it is answered.
    #[napi(catch_unwind)]
    pub fn abort_receive(&self) {
        self.core.inbox.abort();
    }

    /// Keeps Node running while publishes await their outcome, and lets it exit after.
    #[napi(catch_unwind)]
    pub fn hold_outcomes(&self, env: &Env, alive: bool) -> napi::Result<()> {
        match self.core.callback(|callbacks| &callbacks.outcomes) {
            Ok(outcomes) => outcomes.hold(env, alive),
            Err(_) => Ok(()),
        }
    }

    /// Invites a member to a group this app moderates; resolves once it has joined.
    #[napi(ts_return_type = "Promise<void>", catch_unwind)]
    pub fn invite<'env>(
        &self,
        env: &'env Env,
        member: String,
        timeout: Option<f64>,
        cancel: Option<&CancelToken>,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        self.change_members(env, Membership::Invite, member, timeout, cancel)
    }

    /// Removes a member from a group this app moderates; resolves once it has left.
    #[napi(ts_return_type = "Promise<void>", catch_unwind)]
    pub fn remove<'env>(
        &self,
        env: &'env Env,
        member: String,
        timeout: Option<f64>,
        cancel: Option<&CancelToken>,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        self.change_members(env, Membership::Remove, member, timeout, cancel)
    }

    /// The current members of the session, this app included.
    #[napi(catch_unwind)]
    pub async fn participants(&self) -> napi::Result<Vec<Participant>> {
        let controller = self.core.controller()?;
        let list = controller.participants_list().await.map_err(Error::from)?;
        Ok(list
            .into_iter()
            .map(|(name, state)| participant_of(name, state))
            .collect())
    }

    /// Leaves the session (ending it for everyone when this app moderates it).
    /// Pending receives settle with SESSION_CLOSED. Idempotent.
    #[napi(catch_unwind)]
    pub async fn close(&self) -> napi::Result<()> {
        Ok(self.core.close().await?)
    }
}

/// How `member` is listed in the group, if it is.
pub(crate) async fn member_state(
    controller: &SessionController,
    member: &ProtoName,
) -> Option<ParticipantState> {
    let wanted = name::base(member);
    let list = controller.participants_list().await.ok()?;
    list.into_iter()
        .find(|(listed, _)| name::base(listed) == wanted)
        .map(|(_, state)| state)
}

/// Removes `member`. One that went offline cannot acknowledge its removal, so upstream
/// reports a delivery failure after taking it off the list: that counts as removed.
async fn remove_member(
    core: &SessionCore,
    member: &ProtoName,
    timeout: Option<Duration>,
    abort: Option<&CancellationToken>,
) -> Result<()> {
    let handle = core
        .controller()?
        .remove_participant(member)
        .await
        .map_err(Error::from)?;
    match core.complete(handle, timeout, abort, "remove").await {
        Err(err) if err.code == Code::DeliveryFailed => match core.controller() {
            Ok(controller) if member_state(&controller, member).await.is_none() => Ok(()),
            _ => Err(err),
        },
        outcome => outcome,
    }
}

/// Upstream's own checks, done before any route is set so errors come first.
fn check_moderator(core: &SessionCore) -> Result<()> {
    if core.session_type == SessionType::PointToPoint {
        return Err(Error::new(
            Code::NotGroup,
            "only group sessions have members to invite or remove; this is a point-to-point session",
        ));
    }
    if !core.initiator {
        return Err(Error::new(
            Code::NotInitiator,
            "only the moderator (the app that created the group) can invite or remove members",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reliable_by_default() {
        let config = SessionOptions::default().to_config().unwrap();
        assert_eq!(config.session_type, ProtoSessionType::Multicast);
        assert_eq!(config.max_retries, Some(DEFAULT_MAX_RETRIES));
        assert_eq!(config.interval, Some(DEFAULT_INTERVAL));
        assert!(config.mls_settings.is_none());
        assert!(config.initiator);
    }

    #[test]
    fn seed_settings_map_to_interval() {
        let options = SessionOptions {
            max_retries: Some(5.0),
            interval: Some(5000.0),
            mls: Some(true),
            ..Default::default()
        };
        let config = options.to_config().unwrap();
        assert_eq!(config.max_retries, Some(5));
        assert_eq!(config.interval, Some(Duration::from_secs(5)));
        assert!(config.mls_settings.is_some());
    }

    #[test]
    fn unreliable_rejects_retry_knobs() {
        let options = SessionOptions {
            reliable: Some(false),
            max_retries: Some(3.0),
            ..Default::default()
        };
        assert_eq!(options.to_config().unwrap_err().code, Code::InvalidArgument);
        let config = SessionOptions {
            reliable: Some(false),
            ..Default::default()
        }
        .to_config()
        .unwrap();
        assert_eq!((config.max_retries, config.interval), (None, None));
    }

    #[test]
    fn session_types_parse_from_their_javascript_names() {
        let p2p = SessionOptions {
            r#type: Some("point-to-point".into()),
            ..Default::default()
        };
        assert_eq!(
            p2p.to_config().unwrap().session_type,
            ProtoSessionType::PointToPoint
        );
        let bad = SessionOptions {
            r#type: Some("multicast".into()),
            ..Default::default()
        };
        assert_eq!(bad.to_config().unwrap_err().code, Code::InvalidArgument);
        assert_eq!(
            SessionType::parse(SessionType::Group.as_str()).unwrap(),
            SessionType::Group
        );
    }

    #[test]
    fn messages_above_the_grpc_limit_are_refused() {
        let limit = MAX_MESSAGE_BYTES as usize;
        let plain = PublishOptions::default();
        assert!(check_size(limit, &plain).is_ok());
        let err = check_size(limit + 1, &plain).unwrap_err();
        assert_eq!(err.code, Code::PayloadTooLarge);
        assert!(err.message.contains(&MAX_MESSAGE_BYTES.to_string()));
        let with_metadata = PublishOptions {
            payload_type: Some("t".into()),
            metadata: Some(HashMap::from([("k".into(), "v".into())])),
        };
        assert!(check_size(limit - 3, &with_metadata).is_ok());
        assert!(check_size(limit - 2, &with_metadata).is_err());
    }

    #[test]
    fn retries_must_be_whole_and_not_negative() {
        for bad in [-1.0, 1.5, f64::NAN, f64::INFINITY, 5e9] {
            let options = SessionOptions {
                max_retries: Some(bad),
                ..Default::default()
            };
            assert_eq!(options.to_config().unwrap_err().code, Code::InvalidArgument);
        }
    }

    #[test]
    fn bad_intervals_are_rejected() {
        for bad in [0.0, -5.0, f64::NAN] {
            let options = SessionOptions {
                interval: Some(bad),
                ..Default::default()
            };
            assert_eq!(options.to_config().unwrap_err().code, Code::InvalidArgument);
        }
    }
}
