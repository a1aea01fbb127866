//! slimrpc's status codes (gRPC's seventeen), carried as the `status` of an error whose
//! `code` is `RPC`. A foundation: the errors module builds on it.

use napi_derive::napi;
use slim_rpc::RpcCode as Upstream;

/// The status of a failed remote procedure call: gRPC's codes, as slimrpc sends them in
/// its `slimrpc-code` metadata. Each member's value is the `status` a {@link RpcError}
/// carries.
///
/// @example
/// ```ts
/// throw new RpcError(RpcCode.NotFound, 'no such user')
/// ```
/// @group RPC
#[napi(string_enum = "UPPER_SNAKE")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcCode {
    /// Success; never the status of an error.
    Ok,
    /// The call was cancelled.
    Cancelled,
    /// An error with no better status.
    Unknown,
    /// The request is not valid for the method.
    InvalidArgument,
    /// The call's deadline passed before it completed.
    DeadlineExceeded,
    /// What the request names does not exist.
    NotFound,
    /// What the request would create exists already.
    AlreadyExists,
    /// The caller may not do this.
    PermissionDenied,
    /// A quota or a resource ran out.
    ResourceExhausted,
    /// The system is not in the state the call needs.
    FailedPrecondition,
    /// The call was aborted (a conflict, for example).
    Aborted,
    /// A value is past its valid range.
    OutOfRange,
    /// The server has no such method.
    Unimplemented,
    /// A bug in the server or in slimrpc.
    Internal,
    /// The server cannot be reached now; trying again may work.
    Unavailable,
    /// Data was lost or damaged.
    DataLoss,
    /// The caller's credentials are missing or invalid.
    Unauthenticated,
}

/// Each status with upstream's, in gRPC's numbering order.
const PAIRS: [(RpcCode, Upstream); 17] = [
    (RpcCode::Ok, Upstream::Ok),
    (RpcCode::Cancelled, Upstream::Cancelled),
    (RpcCode::Unknown, Upstream::Unknown),
    (RpcCode::InvalidArgument, Upstream::InvalidArgument),
    (RpcCode::DeadlineExceeded, Upstream::DeadlineExceeded),
    (RpcCode::NotFound, Upstream::NotFound),
    (RpcCode::AlreadyExists, Upstream::AlreadyExists),
    (RpcCode::PermissionDenied, Upstream::PermissionDenied),
    (RpcCode::ResourceExhausted, Upstream::ResourceExhausted),
    (RpcCode::FailedPrecondition, Upstream::FailedPrecondition),
    (RpcCode::Aborted, Upstream::Aborted),
    (RpcCode::OutOfRange, Upstream::OutOfRange),
    (RpcCode::Unimplemented, Upstream::Unimplemented),
    (RpcCode::Internal, Upstream::Internal),
    (RpcCode::Unavailable, Upstream::Unavailable),
    (RpcCode::DataLoss, Upstream::DataLoss),
    (RpcCode::Unauthenticated, Upstream::Unauthenticated),
];

impl From<Upstream> for RpcCode {
    fn from(code: Upstream) -> Self {
        PAIRS
            .iter()
            .find(|(_, upstream)| *upstream == code)
            .map_or(RpcCode::Unknown, |(ours, _)| *ours)
    }
}

impl From<RpcCode> for Upstream {
    fn from(code: RpcCode) -> Self {
        PAIRS
            .iter()
            .find(|(ours, _)| *ours == code)
            .map_or(Upstream::Unknown, |(_, upstream)| *upstream)
    }
}

impl RpcCode {
    /// The string napi's `string_enum` gives the variant.
    pub fn as_str(self) -> &'static str {
        match self {
            RpcCode::Ok => "OK",
            RpcCode::Cancelled => "CANCELLED",
            RpcCode::Unknown => "UNKNOWN",
            RpcCode::InvalidArgument => "INVALID_ARGUMENT",
            RpcCode::DeadlineExceeded => "DEADLINE_EXCEEDED",
            RpcCode::NotFound => "NOT_FOUND",
            RpcCode::AlreadyExists => "ALREADY_EXISTS",
            RpcCode::PermissionDenied => "PERMISSION_DENIED",
            RpcCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
            RpcCode::FailedPrecondition => "FAILED_PRECONDITION",
            RpcCode::Aborted => "ABORTED",
            RpcCode::OutOfRange => "OUT_OF_RANGE",
            RpcCode::Unimplemented => "UNIMPLEMENTED",
            RpcCode::Internal => "INTERNAL",
            RpcCode::Unavailable => "UNAVAILABLE",
            RpcCode::DataLoss => "DATA_LOSS",
            RpcCode::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

/// What an RPC error carries beside its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcFailure {
    pub status: RpcCode,
    /// The group member that answered with the failure, in a group call.
    pub origin: Option<String>,
    /// The server's binary details, if it sent any.
    pub details: Option<Vec<u8>>,
}

impl Default for RpcFailure {
    fn default() -> Self {
        Self {
            status: RpcCode::Unknown,
            origin: None,
            details: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_upstream_in_grpc_order() {
        for (number, (ours, upstream)) in PAIRS.iter().enumerate() {
            assert_eq!(i32::from(*upstream), number as i32);
            assert_eq!(RpcCode::from(*upstream), *ours);
            assert_eq!(Upstream::from(*ours), *upstream);
            assert_eq!(ours.as_str(), upstream.to_string());
        }
    }
}
