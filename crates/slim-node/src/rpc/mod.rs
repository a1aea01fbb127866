//! slimrpc over upstream's `agntcy-slim-rpc`: its channel and server carry the wire
//! format, deadlines and status codes; these modules connect them to JavaScript.

pub mod client;
pub mod incoming;
pub mod server;

use crate::errors::{Code, Error, Result};
use crate::session::options::MAX_MESSAGE_BYTES;
use crate::status::{RpcCode, RpcFailure};

/// Upstream's call failures: the status is kept; a group call's member is the origin.
impl From<slim_rpc::RpcError> for Error {
    fn from(err: slim_rpc::RpcError) -> Self {
        let message = err.to_string();
        let (status, origin, details) = match err {
            slim_rpc::RpcError::Rpc { code, details, .. } => (code.into(), None, details),
            slim_rpc::RpcError::MulticastRpc {
                origin,
                code,
                details,
                ..
            } => (code.into(), Some(origin), details),
            // Some members never answered before the group's session ended.
            slim_rpc::RpcError::MulticastSessionClosed { .. } => (RpcCode::Unavailable, None, None),
        };
        let status = if status == RpcCode::Ok {
            RpcCode::Unknown
        } else {
            status
        };
        Self {
            rpc: Some(Box::new(RpcFailure {
                status,
                origin,
                details,
            })),
            ..Error::new(Code::Rpc, message)
        }
    }
}

/// A request or answer over what one SLIM message carries is refused before it is sent.
pub fn check_size(len: usize, what: &str) -> Result<()> {
    if len > MAX_MESSAGE_BYTES as usize {
        return Err(Error::new(
            Code::PayloadTooLarge,
            format!("{what} of {len} bytes is over the {MAX_MESSAGE_BYTES}-byte limit"),
        ));
    }
    Ok(())
}
