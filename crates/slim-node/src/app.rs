//! Apps: a named SLIM endpoint with an identity, connected to one node, and the
//! sessions it made or joined.

use std::sync::{Arc, Weak};

use napi::Env;

use slim_config::component::id::{ID, Kind};
use slim_datapath::api::{ProtoName, ProtoSessionType};
use slim_datapath::message_processing::ConnectionEvent;
use slim_service::{KIND, Service};
use slim_session::notification::Notification;
use slim_session::{SessionConfig, SessionError};
use tokio::sync::{Mutex, OwnedMutexGuard, mpsc};

use crate::client::Client;
use crate::connection::{self, ConnectionStatus, Statuses};
use crate::delivery::Callback;
use crate::errors::{Code, Error, Result, chain};
use crate::identity::{Identity, IdentityOptions};
use crate::link::{Direction, Link, app_closed, closed_as_app};
use crate::name;
use crate::session::core::SessionCore;
use crate::session::moderator;
use crate::session::peer;
use crate::wait::Limit;
use slim_node_tcp::{self as transport, Sockets};
use slim_persistence::PersistenceConfig;

type Notifications = mpsc::Receiver<std::result::Result<Notification, SessionError>>;

/// The right to wait for the next invitation: one waiter per app at a time.
pub type Listener = OwnedMutexGuard<Notifications>;

/// What an app can ask its node about a name.
#[derive(Debug, Clone, Copy)]
pub enum Routing {
    /// Receive messages sent to the name.
    Subscribe,
    Unsubscribe,
    /// Send traffic for the name through this app's connection.
    SetRoute,
    RemoveRoute,
}

impl Routing {
    /// The facade's name for the change, for messages.
    pub fn verb(self) -> &'static str {
        match self {
            Self::Subscribe => "subscribe",
            Self::Unsubscribe => "unsubscribe",
            Self::SetRoute => "setRoute",
            Self::RemoveRoute => "removeRoute",
        }
    }
}

pub struct AppCore {
    pub link: Arc<Link>,
    notifications: Arc<Mutex<Notifications>>,
    /// Sessions handed to JavaScript, closed with the app.
    sessions: parking_lot::Mutex<Vec<Weak<SessionCore>>>,
    statuses: Statuses,
}

fn service_id(app: &ProtoName) -> Result<ID> {
    let kind = Kind::new(KIND).map_err(|e| Error::new(Code::Internal, e.to_string()))?;
    // IDs allow a restricted alphabet: derive one from the app name.
    let cleaned: String = name::base(app)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    ID::new_with_name(kind, &cleaned).map_err(|e| Error::new(Code::Internal, e.to_string()))
}

impl AppCore {
    /// Creates an app named `name` (without an id: SLIM derives it from the identity).
    pub async fn create(
        name: &str,
        identity: &IdentityOptions,
        direction: Direction,
        persistence: Option<PersistenceConfig>,
    ) -> Result<Arc<Self>> {
        let base = name::parse(name)?;
        if base.has_id() {
            return Err(Error::invalid_argument(
                "an app name cannot carry an id: SLIM derives it from the identity",
            ));
        }
        let identity = Identity::build(&name::base(&base), identity).await?;
        peer::default_unless_set();
        let service = Service::new(service_id(&base)?);
        let (slim, notifications) = service
            .create_app_with_direction_and_persistence(
                &base,
                identity.provider,
                identity.verifier,
                direction.upstream(),
                persistence,
            )
            .map_err(Error::from)?;
        // The app's receive loop subscribes its own name when it starts, and upstream
        // panics if the app closes before that. A local subscribe is acknowledged by the
        // same loop, so once it resolves the loop is past that point.
        slim.subscribe(slim.app_name(), None).await.map_err(|e| {
            Error::new(
                Code::Internal,
                format!("the app did not start: {}", chain(&e)),
            )
        })?;
        let app = Arc::new(AppCore {
            link: Arc::new(Link::new(slim, service, identity.kind, direction)),
            notifications: Arc::new(Mutex::new(notifications)),
            sessions: parking_lot::Mutex::new(Vec::new()),
            statuses: Statuses::default(),
        });
        let weak = Arc::downgrade(&app);
        connection::watch(&app.link, move |event| {
            let app = weak.clone();
            async move {
                if let Some(app) = app.upgrade() {
                    app.on_connection_event(event).await;
                }
            }
        });
        Ok(app)
    }

    /// Sends the connections' statuses to `callback` from now on, keeping Node running
    /// until the app closes. Called on the JavaScript thread.
    pub fn watch_statuses(&self, env: &Env, callback: Callback<ConnectionStatus>) -> Result<()> {
        self.statuses.watch(env, callback, &self.link.closed)
    }

    async fn on_connection_event(&self, event: ConnectionEvent) {
        let connection = connection::connection_of(event);
        // Upstream reports every connection of the service; a connection the app
        // disconnected itself is no longer listed.
        let Some(url) = self.link.url_of(connection) else {
            return;
        };
        if let ConnectionEvent::Dropped { .. } = event {
            // A connection the app made since, which upstream gave the same id.
            if !self.link.gone_upstream(connection) {
                return;
            }
            self.connection_lost(connection, &connection::gave_up(&url))
                .await;
        }
        self.statuses.send(ConnectionStatus::of(event, &url));
    }

    /// Connects to a node and subscribes the app's name there; returns the connection's
    /// id. An app may connect to several nodes, each once.
    pub async fn connect(self: Arc<Self>, client: Client, limit: Limit) -> Result<u64> {
        let link = &self.link;
        let slim = link.slim()?;
        if let Some(lost) = link.lost_reason() {
            return Err(lost);
        }
        let url = client.endpoint.url().to_string();
        if let Some(connection) = link.connection_to(&url) {
            return Err(Error::new(
                Code::Connect,
                format!("the app is already connected to {url} (connection {connection})"),
            ));
        }
        let attempt = connection::connect_and_subscribe(link, &slim, &client);
        let (connection, node) = limit
            .run(attempt, &link.closed, "connect")
            .await
            .map_err(closed_as_app)?;
        link.add_connection(connection, &url);
        // Upstream may open the connection again after an outage, with Nagle back on.
        transport::keep_nagle_off(Sockets::ConnectedTo(node), link.closed.clone());
        Ok(connection)
    }

    /// Closes one connection (the oldest when none is named); the app stays open and
    /// can connect again.
    pub async fn disconnect(&self, connection: Option<u64>) -> Result<()> {
        let link = &self.link;
        let connection = link.connection_or(connection)?;
        link.slim()?;
        link.remove_connection(connection);
        // The node drops what this connection subscribed when it closes; unsubscribing
        // the app's name here would also drop it from the app's own table, and with it
        // what arrives over the other connections.
        link.service.disconnect(connection)?;
        Ok(())
    }

    /// Sends publishes that have no route through `connection` (the oldest by default);
    /// `None` clears the choice.
    pub fn set_default_gateway(&self, connection: Option<Option<u64>>) -> Result<()> {
        let slim = self.link.slim()?;
        match connection {
            Some(wanted) => Ok(slim.set_default_gateway(self.link.connection_or(wanted)?)?),
            None => {
                slim.clear_default_gateway();
                Ok(())
            }
        }
    }

    /// Reconnecting gave the connection up: when it was the app's last, its sessions end
    /// at once (nothing they sent can be acknowledged any more).
    async fn connection_lost(&self, connection: u64, reason: &Error) {
        if !self.link.mark_lost(connection, reason) {
            return;
        }
        let open = self.take_sessions();
        futures::future::join_all(open.iter().map(|session| session.end(&reason.message))).await;
    }

    /// The sessions still alive, which the app no longer tracks.
    fn take_sessions(&self) -> Vec<Arc<SessionCore>> {
        self.sessions
            .lock()
            .drain(..)
            .filter_map(|s| s.upgrade())
            .collect()
    }

    fn register(&self, session: &Arc<SessionCore>) {
        let mut sessions = self.sessions.lock();
        sessions.retain(|s| s.strong_count() > 0);
        sessions.push(Arc::downgrade(session));
    }

    /// Checks what `create_session` needs before it starts, so mistakes fail at once.
    pub fn prepare_session(&self, config: &mut SessionConfig) -> Result<()> {
        if config.session_type == ProtoSessionType::Multicast {
            moderator::announce(&mut config.metadata, &self.link.name);
        }
        self.link.identity.check_can_join_sessions()
    }

    /// Creates a session towards `destination`; resolves when it is established. A session
    /// given up on (timeout, abort, the app closing) is deleted again.
    pub async fn create_session(
        self: Arc<Self>,
        destination: ProtoName,
        config: SessionConfig,
        limit: Limit,
    ) -> Result<Arc<SessionCore>> {
        let link = &self.link;
        let slim = link.slim()?;
        link.connection()?;
        let point_to_point = config.session_type == ProtoSessionType::PointToPoint;
        let routed = async {
            if point_to_point {
                link.set_route(&destination).await?;
            }
            Ok(())
        };
        limit.run(routed, &link.closed, "create session").await?;
        let (context, handle) = slim
            .create_session(config, destination, None)
            .await
            .map_err(Error::from)?;
        drop(slim);
        let established = async { handle.await.map_err(Error::from) };
        let outcome = limit.run(established, &link.closed, "create session").await;
        if let Err(err) = outcome {
            if let Some(controller) = context.session().upgrade() {
                link.abandon_session(&controller);
            }
            // The app closing ends its sessions' setup too, whatever upstream said first.
            if link.closed.is_cancelled() {
                return Err(app_closed());
            }
            return Err(closed_as_app(err));
        }
        let session = SessionCore::start(context, link.clone())?;
        self.register(&session);
        Ok(session)
    }

    /// The sessions persisted by an earlier run of this app (same name and store),
    /// rebuilt over the current connection without a new invitation.
    pub async fn restore_sessions(self: Arc<Self>) -> Result<Vec<Arc<SessionCore>>> {
        let link = &self.link;
        let connection = link.connection()?;
        let contexts = link.slim()?.restore_sessions(connection).await?;
        let mut sessions = Vec::with_capacity(contexts.len());
        for context in contexts {
            let session = SessionCore::start(context, link.clone())?;
            self.register(&session);
            sessions.push(session);
        }
        Ok(sessions)
    }

    /// Claims the app's one listener; BUSY while another listen is pending. Claimed when
    /// the call is made, so concurrent calls fail in call order.
    pub fn listener(&self) -> Result<Listener> {
        self.notifications.clone().try_lock_owned().map_err(|_| {
            Error::new(
                Code::Busy,
                "the app already has a pending listenForSession; listen from one place at a time",
            )
        })
    }

    /// Waits for another app to invite this one into a session.
    pub async fn listen(
        self: Arc<Self>,
        mut listener: Listener,
        limit: Limit,
    ) -> Result<Arc<SessionCore>> {
        self.link.slim()?;
        let next_session = async {
            loop {
                match listener.recv().await {
                    Some(Ok(Notification::NewSession(context))) => return Ok(context),
                    // Messages and errors outside any session have no listener here.
                    Some(Ok(Notification::NewMessage(_))) | Some(Err(_)) => continue,
                    None => return Err(app_closed()),
                }
            }
        };
        let context = limit
            .run(next_session, &self.link.closed, "listenForSession")
            .await?;
        let session = SessionCore::start(context, self.link.clone())?;
        self.register(&session);
        Ok(session)
    }

    /// Subscribes, unsubscribes, sets or removes a route for `target` on the node.
    pub async fn change_routing(
        self: Arc<Self>,
        change: Routing,
        target: ProtoName,
        connection: Option<u64>,
    ) -> Result<()> {
        let link = &self.link;
        let connection = link.connection_or(connection)?;
        let slim = link.slim()?;
        match change {
            Routing::Subscribe => slim.subscribe(&target, Some(connection)).await?,
            // Subscriptions are recorded under this app's id; unsubscribe the same name.
            Routing::Unsubscribe => {
                let target = target.with_id(link.name.id());
                slim.unsubscribe(&target, Some(connection)).await?
            }
            Routing::SetRoute => slim.set_route(&target, connection).await?,
            Routing::RemoveRoute => slim.remove_route(&target, connection).await?,
        }
        Ok(())
    }

    /// Closes every session, disconnects and releases the app. Idempotent.
    pub async fn close(&self) {
        let link = &self.link;
        if link.closed.is_cancelled() {
            return;
        }
        let open = self.take_sessions();
        futures::future::join_all(open.iter().map(|session| session.close())).await;
        link.closed.cancel();
        self.statuses.release();
        let Some(slim) = link.take_slim() else {
            return;
        };
        // Sessions that arrived but were never listened for: nobody waits on them.
        drop(slim.clear_all_sessions());
        for connection in link.take_connections() {
            let _ = slim.unsubscribe(&link.name, Some(connection)).await;
            let _ = link.service.disconnect(connection);
        }
        drop(slim);
        let _ = link.service.shutdown().await;
    }
}
