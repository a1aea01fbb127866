//! A SLIM app on the upstream crates, set up the way slim-node's `app.rs` does it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use slim_auth::auth_provider::{AuthProvider, AuthVerifier};
use slim_config::client::ClientConfig;
use slim_config::component::id::{ID, Kind};
use slim_datapath::api::{ProtoName, ProtoSessionType};
use slim_service::{KIND, Service};
use slim_session::notification::Notification;
use slim_session::session_config::MlsSettings;
use slim_session::session_controller::SessionController;
use slim_session::{AppChannelReceiver, SessionConfig, SessionError};
use tokio::sync::mpsc;

use crate::config::{Config, SessionKind};

pub type SlimApp = slim_service::app::App<AuthProvider, AuthVerifier>;
pub type Notifications = mpsc::Receiver<std::result::Result<Notification, SessionError>>;

pub struct Client {
    pub app: Arc<SlimApp>,
    pub connection: u64,
    notifications: Notifications,
    _service: Service,
    pub app_ms: f64,
    pub connect_ms: f64,
}

pub struct Joined {
    pub controller: Arc<SessionController>,
    pub rx: AppChannelReceiver,
}

pub fn name(text: &str) -> Result<ProtoName> {
    let parts: Vec<&str> = text.split('/').collect();
    let [org, ns, app] = parts.as_slice() else {
        anyhow::bail!("{text:?} is not org/ns/app");
    };
    Ok(ProtoName::from_strings([*org, *ns, *app]))
}

fn elapsed_ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

impl Client {
    pub async fn connect(config: &Config) -> Result<Self> {
        let started = Instant::now();
        let local = name(&config.name)?;
        let id = config.name.replace('/', "-");
        let service = Service::new(ID::new_with_name(Kind::new(KIND)?, &id)?);
        let (app, notifications) = service.create_app(
            &local,
            AuthProvider::shared_secret_from_str(&id, &config.secret)?,
            AuthVerifier::shared_secret_from_str(&id, &config.secret)?,
        )?;
        // Upstream's receive loop must have started before the app is used.
        app.subscribe(app.app_name(), None).await?;
        let app_ms = elapsed_ms(started);

        let started = Instant::now();
        let client = ClientConfig::with_endpoint(&config.endpoint);
        // The same transport setting slim-node applies to its connections.
        let node = config.endpoint.trim_start_matches("http://");
        let sockets = slim_node_tcp::Sockets::ConnectedTo(slim_node_tcp::resolve(node).await);
        let connection =
            slim_node_tcp::nagle_off_while(&sockets, Box::pin(service.connect(&client)))
                .await
                .with_context(|| format!("connect to {}", config.endpoint))?;
        app.subscribe(app.app_name(), Some(connection)).await?;
        Ok(Self {
            app: Arc::new(app),
            connection,
            notifications,
            _service: service,
            app_ms,
            connect_ms: elapsed_ms(started),
        })
    }

    /// Creates the session of `config` and waits until every member has joined.
    pub async fn create_session(&self, config: &Config) -> Result<Joined> {
        let (session_type, destination) = match config.session {
            SessionKind::Group => (ProtoSessionType::Multicast, name(&config.channel)?),
            SessionKind::P2p => {
                let peer = config
                    .members
                    .first()
                    .ok_or_else(|| anyhow!("p2p needs a member"))?;
                (ProtoSessionType::PointToPoint, name(peer)?)
            }
        };
        if session_type == ProtoSessionType::PointToPoint {
            self.app.set_route(&destination, self.connection).await?;
        }
        let settings = SessionConfig {
            session_type,
            max_retries: config.reliable.then_some(config.max_retries),
            interval: config
                .reliable
                .then(|| Duration::from_millis(config.interval_ms)),
            mls_settings: config.mls.then_some(MlsSettings {
                header_integrity_validation_percent: 100,
                max_seen_control_message_ids_size: None,
            }),
            initiator: true,
            metadata: Default::default(),
        };
        let (context, handle) = self.app.create_session(settings, destination, None).await?;
        handle.await?;
        let (controller, rx) = context.into_parts();
        let controller = controller
            .upgrade()
            .ok_or_else(|| anyhow!("the session ended at once"))?;
        if session_type == ProtoSessionType::Multicast {
            for member in &config.members {
                let member = name(member)?;
                self.app.set_route(&member, self.connection).await?;
                controller.invite_participant(&member).await?.await?;
            }
        }
        Ok(Joined { controller, rx })
    }

    /// Waits for another app to invite this one into a session.
    pub async fn accept_session(&mut self) -> Result<Joined> {
        loop {
            match self.notifications.recv().await {
                Some(Ok(Notification::NewSession(context))) => {
                    let (controller, rx) = context.into_parts();
                    let controller = controller
                        .upgrade()
                        .ok_or_else(|| anyhow!("the session ended at once"))?;
                    return Ok(Joined { controller, rx });
                }
                Some(_) => continue,
                None => anyhow::bail!("the app closed before a session arrived"),
            }
        }
    }

    /// Hands the app's session notifications to someone else (an RPC server).
    pub fn take_notifications(&mut self) -> Notifications {
        std::mem::replace(&mut self.notifications, mpsc::channel(1).1)
    }

    pub async fn close(self, joined: Option<Joined>) {
        if let Some(joined) = joined
            && let Ok(handle) = self.app.delete_session(&joined.controller)
        {
            drop(joined);
            let _ = tokio::time::timeout(Duration::from_secs(5), handle).await;
        }
        let _ = self._service.disconnect(self.connection);
    }
}
