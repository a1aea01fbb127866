//! Test hooks, compiled only with the `test-hooks` feature (dev builds), left out of
//! the JavaScript types: the tests load them straight from the binary.

use napi_derive::napi;

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
