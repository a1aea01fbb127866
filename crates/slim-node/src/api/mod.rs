//! The JavaScript surface: every `#[napi]` function and class. Each export converts its
//! arguments, calls the layers below and converts the result; no logic lives here.

pub mod app;
#[cfg(feature = "test-hooks")]
pub mod hooks;
pub mod server;
pub mod session;

use napi::Env;
use napi::bindgen_prelude::PromiseRaw;
use napi_derive::napi;

use crate::errors::js;
use crate::name::{self, NameParts};
use crate::runtime::promise;
use crate::tracing::{self, TelemetryOptions};

/// Versions of this package and of the upstream SLIM core it embeds.
///
/// @example
/// ```ts
/// const { slimNode, slimCore }: Versions = version()
/// ```
/// @group Versions
#[napi(object)]
pub struct Versions {
    /// This package's version.
    pub slim_node: String,
    /// The version of the upstream SLIM core crates inside it.
    pub slim_core: String,
}

/// The versions of slim-node and of the SLIM core it embeds.
#[napi]
pub fn version() -> Versions {
    Versions {
        slim_node: env!("CARGO_PKG_VERSION").to_string(),
        slim_core: slim_version::version().to_string(),
    }
}

/// Parses a SLIM name string into its parts.
#[napi(catch_unwind)]
pub fn parse_name(text: String) -> js::Result<NameParts> {
    Ok(name::parts(&name::parse(&text)?))
}

/// Formats name parts as `org/ns/app` or `org/ns/app/<uuid>`, validating each part.
#[napi(catch_unwind)]
pub fn format_name(parts: NameParts) -> js::Result<String> {
    Ok(name::full(&name::from_parts(&parts)?))
}

/// Exports spans over OTLP gRPC from now on (and logs per `RUST_LOG`). Call once, first.
#[napi(ts_return_type = "Promise<void>", catch_unwind)]
pub fn enable_opentelemetry(
    env: &Env,
    options: Option<TelemetryOptions>,
) -> js::Result<PromiseRaw<'_, ()>> {
    promise(env, async move {
        tracing::install(Some(&options.unwrap_or_default()))
    })
}

/// Sends the spans and metrics recorded so far; what is still buffered at exit is lost.
#[napi(ts_return_type = "Promise<void>", catch_unwind)]
pub fn flush_telemetry(env: &Env) -> js::Result<PromiseRaw<'_, ()>> {
    promise(env, tracing::flush())
}
