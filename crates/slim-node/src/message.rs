//! Received messages: the upstream protobuf message turned into what JavaScript sees.

use std::collections::HashMap;

use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use slim_datapath::api::proto::dataplane::v1::content::ContentType;
use slim_datapath::api::{ProtoMessage, ProtoName, ProtoPublishType};

use crate::errors::{Code, Error, Result};
use crate::name;

/// A message delivered to a session, with its context.
#[napi(object)]
pub struct ReceivedMessage {
    /// The payload bytes (handed over without copying).
    pub payload: Buffer,
    /// The sender's name, `org/ns/app`.
    pub source: String,
    /// The sender instance's 128-bit id as a UUID.
    pub source_id: String,
    /// Where the message was sent: the channel of a group, or this app.
    pub destination: String,
    /// The application-defined payload type (`"msg"` unless the sender set one).
    pub payload_type: String,
    /// Message metadata set by the sender.
    pub metadata: HashMap<String, String>,
    /// The session the message belongs to.
    pub session_id: u32,
    /// The sender's identity token, as verified by this app.
    pub identity: String,
    /// The connection the message arrived on; `publishTo` replies through it.
    pub input_connection: i64,
}

/// What one receive call returns: messages, plus session errors seen among them
/// (e.g. a detected loss), each as a `[CODE] message` string.
#[napi(object)]
pub struct ReceivedBatch {
    pub messages: Vec<ReceivedMessage>,
    pub errors: Vec<String>,
}

/// Moves the payload out of the protobuf message rather than cloning it.
pub fn into_received(mut msg: ProtoMessage, session_id: u32) -> Result<ReceivedMessage> {
    let header = msg
        .try_get_slim_header()
        .ok_or_else(|| Error::new(Code::Internal, "received a message without a SLIM header"))?;
    let source: ProtoName = header.get_source();
    let destination: ProtoName = header.get_dst();
    let identity = header.get_identity();
    let input_connection = header.get_incoming_conn().unwrap_or_default();
    let metadata = std::mem::take(&mut msg.metadata);

    let application = match msg.message_type.take() {
        Some(ProtoPublishType(publish)) => {
            publish.msg.and_then(|content| match content.content_type {
                Some(ContentType::AppPayload(payload)) => Some(payload),
                _ => None,
            })
        }
        _ => None,
    };
    let application = application.ok_or_else(|| {
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

    Ok(ReceivedMessage {
        payload: application.blob.into(),
        source: name::base(&source),
        source_id: name::id(&source).unwrap_or_default(),
        destination: name::base(&destination),
        payload_type,
        metadata,
        session_id,
        identity,
        input_connection: i64::try_from(input_connection).unwrap_or(i64::MAX),
    })
}
