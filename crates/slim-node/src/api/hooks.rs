//! Test hooks, compiled only with the `test-hooks` feature (dev builds), left out of
//! the JavaScript types: the tests load them straight from the binary.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use napi_derive::napi;
use serde::Deserialize;

use crate::envelope::Envelopes;
use crate::errors::{Error, js};
use crate::message::{Parts, ReceivedBatch, Returned};
use crate::name;

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

/// A message for `packBatchesForTest`, as JSON.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TestMessage {
    source: String,
    destination: String,
    connection: u64,
    payload_type: String,
    identity: String,
    payload: Vec<u8>,
    #[serde(default)]
    metadata: HashMap<String, String>,
}

/// Packs batches (a JSON array of arrays of messages) as a session's receiver does, one
/// envelope numbering across them: `[batch, extras]` each, as `requestMessages` returns.
#[napi(skip_typescript)]
pub fn pack_batches_for_test(batches: String) -> js::Result<Vec<Returned>> {
    let batches: Vec<Vec<TestMessage>> = serde_json::from_str(&batches)
        .map_err(|err| Error::invalid_argument(format!("packBatchesForTest: {err}")))?;
    let mut envelopes = Envelopes::default();
    let mut packed = Vec::with_capacity(batches.len());
    for messages in batches {
        let mut batch = ReceivedBatch::begin(&mut envelopes);
        for message in messages {
            let parts = Parts {
                source: name::parse(&message.source)?,
                destination: name::parse(&message.destination)?,
                connection: message.connection,
                payload_type: message.payload_type,
                identity: message.identity,
                payload: message.payload,
                metadata: message.metadata,
            };
            batch.push(parts, &mut envelopes);
        }
        packed.push(Returned(batch));
    }
    Ok(packed)
}
