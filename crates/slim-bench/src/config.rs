//! The run configuration the harness passes as the last argument.

use std::time::Instant;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Node,
    Pub,
    Sub,
    Requester,
    Responder,
    #[serde(rename = "rpc-server")]
    RpcServer,
    #[serde(rename = "rpc-unary")]
    RpcUnary,
    #[serde(rename = "rpc-stream")]
    RpcStream,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    Group,
    P2p,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    pub role: Role,
    pub endpoint: String,
    pub name: String,
    #[serde(default)]
    pub channel: String,
    #[serde(default)]
    pub members: Vec<String>,
    pub session: SessionKind,
    #[serde(default = "yes")]
    pub reliable: bool,
    #[serde(default)]
    pub mls: bool,
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    #[serde(default = "default_payload")]
    pub payload: usize,
    #[serde(default)]
    pub warmup: u64,
    #[serde(default)]
    pub count: u64,
    #[serde(default)]
    pub rate: f64,
    #[serde(default = "default_window")]
    pub window: usize,
    /// The measured phase's length; 0: `count` alone ends it.
    #[serde(default)]
    pub seconds: f64,
    #[serde(default)]
    pub latency: bool,
    pub secret: String,
}

impl Config {
    pub fn total(&self) -> u64 {
        self.warmup + self.count
    }

    /// Whether message (or call) `seq` still belongs to the run: within `warmup + count`
    /// and, with `seconds`, begun less than that long after the first measured one
    /// (`measuring` since).
    pub fn admits(&self, seq: u64, measuring: Instant) -> bool {
        seq < self.total()
            && (seq <= self.warmup
                || self.seconds <= 0.0
                || measuring.elapsed().as_secs_f64() < self.seconds)
    }
}

fn yes() -> bool {
    true
}
fn default_retries() -> u32 {
    5
}
fn default_interval() -> u64 {
    1000
}
fn default_payload() -> usize {
    64
}
fn default_window() -> usize {
    512
}
