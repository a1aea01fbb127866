//! The `App` class and `createApp`.

use std::sync::Arc;

use napi::Env;
use napi::bindgen_prelude::PromiseRaw;
use napi_derive::napi;

use crate::api::session::Session;
use crate::app::{AppCore, Routing};
use crate::client::{Client, ConnectOptions};
use crate::connection::ConnectionStatus;
use crate::delivery::Callback;
use crate::errors::{Error, js};
use crate::identity::IdentityOptions;
use crate::link::Direction;
use crate::name;
use crate::runtime::{promise, whole_number};
use crate::session::options::SessionOptions;
use crate::wait::{Wait, detached_promise, limit_of};
use slim_persistence::{MlsEncryptionKey, PersistenceConfig};

/// Creates an app.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct AppOptions {
    /// The app's name, `org/ns/app`.
    pub name: String,
    /// How the app proves who it is and checks its peers.
    pub identity: IdentityOptions,
    /// Keep the app's group sessions (MLS state included) in an encrypted store, so that
    /// a restarted app can `restoreSessions()`.
    pub persistence: Option<PersistenceOptions>,
    /// Which data messages the app sends and receives (default both).
    #[napi(ts_type = "`${Direction}`")]
    pub direction: Option<Direction>,
}

/// Where an app keeps its sessions across restarts.
///
/// @example
/// ```ts
/// const persistence: PersistenceOptions = { path: '/var/lib/chat', passphrase: process.env.STORE_KEY }
/// const app = await createApp({ name: 'agntcy/ns/alice', identity, persistence })
/// ```
/// @group Options
#[napi(object)]
#[derive(Debug, Clone)]
pub struct PersistenceOptions {
    /// A directory for the store (one encrypted database per app name).
    pub path: String,
    /// The key the store is encrypted with. Without one the key derives from the app's
    /// public name: the store is tamper-evident but anyone can read it.
    pub passphrase: Option<String>,
}

impl PersistenceOptions {
    fn to_config(&self) -> js::Result<PersistenceConfig> {
        if self.path.is_empty() {
            return Err(Error::invalid_argument("persistence.path must not be empty").into());
        }
        Ok(match &self.passphrase {
            Some(passphrase) if passphrase.is_empty() => {
                return Err(Error::invalid_argument(
                    "persistence.passphrase must not be empty; leave it out for a store without confidentiality",
                )
                .into());
            }
            Some(passphrase) => PersistenceConfig::with_key(
                &self.path,
                MlsEncryptionKey::Passphrase(passphrase.clone()),
            ),
            None => PersistenceConfig::new(&self.path),
        })
    }
}

/// A SLIM application.
#[napi]
pub struct App {
    core: Arc<AppCore>,
}

/// Creates an app with its identity. It can create sessions once connected.
#[napi(ts_return_type = "Promise<App>", catch_unwind)]
pub fn create_app(env: &Env, options: AppOptions) -> js::Result<PromiseRaw<'_, App>> {
    let persistence = options
        .persistence
        .as_ref()
        .map(PersistenceOptions::to_config)
        .transpose()?;
    promise(env, async move {
        crate::tracing::install(None)?;
        let direction = options.direction.unwrap_or_default();
        let core =
            AppCore::create(&options.name, &options.identity, direction, persistence).await?;
        Ok(App { core })
    })
}

impl App {
    pub fn core(&self) -> &Arc<AppCore> {
        &self.core
    }

    fn change_routing<'env>(
        &self,
        env: &'env Env,
        change: Routing,
        name: &str,
        connection: Option<f64>,
        wait: Option<&Wait>,
    ) -> js::Result<PromiseRaw<'env, ()>> {
        let target = name::parse(name)?;
        let connection = connection_id(connection)?;
        let changed = self.core.clone().change_routing(change, target, connection);
        detached_promise(env, wait, change.verb(), changed)
    }
}

/// A connection id from JavaScript (the number `connect` resolved with).
pub fn connection_id(value: Option<f64>) -> js::Result<Option<u64>> {
    Ok(whole_number(value, "connection")?.map(u64::from))
}

#[napi]
impl App {
    /// The app's name, `org/ns/app`.
    #[napi(getter)]
    pub fn name(&self) -> String {
        name::base(&self.core.link.name)
    }

    /// The app instance's 128-bit id (a UUID), derived from its identity.
    #[napi(getter)]
    pub fn id(&self) -> String {
        name::id(&self.core.link.name).unwrap_or_default()
    }

    /// Whether the app has been closed.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.core.link.closed.is_cancelled()
    }

    /// Sends what happens to the app's connections to `callback`, which keeps Node
    /// running until the app closes, as a connection would. Called once, by the facade,
    /// when the app first connected.
    #[napi(
        catch_unwind,
        ts_args_type = "callback: (status: ConnectionStatus) => void"
    )]
    pub fn watch_statuses(
        &self,
        env: &Env,
        callback: Callback<ConnectionStatus>,
    ) -> js::Result<()> {
        Ok(self.core.watch_statuses(env, callback)?)
    }

    /// Connects to a SLIM node and subscribes the app's name there, within `timeout`
    /// milliseconds (each attempt also gives up after 10 s) unless cancelled first.
    /// Resolves with the connection's id.
    #[napi(ts_return_type = "Promise<number>", catch_unwind)]
    pub fn connect<'env>(
        &self,
        env: &'env Env,
        options: ConnectOptions,
        wait: Option<&Wait>,
    ) -> js::Result<PromiseRaw<'env, i64>> {
        let client = Client::new(&options)?;
        let core = self.core.clone();
        let limit = limit_of(wait);
        promise(env, async move {
            let connection = core.connect(client, limit).await?;
            Ok(connection as i64)
        })
    }

    /// The ids of the app's connections, oldest first; names and routes go through the
    /// oldest unless a call names another.
    #[napi(getter)]
    pub fn connections(&self) -> Vec<i64> {
        let ids = self.core.link.connection_ids();
        ids.into_iter().map(|id| id as i64).collect()
    }

    /// Closes one connection (the oldest when none is named); the app stays open.
    #[napi(ts_return_type = "Promise<void>", catch_unwind)]
    pub fn disconnect<'env>(
        &self,
        env: &'env Env,
        connection: Option<f64>,
        wait: Option<&Wait>,
    ) -> js::Result<PromiseRaw<'env, ()>> {
        let connection = connection_id(connection)?;
        let core = self.core.clone();
        detached_promise(env, wait, "disconnect", async move {
            core.disconnect(connection).await
        })
    }

    /// Sends publishes that have no route through `connection` (default: the oldest).
    #[napi(catch_unwind)]
    pub fn set_default_gateway(&self, connection: Option<f64>) -> js::Result<()> {
        Ok(self
            .core
            .set_default_gateway(Some(connection_id(connection)?))?)
    }

    /// Undoes `setDefaultGateway`.
    #[napi(catch_unwind)]
    pub fn clear_default_gateway(&self) -> js::Result<()> {
        Ok(self.core.set_default_gateway(None)?)
    }

    /// Receives messages sent to `name` as well as to the app's own name.
    #[napi(ts_return_type = "Promise<void>", catch_unwind)]
    pub fn subscribe<'env>(
        &self,
        env: &'env Env,
        name: String,
        connection: Option<f64>,
        wait: Option<&Wait>,
    ) -> js::Result<PromiseRaw<'env, ()>> {
        self.change_routing(env, Routing::Subscribe, &name, connection, wait)
    }

    /// Stops receiving messages sent to `name`.
    #[napi(ts_return_type = "Promise<void>", catch_unwind)]
    pub fn unsubscribe<'env>(
        &self,
        env: &'env Env,
        name: String,
        connection: Option<f64>,
        wait: Option<&Wait>,
    ) -> js::Result<PromiseRaw<'env, ()>> {
        self.change_routing(env, Routing::Unsubscribe, &name, connection, wait)
    }

    /// Routes traffic for `name` through the node this app is connected to.
    #[napi(ts_return_type = "Promise<void>", catch_unwind)]
    pub fn set_route<'env>(
        &self,
        env: &'env Env,
        name: String,
        connection: Option<f64>,
        wait: Option<&Wait>,
    ) -> js::Result<PromiseRaw<'env, ()>> {
        self.change_routing(env, Routing::SetRoute, &name, connection, wait)
    }

    /// Removes a route set with `setRoute`.
    #[napi(ts_return_type = "Promise<void>", catch_unwind)]
    pub fn remove_route<'env>(
        &self,
        env: &'env Env,
        name: String,
        connection: Option<f64>,
        wait: Option<&Wait>,
    ) -> js::Result<PromiseRaw<'env, ()>> {
        self.change_routing(env, Routing::RemoveRoute, &name, connection, wait)
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
        wait: Option<&Wait>,
    ) -> js::Result<PromiseRaw<'env, Session>> {
        let destination = name::parse(&destination)?;
        let mut config = options.unwrap_or_default().to_config()?;
        self.core.prepare_session(&mut config)?;
        let core = self.core.clone();
        let limit = limit_of(wait);
        promise(env, async move {
            let session = core.create_session(destination, config, limit);
            Ok(Session::new(session.await?))
        })
    }

    /// The group sessions an earlier run of this app persisted, resumed over the current
    /// connection.
    #[napi(ts_return_type = "Promise<Session[]>", catch_unwind)]
    pub fn restore_sessions<'env>(
        &self,
        env: &'env Env,
        wait: Option<&Wait>,
    ) -> js::Result<PromiseRaw<'env, Vec<Session>>> {
        let core = self.core.clone();
        detached_promise(env, wait, "restoreSessions", async move {
            let sessions = core.restore_sessions().await?;
            Ok(sessions.into_iter().map(Session::new).collect())
        })
    }

    /// Waits for another app to invite this one into a session.
    #[napi(ts_return_type = "Promise<Session>", catch_unwind)]
    pub fn listen_for_session<'env>(
        &self,
        env: &'env Env,
        wait: Option<&Wait>,
    ) -> js::Result<PromiseRaw<'env, Session>> {
        let listener = self.core.listener()?;
        let core = self.core.clone();
        let limit = limit_of(wait);
        promise(env, async move {
            let session = core.listen(listener, limit);
            Ok(Session::new(session.await?))
        })
    }

    /// Closes every session, disconnects and releases the app. Idempotent.
    #[napi(ts_return_type = "Promise<void>", catch_unwind)]
    pub fn close<'env>(
        &self,
        env: &'env Env,
        wait: Option<&Wait>,
    ) -> js::Result<PromiseRaw<'env, ()>> {
        let core = self.core.clone();
        detached_promise(env, wait, "close", async move {
            core.close().await;
            Ok(())
        })
    }
}
