//! How an app or a peer node reaches a SLIM node: the upstream client settings built
//! from JavaScript options, and the up-front check that reports an unreachable node or
//! a failed TLS handshake at once (upstream would retry those in the background).

use std::collections::HashMap;
use std::time::Duration;

use napi_derive::napi;
use slim_config::client::ClientConfig;

use crate::auth::NodeAuth;
use crate::endpoint::Endpoint;
use crate::errors::{Code, Error, Result};
use crate::runtime::{millis, whole_number};
use crate::settings::{self, KeepaliveOptions, ProxyOptions, ReconnectOptions};
use crate::tls::{self, TlsOptions};

/// How long a connection attempt may take before it fails with CONNECT.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to reach a SLIM node.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// The node URL: `http://` or `https://` for gRPC, `ws://` or `wss://` for WebSocket,
    /// e.g. `http://127.0.0.1:46357`.
    pub endpoint: String,
    /// TLS settings; plain text for an `http://` or `ws://` endpoint without any.
    pub tls: Option<TlsOptions>,
    /// A credential the node requires of its clients (apart from the app's identity).
    pub auth: Option<NodeAuth>,
    /// Keepalive pings on the connection.
    pub keepalive: Option<KeepaliveOptions>,
    /// How to reconnect when the node goes away (by default: forever, delays doubling
    /// from 100 ms up to 2 s).
    pub reconnect: Option<ReconnectOptions>,
    /// Each connection attempt's limit, ms (default 10 000).
    pub connect_timeout: Option<f64>,
    /// Each request's limit on the connection, ms.
    pub request_timeout: Option<f64>,
    /// Headers sent with the connection's requests.
    pub headers: Option<HashMap<String, String>>,
    /// An HTTP proxy to reach the node through.
    pub proxy: Option<ProxyOptions>,
    /// `gzip`, `zlib`, `deflate`, `snappy`, `zstd`, `lz4` or `none` (upstream accepts the
    /// setting; SLIM core 3.4 does not compress yet).
    pub compression: Option<String>,
    /// Read buffer size of the connection, bytes.
    pub buffer_size: Option<f64>,
}

/// A node to connect to: its parsed address and upstream's client settings for it.
pub struct Client {
    pub endpoint: Endpoint,
    pub config: ClientConfig,
}

impl Client {
    pub fn new(options: &ConnectOptions) -> Result<Self> {
        let endpoint = Endpoint::parse(&options.endpoint)?;
        let tls = tls::client(options.tls.as_ref(), endpoint.is_secure())?;
        let connect_timeout = millis(options.connect_timeout, "connectTimeout")?;
        let mut config = ClientConfig::with_endpoint(endpoint.url())
            .with_connect_timeout(connect_timeout.unwrap_or(CONNECT_TIMEOUT))
            .with_tls_setting(tls);
        if let Some(auth) = &options.auth {
            config = config.with_auth(auth.to_client()?);
        }
        if let Some(keepalive) = &options.keepalive {
            config = config.with_keepalive(keepalive.to_config()?);
        }
        let reconnect = options.reconnect.clone().unwrap_or_default();
        config = config.with_backoff(reconnect.to_config()?);
        if let Some(timeout) = millis(options.request_timeout, "requestTimeout")? {
            config = config.with_request_timeout(timeout);
        }
        if let Some(headers) = &options.headers {
            config = config.with_headers(headers.clone());
        }
        if let Some(proxy) = &options.proxy {
            config = config.with_proxy(proxy.to_config());
        }
        if let Some(name) = &options.compression {
            config = config.with_compression(settings::compression(name)?);
        }
        if let Some(size) = whole_number(options.buffer_size, "bufferSize")? {
            config = config.with_buffer_size(size as usize);
        }
        Ok(Self { endpoint, config })
    }

    /// Opens a TCP connection and, for TLS, completes a handshake, each within
    /// [`CONNECT_TIMEOUT`], so a wrong address or CA fails now with its cause.
    pub async fn probe(&self) -> Result<()> {
        let url = self.endpoint.url();
        let address = self.endpoint.socket_address();
        let connect = tokio::net::TcpStream::connect(&address);
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                return Err(Error::new(
                    Code::Connect,
                    format!("cannot connect to {url}: {err}"),
                ));
            }
            Err(_) => {
                return Err(Error::new(
                    Code::Connect,
                    format!("cannot connect to {url}: no answer within {CONNECT_TIMEOUT:?}"),
                ));
            }
        };
        tls::check_handshake(&self.config.tls_setting, self.endpoint.host(), stream, url).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_insecure_and_https_is_not() {
        let client = |endpoint: &str| {
            Client::new(&ConnectOptions {
                endpoint: endpoint.into(),
                ..Default::default()
            })
        };
        assert!(client("127.0.0.1:46357").is_err());
        assert!(
            client("http://127.0.0.1:46357")
                .unwrap()
                .config
                .tls_setting
                .insecure
        );
        assert!(
            !client("https://node:443")
                .unwrap()
                .config
                .tls_setting
                .insecure
        );
    }
}
