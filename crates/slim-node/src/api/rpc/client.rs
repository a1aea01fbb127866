//! The calling side: `RpcChannel` and its `RpcCall`s.

use std::collections::HashMap;
use std::sync::Arc;

use napi::Env;
use napi::bindgen_prelude::{Buffer, PromiseRaw, Uint8ArraySlice};
use napi_derive::napi;

use crate::api::app::{App, connection_id};
use crate::errors::{Error, js};
use crate::name;
use crate::rpc::client::{CallCore, CallSettings, ChannelCore, Reply, Requests};
use crate::runtime::{millis, promise};
use crate::status::RpcCode;
use crate::wait::{Wait, detached_promise, limit_of};

/// Deadline and metadata of one call.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct RpcCallSettings {
    /// Milliseconds the whole call may take; the server sees the same deadline.
    pub timeout: Option<f64>,
    /// Sent with the request; the handler reads it from its context.
    pub metadata: Option<HashMap<String, String>>,
}

impl RpcCallSettings {
    fn upstream(self) -> js::Result<CallSettings> {
        Ok(CallSettings {
            timeout: millis(self.timeout, "timeout")?,
            metadata: self.metadata,
        })
    }
}

/// A group member's own failure, beside the other members' answers.
#[napi(object, object_from_js = false)]
pub struct RpcMemberFailure {
    pub status: RpcCode,
    pub message: String,
    pub details: Option<Buffer>,
}

/// One answer of a call; in a group call, also who sent it.
#[napi(object, object_from_js = false)]
pub struct RpcAnswer {
    pub data: Option<Buffer>,
    /// The member's name, `org/ns/app` (group calls).
    pub source: Option<String>,
    /// The member's verified identity (group calls with MLS).
    pub subject: Option<String>,
    pub issuer: Option<String>,
    /// Set instead of `data` when this member failed; the call goes on.
    pub failure: Option<RpcMemberFailure>,
}

impl RpcAnswer {
    fn of(reply: Reply) -> Result<Self, Error> {
        let ends_call = reply.ends_call();
        let Reply {
            outcome,
            source,
            subject,
            issuer,
        } = reply;
        let (data, failure) = match outcome {
            Ok(data) => (Some(data.into()), None),
            Err(err) if ends_call => return Err(err),
            Err(err) => {
                let rpc = err.rpc.unwrap_or_default();
                let failure = RpcMemberFailure {
                    status: rpc.status,
                    message: err.message,
                    details: rpc.details.map(Buffer::from),
                };
                (None, Some(failure))
            }
        };
        Ok(Self {
            data,
            source,
            subject,
            issuer,
            failure,
        })
    }
}

/// Calls to one remote service (point to point) or to every member of a group.
#[napi]
pub struct RpcChannel {
    core: Arc<ChannelCore>,
}

#[napi]
impl RpcChannel {
    /// A channel to `members`: one server name, or with `group` several (each gets
    /// every call and answers it).
    #[napi(constructor, catch_unwind)]
    pub fn new(
        app: &App,
        members: Vec<String>,
        group: bool,
        connection: Option<f64>,
    ) -> js::Result<Self> {
        crate::api::test_panic_point("RpcChannel constructor");
        if members.is_empty() || (!group && members.len() != 1) {
            return Err(Error::invalid_argument(
                "a channel needs one server name, or with group: true at least one member",
            )
            .into());
        }
        let names = members
            .iter()
            .map(|member| name::parse(member))
            .collect::<Result<Vec<_>, _>>()?;
        let core = ChannelCore::new(
            app.core().link.clone(),
            names,
            group,
            connection_id(connection)?,
        )?;
        Ok(Self { core })
    }

    #[napi(getter)]
    pub fn group(&self) -> bool {
        self.core.is_group()
    }

    /// One request, one answer (point-to-point channels).
    #[napi(ts_return_type = "Promise<Buffer>", catch_unwind)]
    pub fn unary<'env>(
        &self,
        env: &'env Env,
        service: String,
        method: String,
        request: Uint8ArraySlice<'_>,
        settings: Option<RpcCallSettings>,
        wait: Option<&Wait>,
    ) -> js::Result<PromiseRaw<'env, Buffer>> {
        let settings = settings.unwrap_or_default().upstream()?;
        let call =
            self.core
                .clone()
                .unary(service, method, request.to_vec(), settings, limit_of(wait));
        promise(env, async move { call.await.map(Buffer::from) })
    }

    /// Starts a call of any shape: with `request`, that one request; without, requests
    /// are sent with `send` and ended with `closeSend`.
    #[napi(catch_unwind)]
    pub fn open(
        &self,
        service: String,
        method: String,
        request: Option<Uint8ArraySlice<'_>>,
        settings: Option<RpcCallSettings>,
        wait: Option<&Wait>,
    ) -> js::Result<RpcCall> {
        let requests = match request {
            Some(request) => Requests::One(request.to_vec()),
            None => Requests::Streamed,
        };
        let settings = settings.unwrap_or_default().upstream()?;
        let core = self
            .core
            .open(service, method, requests, settings, limit_of(wait))?;
        Ok(RpcCall { core })
    }

    /// The server's verified identity once a call set up the session (MLS).
    #[napi(ts_return_type = "Promise<RpcPeer | null>", catch_unwind)]
    pub fn peer<'env>(&self, env: &'env Env) -> js::Result<PromiseRaw<'env, Option<RpcPeer>>> {
        let core = self.core.clone();
        promise(env, async move {
            Ok(core
                .peer()
                .await
                .map(|(subject, issuer)| RpcPeer { subject, issuer }))
        })
    }

    /// Ends the channel's session; a later call sets up a new one.
    #[napi(catch_unwind)]
    pub fn close<'env>(
        &self,
        env: &'env Env,
        wait: Option<&Wait>,
    ) -> js::Result<PromiseRaw<'env, ()>> {
        let core = self.core.clone();
        detached_promise(env, wait, "close", async move { core.close().await })
    }
}

/// A verified identity.
#[napi(object)]
pub struct RpcPeer {
    pub subject: String,
    pub issuer: Option<String>,
}

/// One call in progress on the calling side.
#[napi]
pub struct RpcCall {
    core: Arc<CallCore>,
}

#[napi]
impl RpcCall {
    /// Sends one request; resolves once it is queued (waits while the queue is full).
    #[napi(catch_unwind)]
    pub fn send<'env>(
        &self,
        env: &'env Env,
        request: Uint8ArraySlice<'_>,
    ) -> js::Result<PromiseRaw<'env, ()>> {
        promise(env, self.core.clone().send(request.to_vec()))
    }

    /// No more requests.
    #[napi(catch_unwind)]
    pub fn close_send(&self) {
        crate::api::test_panic_point("RpcCall.closeSend");
        self.core.close_send();
    }

    /// The next answer, or `null` once the answers ended; a failure of the whole call
    /// rejects.
    #[napi(ts_return_type = "Promise<RpcAnswer | null>", catch_unwind)]
    pub fn next<'env>(&self, env: &'env Env) -> js::Result<PromiseRaw<'env, Option<RpcAnswer>>> {
        let next = self.core.clone().next();
        promise(
            env,
            async move { next.await?.map(RpcAnswer::of).transpose() },
        )
    }

    /// An answer already here, else `null` (then `next`, which also tells the end).
    #[napi(ts_return_type = "RpcAnswer | null", catch_unwind)]
    pub fn try_next(&self) -> js::Result<Option<RpcAnswer>> {
        Ok(self.core.try_next().map(RpcAnswer::of).transpose()?)
    }

    /// Stops the call.
    #[napi(catch_unwind)]
    pub fn cancel(&self) {
        self.core.cancel();
    }
}
