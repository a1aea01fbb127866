//! What an app and its sessions share: the upstream app, its connection to the node and
//! the app's closing. Sessions reach SLIM only through this, never through the app.

use std::sync::Arc;

use napi_derive::napi;
use parking_lot::{Mutex, RwLock};
use slim_auth::auth_provider::{AuthProvider, AuthVerifier};
use slim_datapath::api::ProtoName;
use slim_service::Service;
use slim_session::CompletionHandle;
use slim_session::session_controller::SessionController;
use tokio_util::sync::CancellationToken;

use crate::errors::{Code, Error, Result};
use crate::identity::IdentityKind;

/// Which data messages an app takes part in; control messages (joining, leaving,
/// acknowledgements) flow either way.
///
/// @example
/// ```ts
/// const sensor = await createApp({ name: 'agntcy/ns/sensor', identity, direction: 'send' })
/// ```
/// @group Apps
#[napi(string_enum = "lowercase")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Direction {
    /// Sends data messages and receives none.
    Send,
    /// Receives data messages and sends none.
    Receive,
    /// Sends and receives (the default).
    #[default]
    Bidirectional,
    /// Neither: the app only manages sessions (a moderator that relays nothing, say).
    None,
}

impl Direction {
    pub fn sends(self) -> bool {
        matches!(self, Direction::Send | Direction::Bidirectional)
    }

    pub fn upstream(self) -> slim_session::Direction {
        match self {
            Direction::Send => slim_session::Direction::Send,
            Direction::Receive => slim_session::Direction::Recv,
            Direction::Bidirectional => slim_session::Direction::Bidirectional,
            Direction::None => slim_session::Direction::None,
        }
    }
}

pub type SlimApp = slim_service::app::App<AuthProvider, AuthVerifier>;

pub struct Link {
    pub name: ProtoName,
    pub identity: IdentityKind,
    pub direction: Direction,
    pub service: Service,
    slim: RwLock<Option<Arc<SlimApp>>>,
    /// The app's connections, oldest first, with the URL each one reached; the oldest
    /// is where names and routes go unless the caller picks another.
    connections: RwLock<Vec<(u64, String)>>,
    /// Cancelled when the app closes; every wait of the app and its sessions ends then.
    pub closed: CancellationToken,
    /// Why the app can no longer be used, once reconnecting its last connection gave up.
    lost_because: Mutex<Option<Error>>,
}

pub fn app_closed() -> Error {
    Error::new(Code::Closed, "the app is closed")
}

/// A wait that the app's closing interrupted reports the app as closed.
pub fn closed_as_app(err: Error) -> Error {
    if err.code == Code::Closed {
        app_closed()
    } else {
        err
    }
}

impl Link {
    pub fn new(
        slim: SlimApp,
        service: Service,
        identity: IdentityKind,
        direction: Direction,
    ) -> Self {
        Self {
            name: slim.app_name().clone(),
            identity,
            direction,
            service,
            slim: RwLock::new(Some(Arc::new(slim))),
            connections: RwLock::new(Vec::new()),
            closed: CancellationToken::new(),
            lost_because: Mutex::new(None),
        }
    }

    pub fn slim(&self) -> Result<Arc<SlimApp>> {
        self.slim.read().clone().ok_or_else(app_closed)
    }

    /// The upstream app, taken when the app closes.
    pub fn take_slim(&self) -> Option<Arc<SlimApp>> {
        self.slim.write().take()
    }

    /// The app's oldest connection, or why there is none.
    pub fn connection(&self) -> Result<u64> {
        self.connection_or(None)
    }

    /// `wanted` when it is one of the app's connections, else the oldest one.
    pub fn connection_or(&self, wanted: Option<u64>) -> Result<u64> {
        self.slim()?;
        if let Some(lost) = self.lost_reason() {
            return Err(lost);
        }
        let connections = self.connections.read();
        match wanted {
            Some(id) if connections.iter().any(|(c, _)| *c == id) => Ok(id),
            Some(id) => Err(Error::invalid_argument(format!(
                "connection {id} is not one of this app's connections"
            ))),
            None => connections.first().map(|(c, _)| *c).ok_or_else(|| {
                Error::new(
                    Code::Connect,
                    "the app is not connected to a SLIM node; call connect() first",
                )
            }),
        }
    }

    /// The connection to `url`, if the app has one.
    pub fn connection_to(&self, url: &str) -> Option<u64> {
        let connections = self.connections.read();
        connections
            .iter()
            .find(|(_, to)| to == url)
            .map(|(c, _)| *c)
    }

    pub fn connection_ids(&self) -> Vec<u64> {
        self.connections.read().iter().map(|(c, _)| *c).collect()
    }

    pub fn add_connection(&self, connection: u64, url: &str) {
        self.connections.write().push((connection, url.to_string()));
    }

    /// Forgets `connection`; false when it was not the app's.
    pub fn remove_connection(&self, connection: u64) -> bool {
        let mut connections = self.connections.write();
        let before = connections.len();
        connections.retain(|(c, _)| *c != connection);
        connections.len() < before
    }

    pub fn take_connections(&self) -> Vec<u64> {
        self.connections.write().drain(..).map(|(c, _)| c).collect()
    }

    pub fn lost_reason(&self) -> Option<Error> {
        self.lost_because.lock().clone()
    }

    /// Whether upstream no longer has `connection` (a later one may reuse its id).
    pub fn gone_upstream(&self, connection: u64) -> bool {
        let table = self.service.message_processor().connection_table();
        table.get(connection).is_none()
    }

    /// The app's connections that upstream no longer has.
    pub fn connections_gone_upstream(&self) -> Vec<u64> {
        let ids = self.connection_ids();
        ids.into_iter().filter(|c| self.gone_upstream(*c)).collect()
    }

    /// The URL `connection` reached, while it is one of the app's.
    pub fn url_of(&self, connection: u64) -> Option<String> {
        let connections = self.connections.read();
        connections
            .iter()
            .find(|(c, _)| *c == connection)
            .map(|(_, url)| url.clone())
    }

    /// Records that reconnecting `connection` gave up; true when it was the app's last
    /// one, which leaves the app unusable.
    pub fn mark_lost(&self, connection: u64, reason: &Error) -> bool {
        if !self.remove_connection(connection) || !self.connections.read().is_empty() {
            return false;
        }
        *self.lost_because.lock() = Some(Error::new(
            reason.code,
            format!("{}; create the app again", reason.message),
        ));
        true
    }

    pub async fn set_route(&self, target: &ProtoName) -> Result<()> {
        let connection = self.connection()?;
        Ok(self.slim()?.set_route(target, connection).await?)
    }

    pub fn delete_session(&self, session: &SessionController) -> Result<CompletionHandle> {
        Ok(self.slim()?.delete_session(session)?)
    }

    /// Deletes a session nobody will use, without waiting for upstream's teardown.
    pub fn abandon_session(&self, session: &SessionController) {
        if let Ok(handle) = self.delete_session(session) {
            crate::runtime::spawn(async move {
                let _ = handle.await;
            });
        }
    }
}
