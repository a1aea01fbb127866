//! The addon's single tokio runtime, shared by napi's async functions and every
//! task the upstream SLIM crates spawn.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use napi::Env;
use napi::bindgen_prelude::{PromiseRaw, ToNapiValue, create_custom_tokio_runtime};

use crate::errors::{Error, Result, js};

#[napi_derive::module_init]
fn init_runtime() {
    slim_config::tls::provider::initialize_crypto_provider();
    // At least two workers: upstream deadlocks on a single-worker runtime (agntcy/slim#1657).
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2);
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("slim-node")
        .enable_all()
        .build()
    {
        Ok(runtime) => {
            let _ = HANDLE.set(runtime.handle().clone());
            create_custom_tokio_runtime(runtime)
        }
        // napi falls back to its own default runtime, which works the same way.
        Err(err) => eprintln!("slim-node: could not build the tokio runtime: {err}"),
    }
}

static HANDLE: OnceLock<tokio::runtime::Handle> = OnceLock::new();

#[cfg(feature = "test-hooks")]
/// Tasks alive on the addon runtime (upstream's and ours), for leak checks.
pub fn alive_tasks() -> usize {
    HANDLE
        .get()
        .map_or(0, |handle| handle.metrics().num_alive_tasks())
}

/// Spawns a detached task on the addon runtime, from any thread (sync exports, wakers).
pub fn spawn<F>(fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    match HANDLE.get() {
        // Unlike napi's `spawn`, never panics: once the runtime has shut down (Node
        // exiting), the task is dropped, which is all a late waker can ask for.
        Some(handle) => drop(handle.spawn(fut)),
        None => drop(napi::bindgen_prelude::spawn(fut)),
    }
}

/// Enters the addon runtime on this thread, for making its timers outside a task.
pub fn enter() -> Option<tokio::runtime::EnterGuard<'static>> {
    HANDLE.get().map(tokio::runtime::Handle::enter)
}

/// Runs `fut` on the addon runtime as a JavaScript promise. A failure rejects it with an
/// error whose `code` is the error's code; napi's own `async fn` support could only give
/// its fixed statuses.
pub fn promise<'env, T, F>(env: &'env Env, fut: F) -> js::Result<PromiseRaw<'env, T>>
where
    T: ToNapiValue + Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    env.spawn_future_with_callback(async move { Ok(fut.await) }, |env, outcome| {
        outcome.map_err(|err| err.into_js(env))
    })
    .map_err(|err| Error::from(err).into())
}

/// The longest timeout a call accepts, in milliseconds: JavaScript's `setTimeout` limit
/// (about 24.8 days), so that every wait of the API has the same range.
#[napi_derive::napi]
pub const MAX_TIMEOUT_MS: u32 = i32::MAX as u32;

/// Converts a JavaScript millisecond count into a duration, rejecting NaN, negatives and
/// more than [`MAX_TIMEOUT_MS`].
pub fn millis(value: Option<f64>, what: &str) -> Result<Option<Duration>> {
    match value {
        None => Ok(None),
        Some(ms) if (0.0..=f64::from(MAX_TIMEOUT_MS)).contains(&ms) => {
            Ok(Some(Duration::from_secs_f64(ms / 1000.0)))
        }
        Some(ms) => Err(Error::invalid_argument(format!(
            "{what} must be a number of milliseconds from 0 to {MAX_TIMEOUT_MS}, got {ms}"
        ))),
    }
}

/// Converts a JavaScript number that must be a whole count (napi would wrap -1 to 2^32 - 1).
pub fn whole_number(value: Option<f64>, what: &str) -> Result<Option<u32>> {
    match value {
        None => Ok(None),
        Some(n) if n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n) => {
            Ok(Some(n as u32))
        }
        Some(n) => Err(Error::invalid_argument(format!(
            "{what} must be a whole number from 0 to {}, got {n}",
            u32::MAX
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_rejects_nan_and_negative() {
        assert!(millis(Some(f64::NAN), "timeout").is_err());
        assert!(millis(Some(-1.0), "timeout").is_err());
        assert!(millis(Some(f64::INFINITY), "timeout").is_err());
        assert!(millis(Some(1e300), "timeout").is_err());
        assert!(millis(Some(f64::from(MAX_TIMEOUT_MS)), "timeout").is_ok());
        assert_eq!(
            millis(Some(1500.0), "timeout").unwrap(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(millis(None, "timeout").unwrap(), None);
    }
}
