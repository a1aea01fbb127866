//! The JavaScript surface: every `#[napi]` function and class. Each export converts its
//! arguments, calls the layers below and converts the result; no logic lives here.

pub mod app;
#[cfg(feature = "test-hooks")]
pub mod hooks;
pub mod rpc;
pub mod server;
pub mod session;

use napi::Env;
use napi::bindgen_prelude::PromiseRaw;
use napi_derive::napi;

use crate::errors::js;
use crate::name::{self, NameParts};
use crate::runtime::promise;
use crate::session::peer;
use crate::tracing::{self, TelemetryOptions};

/// Panics here if a test armed it (`armPanicForTest`, feature `test-hooks`), to prove the
/// export around it turns the panic into an error; nothing in other builds.
#[inline]
pub(crate) fn test_panic_point(place: &str) {
    #[cfg(feature = "test-hooks")]
    hooks::panic_if_armed(place);
    let _ = place;
}

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
#[napi(catch_unwind)]
pub fn version() -> Versions {
    Versions {
        slim_node: env!("CARGO_PKG_VERSION").to_string(),
        slim_core: slim_version::version().to_string(),
    }
}

/// How a binary was built.
///
/// @example
/// ```ts
/// const { slimNode, slimCore }: BuildInfo = buildInfo()
/// console.log(`slim-node ${slimNode.version} (${slimNode.gitSha}, ${slimNode.profile})`)
/// ```
/// @group Versions
#[napi(object)]
pub struct Build {
    /// The package or crate version.
    pub version: String,
    /// The git commit it was built from (short form; empty outside a git checkout).
    pub git_sha: String,
    /// When it was built, ISO 8601 in UTC.
    pub date: String,
    /// The cargo profile: `debug` for development builds, `release` for packages.
    pub profile: String,
}

/// How this addon and the SLIM core inside it were built.
///
/// @example
/// ```ts
/// const info: BuildInfo = buildInfo()
/// ```
/// @group Versions
#[napi(object)]
pub struct BuildInfo {
    /// This package's addon.
    pub slim_node: Build,
    /// The upstream SLIM core crates, as their own build stamped them.
    pub slim_core: Build,
}

/// How this addon and the SLIM core inside it were built: versions, commits, dates and
/// profiles (upstream's `get_build_info`).
#[napi(catch_unwind)]
pub fn build_info() -> BuildInfo {
    let core = slim_version::build_info();
    BuildInfo {
        slim_node: Build {
            version: env!("CARGO_PKG_VERSION").to_string(),
            git_sha: env!("GIT_SHA").to_string(),
            date: env!("BUILD_DATE").to_string(),
            profile: env!("PROFILE").to_string(),
        },
        slim_core: Build {
            version: core.version.to_string(),
            git_sha: core.git_sha.to_string(),
            date: core.date.to_string(),
            profile: core.profile.to_string(),
        },
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

/// Sets how long, in ms, the peer of a point-to-point session (slimrpc's included) may
/// stay silent before it is taken for gone and the session ends with `SESSION_CLOSED`.
/// Applies to the sessions this process creates or joins from now on. Default 3000; from
/// 500 to 30 000; 0 turns it off (upstream's behaviour). See `session::peer`.
#[napi(catch_unwind)]
pub fn set_peer_timeout(ms: f64) -> js::Result<()> {
    Ok(peer::set(ms)?)
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
