//! The pure-Rust benchmark client (`bench/PROTOCOL.md`): the same upstream calls
//! slim-node makes, without JavaScript, so its numbers are slim-node's ceiling.

mod client;
mod config;
mod roles;
mod rpc;
mod wire;

use std::process::ExitCode;

use config::{Config, Role};
use wire::emit;

fn main() -> ExitCode {
    let Some(text) = std::env::args().next_back() else {
        eprintln!("usage: slim-bench '<config JSON>'");
        return ExitCode::FAILURE;
    };
    let config: Config = match serde_json::from_str(&text) {
        Ok(config) => config,
        Err(err) => {
            emit(&serde_json::json!({"event": "error", "message": format!("bad config: {err}")}));
            return ExitCode::FAILURE;
        }
    };
    slim_config::tls::provider::initialize_crypto_provider();
    // Two workers, like slim-node's runtime on this machine (upstream needs at least two).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = runtime.block_on(async {
        match config.role {
            Role::Pub => roles::publisher(&config).await,
            Role::Sub => roles::subscriber(&config).await,
            Role::Requester => roles::requester(&config).await,
            Role::Responder => roles::responder(&config).await,
            Role::RpcServer => rpc::server(&config).await,
            Role::RpcUnary => rpc::unary(&config).await,
            Role::RpcStream => rpc::stream(&config).await,
            Role::Node => {
                anyhow::bail!("the Rust client has no node role; the harness uses slim-node's")
            }
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            emit(&serde_json::json!({"event": "error", "message": format!("{err:#}")}));
            ExitCode::FAILURE
        }
    }
}
