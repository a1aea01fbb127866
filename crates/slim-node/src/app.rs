//! Apps: a named SLIM endpoint with an identity, connected to one node.

use std::sync::{Arc, Weak};
use std::time::Duration;

use napi::Env;
use napi::bindgen_prelude::PromiseRaw;
use napi_derive::napi;
use parking_lot::RwLock;
use slim_auth::auth_provider::{AuthProvider, AuthVerifier};
use slim_config::client::ClientConfig;
use slim_config::component::id::{ID, Kind};
use slim_datapath::api::ProtoName;
use slim_service::{KIND, Service};
use slim_session::notification::Notification;
use slim_session::session_controller::SessionController;
use slim_session::{CompletionHandle, SessionError};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::cancel::{CancelToken, token_of};
use crate::connection;
use crate::errors::{Code, Error, Result, chain};
use crate::identity::{Identity, IdentityKind, IdentityOptions};
use crate::name;
use crate::runtime::{bounded, millis, spawn};
use crate::session::{Session, SessionCore, SessionOptions};
use crate::tls::{self, TlsOptions};
use slim_node_tcp::{self as transport, Sockets};

type SlimApp = slim_service::app::App<AuthProvider, AuthVerifier>;
type Notifications = mpsc::Receiver<std::result::Result<Notification, SessionError>>;

/// How long a connection attempt may take before it fails with CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Creates an app.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct AppOptions {
    /// The app's name, `org/ns/app`.
    pub name: String,
    pub identity: IdentityOptions,
}

/// Where and how to reach a SLIM node.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The node URL, e.g. `http://127.0.0.1:46357`.
    pub endpoint: String,
    pub tls: Option<TlsOptions>,
}

/// State shared by an app and its sessions.
pub struct AppCore {
    name: ProtoName,
    pub identity: IdentityKind,
    slim: RwLock<Option<Arc<SlimApp>>>,
    service: Service,
    connection: RwLock<Option<u64>>,
    notifications: Arc<Mutex<Notifications>>,
    /// Sessions handed to JavaScript, closed with the app.
    sessions: parking_lot::Mutex<Vec<Weak<SessionCore>>>,
    pub closed: CancellationToken,
    /// Cancelled when upstream gave the connection up; `lost_because` says why.
    lost: CancellationToken,
    lost_because: parking_lot::Mutex<Option<Error>>,
}

fn app_closed() -> Error {
    Error::new(Code::Closed, "the app is closed")
}

impl AppCore {
    fn slim(&self) -> Result<Arc<SlimApp>> {
        self.slim.read().clone().ok_or_else(app_closed)
    }

    fn connection(&self) -> Result<u64> {
        self.slim()?;
        if let Some(lost) = self.lost_because.lock().clone() {
            return Err(lost);
        }
        self.connection.read().ok_or_else(|| {
            Error::new(
                Code::Connect,
                "the app is not connected to a SLIM node; call connect() first",
            )
        })
    }

    pub fn connection_state(&self, connection: u64) -> connection::State {
        if self.closed.is_cancelled() || *self.connection.read() != Some(connection) {
            connection::State::Replaced
        } else if self
            .service
            .message_processor()
            .connection_table()
            .get(connection)
            .is_none()
        {
            connection::State::GivenUp
        } else {
            connection::State::Up
        }
    }

    /// Upstream gave the connection up: sessions end at once (nothing they sent can be
    /// acknowledged any more) and the app reports it.
    pub async fn connection_lost(&self, connection: u64) {
        {
            let mut current = self.connection.write();
            if *current != Some(connection) {
                return;
            }
            current.take();
        }
        *self.lost_because.lock() = Some(Error::new(
            Code::Connect,
            "the connection to the SLIM node was lost and SLIM stopped reconnecting; \
             create the app again",
        ));
        self.lost.cancel();
        let open = self.take_sessions();
        let reason = "the app's connection to the SLIM node was lost";
        futures::future::join_all(open.iter().map(|session| session.end(reason))).await;
    }

    /// The sessions still alive, which the app no longer tracks.
    fn take_sessions(&self) -> Vec<Arc<SessionCore>> {
        self.sessions
            .lock()
            .drain(..)
            .filter_map(|s| s.upgrade())
            .collect()
    }

    pub async fn set_route(&self, target: &ProtoName) -> Result<()> {
        let connection = self.connection()?;
        Ok(self.slim()?.set_route(target, connection).await?)
    }

    pub fn delete_session(&self, session: &SessionController) -> Result<CompletionHandle> {
        Ok(self.slim()?.delete_session(session)?)
    }

    pub fn register(&self, session: &Arc<SessionCore>) {
        let mut sessions = self.sessions.lock();
        sessions.retain(|s| s.strong_count() > 0);
        sessions.push(Arc::downgrade(session));
    }

    async fn close(&self) {
        if self.closed.is_cancelled() {
            return;
        }
        let open = self.take_sessions();
        futures::future::join_all(open.iter().map(|session| session.close())).await;
        self.closed.cancel();
        let Some(slim) = self.slim.write().take() else {
            return;
        };
        // Sessions that arrived but were never listened for: nobody waits on them.
        drop(slim.clear_all_sessions());
        let connection = self.connection.write().take();
        if let Some(connection) = connection {
            let _ = slim.unsubscribe(&self.name, Some(connection)).await;
            let _ = self.service.disconnect(connection);
        }
        drop(slim);
        let _ = self.service.shutdown().await;
    }
}

/// A wait that the app's closing interrupted reports the app as closed.
fn closed_as_app(err: Error) -> Error {
    if err.code == Code::Closed {
        app_closed()
    } else {
        err
    }
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
/// the app's name on the new connection.
async fn connect_and_subscribe(
    core: &AppCore,
    slim: &SlimApp,
    config: &ClientConfig,
    endpoint: &str,
) -> Result<u64> {
    probe(config).await?;
    let attempt = async {
        core.service.connect(config).await.map_err(|e| {
            Error::new(
                Code::Connect,
                format!("cannot connect to {endpoint}: {}", chain(&e)),
            )
        })
    };
    let never = CancellationToken::new();
    let connection = bounded(attempt, Some(CONNECT_TIMEOUT), &never, None, "connect")
        .await
        .map_err(|e| match e.code {
            Code::Timeout => Error::new(
                Code::Connect,
                format!("cannot connect to {endpoint}: {}", e.message),
            ),
            _ => e,
        })?;
    let pending = Pending {
        service: &core.service,
        connection: Some(connection),
    };
    slim.subscribe(&core.name, Some(connection))
        .await
        .map_err(|err| {
            Error::new(
                Code::Connect,
                format!(
                    "connected to {endpoint} but could not subscribe: {}",
                    chain(&err)
                ),
            )
        })?;
    Ok(pending.keep())
}

pub(crate) fn client_config(options: &ConnectOptions) -> Result<ClientConfig> {
    let endpoint = options.endpoint.trim();
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(Error::invalid_argument(format!(
            "endpoint {endpoint:?} must be an http:// or https:// URL, e.g. http://127.0.0.1:46357"
        )));
    }
    match endpoint.parse::<http::Uri>() {
        Ok(uri) if uri.host().is_some_and(|host| !host.is_empty()) => {}
        Ok(_) => {
            return Err(Error::invalid_argument(format!(
                "endpoint {endpoint:?} has no host"
            )));
        }
        Err(err) => {
            return Err(Error::invalid_argument(format!(
                "endpoint {endpoint:?} is not a valid URL: {err}"
            )));
        }
    }
    let port =
        socket_address(endpoint).and_then(|address| Some(address.rsplit_once(':')?.1.to_string()));
    if port.is_some_and(|port| port.parse::<u16>().is_err()) {
        return Err(Error::invalid_argument(format!(
            "endpoint {endpoint:?} has a port outside 0-65535"
        )));
    }
    let tls = tls::client(options.tls.as_ref(), endpoint)?;
    Ok(ClientConfig::with_endpoint(endpoint)
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_tls_setting(tls))
}

pub(crate) fn socket_address(endpoint: &str) -> Option<String> {
    let (scheme, rest) = endpoint.split_once("://")?;
    let authority = rest.split('/').next()?;
    if authority.is_empty() {
        return None;
    }
    let has_port = authority.rsplit_once(':').is_some_and(|(host, port)| {
        !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && (!host.contains(':') || host.ends_with(']'))
    });
    if has_port {
        return Some(authority.to_string());
    }
    let port = if scheme == "https" { 443 } else { 80 };
    Some(format!("{authority}:{port}"))
}

/// Upstream retries a refused connection or a failed TLS handshake for as long as its
/// reconnect policy allows; probe once so those failures are reported at once.
pub(crate) async fn probe(config: &ClientConfig) -> Result<()> {
    let endpoint = config.endpoint.as_str();
    let address = socket_address(endpoint)
        .ok_or_else(|| Error::invalid_argument(format!("endpoint {endpoint:?} has no host")))?;
    let stream =
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&address)).await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                return Err(Error::new(
                    Code::Connect,
                    format!("cannot connect to {endpoint}: {err}"),
                ));
            }
            Err(_) => {
                return Err(Error::new(
                    Code::Connect,
                    format!("cannot connect to {endpoint}: no answer within {CONNECT_TIMEOUT:?}"),
                ));
            }
        };
    let host = address
        .rsplit_once(':')
        .map_or(address.as_str(), |(host, _)| host);
    tls::check_handshake(&config.tls_setting, host, stream, endpoint).await
}

/// SLIM signs every session control message with a key bound to the app's identity;
/// a JWT read from a file carries none (upstream's peers drop its control messages, and
/// its MLS code panics). Refuse before anything starts.
pub fn check_session_identity(kind: IdentityKind) -> Result<()> {
    if kind == IdentityKind::PresentedJwt {
        return Err(Error::new(
            Code::Auth,
            "sessions need an identity that can sign: a presented jwt file cannot with SLIM core 3.x; use jwtSigningKey or sharedSecret",
        ));
    }
    Ok(())
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

/// A SLIM application.
#[napi]
pub struct App {
    core: Arc<AppCore>,
}

/// Creates an app with its identity. It can create sessions once connected.
#[napi(catch_unwind)]
pub async fn create_app(options: AppOptions) -> napi::Result<App> {
    crate::tracing::install(None)?;
    let base = name::parse(&options.name)?;
    if base.has_id() {
        return Err(Error::invalid_argument(
            "an app name cannot carry an id: SLIM derives it from the identity",
        )
        .into());
    }
    let identity = Identity::build(&name::base(&base), &options.identity).await?;
    let kind = identity.kind;
    let service = Service::new(service_id(&base)?);
    let (slim, notifications) = service
        .create_app(&base, identity.provider, identity.verifier)
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
    let core = AppCore {
        name: slim.app_name().clone(),
        identity: kind,
        slim: RwLock::new(Some(Arc::new(slim))),
        service,
        connection: RwLock::new(None),
        notifications: Arc::new(Mutex::new(notifications)),
        sessions: parking_lot::Mutex::new(Vec::new()),
        closed: CancellationToken::new(),
        lost: CancellationToken::new(),
        lost_because: parking_lot::Mutex::new(None),
    };
    Ok(App {
        core: Arc::new(core),
    })
}

#[napi]
impl App {
    /// The app's name, `org/ns/app`.
    #[napi(getter)]
    pub fn name(&self) -> String {
        name::base(&self.core.name)
    }

    /// The app instance's 128-bit id (a UUID), derived from its identity.
    #[napi(getter)]
    pub fn id(&self) -> String {
        name::id(&self.core.name).unwrap_or_default()
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.core.closed.is_cancelled()
    }

    /// Resolves with the reason (`[CONNECT] …`) if SLIM gives the app's connection up;
    /// rejects with CLOSED when the app closes first.
    #[napi(ts_return_type = "Promise<string>", catch_unwind)]
    pub fn connection_lost<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, String>> {
        let core = self.core.clone();
        env.spawn_future(async move {
            let lost = async {
                core.lost.cancelled().await;
                Ok(core.lost_because.lock().clone())
            };
            let reason = bounded(lost, None, &core.closed, None, "watching the connection").await?;
            Ok(reason.map(|err| err.to_reason()).unwrap_or_default())
        })
    }

    /// Connects to a SLIM node and subscribes the app's name there, within `timeout`
    /// milliseconds (each attempt also gives up after 10 s) unless cancelled first.
    #[napi(ts_return_type = "Promise<void>", catch_unwind)]
    pub fn connect<'env>(
        &self,
        env: &'env Env,
        options: ConnectOptions,
        timeout: Option<f64>,
        cancel: Option<&CancelToken>,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let timeout = millis(timeout, "timeout")?;
        let abort = token_of(cancel);
        let config = client_config(&options)?;
        let core = self.core.clone();
        env.spawn_future(async move {
            let slim = core.slim()?;
            if let Some(lost) = core.lost_because.lock().clone() {
                return Err(lost.into());
            }
            if core.connection.read().is_some() {
                return Err(Error::new(Code::Connect, "the app is already connected").into());
            }
            let attempt = connect_and_subscribe(&core, &slim, &config, &options.endpoint);
            let connection = bounded(attempt, timeout, &core.closed, abort.as_ref(), "connect")
                .await
                .map_err(closed_as_app)?;
            *core.connection.write() = Some(connection);
            connection::watch(Arc::downgrade(&core), connection, core.closed.clone());
            if let Some(address) = socket_address(config.endpoint.as_str()) {
                let node = transport::resolve(&address).await;
                transport::keep_nagle_off(Sockets::ConnectedTo(node), core.closed.clone());
            }
            Ok(())
        })
    }

    /// Receives messages sent to `name` as well as to the app's own name.
    #[napi(catch_unwind)]
    pub async fn subscribe(&self, name: String) -> napi::Result<()> {
        let target = name::parse(&name)?;
        let connection = self.core.connection()?;
        Ok(self
            .core
            .slim()?
            .subscribe(&target, Some(connection))
            .await
            .map_err(Error::from)?)
    }

    #[napi(catch_unwind)]
    pub async fn unsubscribe(&self, name: String) -> napi::Result<()> {
        // Subscriptions are recorded under this app's id; unsubscribe the same name.
        let target = name::parse(&name)?.with_id(self.core.name.id());
        let connection = self.core.connection()?;
        Ok(self
            .core
            .slim()?
            .unsubscribe(&target, Some(connection))
            .await
            .map_err(Error::from)?)
    }

    /// Routes traffic for `name` through the node this app is connected to.
    #[napi(catch_unwind)]
    pub async fn set_route(&self, name: String) -> napi::Result<()> {
        let target = name::parse(&name)?;
        Ok(self.core.set_route(&target).await?)
    }

    #[napi(catch_unwind)]
    pub async fn remove_route(&self, name: String) -> napi::Result<()> {
        let target = name::parse(&name)?;
        let connection = self.core.connection()?;
        Ok(self
            .core
            .slim()?
            .remove_route(&target, connection)
            .await
            .map_err(Error::from)?)
    }

    /// Creates a session towards `destination`: a group channel, or the peer of a
    /// point-to-point session. Resolves when the session is established; a session
    /// given up on (timeout, abort) is deleted again.
    #[napi(ts_return_type = "Promise<Session>", catch_unwind)]
    pub fn create_session<'env>(
        &self,
        env: &'env Env,
        destination: String,
        options: Option<SessionOptions>,
        timeout: Option<f64>,
        cancel: Option<&CancelToken>,
    ) -> napi::Result<PromiseRaw<'env, Session>> {
        let destination = name::parse(&destination)?;
        let mut config = options.unwrap_or_default().to_config()?;
        let timeout = millis(timeout, "timeout")?;
        let abort = token_of(cancel);
        let core = self.core.clone();
        if config.session_type == slim_datapath::api::ProtoSessionType::Multicast {
            crate::moderator::announce(&mut config.metadata, &core.name);
        }
        check_session_identity(core.identity)?;
        env.spawn_future(async move {
            let slim = core.slim()?;
            core.connection()?;
            let point_to_point =
                config.session_type == slim_datapath::api::ProtoSessionType::PointToPoint;
            let routed = async {
                if point_to_point {
                    core.set_route(&destination).await?;
                }
                Ok(())
            };
            bounded(
                routed,
                timeout,
                &core.closed,
                abort.as_ref(),
                "create session",
            )
            .await?;
            let (context, handle) = slim
                .create_session(config, destination, None)
                .await
                .map_err(Error::from)?;
            drop(slim);
            let established = async { handle.await.map_err(Error::from) };
            let outcome = bounded(
                established,
                timeout,
                &core.closed,
                abort.as_ref(),
                "create session",
            )
            .await;
            if let Err(err) = outcome {
                if let Some(controller) = context.session().upgrade()
                    && let Ok(deleted) = core.delete_session(&controller)
                {
                    spawn(async move {
                        let _ = deleted.await;
                    });
                }
                return Err(closed_as_app(err).into());
            }
            Ok(Session::from_context(context, core)?)
        })
    }

    /// Waits for another app to invite this one into a session.
    #[napi(ts_return_type = "Promise<Session>", catch_unwind)]
    pub fn listen_for_session<'env>(
        &self,
        env: &'env Env,
        timeout: Option<f64>,
        cancel: Option<&CancelToken>,
    ) -> napi::Result<PromiseRaw<'env, Session>> {
        let timeout = millis(timeout, "timeout")?;
        let abort = token_of(cancel);
        let core = self.core.clone();
        // Claimed before the future starts, so concurrent calls fail in call order.
        let mut notifications = core.notifications.clone().try_lock_owned().map_err(|_| {
            Error::new(
                Code::Busy,
                "the app already has a pending listenForSession; listen from one place at a time",
            )
        })?;
        env.spawn_future(async move {
            core.slim()?;
            let next_session = async {
                loop {
                    match notifications.recv().await {
                        Some(Ok(Notification::NewSession(context))) => return Ok(context),
                        // Messages and errors outside any session have no listener here.
                        Some(Ok(Notification::NewMessage(_))) | Some(Err(_)) => continue,
                        None => return Err(app_closed()),
                    }
                }
            };
            let context = bounded(
                next_session,
                timeout,
                &core.closed,
                abort.as_ref(),
                "listenForSession",
            )
            .await?;
            Ok(Session::from_context(context, core.clone())?)
        })
    }

    /// Closes every session, disconnects and releases the app. Idempotent.
    #[napi(catch_unwind)]
    pub async fn close(&self) -> napi::Result<()> {
        self.core.close().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_from_urls() {
        assert_eq!(
            socket_address("http://127.0.0.1:46357").as_deref(),
            Some("127.0.0.1:46357")
        );
        assert_eq!(
            socket_address("https://slim.example/x").as_deref(),
            Some("slim.example:443")
        );
        assert_eq!(
            socket_address("http://[::1]:9000/").as_deref(),
            Some("[::1]:9000")
        );
        assert_eq!(socket_address("http://[::1]").as_deref(), Some("[::1]:80"));
        assert_eq!(socket_address("127.0.0.1:1"), None);
        assert_eq!(socket_address("http://"), None);
    }

    #[test]
    fn endpoints_need_an_http_scheme() {
        let options = |endpoint: &str| ConnectOptions {
            endpoint: endpoint.into(),
            tls: None,
        };
        assert!(client_config(&options("127.0.0.1:46357")).is_err());
        assert!(client_config(&options("http://127.0.0.1:99999")).is_err());
        let config = client_config(&options("http://127.0.0.1:46357")).unwrap();
        assert!(config.tls_setting.insecure);
        assert!(
            !client_config(&options("https://node:443"))
                .unwrap()
                .tls_setting
                .insecure
        );
    }
}
