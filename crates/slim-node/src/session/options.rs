//! How a session is made and what one message may carry: the options JavaScript passes,
//! turned into upstream's session configuration, and the size limit of a message.

use std::collections::HashMap;
use std::time::Duration;

use napi::bindgen_prelude::Either;
use napi_derive::napi;
use slim_datapath::api::ProtoSessionType;
use slim_session::SessionConfig;
use slim_session::session_config::MlsSettings;

use crate::errors::{Code, Error, Result};
use crate::runtime::{millis, whole_number};

/// Defaults that make a session reliable when the caller sets only one knob.
pub const DEFAULT_MAX_RETRIES: u32 = 10;
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// gRPC's default message limit, which SLIM nodes and apps keep: a larger message is
/// dropped by whoever decodes it, after the sender was told it left.
const GRPC_MESSAGE_LIMIT: usize = 4 * 1024 * 1024;
/// MLS pads a message to a multiple of an eighth of the next power of two, so the largest
/// padded message under the gRPC limit carries 3.5 MiB.
const MLS_PADDED_LIMIT: usize = GRPC_MESSAGE_LIMIT / 8 * 7;
/// Room kept for the SLIM header, the identity token and MLS framing.
const HEADER_ALLOWANCE: usize = 64 * 1024;

/// The most bytes of payload, payload type and metadata one message may carry, with or
/// without MLS (one limit, so turning encryption on never breaks a working sender).
#[napi]
pub const MAX_MESSAGE_BYTES: u32 = (MLS_PADDED_LIMIT - HEADER_ALLOWANCE) as u32;

/// The two kinds of session.
#[napi(string_enum = "kebab-case")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionType {
    /// Many members; the app that creates it moderates (invites and removes).
    Group,
    /// Two apps; the creator names the peer.
    PointToPoint,
}

impl SessionType {
    pub fn of(config: &SessionConfig) -> Self {
        match config.session_type {
            ProtoSessionType::PointToPoint => SessionType::PointToPoint,
            _ => SessionType::Group,
        }
    }
}

/// MLS settings, given as `mls: { … }` instead of `mls: true`.
///
/// @example
/// ```ts
/// const mls: MlsOptions = { headerIntegrityValidationPercent: 10, maxSeenControlMessageIds: 4096 }
/// const group = await app.createGroupSession('agntcy/ns/chat', { mls })
/// ```
/// @group Options
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct MlsOptions {
    /// Percentage (0 to 100) of received messages whose SLIM header is checked against its
    /// MLS signature (default 100: every message).
    pub header_integrity_validation_percent: Option<f64>,
    /// How many control message ids are remembered per sender to drop replays (default:
    /// upstream's).
    pub max_seen_control_message_ids: Option<f64>,
}

impl MlsOptions {
    fn to_settings(&self) -> Result<MlsSettings> {
        let percent = whole_number(
            self.header_integrity_validation_percent,
            "mls.headerIntegrityValidationPercent",
        )?
        .unwrap_or(100);
        if percent > 100 {
            return Err(Error::invalid_argument(format!(
                "mls.headerIntegrityValidationPercent must be from 0 to 100, got {percent}"
            )));
        }
        let seen = whole_number(
            self.max_seen_control_message_ids,
            "mls.maxSeenControlMessageIds",
        )?;
        Ok(MlsSettings {
            header_integrity_validation_percent: percent,
            max_seen_control_message_ids_size: seen.map(|n| n as usize),
        })
    }
}

/// How a session is created.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// `group` (the default) or `point-to-point`.
    #[napi(ts_type = "`${SessionType}`")]
    pub r#type: Option<SessionType>,
    /// Retransmissions per message before delivery fails (reliable mode).
    pub max_retries: Option<f64>,
    /// Milliseconds between retransmissions.
    pub interval: Option<f64>,
    /// Reliable delivery with acknowledgements (default true).
    pub reliable: Option<bool>,
    /// End-to-end encryption with MLS (default false); settings in place of `true`.
    pub mls: Option<Either<bool, MlsOptions>>,
    /// Session metadata sent to every participant.
    pub metadata: Option<HashMap<String, String>>,
}

impl SessionOptions {
    pub fn to_config(&self) -> Result<SessionConfig> {
        let session_type = match self.r#type {
            Some(SessionType::PointToPoint) => ProtoSessionType::PointToPoint,
            _ => ProtoSessionType::Multicast,
        };
        let interval = millis(self.interval, "interval")?;
        let max_retries = whole_number(self.max_retries, "maxRetries")?;
        if interval == Some(Duration::ZERO) {
            return Err(Error::invalid_argument(
                "interval must be greater than 0 ms",
            ));
        }
        let reliable = self.reliable.unwrap_or(true);
        if !reliable && (max_retries.is_some() || interval.is_some()) {
            return Err(Error::invalid_argument(
                "maxRetries and interval only apply to reliable sessions; drop them or set reliable: true",
            ));
        }
        let (max_retries, interval) = if reliable {
            (
                Some(max_retries.unwrap_or(DEFAULT_MAX_RETRIES)),
                Some(interval.unwrap_or(DEFAULT_INTERVAL)),
            )
        } else {
            (None, None)
        };
        Ok(SessionConfig {
            session_type,
            max_retries,
            interval,
            mls_settings: match &self.mls {
                None | Some(Either::A(false)) => None,
                Some(Either::A(true)) => Some(MlsOptions::default().to_settings()?),
                Some(Either::B(options)) => Some(options.to_settings()?),
            },
            initiator: true,
            metadata: self.metadata.clone().unwrap_or_default(),
        })
    }
}

/// The effective configuration of a session.
///
/// @example
/// ```ts
/// const { maxRetries, interval, mls } = session.settings
/// console.log(`${maxRetries} retries every ${interval} ms, mls ${mls}`)
/// ```
/// @group Sessions
#[napi(object)]
pub struct SessionSettings {
    /// Retransmissions per message (reliable sessions).
    pub max_retries: Option<u32>,
    /// Milliseconds between retransmissions (reliable sessions).
    pub interval: Option<f64>,
    /// Whether MLS encrypts the session end to end.
    pub mls: bool,
}

impl SessionSettings {
    pub fn of(config: &SessionConfig) -> Self {
        Self {
            max_retries: config.max_retries,
            interval: config.interval.map(|d| d.as_secs_f64() * 1000.0),
            mls: config.mls_settings.is_some(),
        }
    }
}

/// Publish options.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// An application-defined type for the payload (`"msg"` when absent).
    pub payload_type: Option<String>,
    /// Key-value pairs carried with the message.
    pub metadata: Option<HashMap<String, String>>,
    /// Send to this name (`org/ns/app`) instead of the session's destination (`publish`
    /// only: `publishTo` refuses it).
    pub destination: Option<String>,
    /// The connection the message leaves by, an id from `connect` (`publish` only).
    pub connection: Option<f64>,
}

/// Refuses a message SLIM would accept locally but no receiver could decode.
pub fn check_size(payload: usize, options: &PublishOptions) -> Result<()> {
    let payload_type = options.payload_type.as_ref().map_or(0, String::len);
    let metadata: usize = options
        .metadata
        .iter()
        .flatten()
        .map(|(key, value)| key.len() + value.len())
        .sum();
    let size = payload + payload_type + metadata;
    if size > MAX_MESSAGE_BYTES as usize {
        return Err(Error::new(
            Code::PayloadTooLarge,
            format!(
                "a message of {size} bytes (payload, payload type and metadata) exceeds the limit of \
                 {MAX_MESSAGE_BYTES} bytes: gRPC carries at most 4 MiB per message, and MLS padding and headers need room"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reliable_by_default() {
        let config = SessionOptions::default().to_config().unwrap();
        assert_eq!(config.session_type, ProtoSessionType::Multicast);
        assert_eq!(config.max_retries, Some(DEFAULT_MAX_RETRIES));
        assert_eq!(config.interval, Some(DEFAULT_INTERVAL));
        assert!(config.mls_settings.is_none());
        assert!(config.initiator);
    }

    #[test]
    fn retries_and_interval_reach_the_config() {
        let options = SessionOptions {
            max_retries: Some(5.0),
            interval: Some(5000.0),
            mls: Some(Either::A(true)),
            ..Default::default()
        };
        let config = options.to_config().unwrap();
        assert_eq!(config.max_retries, Some(5));
        assert_eq!(config.interval, Some(Duration::from_secs(5)));
        assert!(config.mls_settings.is_some());
        let settings = SessionSettings::of(&config);
        assert_eq!(settings.interval, Some(5000.0));
    }

    #[test]
    fn mls_settings_are_checked_and_passed_on() {
        let with = |mls: MlsOptions| SessionOptions {
            mls: Some(Either::B(mls)),
            ..Default::default()
        };
        let config = with(MlsOptions {
            header_integrity_validation_percent: Some(10.0),
            max_seen_control_message_ids: Some(64.0),
        })
        .to_config()
        .unwrap();
        let settings = config.mls_settings.unwrap();
        assert_eq!(settings.header_integrity_validation_percent, 10);
        assert_eq!(settings.max_seen_control_message_ids_size, Some(64));
        let defaults = with(MlsOptions::default()).to_config().unwrap();
        assert_eq!(
            defaults
                .mls_settings
                .unwrap()
                .header_integrity_validation_percent,
            100
        );
        for bad in [101.0, -1.0, 2.5] {
            let options = with(MlsOptions {
                header_integrity_validation_percent: Some(bad),
                ..Default::default()
            });
            assert_eq!(options.to_config().unwrap_err().code, Code::InvalidArgument);
        }
        let off = SessionOptions {
            mls: Some(Either::A(false)),
            ..Default::default()
        };
        assert!(off.to_config().unwrap().mls_settings.is_none());
    }

    #[test]
    fn unreliable_rejects_retry_knobs() {
        let options = SessionOptions {
            reliable: Some(false),
            max_retries: Some(3.0),
            ..Default::default()
        };
        assert_eq!(options.to_config().unwrap_err().code, Code::InvalidArgument);
        let config = SessionOptions {
            reliable: Some(false),
            ..Default::default()
        }
        .to_config()
        .unwrap();
        assert_eq!((config.max_retries, config.interval), (None, None));
    }

    #[test]
    fn session_types_map_to_upstream() {
        let p2p = SessionOptions {
            r#type: Some(SessionType::PointToPoint),
            ..Default::default()
        };
        let config = p2p.to_config().unwrap();
        assert_eq!(config.session_type, ProtoSessionType::PointToPoint);
        assert_eq!(SessionType::of(&config), SessionType::PointToPoint);
        let group = SessionOptions::default().to_config().unwrap();
        assert_eq!(SessionType::of(&group), SessionType::Group);
    }

    #[test]
    fn messages_above_the_grpc_limit_are_refused() {
        let limit = MAX_MESSAGE_BYTES as usize;
        let plain = PublishOptions::default();
        assert!(check_size(limit, &plain).is_ok());
        let err = check_size(limit + 1, &plain).unwrap_err();
        assert_eq!(err.code, Code::PayloadTooLarge);
        assert!(err.message.contains(&MAX_MESSAGE_BYTES.to_string()));
        let with_metadata = PublishOptions {
            payload_type: Some("t".into()),
            metadata: Some(HashMap::from([("k".into(), "v".into())])),
            ..Default::default()
        };
        assert!(check_size(limit - 3, &with_metadata).is_ok());
        assert!(check_size(limit - 2, &with_metadata).is_err());
    }

    #[test]
    fn retries_must_be_whole_and_not_negative() {
        for bad in [-1.0, 1.5, f64::NAN, f64::INFINITY, 5e9] {
            let options = SessionOptions {
                max_retries: Some(bad),
                ..Default::default()
            };
            assert_eq!(options.to_config().unwrap_err().code, Code::InvalidArgument);
        }
    }

    #[test]
    fn bad_intervals_are_rejected() {
        for bad in [0.0, -5.0, f64::NAN] {
            let options = SessionOptions {
                interval: Some(bad),
                ..Default::default()
            };
            assert_eq!(options.to_config().unwrap_err().code, Code::InvalidArgument);
        }
    }
}
