//! An app's connections to nodes: making one (probe, connect, subscribe the app's name,
//! nothing left behind if that is given up), and following what happens to it. Upstream
//! (with patches/agntcy-slim-datapath) reconnects by itself when the node goes away, as
//! the connection's backoff allows, and reports each step; the app turns those reports
//! into its status and, if reconnecting gives up, ends what depended on the connection.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use napi::Env;
use napi_derive::napi;
use slim_datapath::message_processing::ConnectionEvent;
use slim_node_tcp::{self as transport, Sockets};
use slim_service::Service;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::client::{CONNECT_TIMEOUT, Client};
use crate::delivery::{Callback, Delivery};
use crate::errors::{Code, Error, ErrorInfo, Result, chain};
use crate::link::{Link, SlimApp};
use crate::runtime::spawn;
use crate::wait::Limit;

/// What happened to one of an app's connections, as the addon reports it; the facade
/// turns it into the `AppStatus` that `app.status()` yields.
///
/// @example
/// ```ts
/// for await (const status of app.status()) {
///   if (status.type === 'reconnecting') console.log(`attempt ${status.attempt} to reach the node`)
/// }
/// ```
/// @group Apps
#[napi(object)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStatus {
    /// `disconnect`: the node went away and reconnecting starts; `reconnecting`: an
    /// attempt starts; `reconnect`: the connection is back, with its subscriptions,
    /// routes and sessions; `error`: reconnecting gave up and the connection is gone.
    #[napi(ts_type = "'disconnect' | 'reconnecting' | 'reconnect' | 'error'")]
    pub r#type: String,
    /// The connection's id, as `connect` resolved with it.
    pub connection: i64,
    /// The attempt that starts, from 1 (`reconnecting` only).
    pub attempt: Option<u32>,
    /// Why the connection is gone (`error` only; code `CONNECT`).
    pub error: Option<ErrorInfo>,
}

impl ConnectionStatus {
    fn new(kind: &str, connection: u64) -> Self {
        Self {
            r#type: kind.to_string(),
            connection: connection as i64,
            attempt: None,
            error: None,
        }
    }

    /// The status an upstream event stands for.
    pub fn of(event: ConnectionEvent, url: &str) -> Self {
        match event {
            ConnectionEvent::Lost { connection } => Self::new("disconnect", connection),
            ConnectionEvent::Reconnecting {
                connection,
                attempt,
            } => Self {
                attempt: Some(attempt),
                ..Self::new("reconnecting", connection)
            },
            ConnectionEvent::Reconnected { connection } => Self::new("reconnect", connection),
            ConnectionEvent::Dropped { connection } => Self {
                error: Some(gave_up(url).info()),
                ..Self::new("error", connection)
            },
        }
    }
}

/// Where an app's connection statuses go, once JavaScript listens: a callback that keeps
/// Node running until the app closes, as a connection would.
#[derive(Default)]
pub struct Statuses(parking_lot::Mutex<Option<Delivery<ConnectionStatus>>>);

impl Statuses {
    /// Called on the JavaScript thread.
    pub fn watch(
        &self,
        env: &Env,
        callback: Callback<ConnectionStatus>,
        closed: &CancellationToken,
    ) -> Result<()> {
        let delivery = Delivery::new(callback);
        delivery.keep_node_alive(env, true)?;
        *self.0.lock() = Some(delivery);
        // Closing cancels, then releases: whichever ran second, nothing is left held.
        if closed.is_cancelled() {
            self.release();
        }
        Ok(())
    }

    pub fn send(&self, status: ConnectionStatus) {
        if let Some(delivery) = self.0.lock().as_ref() {
            delivery.send(status);
        }
    }

    /// Lets Node exit again: the callback is released.
    pub fn release(&self) {
        self.0.lock().take();
    }
}

/// Why a connection that reconnecting gave up is gone.
pub fn gave_up(url: &str) -> Error {
    Error::new(
        Code::Connect,
        format!(
            "the connection to {url} was lost and reconnecting gave up (reconnect.maxAttempts)"
        ),
    )
}

/// The connection an event is about.
pub fn connection_of(event: ConnectionEvent) -> u64 {
    match event {
        ConnectionEvent::Lost { connection }
        | ConnectionEvent::Reconnecting { connection, .. }
        | ConnectionEvent::Reconnected { connection }
        | ConnectionEvent::Dropped { connection } => connection,
    }
}

/// Hands the events of the app's service's connections to `handle`, one at a time,
/// until the app closes. Listening starts before this returns, so nothing that happens
/// to a connection made afterwards is missed.
pub fn watch<F, Fut>(link: &Arc<Link>, handle: F)
where
    F: Fn(ConnectionEvent) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let mut events = link.service.message_processor().connection_events();
    let closed = link.closed.clone();
    let link = Arc::downgrade(link);
    spawn(async move {
        loop {
            let event = tokio::select! {
                _ = closed.cancelled() => return,
                event = events.recv() => event,
            };
            match event {
                Ok(event) => handle(event).await,
                // Only a stalled runtime falls 64 events behind. What matters of those
                // missed is a connection that is gone: the table still tells.
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "connection events were missed");
                    let Some(link) = link.upgrade() else { return };
                    let gone = link.connections_gone_upstream();
                    drop(link);
                    for connection in gone {
                        handle(ConnectionEvent::Dropped { connection }).await;
                    }
                }
                Err(RecvError::Closed) => return,
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
    let connection = Limit::after(CONNECT_TIMEOUT)
        .run(attempt, &never, "connect")
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
