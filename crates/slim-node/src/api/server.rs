//! The `Server` class and `startServer`: an embedded SLIM node, the upstream data-plane
//! server run inside this process.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use napi::Env;
use napi::bindgen_prelude::PromiseRaw;
use napi_derive::napi;
use slim_config::client::ClientConfig;
use slim_config::component::id::{ID, Kind};
use slim_config::conn_type::ConnType;
use slim_config::server::ServerConfig;
use slim_config::tls::server::TlsServerConfig;
use slim_service::{KIND, Service, ServiceConfiguration};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::auth::NodeAuth;
use crate::client::{Client, ConnectOptions};
use crate::endpoint::{Transport, listen_address};
use crate::errors::{Code, Error, Result, chain, js};
use crate::runtime::{promise, whole_number};
use crate::settings::ServerKeepaliveOptions;
use crate::tls::{self, ServerTlsOptions};
use crate::wait::{Wait, detached_promise, limit_of};
use slim_node_tcp::{self as transport, Sockets};

pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:46357";

/// Options for an embedded SLIM node.
///
/// @example
/// ```ts
/// const options: ServerOptions = { endpoint: '127.0.0.1:0', peers: [{ endpoint: 'http://10.0.0.2:46357' }] }
/// const node = await startServer(options)
/// ```
/// @group Server
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// `host:port` to listen on (default `127.0.0.1:46357`); port 0 picks a free port.
    /// `ws://host:port` serves WebSocket instead of gRPC.
    pub endpoint: Option<String>,
    /// Serve TLS (and mutual TLS with a client CA); plain text when omitted.
    pub tls: Option<ServerTlsOptions>,
    /// Other SLIM nodes this one links to as a peer, as upstream's multi-node
    /// deployments do: subscriptions are shared over the link, so apps on either
    /// node reach each other.
    pub peers: Option<Vec<ConnectOptions>>,
    /// A credential every client must present (apart from its app identity).
    pub auth: Option<NodeAuth>,
    /// Keepalive pings and connection limits.
    pub keepalive: Option<ServerKeepaliveOptions>,
    /// HTTP/2: largest frame, in MiB (1 to 15; upstream's default is 4).
    #[napi(js_name = "maxFrameSizeMiB")]
    pub max_frame_size_mib: Option<f64>,
    /// HTTP/2: most concurrent streams per connection.
    pub max_concurrent_streams: Option<f64>,
    /// HTTP/2: largest header list, bytes.
    pub max_header_list_size: Option<f64>,
}

/// HTTP/2 frames are at most 16 MiB - 1 byte; upstream counts in MiB.
fn frame_size_mib(value: Option<f64>) -> Result<Option<u32>> {
    match whole_number(value, "maxFrameSizeMiB")? {
        Some(mib) if !(1..=15).contains(&mib) => Err(Error::invalid_argument(format!(
            "maxFrameSizeMiB must be from 1 to 15, got {mib}"
        ))),
        other => Ok(other),
    }
}

impl ServerOptions {
    /// Upstream's server settings for listening on `addr`.
    fn config(
        &self,
        addr: SocketAddr,
        transport: Transport,
        tls: TlsServerConfig,
    ) -> Result<ServerConfig> {
        let endpoint = match transport {
            Transport::Grpc => addr.to_string(),
            Transport::WebSocket => format!("ws://{addr}"),
        };
        let mut config = ServerConfig::with_endpoint(&endpoint)
            .with_tls_settings(tls)
            .with_max_frame_size(frame_size_mib(self.max_frame_size_mib)?)
            .with_max_concurrent_streams(whole_number(
                self.max_concurrent_streams,
                "maxConcurrentStreams",
            )?)
            .with_max_header_list_size(whole_number(
                self.max_header_list_size,
                "maxHeaderListSize",
            )?);
        if let Some(auth) = &self.auth {
            config = config.with_auth(auth.to_server()?);
        }
        if let Some(keepalive) = &self.keepalive {
            config = config.with_keepalive(keepalive.to_config()?);
        }
        Ok(config)
    }
}

/// A SLIM node running inside this process.
#[napi]
pub struct Server {
    secure: bool,
    transport: Transport,
    endpoint: String,
    node: Arc<Node>,
}

/// What stopping the node needs, shared with the promises that stop it or wait for it.
struct Node {
    service: Mutex<Option<Service>>,
    stopped: CancellationToken,
}

impl Node {
    async fn stop(&self) -> Result<()> {
        let service = self.service.lock().await.take();
        self.stopped.cancel();
        if let Some(service) = service {
            service
                .shutdown()
                .await
                .map_err(|e| Error::new(Code::Server, chain(&e)))?;
        }
        Ok(())
    }
}

/// Port 0 means "any free port": reserve one from the OS and report it, since the
/// upstream listener does not expose the address it bound.
fn concrete_address(addr: SocketAddr) -> Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let probe = TcpListener::bind(addr)
        .map_err(|e| Error::new(Code::Server, format!("cannot bind {addr}: {e}")))?;
    probe
        .local_addr()
        .map_err(|e| Error::new(Code::Server, format!("cannot read the bound address: {e}")))
}

fn node_id() -> Result<ID> {
    let kind = Kind::new(KIND).map_err(|e| Error::new(Code::Internal, e.to_string()))?;
    let name = format!("slim-node-{}", std::process::id());
    ID::new_with_name(kind, &name).map_err(|e| Error::new(Code::Internal, e.to_string()))
}

/// The client side of each peer link, checked to be reachable now so that a wrong
/// address fails the start instead of being retried in the background.
async fn peer_links(peers: &[ConnectOptions]) -> Result<Vec<Client>> {
    let mut links = Vec::with_capacity(peers.len());
    for peer in peers {
        let mut link = Client::new(peer)?;
        link.config.connection_type = ConnType::Peer;
        link.probe().await?;
        links.push(link);
    }
    Ok(links)
}

async fn peer_addresses(links: &[Client]) -> HashSet<SocketAddr> {
    let mut addresses = HashSet::new();
    for link in links {
        let address = link.endpoint.socket_address();
        addresses.extend(transport::resolve(&address).await);
    }
    addresses
}

async fn launch(
    addr: SocketAddr,
    config: ServerConfig,
    peers: Vec<ClientConfig>,
) -> Result<Service> {
    let service = ServiceConfiguration::new()
        .with_dataplane_server(vec![config])
        .with_dataplane_client(peers)
        .build_server(node_id()?)
        .map_err(|e| Error::new(Code::Server, chain(&e)))?;
    service.run().await.map_err(|e| {
        Error::new(
            Code::Server,
            format!("cannot listen on {addr}: {}", chain(&e)),
        )
    })?;
    Ok(service)
}

async fn start(options: ServerOptions) -> Result<Server> {
    crate::tracing::install(None)?;
    let tls = tls::server(options.tls.as_ref())?;
    let secure = !tls.insecure;
    let requested = options
        .endpoint
        .clone()
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    let (addr, transport) = listen_address(&requested)?;
    let addr = concrete_address(addr)?;
    let config = options.config(addr, transport, tls)?;
    let peers = peer_links(options.peers.as_deref().unwrap_or_default()).await?;
    let peer_addresses = peer_addresses(&peers).await;
    let configs = peers.into_iter().map(|peer| peer.config).collect();
    let service = launch(addr, config, configs).await?;
    let stopped = CancellationToken::new();
    transport::disable_nagle(&Sockets::ListeningOn(addr));
    if !peer_addresses.is_empty() {
        transport::keep_nagle_off(Sockets::ConnectedTo(peer_addresses), stopped.clone());
    }
    Ok(Server {
        secure,
        transport,
        endpoint: addr.to_string(),
        node: Arc::new(Node {
            service: Mutex::new(Some(service)),
            stopped,
        }),
    })
}

/// Starts an embedded SLIM node and resolves once it accepts connections.
#[napi(ts_return_type = "Promise<Server>", catch_unwind)]
pub fn start_server(
    env: &Env,
    options: Option<ServerOptions>,
) -> js::Result<PromiseRaw<'_, Server>> {
    promise(env, start(options.unwrap_or_default()))
}

#[napi]
impl Server {
    /// The `host:port` the node listens on (the real port when 0 was requested).
    #[napi(getter)]
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// The URL apps connect to: `http://127.0.0.1:46357`, `https://…` with TLS, `ws://…`
    /// or `wss://…` for a WebSocket node.
    #[napi(getter)]
    pub fn url(&self) -> String {
        let scheme = match (self.transport, self.secure) {
            (Transport::Grpc, false) => "http",
            (Transport::Grpc, true) => "https",
            (Transport::WebSocket, false) => "ws",
            (Transport::WebSocket, true) => "wss",
        };
        format!("{scheme}://{}", self.endpoint)
    }

    /// Whether the node is still running.
    #[napi(getter)]
    pub fn running(&self) -> bool {
        !self.node.stopped.is_cancelled()
    }

    /// Resolves when the node has stopped. While awaited it keeps the process alive,
    /// which a running node alone does not.
    #[napi(ts_return_type = "Promise<void>", catch_unwind)]
    pub fn stopped<'env>(
        &self,
        env: &'env Env,
        wait: Option<&Wait>,
    ) -> js::Result<PromiseRaw<'env, ()>> {
        let node = self.node.clone();
        let limit = limit_of(wait);
        promise(env, async move {
            let stopped = async move {
                node.stopped.cancelled().await;
                Ok(())
            };
            limit
                .run(stopped, &CancellationToken::new(), "stopped")
                .await
        })
    }

    /// Stops the node and closes every connection to it. Idempotent.
    #[napi(ts_return_type = "Promise<void>", catch_unwind)]
    pub fn stop<'env>(
        &self,
        env: &'env Env,
        wait: Option<&Wait>,
    ) -> js::Result<PromiseRaw<'env, ()>> {
        let node = self.node.clone();
        detached_promise(env, wait, "stop", async move { node.stop().await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_becomes_a_real_port() {
        let addr = concrete_address("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(addr.port(), 0);
    }
}
