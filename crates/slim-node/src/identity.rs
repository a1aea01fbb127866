//! App identity: how an app proves who it is and verifies its peers: a shared secret,
//! JWTs (presented or self-signed) checked against a trust bundle, or a SPIRE agent.

use napi_derive::napi;
use slim_auth::auth_provider::{AuthProvider, AuthVerifier};
use slim_auth::traits::{TokenProvider, Verifier};

use slim_config::auth::identity::{IdentityProviderConfig, IdentityVerifierConfig};

use crate::errors::{Code, Error, Result, chain};
use crate::jwt::{JwtSigningKey, from_json, jwt_verifier, presented_jwt, signing_provider};

/// Upstream's minimum HMAC key length for shared secrets.
pub const MIN_SHARED_SECRET_BYTES: usize = 32;

/// How an app authenticates: a shared secret, or JWTs verified against trusted keys, or
/// a SPIRE agent.
///
/// @example
/// ```ts
/// const identity: IdentityOptions = { sharedSecret: 'a-shared-secret-of-at-least-32-bytes!' }
/// const app = await createApp({ name: 'agntcy/ns/alice', identity })
/// ```
/// @group Options
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct IdentityOptions {
    /// A secret shared by every app of the deployment (at least 32 bytes).
    pub shared_secret: Option<String>,
    /// Path of a JWT file this app presents (re-read when it changes, e.g. by a SPIRE agent).
    /// SLIM core 3.x cannot hold sessions with such an identity; see the README.
    pub jwt: Option<String>,
    /// This app signs its own JWTs with this private key instead of presenting a file.
    pub jwt_signing_key: Option<JwtSigningKey>,
    /// JSON object mapping each trust domain to its base64-encoded JWKS: the keys that
    /// sign peers' JWTs.
    pub spire_trust_bundle: Option<String>,
    /// Audiences a peer's JWT must carry (at least one). Signed JWTs carry these too.
    pub audience: Option<Vec<String>>,
    /// Identity and trust from a SPIRE agent's workload API (JWT-SVIDs and bundles).
    pub spire: Option<SpireOptions>,
}

/// Where the SPIRE agent is and what to ask it for.
///
/// @example
/// ```ts
/// const spire: SpireOptions = { socketPath: 'unix:///run/spire/agent.sock', trustDomains: ['example.org'] }
/// const app = await createApp({ name: 'agntcy/ns/alice', identity: { spire, audience: ['slim'] } })
/// ```
/// @group Options
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct SpireOptions {
    /// Workload API socket, e.g. `unix:///run/spire/agent.sock` (default: `SPIFFE_ENDPOINT_SOCKET`).
    pub socket_path: Option<String>,
    /// The SPIFFE ID to request, when the workload has several.
    pub target_spiffe_id: Option<String>,
    /// Trust domains whose bundles verify peers (default: this workload's own).
    pub trust_domains: Option<Vec<String>>,
}

/// How long the SPIRE agent may take to answer before app creation fails.
const SPIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The kinds of identity, as far as the rest of the addon needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    SharedSecret,
    /// A token read from a file: it cannot sign session control messages.
    PresentedJwt,
    SignedJwt,
    Spire,
}

impl IdentityKind {
    /// SLIM signs every session control message with a key bound to the app's identity;
    /// a JWT read from a file carries none (upstream's peers drop its control messages,
    /// and its MLS code panics). Refused before anything starts.
    pub fn check_can_join_sessions(self) -> Result<()> {
        if self == IdentityKind::PresentedJwt {
            return Err(Error::new(
                Code::Auth,
                "sessions need an identity that can sign: a presented jwt file cannot with SLIM core 3.x; use jwtSigningKey or sharedSecret",
            ));
        }
        Ok(())
    }
}

pub struct Identity {
    pub provider: AuthProvider,
    pub verifier: AuthVerifier,
    pub kind: IdentityKind,
}

const WHAT_TO_PASS: &str = "pass sharedSecret (at least 32 bytes), jwtSigningKey (or jwt) together with spireTrustBundle and audience, or spire";

fn check_shared_secret(secret: &str) -> Result<()> {
    if secret.len() < MIN_SHARED_SECRET_BYTES {
        return Err(Error::invalid_argument(format!(
            "sharedSecret must be at least {MIN_SHARED_SECRET_BYTES} bytes, got {}",
            secret.len()
        )));
    }
    Ok(())
}

#[cfg(not(target_family = "windows"))]
fn spire(options: &SpireOptions, audience: &[String]) -> Result<(AuthProvider, AuthVerifier)> {
    let mut config = serde_json::json!({ "type": "spire", "jwt_audiences": audience });
    if let Some(path) = &options.socket_path {
        config["socket_path"] = path.clone().into();
    }
    if let Some(id) = &options.target_spiffe_id {
        config["target_spiffe_id"] = id.clone().into();
    }
    if let Some(domains) = &options.trust_domains {
        config["trust_domains"] = domains.clone().into();
    }
    let provider: IdentityProviderConfig = from_json(config.clone(), "spire")?;
    let verifier: IdentityVerifierConfig = from_json(config, "spire")?;
    Ok((
        provider
            .build_auth_provider()
            .map_err(|e| Error::new(Code::Auth, chain(&e)))?,
        verifier
            .build_auth_verifier()
            .map_err(|e| Error::new(Code::Auth, chain(&e)))?,
    ))
}

#[cfg(target_family = "windows")]
fn spire(_: &SpireOptions, _: &[String]) -> Result<(AuthProvider, AuthVerifier)> {
    Err(Error::invalid_argument("SPIRE is not available on Windows"))
}

impl Identity {
    /// Builds and initialises the provider and verifier for the app `id` (`org/ns/app`).
    pub async fn build(id: &str, options: &IdentityOptions) -> Result<Self> {
        let uses_jwt = options.spire.is_some()
            || options.jwt.is_some()
            || options.jwt_signing_key.is_some()
            || options.spire_trust_bundle.is_some()
            || options.audience.is_some();
        let (mut provider, mut verifier, kind) = match (options.shared_secret.as_deref(), uses_jwt)
        {
            (Some(_), true) => {
                return Err(Error::invalid_argument(format!(
                    "give one identity, not both a shared secret and JWT settings: {WHAT_TO_PASS}"
                )));
            }
            (Some(secret), false) => {
                check_shared_secret(secret)?;
                (
                    AuthProvider::shared_secret_from_str(id, secret)?,
                    AuthVerifier::shared_secret_from_str(id, secret)?,
                    IdentityKind::SharedSecret,
                )
            }
            (None, _) if options.spire.is_some() => {
                let audience = options
                    .audience
                    .clone()
                    .unwrap_or_else(|| vec!["slim".into()]);
                let (provider, verifier) = spire(
                    options.spire.as_ref().unwrap_or(&SpireOptions::default()),
                    &audience,
                )?;
                (provider, verifier, IdentityKind::Spire)
            }
            (None, false) => {
                return Err(Error::invalid_argument(format!(
                    "an identity is required: {WHAT_TO_PASS}"
                )));
            }
            (None, true) => {
                let (Some(bundle), Some(audience)) =
                    (&options.spire_trust_bundle, &options.audience)
                else {
                    let missing = [
                        ("spireTrustBundle", options.spire_trust_bundle.is_none()),
                        ("audience", options.audience.is_none()),
                    ]
                    .iter()
                    .filter_map(|(field, absent)| absent.then_some(*field))
                    .collect::<Vec<_>>()
                    .join(" and ");
                    return Err(Error::invalid_argument(format!(
                        "a JWT identity also needs {missing}, to verify its peers: {WHAT_TO_PASS}"
                    )));
                };
                if audience.is_empty() {
                    return Err(Error::invalid_argument("audience needs at least one entry"));
                }
                let (provider, kind) = match (&options.jwt, &options.jwt_signing_key) {
                    (Some(path), None) => (presented_jwt(path)?, IdentityKind::PresentedJwt),
                    (None, Some(key)) => (
                        signing_provider(key, id, audience)?,
                        IdentityKind::SignedJwt,
                    ),
                    _ => {
                        return Err(Error::invalid_argument(format!(
                            "give exactly one of jwt and jwtSigningKey: {WHAT_TO_PASS}"
                        )));
                    }
                };
                (provider, jwt_verifier(bundle, audience)?, kind)
            }
        };
        let ready = async {
            provider.initialize().await?;
            verifier.initialize().await?;
            Ok::<_, slim_auth::errors::AuthError>(())
        };
        match tokio::time::timeout(SPIRE_TIMEOUT, ready).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(Error::new(
                    Code::Auth,
                    format!(
                        "the identity provider did not become ready within {SPIRE_TIMEOUT:?} (is the SPIRE agent running?)"
                    ),
                ));
            }
        }
        // Fail here, not at the first message, if the provider cannot issue tokens.
        provider
            .get_token()
            .map_err(|e| Error::new(Code::Auth, format!("identity cannot issue tokens: {e}")))?;
        Ok(Self {
            provider,
            verifier,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn short_secret_is_rejected_with_its_length() {
        let options = IdentityOptions {
            shared_secret: Some("short".into()),
            ..Default::default()
        };
        let err = Identity::build("org/ns/app", &options).await.err().unwrap();
        assert_eq!(err.code, Code::InvalidArgument);
        assert!(
            err.message.contains("at least 32 bytes, got 5"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn missing_identity_says_what_to_pass() {
        let err = Identity::build("org/ns/app", &IdentityOptions::default())
            .await
            .err()
            .unwrap();
        assert!(err.message.contains("sharedSecret"));
        assert!(err.message.contains("spireTrustBundle"));
    }

    #[tokio::test]
    async fn secret_and_jwt_together_are_refused() {
        let options = IdentityOptions {
            shared_secret: Some("a-development-secret-of-32-bytes!!".into()),
            audience: Some(vec!["x".into()]),
            ..Default::default()
        };
        let err = Identity::build("org/ns/app", &options).await.err().unwrap();
        assert_eq!(err.code, Code::InvalidArgument);
    }

    #[tokio::test]
    async fn long_secret_builds() {
        let options = IdentityOptions {
            shared_secret: Some("a-development-secret-of-32-bytes!!".into()),
            ..Default::default()
        };
        assert!(Identity::build("org/ns/app", &options).await.is_ok());
    }
}
