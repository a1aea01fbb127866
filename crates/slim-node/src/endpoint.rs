//! Node addresses, parsed once: the `http(s)://` URL an app connects to, and the
//! `host:port` a node listens on.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::errors::{Error, Result};

/// A node URL an app (or a peer node) connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    url: String,
    secure: bool,
    /// As written in the URL: an IPv6 address keeps its brackets.
    host: String,
    port: u16,
}

impl Endpoint {
    /// Parses `http(s)://host[:port]` (gRPC) or `ws(s)://host[:port]` (WebSocket); a path
    /// is allowed and kept.
    pub fn parse(text: &str) -> Result<Self> {
        let url = text.trim();
        let secure = match url.split_once("://").map(|(scheme, _)| scheme) {
            Some("https" | "wss") => true,
            Some("http" | "ws") => false,
            _ => {
                return Err(Error::invalid_argument(format!(
                    "endpoint {url:?} must be an http://, https://, ws:// or wss:// URL, e.g. http://127.0.0.1:46357"
                )));
            }
        };
        let uri = url.parse::<http::Uri>().map_err(|err| {
            Error::invalid_argument(format!("endpoint {url:?} is not a valid URL: {err}"))
        })?;
        let authority = uri
            .authority()
            .filter(|authority| !authority.host().is_empty())
            .ok_or_else(|| Error::invalid_argument(format!("endpoint {url:?} has no host")))?;
        // `Authority::port` reads a port that does not fit in 16 bits as no port at all.
        let written = authority
            .as_str()
            .rsplit_once(':')
            .filter(|(before, digits)| before.ends_with(authority.host()) && !digits.is_empty());
        let port = match written {
            Some((_, digits)) => digits.parse::<u16>().map_err(|_| {
                Error::invalid_argument(format!("endpoint {url:?} has a port outside 0-65535"))
            })?,
            None if secure => 443,
            None => 80,
        };
        Ok(Self {
            url: url.to_string(),
            secure,
            host: authority.host().to_string(),
            port,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn is_secure(&self) -> bool {
        self.secure
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// `host:port`, for opening a socket to the node.
    pub fn socket_address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// How a node serves its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    WebSocket,
}

/// The address a node listens on: `host:port` (gRPC), `http(s)://host:port` (gRPC) or
/// `ws(s)://host:port` (WebSocket).
pub fn listen_address(text: &str) -> Result<(SocketAddr, Transport)> {
    let (transport, bare) = match text.split_once("://") {
        Some(("ws" | "wss", rest)) => (Transport::WebSocket, rest),
        Some(("http" | "https", rest)) => (Transport::Grpc, rest),
        _ => (Transport::Grpc, text),
    };
    let bare = bare.trim_end_matches('/');
    bare.to_socket_addrs()
        .map_err(|e| {
            Error::invalid_argument(format!(
                "server endpoint {text:?} is not a host:port address: {e}"
            ))
        })?
        .next()
        .map(|address| (address, transport))
        .ok_or_else(|| {
            Error::invalid_argument(format!("server endpoint {text:?} resolves to nothing"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(url: &str) -> Option<String> {
        Endpoint::parse(url).ok().map(|e| e.socket_address())
    }

    #[test]
    fn socket_addresses_from_urls() {
        assert_eq!(
            address("http://127.0.0.1:46357").as_deref(),
            Some("127.0.0.1:46357")
        );
        assert_eq!(
            address("https://slim.example/x").as_deref(),
            Some("slim.example:443")
        );
        assert_eq!(address("http://[::1]:9000/").as_deref(), Some("[::1]:9000"));
        assert_eq!(address("http://[::1]").as_deref(), Some("[::1]:80"));
        assert_eq!(address("127.0.0.1:1"), None);
        assert_eq!(address("http://"), None);
    }

    #[test]
    fn urls_need_an_http_scheme_and_a_real_port() {
        assert!(Endpoint::parse("127.0.0.1:46357").is_err());
        assert!(Endpoint::parse("http://127.0.0.1:99999").is_err());
        assert!(!Endpoint::parse(" http://node:1 ").unwrap().is_secure());
        assert!(Endpoint::parse("https://node:443").unwrap().is_secure());
    }

    #[test]
    fn listen_addresses_accept_an_http_prefix() {
        assert_eq!(
            listen_address("http://127.0.0.1:5000").unwrap().0.port(),
            5000
        );
        assert_eq!(
            listen_address("ws://127.0.0.1:5001").unwrap(),
            ("127.0.0.1:5001".parse().unwrap(), Transport::WebSocket)
        );
        assert!(listen_address("not an endpoint").is_err());
    }
}
