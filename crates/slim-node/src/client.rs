//! How an app or a peer node reaches a SLIM node: the upstream client settings built
//! from JavaScript options, and the up-front check that reports an unreachable node or
//! a failed TLS handshake at once (upstream would retry those in the background).

use std::time::Duration;

use napi_derive::napi;
use slim_config::client::ClientConfig;

use crate::endpoint::Endpoint;
use crate::errors::{Code, Error, Result};
use crate::tls::{self, TlsOptions};

/// How long a connection attempt may take before it fails with CONNECT.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to reach a SLIM node.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The node URL, e.g. `http://127.0.0.1:46357`.
    pub endpoint: String,
    /// TLS settings; plain text for an `http://` endpoint without any.
    pub tls: Option<TlsOptions>,
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
        let config = ClientConfig::with_endpoint(endpoint.url())
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_tls_setting(tls);
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
                tls: None,
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
