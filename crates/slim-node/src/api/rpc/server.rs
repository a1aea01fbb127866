//! The serving side: `RpcServer` and its `IncomingCall`s.

use std::collections::HashMap;
use std::sync::Arc;

use napi::Env;
use napi::bindgen_prelude::{Buffer, PromiseRaw, Uint8ArraySlice};
use napi_derive::napi;

use crate::api::app::{App, connection_id};
use crate::errors::js;
use crate::name;
use crate::rpc::incoming::IncomingCore;
use crate::rpc::server::{RpcShape, ServerCore};
use crate::runtime::promise;
use crate::status::RpcCode;

/// Serves the methods registered on it to callers of the app's name (or another name).
#[napi]
pub struct RpcServer {
    core: Arc<ServerCore>,
}

#[napi]
impl RpcServer {
    #[napi(constructor, catch_unwind)]
    pub fn new(app: &App, name: String, connection: Option<f64>) -> js::Result<Self> {
        let name = name::parse(&name)?;
        let core = ServerCore::new(app.core().clone(), name, connection_id(connection)?)?;
        Ok(Self { core })
    }

    /// Registers a method; its calls arrive with the returned handler number.
    #[napi(catch_unwind)]
    pub fn register(&self, service: String, method: String, shape: RpcShape) -> js::Result<u32> {
        Ok(self.core.register(&service, &method, shape)?)
    }

    /// Serves until the server or the app closes.
    #[napi(catch_unwind)]
    pub fn serve<'env>(&self, env: &'env Env) -> js::Result<PromiseRaw<'env, ()>> {
        let serving = self.core.serve()?;
        promise(env, serving)
    }

    /// The next call, or `null` once the server stopped.
    #[napi(ts_return_type = "Promise<IncomingCall | null>", catch_unwind)]
    pub fn next_call<'env>(
        &self,
        env: &'env Env,
    ) -> js::Result<PromiseRaw<'env, Option<IncomingCall>>> {
        let next = self.core.clone().next_call();
        promise(env, async move {
            Ok(next.await?.map(|core| IncomingCall { core }))
        })
    }

    /// Stops serving; calls in progress finish first.
    #[napi(catch_unwind)]
    pub fn close<'env>(&self, env: &'env Env) -> js::Result<PromiseRaw<'env, ()>> {
        let core = self.core.clone();
        promise(env, async move {
            core.stop().await;
            Ok(())
        })
    }
}

/// What the serving side knows about a call.
#[napi(object, object_from_js = false)]
pub struct RpcCallContext {
    pub session_id: String,
    /// Everything the caller sent as metadata, and slimrpc's own keys (`service`,
    /// `method`, `rpc-id`, `slimrpc-timeout`).
    pub metadata: HashMap<String, String>,
    /// When the caller stops waiting, in milliseconds since the epoch.
    pub deadline: f64,
    /// The caller's verified identity.
    pub peer_subject: Option<String>,
    pub peer_issuer: Option<String>,
}

/// One call on the serving side.
#[napi]
pub struct IncomingCall {
    core: Arc<IncomingCore>,
}

#[napi]
impl IncomingCall {
    /// Which registered method this is (the number `register` returned).
    #[napi(getter)]
    pub fn handler(&self) -> u32 {
        self.core.handler
    }

    #[napi(getter)]
    pub fn context(&self) -> RpcCallContext {
        let info = &self.core.info;
        RpcCallContext {
            session_id: info.session_id.clone(),
            metadata: info.metadata.clone(),
            deadline: info.deadline,
            peer_subject: info.subject.clone(),
            peer_issuer: info.issuer.clone(),
        }
    }

    /// The request of a unary-request method (once).
    #[napi(catch_unwind)]
    pub fn take_request(&self) -> Option<Buffer> {
        self.core.take_request().map(Buffer::from)
    }

    /// The next streamed request, or `null` at the end of the requests.
    #[napi(ts_return_type = "Promise<Buffer | null>", catch_unwind)]
    pub fn next_request<'env>(
        &self,
        env: &'env Env,
    ) -> js::Result<PromiseRaw<'env, Option<Buffer>>> {
        let next = self.core.clone().next_request();
        promise(env, async move { Ok(next.await?.map(Buffer::from)) })
    }

    /// The answer of a unary-answer method.
    #[napi(catch_unwind)]
    pub fn respond(&self, answer: Uint8ArraySlice<'_>) -> js::Result<()> {
        Ok(self.core.respond(answer.to_vec())?)
    }

    /// One answer of a streaming method; waits while the queue is full.
    #[napi(catch_unwind)]
    pub fn send<'env>(
        &self,
        env: &'env Env,
        answer: Uint8ArraySlice<'_>,
    ) -> js::Result<PromiseRaw<'env, ()>> {
        promise(env, self.core.clone().send(answer.to_vec()))
    }

    /// One answer of a streaming method if there is room now; else `false` (then `send`).
    #[napi(catch_unwind)]
    pub fn try_send(&self, answer: Uint8ArraySlice<'_>) -> js::Result<bool> {
        Ok(self.core.try_send(answer.to_vec())?)
    }

    /// Ends a streaming answer.
    #[napi(catch_unwind)]
    pub fn end(&self) {
        self.core.end();
    }

    /// Fails the call; the caller's error has this status and message.
    #[napi(catch_unwind)]
    pub fn fail(&self, status: RpcCode, message: String, details: Option<Uint8ArraySlice<'_>>) {
        self.core
            .fail(status, message, details.map(|details| details.to_vec()));
    }
}
