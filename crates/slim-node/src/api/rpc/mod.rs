//! The slimrpc classes: `RpcChannel` and its `RpcCall`s (`client`), `RpcServer` and its
//! `IncomingCall`s (`server`). Bytes in, bytes out; encoding messages is the caller's
//! business.

pub mod client;
pub mod server;
