//! Results travel from tokio to JavaScript through one long-lived thread-safe function
//! per stream (a session's messages, its publish outcomes), not through a promise per
//! wait: napi's promises each create a thread-safe function and capture a stack trace,
//! which cost more than the small batches they carried.
//!
//! The function is weak, so an idle session does not keep Node running; JavaScript
//! holds it while it is waiting for something, as a pending promise would.

use napi::bindgen_prelude::ToNapiValue;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status, sys};

/// How napi hands over a JavaScript callback: values passed as they are (not
/// error-first), weak.
pub type Callback<T> = ThreadsafeFunction<T, (), T, Status, false, true>;

/// A JavaScript callback that tokio tasks hand values to.
pub struct Delivery<T: ToNapiValue + 'static> {
    callback: Callback<T>,
}

impl<T: ToNapiValue + 'static> Delivery<T> {
    pub fn new(callback: Callback<T>) -> Self {
        Self { callback }
    }

    /// Queues `value` for the callback; false once JavaScript can no longer take it.
    pub fn send(&self, value: T) -> bool {
        self.callback
            .call(value, ThreadsafeFunctionCallMode::NonBlocking)
            == Status::Ok
    }

    /// Whether the callback keeps Node's event loop alive. Called on the JavaScript
    /// thread, as Node requires.
    pub fn hold(&self, env: &Env, alive: bool) -> napi::Result<()> {
        let raw = self.callback.raw();
        // SAFETY: `env` is the current environment of the JavaScript thread calling us,
        // and `raw` stays valid while `self.callback` is alive (it is released on drop).
        let status = unsafe {
            if alive {
                sys::napi_ref_threadsafe_function(env.raw(), raw)
            } else {
                sys::napi_unref_threadsafe_function(env.raw(), raw)
            }
        };
        match status {
            sys::Status::napi_ok => Ok(()),
            other => Err(napi::Error::new(
                Status::from(other),
                "could not change whether a session keeps Node running",
            )),
        }
    }
}
