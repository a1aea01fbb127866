//! Test hooks, compiled only with the `test-hooks` feature (dev builds), left out of
//! the JavaScript types: the tests load them straight from the binary.

use std::sync::atomic::{AtomicBool, Ordering};

use napi_derive::napi;

static PANIC_ARMED: AtomicBool = AtomicBool::new(false);

/// Makes the next export that passes a `test_panic_point` panic there.
#[napi(skip_typescript)]
pub fn arm_panic_for_test() {
    PANIC_ARMED.store(true, Ordering::SeqCst);
}

pub(crate) fn panic_if_armed(place: &str) {
    if PANIC_ARMED.swap(false, Ordering::SeqCst) {
        panic!("armed test panic in {place}");
    }
}

/// Panics inside the addon, to prove panics become errors, not aborts.
#[napi(catch_unwind, skip_typescript)]
pub fn panic_for_test(message: String) {
    panic!("{message}");
}

/// Panics inside an async task on the addon runtime.
#[napi(skip_typescript)]
pub async fn panic_for_test_async(message: String) -> napi::Result<()> {
    panic!("{message}");
}

/// Tasks alive on the addon's runtime, to show closed apps and sessions leave none.
#[napi(skip_typescript)]
pub fn alive_tasks_for_test() -> u32 {
    crate::runtime::alive_tasks() as u32
}
