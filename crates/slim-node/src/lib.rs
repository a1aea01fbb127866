//! slim-node: Node.js bindings for SLIM over the upstream Rust crates.
//!
//! Modules import only those listed before them (see docs/architecture.md): the
//! foundations, the link an app shares with its sessions, sessions, apps, and the
//! `#[napi]` surface on top.
#![deny(clippy::all)]
// napi exports are only called from JavaScript, never from Rust tests.
#![cfg_attr(test, allow(dead_code))]

mod delivery;
mod endpoint;
mod errors;
mod identity;
mod jwt;
mod name;
mod runtime;
mod status;
mod tls;
mod tracing;
mod wait;

mod auth;
mod client;
mod envelope;
mod message;
mod settings;

mod link;

mod connection;
mod session;

mod app;
mod rpc;

mod api;
