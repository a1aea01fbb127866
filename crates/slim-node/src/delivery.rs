//! Results travel from tokio to JavaScript through one long-lived thread-safe function
//! per stream (a session's events, an app's statuses), not through a promise per wait:
//! napi's promises each create a thread-safe function and capture a stack trace, which
//! cost more than the small batches they carried.
//!
//! The function is weak, so an idle session does not keep Node running; while JavaScript
//! waits for something on it, it keeps Node alive, as a pending promise would ([`Awake`]).

use napi::bindgen_prelude::JsValuesTupleIntoVec;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status, check_status, sys};
use parking_lot::Mutex;

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

// SAFETY: the handle is only used on the JavaScript thread (see `set`, which is unsafe
// for that reason); moving or sharing the pointer between threads is what napi's
// thread-safe functions are for.
unsafe impl Send for KeepAlive {}
unsafe impl Sync for KeepAlive {}

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

/// Whether a session's callback keeps Node running: while a receive waits or any publish
/// awaits its outcome, as pending promises would. Changed on the JavaScript thread only,
/// where those waits begin and where their answers are converted.
pub struct Awake {
    handle: KeepAlive,
    state: Mutex<AwakeState>,
}

#[derive(Default)]
struct AwakeState {
    receiving: bool,
    awaited: usize,
    alive: bool,
}

impl Awake {
    pub fn new(handle: KeepAlive) -> Self {
        Self {
            handle,
            state: Mutex::default(),
        }
    }

    /// A receive starts or stops waiting.
    ///
    /// # Safety
    /// As [`KeepAlive::set`]: on the JavaScript thread, with the callback alive.
    pub unsafe fn receiving(&self, env: sys::napi_env, waits: bool) -> napi::Result<()> {
        let mut state = self.state.lock();
        state.receiving = waits;
        // SAFETY: the caller's contract.
        unsafe { self.apply(env, &mut state) }
    }

    /// `added` more publishes await their outcome, or `settled` fewer do.
    ///
    /// # Safety
    /// As [`KeepAlive::set`].
    pub unsafe fn awaiting(
        &self,
        env: sys::napi_env,
        added: usize,
        settled: usize,
    ) -> napi::Result<()> {
        let mut state = self.state.lock();
        state.awaited = (state.awaited + added).saturating_sub(settled);
        // SAFETY: the caller's contract.
        unsafe { self.apply(env, &mut state) }
    }

    unsafe fn apply(&self, env: sys::napi_env, state: &mut AwakeState) -> napi::Result<()> {
        let alive = state.receiving || state.awaited > 0;
        if alive != state.alive {
            // SAFETY: the caller's contract.
            unsafe { self.handle.set(env, alive)? };
            state.alive = alive;
        }
        Ok(())
    }
}
