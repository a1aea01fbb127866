//! Connection settings that production deployments tune: keepalive, reconnecting,
//! timeouts, headers, proxy, buffer size. JavaScript passes milliseconds and plain
//! records; upstream's configuration types come out.

use std::collections::HashMap;
use std::time::Duration;

use napi_derive::napi;
use slim_config::client::{BackoffConfig, KeepaliveConfig};
use slim_config::grpc::compression::CompressionType;
use slim_config::grpc::proxy::ProxyConfig;
use slim_config::server::KeepaliveServerParameters;

use crate::errors::{Error, Result};
use crate::runtime::{millis, whole_number};

/// A duration option that must be given and positive once its object is there.
pub fn duration(value: Option<f64>, what: &str) -> Result<Option<Duration>> {
    match millis(value, what)? {
        Some(Duration::ZERO) => Err(Error::invalid_argument(format!(
            "{what} must be greater than 0 ms"
        ))),
        other => Ok(other),
    }
}

/// How an app keeps its connection to the node alive.
///
/// @example
/// ```ts
/// await app.connect({ endpoint: 'https://slim.example:46357', keepalive: { http2: 20_000, timeout: 5_000 } })
/// ```
/// @group Options
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct KeepaliveOptions {
    /// TCP keepalive interval, ms (default 60 000).
    pub tcp: Option<f64>,
    /// HTTP/2 ping interval, ms (default 60 000).
    pub http2: Option<f64>,
    /// How long a ping may go unanswered, ms (default 10 000).
    pub timeout: Option<f64>,
    /// Ping even with no stream open (default false).
    pub while_idle: Option<bool>,
}

impl KeepaliveOptions {
    pub fn to_config(&self) -> Result<KeepaliveConfig> {
        let mut config = KeepaliveConfig::default();
        if let Some(tcp) = duration(self.tcp, "keepalive.tcp")? {
            config.tcp_keepalive = tcp.into();
        }
        if let Some(http2) = duration(self.http2, "keepalive.http2")? {
            config.http2_keepalive = http2.into();
        }
        if let Some(timeout) = duration(self.timeout, "keepalive.timeout")? {
            config.timeout = timeout.into();
        }
        if let Some(idle) = self.while_idle {
            config.keep_alive_while_idle = idle;
        }
        Ok(config)
    }
}

/// How an app reconnects when its node goes away: attempts spaced by delays that double
/// from `initialDelay` up to `maxDelay`, each drawn at random below that bound (full
/// jitter, so that many apps of a restarted node do not all come back at once).
///
/// @example
/// ```ts
/// const reconnect: ReconnectOptions = { maxAttempts: 20, initialDelay: 250, maxDelay: 5000 }
/// await app.connect({ endpoint: 'http://127.0.0.1:46357', reconnect })
/// ```
/// @group Options
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct ReconnectOptions {
    /// Attempts before the app gives the connection up (default: no limit).
    pub max_attempts: Option<f64>,
    /// The first delay's bound, ms (default 100).
    pub initial_delay: Option<f64>,
    /// The longest delay's bound, ms (default 2000).
    pub max_delay: Option<f64>,
}

impl ReconnectOptions {
    const INITIAL_DELAY: Duration = Duration::from_millis(100);
    const MAX_DELAY: Duration = Duration::from_millis(2000);

    /// Upstream's backoff for it: its n-th delay is `factor` × `base`^n ms, so base 2 and
    /// half the first delay as the factor double from the first delay on.
    pub fn to_config(&self) -> Result<BackoffConfig> {
        let attempts = match whole_number(self.max_attempts, "reconnect.maxAttempts")? {
            Some(0) => {
                return Err(Error::invalid_argument(
                    "reconnect.maxAttempts must be at least 1",
                ));
            }
            // Upstream counts the delays between attempts.
            Some(n) => n as usize - 1,
            None => usize::MAX,
        };
        let initial =
            duration(self.initial_delay, "reconnect.initialDelay")?.unwrap_or(Self::INITIAL_DELAY);
        let max_delay = duration(self.max_delay, "reconnect.maxDelay")?.unwrap_or(Self::MAX_DELAY);
        if max_delay < initial {
            return Err(Error::invalid_argument(format!(
                "reconnect.maxDelay ({} ms) must not be below reconnect.initialDelay ({} ms)",
                max_delay.as_millis(),
                initial.as_millis()
            )));
        }
        let factor = (initial.as_millis() as u64).div_ceil(2).max(1);
        Ok(BackoffConfig::new_exponential(
            2, factor, max_delay, attempts, true,
        ))
    }
}

/// An HTTP proxy between the app and its node.
///
/// @example
/// ```ts
/// await app.connect({ endpoint: 'https://slim.example:46357', proxy: { url: 'http://proxy.internal:3128' } })
/// ```
/// @group Options
#[napi(object)]
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// The proxy URL, e.g. `http://proxy.example:8080`.
    pub url: String,
    /// User name for the proxy's basic authentication.
    pub username: Option<String>,
    /// Password for the proxy's basic authentication.
    pub password: Option<String>,
    /// Headers sent to the proxy.
    pub headers: Option<HashMap<String, String>>,
}

impl ProxyOptions {
    pub fn to_config(&self) -> ProxyConfig {
        ProxyConfig {
            url: Some(self.url.clone()),
            tls_setting: Default::default(),
            username: self.username.clone(),
            password: self.password.clone(),
            headers: self.headers.clone().unwrap_or_default(),
        }
    }
}

/// How a node keeps client connections alive, and when it closes them.
///
/// @example
/// ```ts
/// const node = await startServer({ keepalive: { time: 30_000, timeout: 5_000, maxConnectionIdle: 600_000 } })
/// ```
/// @group Server
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct ServerKeepaliveOptions {
    /// Close a connection idle this long, ms.
    pub max_connection_idle: Option<f64>,
    /// Close any connection this old, ms.
    pub max_connection_age: Option<f64>,
    /// After `maxConnectionAge`, how long streams may finish, ms.
    pub max_connection_age_grace: Option<f64>,
    /// HTTP/2 ping interval, ms.
    pub time: Option<f64>,
    /// How long a ping may go unanswered, ms.
    pub timeout: Option<f64>,
}

impl ServerKeepaliveOptions {
    pub fn to_config(&self) -> Result<KeepaliveServerParameters> {
        let mut config = KeepaliveServerParameters::default();
        let fields = [
            (
                self.max_connection_idle,
                "keepalive.maxConnectionIdle",
                &mut config.max_connection_idle,
            ),
            (
                self.max_connection_age,
                "keepalive.maxConnectionAge",
                &mut config.max_connection_age,
            ),
            (
                self.max_connection_age_grace,
                "keepalive.maxConnectionAgeGrace",
                &mut config.max_connection_age_grace,
            ),
            (self.time, "keepalive.time", &mut config.time),
            (self.timeout, "keepalive.timeout", &mut config.timeout),
        ];
        for (value, what, field) in fields {
            if let Some(value) = duration(value, what)? {
                *field = value.into();
            }
        }
        Ok(config)
    }
}

/// The compression name, as upstream spells it.
pub fn compression(name: &str) -> Result<CompressionType> {
    Ok(match name {
        "gzip" => CompressionType::Gzip,
        "zlib" => CompressionType::Zlib,
        "deflate" => CompressionType::Deflate,
        "snappy" => CompressionType::Snappy,
        "zstd" => CompressionType::Zstd,
        "lz4" => CompressionType::Lz4,
        "none" => CompressionType::None,
        other => {
            return Err(Error::invalid_argument(format!(
                "compression must be one of gzip, zlib, deflate, snappy, zstd, lz4, none; got {other:?}"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delays_double_from_the_first_up_to_the_longest_within_the_attempts() {
        use slim_config::backoff::Strategy;
        let options = ReconnectOptions {
            max_attempts: Some(6.0),
            initial_delay: Some(100.0),
            max_delay: Some(300.0),
        };
        let BackoffConfig::Exponential(config) = options.to_config().unwrap() else {
            panic!("an exponential backoff");
        };
        assert!(config.jitter);
        let bounds = [100, 200, 300, 300, 300];
        let delays: Vec<Duration> = BackoffConfig::Exponential(config.clone())
            .get_strategy()
            .collect();
        // Five delays between six attempts, each drawn below its bound.
        assert_eq!(delays.len(), bounds.len());
        for (delay, bound) in delays.iter().zip(bounds) {
            assert!(
                *delay <= Duration::from_millis(bound),
                "{delay:?} > {bound} ms"
            );
        }
        let forever = ReconnectOptions::default().to_config().unwrap();
        assert!(forever.get_strategy().nth(1_000).is_some());
    }

    #[test]
    fn reconnect_options_are_checked() {
        for bad in [
            ReconnectOptions {
                max_attempts: Some(0.0),
                ..Default::default()
            },
            ReconnectOptions {
                initial_delay: Some(0.0),
                ..Default::default()
            },
            ReconnectOptions {
                initial_delay: Some(500.0),
                max_delay: Some(100.0),
                ..Default::default()
            },
            ReconnectOptions {
                max_attempts: Some(1.5),
                ..Default::default()
            },
        ] {
            assert!(bad.to_config().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keepalive_durations_must_be_positive() {
        let zero = KeepaliveOptions {
            tcp: Some(0.0),
            ..Default::default()
        };
        assert!(zero.to_config().is_err());
        let config = KeepaliveOptions {
            http2: Some(1500.0),
            while_idle: Some(true),
            ..Default::default()
        }
        .to_config()
        .unwrap();
        assert_eq!(*config.http2_keepalive, Duration::from_millis(1500));
        assert!(config.keep_alive_while_idle);
    }
}
