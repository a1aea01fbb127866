//! One error type for the addon. Every failure crossing into JavaScript carries a
//! stable code; the TypeScript facade turns `[CODE] message` into a `SlimError`.

use slim_service::{ServiceError, SubscriptionAckError};
use slim_session::SessionError;

/// Stable error codes. The strings are part of the public API: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidName,
    InvalidArgument,
    Auth,
    Connect,
    Timeout,
    Aborted,
    Busy,
    Closed,
    SessionClosed,
    NotInitiator,
    NotGroup,
    NotMember,
    DeliveryFailed,
    PayloadTooLarge,
    Server,
    Internal,
}

impl Code {
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
            Code::Internal => "INTERNAL",
        }
    }

    pub fn all() -> &'static [Code] {
        &[
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
            Code::Internal,
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: Code,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    /// The text handed to napi: the facade splits the code back out of it.
    pub fn to_reason(&self) -> String {
        format!("[{}] {}", self.code.as_str(), self.message)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_reason())
    }
}

impl From<Error> for napi::Error {
    fn from(err: Error) -> Self {
        napi::Error::new(napi::Status::GenericFailure, err.to_reason())
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
        | SessionError::SessionDrainingDrop => Code::SessionClosed,
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
    fn codes_are_unique_and_upper_snake() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::all() {
            let text = code.as_str();
            assert!(seen.insert(text), "duplicate code {text}");
            assert!(text.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
        }
    }

    #[test]
    fn reason_carries_the_code() {
        let err = Error::new(Code::Timeout, "no message within 5 ms");
        assert_eq!(err.to_reason(), "[TIMEOUT] no message within 5 ms");
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
    }
}
