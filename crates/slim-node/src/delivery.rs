//! Results travel from tokio to JavaScript through one long-lived thread-safe function
//! per stream (a session's messages, its publish outcomes), not through a promise per
//! wait: napi's promises each create a thread-safe function and capture a stack trace,
//! which cost more than the small batches they carried.
//!
//! The function is weak, so an idle session does not keep Node running; while JavaScript
//! waits for something on it, it keeps Node alive, as a pending promise would.

use napi::bindgen_prelude::JsValuesTupleIntoVec;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status, check_status, sys};

/// How napi hands over a JavaScript callback: values passed as they are (not
/// error-first), weak.
pub type Callback<T> = ThreadsafeFunction<T, (), T, Status, false, true>;

/// A JavaScript callback that tokio tasks hand values to.
pub struct Delivery<T: JsValuesTupleIntoVec + 'static> {
    callback: Callback<T>,
}

impl<T: JsValuesTupleIntoVec + 'static> Delivery<T> {
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
    pub fn keep_node_alive(&self, env: &Env, alive: bool) -> napi::Result<()> {
        // SAFETY: `env` is the current environment of the JavaScript thread calling us.
        unsafe { self.keep_alive_handle().set(env.raw(), alive) }
    }

    /// A handle that lets Node exit again from inside a call of the callback.
    pub fn keep_alive_handle(&self) -> KeepAlive {
        KeepAlive(self.callback.raw())
    }
}

/// Whether a delivery keeps Node running, settable where only a raw env is at hand: an
/// answer lets Node exit again while napi converts it, on the JavaScript thread, without
/// a second call from JavaScript.
#[derive(Clone, Copy)]
pub struct KeepAlive(sys::napi_threadsafe_function);

// SAFETY: the handle is only used on the JavaScript thread (see `set`); moving the
// pointer between threads is what napi's thread-safe functions are for.
unsafe impl Send for KeepAlive {}

impl KeepAlive {
    /// # Safety
    /// `env` must be the current environment of the JavaScript thread, and the
    /// delivery this came from must be alive (it is while its callback is being called).
    pub unsafe fn set(self, env: sys::napi_env, alive: bool) -> napi::Result<()> {
        // SAFETY: the caller's contract.
        let status = unsafe {
            if alive {
                sys::napi_ref_threadsafe_function(env, self.0)
            } else {
                sys::napi_unref_threadsafe_function(env, self.0)
            }
        };
        check_status!(
            status,
            "could not change whether a session keeps Node running"
        )
    }
}
