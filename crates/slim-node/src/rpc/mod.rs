//! slimrpc over upstream's `agntcy-slim-rpc`: its channel and server carry the wire
//! format, deadlines and status codes; these modules connect them to JavaScript.

pub mod client;
pub mod server;
