//! The `Session` class.

use std::collections::HashMap;
use std::sync::Arc;

use napi::Env;
use napi::bindgen_prelude::{Either, PromiseRaw, Uint8ArraySlice};
use napi_derive::napi;

use crate::delivery::Callback;
use crate::errors::{Error, Result, js};
use crate::message::Returned;
use crate::name;
use crate::runtime::{promise, whole_number};
use crate::session::core::SessionCore;
use crate::session::events::SessionEvent;
use crate::session::membership;
use crate::session::options::{PublishOptions, SessionSettings, SessionType};
use crate::session::request::Target;
use crate::session::roster::{self, Participant};
use crate::wait::{Limit, Wait, detached_promise, limit_of};

/// Where a reply goes: the original sender, through the connection it came on.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct ReplyTarget {
    /// The sender's name, `org/ns/app`.
    pub source: String,
    /// The sender instance's id (a UUID), or empty for any instance.
    pub source_id: String,
    /// The connection the message came on.
    pub input_connection: i64,
}

/// A group or point-to-point session.
#[napi]
pub struct Session {
    core: Arc<SessionCore>,
}

impl Session {
    pub fn new(core: Arc<SessionCore>) -> Self {
        Self { core }
    }

    /// A membership change as a promise, within `wait`.
    fn membership<'env, F, Fut>(
        &self,
        env: &'env Env,
        wait: Option<&Wait>,
        change: F,
    ) -> js::Result<PromiseRaw<'env, ()>>
    where
        F: FnOnce(Arc<SessionCore>, Limit) -> Fut,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        promise(env, change(self.core.clone(), limit_of(wait)))
    }
}

impl Session {
    /// Queues a publish and returns its ticket; JavaScript awaits its outcome from now
    /// on, which keeps Node running until it comes.
    fn queue(
        &self,
        env: &Env,
        payloads: Vec<Vec<u8>>,
        options: PublishOptions,
        target: Target,
        wait: Option<&Wait>,
    ) -> js::Result<u32> {
        let ticket = self
            .core
            .enqueue(payloads, options, target, limit_of(wait))?;
        if let Some(events) = self.core.events() {
            // SAFETY: a synchronous export runs on the JavaScript thread, with its env.
            unsafe { events.awaiting_one(env.raw()) }.map_err(Error::from)?;
        }
        Ok(ticket)
    }
}

/// A reply's options: routing is the reply's own.
fn reply_options(options: Option<PublishOptions>) -> Result<PublishOptions> {
    let options = options.unwrap_or_default();
    if options.destination.is_some() || options.connection.is_some() {
        return Err(Error::invalid_argument(
            "publishTo replies to the sender through the connection its message came on; \
             destination and connection are for publish",
        ));
    }
    Ok(options)
}

/// The payload as bytes: the only copy, from JavaScript memory into the message.
fn payload_of(data: Either<Uint8ArraySlice<'_>, String>) -> Vec<u8> {
    match data {
        Either::A(bytes) => bytes.to_vec(),
        Either::B(text) => text.into_bytes(),
    }
}

/// Where a publish goes: the session's destination unless the options route it.
fn target_of(options: &PublishOptions) -> Result<Target> {
    if options.destination.is_none() && options.connection.is_none() {
        return Ok(Target::Destination);
    }
    let name = options
        .destination
        .as_deref()
        .map(name::parse)
        .transpose()?;
    let connection = whole_number(options.connection, "connection")?.map(u64::from);
    Ok(Target::Routed { name, connection })
}

#[napi]
impl Session {
    /// The session id, shared by every participant.
    #[napi(getter)]
    pub fn id(&self) -> u32 {
        self.core.id
    }

    /// `group` or `point-to-point`.
    #[napi(getter, js_name = "type")]
    pub fn session_type(&self) -> SessionType {
        self.core.session_type
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

    /// The metadata the session's creator set.
    #[napi(getter)]
    pub fn metadata(&self) -> HashMap<String, String> {
        self.core.metadata()
    }

    /// The session's effective retry and encryption settings.
    #[napi(getter)]
    pub fn settings(&self) -> SessionSettings {
        SessionSettings::of(&self.core.config)
    }

    /// Whether the session has been closed (here, by its moderator, or with the app).
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.core.is_closed()
    }

    /// Queues a publish to the session and returns its ticket; the outcome callback
    /// reports when SLIM acknowledged it (reliable sessions) or took it (otherwise), or
    /// that `wait` ended first (the message still goes).
    #[napi(catch_unwind)]
    pub fn publish(
        &self,
        env: &Env,
        data: Either<Uint8ArraySlice<'_>, String>,
        options: Option<PublishOptions>,
        wait: Option<&Wait>,
    ) -> js::Result<u32> {
        let payload = payload_of(data);
        let options = options.unwrap_or_default();
        let target = target_of(&options)?;
        self.queue(env, vec![payload], options, target, wait)
    }

    /// Queues several publishes, in order, with the same options, and returns the one
    /// ticket they settle under: done when every message is, failed when any failed.
    #[napi(catch_unwind)]
    pub fn publish_many(
        &self,
        env: &Env,
        data: Vec<Either<Uint8ArraySlice<'_>, String>>,
        options: Option<PublishOptions>,
        wait: Option<&Wait>,
    ) -> js::Result<u32> {
        let payloads = data.into_iter().map(payload_of).collect();
        let options = options.unwrap_or_default();
        let target = target_of(&options)?;
        self.queue(env, payloads, options, target, wait)
    }

    /// Queues a reply to the sender of a received message; returns its ticket.
    #[napi(catch_unwind)]
    pub fn publish_to(
        &self,
        env: &Env,
        to: ReplyTarget,
        data: Either<Uint8ArraySlice<'_>, String>,
        options: Option<PublishOptions>,
        wait: Option<&Wait>,
    ) -> js::Result<u32> {
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
        let options = reply_options(options)?;
        let payload = payload_of(data);
        let target = Target::Reply { name, connection };
        self.queue(env, vec![payload], options, target, wait)
    }

    /// Queues a reply to the sender of a message this session received, named by its
    /// envelope: `number` in the numbering `generation` (how many times the session's
    /// numbering started again). Returns its ticket.
    #[napi(catch_unwind)]
    pub fn publish_reply(
        &self,
        env: &Env,
        generation: u32,
        number: u32,
        data: Either<Uint8ArraySlice<'_>, String>,
        options: Option<PublishOptions>,
        wait: Option<&Wait>,
    ) -> js::Result<u32> {
        let (name, connection) = self
            .core
            .receiver()
            .reply_to(generation, number)
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "envelope {number} of numbering {generation} is not this session's"
                ))
            })?;
        let options = reply_options(options)?;
        let target = Target::Reply { name, connection };
        let payload = payload_of(data);
        self.queue(env, vec![payload], options, target, wait)
    }

    /// Starts the session's events to JavaScript, on one callback: kind 0 answers a
    /// `requestMessages` that had to wait (or brings warnings while it waits), kind 1
    /// reports publishes as they settle, kind 2 participant changes. Called once.
    #[napi(
        catch_unwind,
        ts_args_type = "onEvent: (kind: 0 | 1 | 2, first: ArrayBuffer | Uint32Array | ParticipantChange[], second: BatchExtras | PublishFailures | null) => void"
    )]
    pub fn attach(&self, on_event: Callback<SessionEvent>) -> js::Result<()> {
        Ok(self.core.attach(on_event)?)
    }

    /// Asks for up to `max` messages. What is already queued comes back at once, as
    /// `[batch, extras]` (which may hold warnings only, and then the receive goes on
    /// waiting); otherwise `null`, and the answer (the messages or the session's end)
    /// comes through `onMessages`, with Node kept running until then; so does the end
    /// of `wait` (`extras.waitEnded`), should it come first.
    #[napi(
        catch_unwind,
        ts_return_type = "[batch: ArrayBuffer, extras: BatchExtras | null] | null"
    )]
    pub fn request_messages(
        &self,
        env: &Env,
        max: u32,
        wait: Option<&Wait>,
    ) -> js::Result<Option<Returned>> {
        let limit = limit_of(wait);
        let ready = self.core.receiver().request(env, max as usize, &limit)?;
        Ok(ready.map(Returned))
    }

    /// Ends the waiting receive, which takes nothing; false when none waits.
    #[napi(catch_unwind)]
    pub fn cancel_receive(&self, env: &Env) -> js::Result<bool> {
        Ok(self.core.receiver().cancel(env)?)
    }

    /// Invites a member to a group this app moderates; resolves once it has joined.
    #[napi(ts_return_type = "Promise<void>", catch_unwind)]
    pub fn invite<'env>(
        &self,
        env: &'env Env,
        member: String,
        wait: Option<&Wait>,
    ) -> js::Result<PromiseRaw<'env, ()>> {
        let member = name::parse(&member)?;
        self.membership(env, wait, |core, limit| {
            membership::invite(core, member, limit)
        })
    }

    /// Removes a member from a group this app moderates; resolves once it has left.
    #[napi(ts_return_type = "Promise<void>", catch_unwind)]
    pub fn remove<'env>(
        &self,
        env: &'env Env,
        member: String,
        wait: Option<&Wait>,
    ) -> js::Result<PromiseRaw<'env, ()>> {
        let member = name::parse(&member)?;
        self.membership(env, wait, |core, limit| {
            membership::remove_listed(core, member, limit)
        })
    }

    /// Tells the group this member goes offline (a soft close): the session stays, and
    /// `rejoin` brings the member back. Group sessions only.
    #[napi(ts_return_type = "Promise<void>", catch_unwind)]
    pub fn go_offline<'env>(
        &self,
        env: &'env Env,
        wait: Option<&Wait>,
    ) -> js::Result<PromiseRaw<'env, ()>> {
        self.membership(env, wait, membership::go_offline)
    }

    /// Tells the group this member is back after `goOffline`.
    #[napi(ts_return_type = "Promise<void>", catch_unwind)]
    pub fn rejoin<'env>(
        &self,
        env: &'env Env,
        wait: Option<&Wait>,
    ) -> js::Result<PromiseRaw<'env, ()>> {
        self.membership(env, wait, membership::rejoin)
    }

    /// Starts or stops reporting participant changes as events (kind 2), while
    /// JavaScript has `participant` listeners. They keep Node running no more than an
    /// idle session does.
    #[napi(catch_unwind)]
    pub fn watch_participants(&self, on: bool) {
        self.core.watch_participants(on);
    }

    /// The current members of the session, this app included.
    #[napi(ts_return_type = "Promise<Participant[]>", catch_unwind)]
    pub fn participants<'env>(
        &self,
        env: &'env Env,
        wait: Option<&Wait>,
    ) -> js::Result<PromiseRaw<'env, Vec<Participant>>> {
        let core = self.core.clone();
        detached_promise(env, wait, "participants", async move {
            let controller = core.controller()?;
            roster::participants(&controller).await
        })
    }

    /// Leaves the session (ending it for everyone when this app moderates it).
    /// Pending receives settle with SESSION_CLOSED. Idempotent.
    #[napi(ts_return_type = "Promise<void>", catch_unwind)]
    pub fn close<'env>(
        &self,
        env: &'env Env,
        wait: Option<&Wait>,
    ) -> js::Result<PromiseRaw<'env, ()>> {
        let core = self.core.clone();
        detached_promise(env, wait, "close", async move { core.close().await })
    }
}
