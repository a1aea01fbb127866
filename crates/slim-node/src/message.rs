//! Received messages: upstream protobuf messages turned into what JavaScript sees.
//!
//! A batch reaches JavaScript as one `ArrayBuffer` laid out on the JavaScript thread, where
//! the payloads and identity tokens are copied in once, behind a table of `u32`s:
//!
//! ```text
//! [n] [payload end × n] [identity end × n] [envelope index × n] payloads… identities…
//! ```
//!
//! Ends are relative to the start of their area. Envelopes (a sender's name, id,
//! connection, payload type) are numbered per session and sent once, the first time a
//! message needs them; everything rare (new envelopes, metadata, errors, why the session
//! ended) travels beside the buffer as [`BatchExtras`], which is
//! `null` for a plain batch. So a batch costs JavaScript one buffer, whatever it holds.

use std::collections::HashMap;
use std::sync::Arc;

use napi::bindgen_prelude::{JsValuesTupleIntoVec, ToNapiValue};
use napi::{Status, check_status, sys};
use napi_derive::napi;
use slim_datapath::api::proto::dataplane::v1::content::ContentType;
use slim_datapath::api::{ProtoMessage, ProtoName, ProtoPublishType};

use crate::delivery::Awake;
use crate::envelope::{Envelope, EnvelopeKey, Envelopes};
use crate::errors::{Code, Error, ErrorInfo, Result};

/// The rare parts of a batch; absent fields mean none.
#[napi(object)]
#[derive(Default)]
pub struct BatchExtras {
    /// Envelopes first needed by this batch, numbered on from those sent before.
    pub envelopes: Option<Vec<Envelope>>,
    /// Set when the session's envelope numbering started again at 0 with this batch.
    pub envelopes_reset: Option<bool>,
    /// Messages that carry metadata: their indexes, and the metadata at the same position.
    pub metadata_of: Option<Vec<u32>>,
    pub metadata: Option<Vec<HashMap<String, String>>>,
    /// Session errors seen among the messages (e.g. a detected loss).
    pub errors: Option<Vec<ErrorInfo>>,
    /// Set on the session's last batch: why it ended (SESSION_CLOSED, or INTERNAL).
    pub ended: Option<ErrorInfo>,
    /// Set when the waiting receive's wait ended first (TIMEOUT, ABORTED): it took nothing.
    pub wait_ended: Option<ErrorInfo>,
}

impl BatchExtras {
    fn is_empty(&self) -> bool {
        self.envelopes.is_none()
            && self.envelopes_reset.is_none()
            && self.metadata_of.is_none()
            && self.errors.is_none()
            && self.ended.is_none()
            && self.wait_ended.is_none()
    }
}

/// What a received message is made of.
pub struct Parts {
    pub source: ProtoName,
    pub destination: ProtoName,
    pub connection: u64,
    pub payload_type: String,
    pub identity: String,
    pub payload: Vec<u8>,
    pub metadata: HashMap<String, String>,
}

impl Parts {
    /// Takes the payload and header out of the protobuf message rather than cloning them.
    pub fn of(mut msg: ProtoMessage) -> Result<Self> {
        let malformed =
            |what: &str| Error::new(Code::Internal, format!("received a message {what}"));
        let Some(ProtoPublishType(mut publish)) = msg.message_type.take() else {
            return Err(malformed("that is not a publication"));
        };
        let header = (publish.header.take()).ok_or_else(|| malformed("without a SLIM header"))?;
        let application = publish
            .msg
            .and_then(|content| match content.content_type {
                Some(ContentType::AppPayload(payload)) => Some(payload),
                _ => None,
            })
            .ok_or_else(|| malformed("without an application payload"))?;
        Ok(Parts {
            source: header.source.unwrap_or_default(),
            destination: header.destination.unwrap_or_default(),
            connection: header.incoming_conn.unwrap_or_default(),
            payload_type: application.payload_type,
            identity: header.identity,
            payload: application.blob,
            metadata: std::mem::take(&mut msg.metadata),
        })
    }
}

/// One call of a session's message callback: `(batch: ArrayBuffer, extras: BatchExtras | null)`.
#[derive(Default)]
pub struct ReceivedBatch {
    payloads: Vec<Vec<u8>>,
    identities: Vec<String>,
    envelope_of: Vec<u32>,
    pub extras: BatchExtras,
    /// Set on the answer to a request, which kept Node alive until now.
    pub release: Option<Arc<Awake>>,
}

impl ReceivedBatch {
    /// An empty batch, to fill with messages numbered by `envelopes`.
    pub fn begin(envelopes: &mut Envelopes) -> Self {
        let mut batch = Self::default();
        if envelopes.trim() {
            batch.extras.envelopes_reset = Some(true);
        }
        batch
    }

    /// The session's last batch: no messages, and why it ended.
    pub fn end(reason: &Error) -> Self {
        let mut batch = Self::default();
        batch.extras.ended = Some(reason.info());
        batch
    }

    /// Messages in the batch, errors not counted.
    pub fn messages(&self) -> usize {
        self.payloads.len()
    }

    pub fn len(&self) -> usize {
        self.payloads.len() + self.extras.errors.as_ref().map_or(0, Vec::len)
    }

    pub fn push_error(&mut self, error: &Error) {
        self.extras
            .errors
            .get_or_insert_default()
            .push(error.info());
    }

    pub fn push(&mut self, parts: Parts, envelopes: &mut Envelopes) {
        let key = EnvelopeKey {
            source: parts.source,
            destination: parts.destination,
            connection: parts.connection,
            payload_type: parts.payload_type,
        };
        let (envelope, new) = envelopes.index(key);
        if let Some(new) = new {
            self.extras.envelopes.get_or_insert_default().push(new);
        }
        if !parts.metadata.is_empty() {
            let index = self.payloads.len() as u32;
            self.extras.metadata_of.get_or_insert_default().push(index);
            self.extras
                .metadata
                .get_or_insert_default()
                .push(parts.metadata);
        }
        self.envelope_of.push(envelope);
        self.identities.push(parts.identity);
        self.payloads.push(parts.payload);
    }

    /// The buffer JavaScript reads, written where V8 allocated it.
    ///
    /// # Safety
    /// `env` must be the environment of the JavaScript thread this runs on.
    unsafe fn to_buffer(&self, env: sys::napi_env) -> napi::Result<sys::napi_value> {
        let count = self.payloads.len();
        let table = (1 + 3 * count) * 4;
        let payload_bytes: usize = self.payloads.iter().map(Vec::len).sum();
        let identity_bytes: usize = self.identities.iter().map(String::len).sum();
        if payload_bytes + identity_bytes + table > u32::MAX as usize {
            return Err(napi::Error::new(
                Status::GenericFailure,
                "a receive batch grew beyond 4 GiB",
            ));
        }
        let total = table + payload_bytes + identity_bytes;
        let mut data = std::ptr::null_mut();
        let mut buffer = std::ptr::null_mut();
        // An ArrayBuffer rather than a Buffer: Node's native Buffer constructor costs more
        // than the JavaScript view the facade puts over it.
        // SAFETY: `env` is current (the caller's contract); napi gives `total` writable bytes.
        let status = unsafe { sys::napi_create_arraybuffer(env, total, &mut data, &mut buffer) };
        check_status!(status, "could not allocate a receive batch")?;
        // SAFETY: `data` points at `total` bytes that nothing else references yet.
        let out = unsafe { std::slice::from_raw_parts_mut(data.cast::<u8>(), total) };
        let (words, bytes) = out.split_at_mut(table);
        let mut words = words.chunks_exact_mut(4);
        let mut put = |value: usize| {
            if let Some(word) = words.next() {
                word.copy_from_slice(&(value as u32).to_ne_bytes());
            }
        };
        put(count);
        let mut end = 0;
        for payload in &self.payloads {
            end += payload.len();
            put(end);
        }
        end = 0;
        for identity in &self.identities {
            end += identity.len();
            put(end);
        }
        for &envelope in &self.envelope_of {
            put(envelope as usize);
        }
        let mut at = 0;
        let parts = self.payloads.iter().map(Vec::as_slice);
        for part in parts.chain(self.identities.iter().map(String::as_bytes)) {
            bytes[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        Ok(buffer)
    }
}

impl JsValuesTupleIntoVec for ReceivedBatch {
    fn into_vec(mut self, env: sys::napi_env) -> napi::Result<Vec<sys::napi_value>> {
        if let Some(awake) = self.release.take() {
            // SAFETY: napi converts callback values on the JavaScript thread, with its env.
            unsafe { awake.receiving(env, false)? };
        }
        // SAFETY: as above.
        let buffer = unsafe { self.to_buffer(env)? };
        let extras = if self.extras.is_empty() {
            None
        } else {
            Some(self.extras)
        };
        // SAFETY: as above.
        Ok(vec![buffer, unsafe {
            ToNapiValue::to_napi_value(env, extras)?
        }])
    }
}

/// A batch returned from a call rather than passed to the callback: `[batch, extras]`.
pub struct Returned(pub ReceivedBatch);

impl ToNapiValue for Returned {
    unsafe fn to_napi_value(env: sys::napi_env, value: Self) -> napi::Result<sys::napi_value> {
        // SAFETY: napi converts return values on the JavaScript thread, with its env.
        let values = value.0.into_vec(env)?;
        let mut array = std::ptr::null_mut();
        // SAFETY: as above.
        check_status!(
            unsafe { sys::napi_create_array_with_length(env, values.len(), &mut array) },
            "could not return a receive batch"
        )?;
        for (index, element) in values.into_iter().enumerate() {
            // SAFETY: as above; `array` was just made with room for every element.
            check_status!(
                unsafe { sys::napi_set_element(env, array, index as u32, element) },
                "could not return a receive batch"
            )?;
        }
        Ok(array)
    }
}
