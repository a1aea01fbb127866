//! Low latency over TCP.
//!
//! Upstream's gRPC transport leaves Nagle's algorithm on (its client connector sets
//! `nodelay(false)`, its listener leaves the default). Small SLIM messages then wait for
//! the peer's delayed ACK: about 40 ms on Linux, the p99 of every paced stream. Neither
//! side offers a setting, so slim-node finds the sockets upstream opened for it and
//! turns the algorithm off on them: the listener of an embedded node (accepted sockets
//! inherit the option) and each connection an app or a linked node makes, from the
//! moment its socket exists. Connections upstream re-opens after an outage are picked up
//! by a periodic re-check.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often connections to a node are re-checked for ones upstream re-opened.
const RECHECK_EVERY: Duration = Duration::from_secs(2);
/// How often while a connection is being opened.
const WHILE_CONNECTING_EVERY: Duration = Duration::from_millis(1);

/// Which sockets to change.
#[derive(Debug, Clone)]
pub enum Sockets {
    /// The listening socket bound to this address.
    ListeningOn(SocketAddr),
    /// Connected sockets whose peer is one of these addresses.
    ConnectedTo(HashSet<SocketAddr>),
}

impl Sockets {
    fn matches(&self, local: Option<SocketAddr>, peer: Option<SocketAddr>) -> bool {
        match (self, peer) {
            (Sockets::ListeningOn(addr), None) => local == Some(*addr),
            (Sockets::ConnectedTo(peers), Some(peer)) => peers.contains(&peer),
            _ => false,
        }
    }
}

/// Turns Nagle's algorithm off on the matching TCP sockets of this process; returns
/// how many it changed.
#[cfg(unix)]
pub fn disable_nagle(sockets: &Sockets) -> usize {
    use std::os::fd::BorrowedFd;

    let mut changed = 0;
    for fd in open_descriptors() {
        // SAFETY: the descriptor is only borrowed for these calls; a closed or
        // non-socket descriptor makes them fail, which skips it.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&borrowed);
        if socket.r#type().ok() != Some(socket2::Type::STREAM) {
            continue;
        }
        let local = socket.local_addr().ok().and_then(|a| a.as_socket());
        let peer = socket.peer_addr().ok().and_then(|a| a.as_socket());
        if !sockets.matches(local, peer) || socket.tcp_nodelay().unwrap_or(true) {
            continue;
        }
        if socket.set_tcp_nodelay(true).is_ok() {
            changed += 1;
        }
    }
    changed
}

#[cfg(not(unix))]
pub fn disable_nagle(_: &Sockets) -> usize {
    0
}

#[cfg(unix)]
fn open_descriptors() -> Vec<std::os::fd::RawFd> {
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        return entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
    }
    // No /proc (macOS): probe the usual range; closed descriptors fail fast.
    (0..4096).collect()
}

/// Re-applies [`disable_nagle`] until `stop` is cancelled (call inside a tokio runtime).
pub fn keep_nagle_off(sockets: Sockets, stop: CancellationToken) {
    tokio::spawn(async move {
        loop {
            disable_nagle(&sockets);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RECHECK_EVERY) => {}
            }
        }
    });
}

/// Runs `connecting` (upstream opening a connection) while turning Nagle's algorithm off
/// on the matching sockets every millisecond. Upstream's connector turns the algorithm on
/// right after the TCP handshake, and a small frame of the HTTP/2 handshake that follows
/// an unacknowledged one then waits out the node's delayed acknowledgement (40 ms);
/// turning it off sends what it held back at once.
pub async fn nagle_off_while<F: Future>(sockets: &Sockets, connecting: F) -> F::Output {
    let mut connecting = std::pin::pin!(connecting);
    loop {
        tokio::select! {
            biased;
            done = &mut connecting => {
                disable_nagle(sockets);
                return done;
            }
            _ = tokio::time::sleep(WHILE_CONNECTING_EVERY) => {
                disable_nagle(sockets);
            }
        }
    }
}

/// The addresses `host:port` resolves to (empty when it does not).
pub async fn resolve(address: &str) -> HashSet<SocketAddr> {
    tokio::net::lookup_host(address)
        .await
        .map(|addrs| addrs.collect())
        .unwrap_or_default()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn only_matching_sockets_change() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let bystander = std::net::TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!client.nodelay().unwrap());

        assert_eq!(disable_nagle(&Sockets::ConnectedTo([addr].into())), 1);
        assert!(client.nodelay().unwrap());
        assert!(!bystander.nodelay().unwrap());
        assert!(!accepted.nodelay().unwrap());
        // Already off: nothing left to change.
        assert_eq!(disable_nagle(&Sockets::ConnectedTo([addr].into())), 0);
    }

    #[tokio::test]
    async fn nagle_goes_off_while_a_connection_is_being_opened() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Like upstream's connector: connects, turns Nagle on, then waits for its peer,
        // here until the algorithm is off (bounded, so a failure cannot hang the test).
        let connecting = async {
            let client = std::net::TcpStream::connect(addr).unwrap();
            client.set_nodelay(false).unwrap();
            for _ in 0..2_000 {
                if client.nodelay().unwrap() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            false
        };
        let sockets = Sockets::ConnectedTo([addr].into());
        assert!(nagle_off_while(&sockets, connecting).await);
    }

    #[test]
    fn accepted_sockets_inherit_the_listener_setting() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(disable_nagle(&Sockets::ListeningOn(addr)), 1);
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
