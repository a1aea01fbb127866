//! An app's connections to nodes: making one (probe, connect, subscribe the app's name,
//! nothing left behind if that is given up), and watching it. Upstream reconnects by
//! itself when the node restarts, but a failed attempt of some kinds (the old node still
//! closing its socket, say) ends its reconnecting for good and drops the connection
//! without a word. The app must learn that, and its sessions must not wait for
//! acknowledgements forever.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Weak;
use std::time::Duration;

use slim_node_tcp::{self as transport, Sockets};
use slim_service::Service;
use tokio_util::sync::CancellationToken;

use crate::client::{CONNECT_TIMEOUT, Client};
use crate::errors::{Code, Error, Result, chain};
use crate::link::{ConnectionState, Link, SlimApp};
use crate::runtime::{bounded, spawn};

/// Checking is a lookup in the node's connection table, cheap enough to do often.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Watches `connection` until the app closes or disconnects; runs `given_up` if upstream
/// gives the connection up first.
pub fn watch<F, Fut>(link: Weak<Link>, connection: u64, given_up: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let Some(closed) = link.upgrade().map(|link| link.closed.clone()) else {
        return;
    };
    spawn(async move {
        loop {
            tokio::select! {
                _ = closed.cancelled() => return,
                _ = tokio::time::sleep(CHECK_EVERY) => {}
            }
            let Some(link) = link.upgrade() else { return };
            match link.connection_state(connection) {
                ConnectionState::Up => continue,
                ConnectionState::Replaced => return,
                ConnectionState::GivenUp => {
                    drop(link);
                    given_up().await;
                    return;
                }
            }
        }
    });
}

/// Closes a connection when dropped, unless it was kept: a connect that times out or is
/// aborted halfway leaves no connection behind.
struct Pending<'a> {
    service: &'a Service,
    connection: Option<u64>,
}

impl Pending<'_> {
    fn keep(mut self) -> u64 {
        self.connection.take().unwrap_or_default()
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            let _ = self.service.disconnect(connection);
        }
    }
}

/// Probes the node, connects (each attempt bounded by CONNECT_TIMEOUT) and subscribes
/// the app's name on the new connection; returns it with the node's addresses.
pub async fn connect_and_subscribe(
    link: &Link,
    slim: &SlimApp,
    client: &Client,
) -> Result<(u64, HashSet<SocketAddr>)> {
    client.probe().await?;
    let url = client.endpoint.url();
    let node = transport::resolve(&client.endpoint.socket_address()).await;
    let sockets = Sockets::ConnectedTo(node.clone());
    // Boxed: upstream's connect is a large future, and nesting it by value in two more
    // overflowed a worker's stack in dev builds.
    let attempt = transport::nagle_off_while(
        &sockets,
        Box::pin(async {
            link.service.connect(&client.config).await.map_err(|e| {
                Error::new(
                    Code::Connect,
                    format!("cannot connect to {url}: {}", chain(&e)),
                )
            })
        }),
    );
    let never = CancellationToken::new();
    let connection = bounded(attempt, Some(CONNECT_TIMEOUT), &never, None, "connect")
        .await
        .map_err(|e| match e.code {
            Code::Timeout => Error::new(
                Code::Connect,
                format!("cannot connect to {url}: {}", e.message),
            ),
            _ => e,
        })?;
    let pending = Pending {
        service: &link.service,
        connection: Some(connection),
    };
    slim.subscribe(&link.name, Some(connection))
        .await
        .map_err(|err| {
            Error::new(
                Code::Connect,
                format!(
                    "connected to {url} but could not subscribe: {}",
                    chain(&err)
                ),
            )
        })?;
    Ok((pending.keep(), node))
}
