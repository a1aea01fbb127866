//! slim-node: Node.js bindings for SLIM over the upstream Rust crates.
#![deny(clippy::all)]
// napi exports are only called from JavaScript, never from Rust tests.
#![cfg_attr(test, allow(dead_code))]

mod app;
mod cancel;
mod connection;
mod delivery;
mod errors;
mod identity;
mod message;
mod moderator;
mod name;
mod publisher;
mod receiver;
mod runtime;
mod server;
mod session;
mod tls;
mod tracing;

use napi_derive::napi;

/// Versions of this package and of the upstream SLIM core it embeds.
#[napi(object)]
pub struct Versions {
    pub slim_node: String,
    pub slim_core: String,
}

#[napi]
pub fn version() -> Versions {
    Versions {
        slim_node: env!("CARGO_PKG_VERSION").to_string(),
        slim_core: slim_version::version().to_string(),
    }
}

/// The stable error codes, so the facade and tests can check they know them all.
#[napi]
pub fn error_codes() -> Vec<String> {
    errors::Code::all()
        .iter()
        .map(|code| code.as_str().to_string())
        .collect()
}

/// Test hook: panics inside the addon, to prove panics become errors, not aborts.
#[napi(catch_unwind)]
pub fn panic_for_test(message: String) {
    panic!("{message}");
}

/// Test hook: panics inside an async task on the addon runtime.
#[napi]
pub async fn panic_for_test_async(message: String) -> napi::Result<()> {
    panic!("{message}");
}

/// Test hook: tasks alive on the addon's runtime, to show closed apps and sessions leave none.
#[napi]
pub fn alive_tasks_for_test() -> u32 {
    runtime::alive_tasks() as u32
}
