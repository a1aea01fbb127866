//! Received messages: upstream protobuf messages turned into what JavaScript sees.
//!
//! A batch carries each distinct sender context (name, id, connection, …) once, and
//! per message only where its payload ends and the index of its context: a burst from
//! one sender costs one set of strings, not one per message. The payloads share one
//! buffer, and so do the identity tokens (upstream signs every message with a fresh
//! nonce, so no two are alike); JavaScript decodes a token only when it is read.

use std::collections::HashMap;

use napi::bindgen_prelude::{Buffer, Uint32Array};
use napi_derive::napi;
use slim_datapath::api::proto::dataplane::v1::content::ContentType;
use slim_datapath::api::{ProtoMessage, ProtoName, ProtoPublishType};

use crate::errors::{Code, Error, Result};
use crate::name;

/// What the messages from one sender over one connection have in common.
#[napi(object)]
pub struct Envelope {
    /// The sender's name, `org/ns/app`.
    pub source: String,
    /// The sender instance's 128-bit id as a UUID.
    pub source_id: String,
    /// Where the message was sent: the channel of a group, or this app.
    pub destination: String,
    /// The application-defined payload type (`"msg"` unless the sender set one).
    pub payload_type: String,
    /// The connection the message arrived on; `publishTo` replies through it.
    pub input_connection: i64,
}

/// What one answer to `requestMessages` carries.
#[napi(object)]
pub struct ReceivedBatch {
    /// Every message's payload, one after the other.
    pub payloads: Buffer,
    /// Where each message's payload ends in `payloads`.
    pub payload_ends: Uint32Array,
    /// Every message's verified identity token (UTF-8), one after the other.
    pub identities: Buffer,
    /// Where each message's identity token ends in `identities`.
    pub identity_ends: Uint32Array,
    /// For each message, the index of its envelope.
    pub envelope_of: Uint32Array,
    pub envelopes: Vec<Envelope>,
    /// Messages that carry metadata: their indexes, and the metadata at the same position.
    pub metadata_of: Vec<u32>,
    pub metadata: Vec<HashMap<String, String>>,
    /// Session errors seen among the messages (e.g. a detected loss), as `[CODE] message`.
    pub errors: Vec<String>,
    /// Why the receive that asked for this batch failed (`[TIMEOUT] …`, `[ABORTED] …`).
    pub failure: Option<String>,
    /// Set on the session's last batch: why it ended, as `[SESSION_CLOSED] …`.
    pub ended: Option<String>,
}

impl ReceivedBatch {
    /// The session's last batch: no messages, and why it ended.
    pub fn end(reason: String) -> Self {
        Self {
            ended: Some(reason),
            ..BatchBuilder::default().finish()
        }
    }
}

/// Collects messages into a [`ReceivedBatch`].
#[derive(Default)]
pub struct BatchBuilder {
    payloads: Vec<u8>,
    payload_ends: Vec<u32>,
    identities: Vec<u8>,
    identity_ends: Vec<u32>,
    envelope_of: Vec<u32>,
    /// The raw fields each envelope was made from, to match later messages against.
    keys: Vec<(ProtoName, ProtoName, u64, String)>,
    envelopes: Vec<Envelope>,
    metadata_of: Vec<u32>,
    metadata: Vec<HashMap<String, String>>,
    errors: Vec<String>,
}

impl BatchBuilder {
    /// Messages in the batch, errors not counted.
    pub fn messages(&self) -> usize {
        self.payload_ends.len()
    }

    pub fn len(&self) -> usize {
        self.payload_ends.len() + self.errors.len()
    }

    pub fn push_error(&mut self, reason: String) {
        self.errors.push(reason);
    }

    /// Moves the payload out of the protobuf message rather than cloning it.
    pub fn push(&mut self, mut msg: ProtoMessage) -> Result<()> {
        let header = msg.try_get_slim_header().ok_or_else(|| {
            Error::new(Code::Internal, "received a message without a SLIM header")
        })?;
        let source: ProtoName = header.get_source();
        let destination: ProtoName = header.get_dst();
        let identity = header.get_identity();
        let connection = header.get_incoming_conn().unwrap_or_default();
        let metadata = std::mem::take(&mut msg.metadata);
        let application = match msg.message_type.take() {
            Some(ProtoPublishType(publish)) => {
                publish.msg.and_then(|content| match content.content_type {
                    Some(ContentType::AppPayload(payload)) => Some(payload),
                    _ => None,
                })
            }
            _ => None,
        }
        .ok_or_else(|| {
            Error::new(
                Code::Internal,
                "received a message without an application payload",
            )
        })?;
        let payload_type = if application.payload_type.is_empty() {
            "msg".to_string()
        } else {
            application.payload_type
        };
        let key = (source, destination, connection, payload_type);
        let envelope = match self.keys.iter().rposition(|known| *known == key) {
            Some(index) => index,
            None => {
                let (source, destination, connection, payload_type) = &key;
                self.envelopes.push(Envelope {
                    source: name::base(source),
                    source_id: name::id(source).unwrap_or_default(),
                    destination: name::base(destination),
                    payload_type: payload_type.clone(),
                    input_connection: i64::try_from(*connection).unwrap_or(i64::MAX),
                });
                self.keys.push(key);
                self.keys.len() - 1
            }
        };
        if !metadata.is_empty() {
            self.metadata_of.push(self.payload_ends.len() as u32);
            self.metadata.push(metadata);
        }
        self.envelope_of.push(envelope as u32);
        self.identities.extend_from_slice(identity.as_bytes());
        self.identity_ends.push(offset(self.identities.len())?);
        // The one copy of the bytes on the way to JavaScript; the first payload moves.
        if self.payloads.is_empty() {
            self.payloads = application.blob;
        } else {
            self.payloads.extend_from_slice(&application.blob);
        }
        self.payload_ends.push(offset(self.payloads.len())?);
        Ok(())
    }

    pub fn finish(self) -> ReceivedBatch {
        ReceivedBatch {
            payloads: self.payloads.into(),
            payload_ends: self.payload_ends.into(),
            identities: self.identities.into(),
            identity_ends: self.identity_ends.into(),
            envelope_of: self.envelope_of.into(),
            envelopes: self.envelopes,
            metadata_of: self.metadata_of,
            metadata: self.metadata,
            errors: self.errors,
            failure: None,
            ended: None,
        }
    }
}

fn offset(len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| Error::new(Code::Internal, "a receive batch grew beyond 4 GiB"))
}
