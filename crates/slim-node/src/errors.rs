//! One error type for the addon. Every failure crossing into JavaScript carries a
//! stable code as the JavaScript error's `code` property; the same codes are generated
//! into `index.d.ts` as the `ErrorCode` string enum, so they are listed only here.

use napi::bindgen_prelude::{JsError, JsObjectValue, Object};
use napi::{Env, JsValue, Unknown};
use napi_derive::napi;
use slim_service::{ServiceError, SubscriptionAckError};
use slim_session::SessionError;

use crate::status::{RpcCode, RpcFailure};

/// The stable error codes: each member's value is the `code` a {@link SlimError} carries
/// (a {@link SlimErrorCode}). The strings are part of the public API: new codes may be
/// added, existing ones never change meaning.
///
/// @example
/// ```ts
/// const timeout: `${ErrorCode.Timeout}` = 'TIMEOUT'
/// if (isSlimError(error, timeout)) console.log('try again later')
/// ```
/// @group Errors
#[napi(string_enum = "UPPER_SNAKE")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A SLIM name is malformed (expected `org/namespace/app`).
    InvalidName,
    /// An argument has the wrong type or value.
    InvalidArgument,
    /// Identity or authentication failed.
    Auth,
    /// The app cannot reach or talk to its SLIM node.
    Connect,
    /// A timeout given by the caller elapsed.
    Timeout,
    /// The caller's AbortSignal fired.
    Aborted,
    /// Another receive or listen is already pending on the same object.
    Busy,
    /// The app (or node) was closed.
    Closed,
    /// The session ended or was closed.
    SessionClosed,
    /// Only the moderator of a group may do this.
    NotInitiator,
    /// The operation needs a group session.
    NotGroup,
    /// The name is not a member of the group.
    NotMember,
    /// SLIM could not deliver a message (retries exhausted, peer gone).
    DeliveryFailed,
    /// A message is larger than SLIM carries (`MAX_MESSAGE_BYTES`); nothing was sent.
    PayloadTooLarge,
    /// The embedded node could not start or stop.
    Server,
    /// The app's session store cannot be read or written (a wrong passphrase, a damaged
    /// or foreign file).
    Store,
    /// A remote procedure call failed; the error's `status` is the {@link RpcCode}.
    Rpc,
    /// A bug: an unexpected failure inside slim-node or SLIM (including a caught panic).
    Internal,
}

/// The short name the rest of the addon uses.
pub type Code = ErrorCode;

impl Code {
    /// The string napi's `string_enum` gives the variant (checked by a test below).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidName => "INVALID_NAME",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::Auth => "AUTH",
            Code::Connect => "CONNECT",
            Code::Timeout => "TIMEOUT",
            Code::Aborted => "ABORTED",
            Code::Busy => "BUSY",
            Code::Closed => "CLOSED",
            Code::SessionClosed => "SESSION_CLOSED",
            Code::NotInitiator => "NOT_INITIATOR",
            Code::NotGroup => "NOT_GROUP",
            Code::NotMember => "NOT_MEMBER",
            Code::DeliveryFailed => "DELIVERY_FAILED",
            Code::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Code::Server => "SERVER",
            Code::Store => "STORE",
            Code::Rpc => "RPC",
            Code::Internal => "INTERNAL",
        }
    }
}

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: Code,
    pub message: String,
    /// The status and the rest, when the code is `RPC`.
    pub rpc: Option<Box<RpcFailure>>,
}

pub type Result<T> = std::result::Result<T, Error>;

/// What an export returns: napi throws the error with its code as `code`. Named
/// `Result` (in its own module) because that is how napi's macros recognise it.
pub mod js {
    pub type Result<T> = napi::Result<T, super::Code>;
}

/// A failure reported through a callback rather than thrown: the code beside the message.
#[napi(object)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorInfo {
    /// The stable code.
    pub code: ErrorCode,
    /// What happened, for people.
    pub message: String,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            rpc: None,
        }
    }

    /// An RPC failure with the given status.
    pub fn rpc(status: RpcCode, message: impl Into<String>) -> Self {
        Self {
            rpc: Some(Box::new(RpcFailure {
                status,
                origin: None,
                details: None,
            })),
            ..Self::new(Code::Rpc, message)
        }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    pub fn session_closed(id: u32) -> Self {
        Self::new(Code::SessionClosed, format!("session {id} is closed"))
    }

    pub fn info(&self) -> ErrorInfo {
        ErrorInfo {
            code: self.code,
            message: self.message.clone(),
        }
    }

    /// The JavaScript error object, for rejecting a promise on the JavaScript thread.
    pub fn into_js(self, env: &Env) -> napi::Error {
        let rpc = self.rpc.clone();
        let value: Unknown<'_> = JsError::from(napi::Error::<Code>::from(self)).into_unknown(*env);
        if let Some(failure) = rpc {
            // SAFETY: JsError::into_unknown always makes an Error object.
            let mut object: Object<'_> = unsafe { value.cast() }.unwrap_or_else(|_| unreachable!());
            let _ = describe_rpc(env, &mut object, &failure);
            return napi::Error::from(object.to_unknown());
        }
        napi::Error::from(value)
    }
}

/// The RPC error's extra properties: `status`, and `origin` / `details` when known.
fn describe_rpc(env: &Env, object: &mut Object<'_>, failure: &RpcFailure) -> napi::Result<()> {
    object.set_named_property("status", failure.status.as_str())?;
    if let Some(origin) = &failure.origin {
        object.set_named_property("origin", origin.as_str())?;
    }
    if let Some(details) = &failure.details {
        let buffer = napi::bindgen_prelude::BufferSlice::copy_from(env, details)?;
        object.set_named_property("details", buffer)?;
    }
    Ok(())
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.code.as_str(), self.message)
    }
}

impl From<Error> for napi::Error<Code> {
    fn from(err: Error) -> Self {
        napi::Error::new(err.code, err.message)
    }
}

/// napi's own failures (creating a value, changing a reference) inside an export.
impl From<napi::Error> for Error {
    fn from(err: napi::Error) -> Self {
        Error::new(Code::Internal, err.to_string())
    }
}

/// The full `source()` chain, so users see the root cause (e.g. "connection refused").
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Classifies a session-layer error; wrapped moderator errors take their cause's code.
fn session_code(err: &SessionError) -> Code {
    match err {
        SessionError::SessionClosed
        | SessionError::SessionAlreadyClosed
        | SessionError::SessionNotFound(_)
        | SessionError::SessionSenderShutdown
        | SessionError::SessionReceiverShutdown
        | SessionError::SessionControllerSendFailed
        | SessionError::SessionDrainingDrop
        // The session's task ended before it answered a pending operation: it is gone.
        | SessionError::AckReception(_) => Code::SessionClosed,
        SessionError::NotInitiator => Code::NotInitiator,
        SessionError::CannotInviteToP2P
        | SessionError::CannotRemoveFromP2P
        | SessionError::CannotCloseP2P
        | SessionError::CannotRejoinP2P => Code::NotGroup,
        SessionError::MessageSendRetryFailed { .. }
        | SessionError::MessageReceiveRetryFailed { .. }
        | SessionError::MessageLost(_)
        | SessionError::ParticipantOffLine
        | SessionError::ParticipantDisconnected(_)
        | SessionError::UnknownDestination(_)
        | SessionError::SlimSendFailure { .. } => Code::DeliveryFailed,
        SessionError::ParticipantNotFound(_) => Code::NotMember,
        SessionError::ParticipantAlreadyInGroup(_) => Code::InvalidArgument,
        SessionError::ReceiveTimeout => Code::Timeout,
        SessionError::Persistence(_)
        | SessionError::PersistenceSerde(_)
        | SessionError::PersistenceDecode(_)
        | SessionError::PersistenceSchemaMismatch { .. } => Code::Store,
        SessionError::Auth(_) | SessionError::SignatureKeyCollectionFailedWithAuthErr(_) => {
            Code::Auth
        }
        SessionError::ModeratorTaskAddFailed { source }
        | SessionError::ModeratorTaskRemoveFailed { source }
        | SessionError::ModeratorTaskUpdateFailed { source }
        | SessionError::ModeratorTaskCloseFailed { source }
        | SessionError::UnexpectedError { source } => session_code(source),
        _ => Code::Internal,
    }
}

impl From<SessionError> for Error {
    fn from(err: SessionError) -> Self {
        Error::new(session_code(&err), chain(&err))
    }
}

impl From<ServiceError> for Error {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::SessionError(inner) => Error::from(*inner),
            other => {
                let code = match &other {
                    ServiceError::ConnectionError(_)
                    | ServiceError::ClientAlreadyConnected(_)
                    | ServiceError::ConfigError(_)
                    | ServiceError::DataPath(_) => Code::Connect,
                    ServiceError::ProviderAuthError(_) => Code::Auth,
                    ServiceError::ServerNotFound(_) => Code::Server,
                    // The node refused it: a routing request that does not apply.
                    ServiceError::SubscriptionError(SubscriptionAckError::Rejected { .. })
                    | ServiceError::UnsubscriptionError(SubscriptionAckError::Rejected {
                        ..
                    }) => Code::InvalidArgument,
                    ServiceError::SubscriptionError(_)
                    | ServiceError::UnsubscriptionError(_)
                    | ServiceError::SetRouteError(_)
                    | ServiceError::RemoveRouteError(_)
                    | ServiceError::MessageSendingError(_) => Code::Connect,
                    ServiceError::InvalidConfig(_) => Code::InvalidArgument,
                    ServiceError::SessionNotFound => Code::SessionClosed,
                    ServiceError::SessionMustBeMulticast(_) => Code::NotGroup,
                    _ => Code::Internal,
                };
                Error::new(code, chain(&other))
            }
        }
    }
}

impl From<slim_auth::errors::AuthError> for Error {
    fn from(err: slim_auth::errors::AuthError) -> Self {
        Error::new(Code::Auth, chain(&err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_upper_snake_case_of_their_variants() {
        let variants = [
            Code::InvalidName,
            Code::InvalidArgument,
            Code::Auth,
            Code::Connect,
            Code::Timeout,
            Code::Aborted,
            Code::Busy,
            Code::Closed,
            Code::SessionClosed,
            Code::NotInitiator,
            Code::NotGroup,
            Code::NotMember,
            Code::DeliveryFailed,
            Code::PayloadTooLarge,
            Code::Server,
            Code::Store,
            Code::Rpc,
            Code::Internal,
        ];
        for code in variants {
            let mut expected = String::new();
            for (i, c) in format!("{code:?}").chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    expected.push('_');
                }
                expected.push(c.to_ascii_uppercase());
            }
            assert_eq!(code.as_str(), expected);
        }
    }

    #[test]
    fn display_shows_the_code() {
        let err = Error::new(Code::Timeout, "no message within 5 ms");
        assert_eq!(err.to_string(), "[TIMEOUT] no message within 5 ms");
    }

    #[test]
    fn session_errors_map_to_codes() {
        assert_eq!(
            Error::from(SessionError::NotInitiator).code,
            Code::NotInitiator
        );
        assert_eq!(
            Error::from(SessionError::CannotInviteToP2P).code,
            Code::NotGroup
        );
        assert_eq!(
            Error::from(SessionError::MessageSendRetryFailed { id: 7 }).code,
            Code::DeliveryFailed
        );
        assert_eq!(
            Error::from(SessionError::SessionClosed).code,
            Code::SessionClosed
        );
        let wrapped = SessionError::ModeratorTaskAddFailed {
            source: Box::new(SessionError::MessageSendRetryFailed { id: 1 }),
        };
        assert_eq!(Error::from(wrapped).code, Code::DeliveryFailed);
        assert_eq!(
            Error::from(SessionError::AckReception("channel closed".into())).code,
            Code::SessionClosed
        );
    }
}
