//! App identity: how an app proves who it is and verifies its peers: a shared secret,
//! JWTs (presented or self-signed) checked against a trust bundle, or a SPIRE agent.

use napi_derive::napi;
use slim_auth::auth_provider::{AuthProvider, AuthVerifier};
use slim_auth::traits::{TokenProvider, Verifier};

use slim_config::auth::identity::{IdentityProviderConfig, IdentityVerifierConfig};

use crate::errors::{Code, Error, Result, chain};

/// Upstream's minimum HMAC key length for shared secrets.
pub const MIN_SHARED_SECRET_BYTES: usize = 32;

/// How an app authenticates: a shared secret, or JWTs verified against trusted keys.
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
    /// sign peers' JWTs (the seed's `spire_trust_bundle`).
    pub spire_trust_bundle: Option<String>,
    /// Audiences a peer's JWT must carry (at least one). Signed JWTs carry these too.
    pub audience: Option<Vec<String>>,
    /// Identity and trust from a SPIRE agent's workload API (JWT-SVIDs and bundles).
    pub spire: Option<SpireOptions>,
}

/// Where the SPIRE agent is and what to ask it for.
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

/// A private key this app signs its JWTs with.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct JwtSigningKey {
    /// PEM text of the private key.
    pub pem: String,
    /// JWS algorithm, e.g. `ES256`, `ES384`, `RS256`, `EdDSA`.
    pub algorithm: String,
    /// The `sub` claim: this app's identity. Defaults to the app name.
    pub subject: Option<String>,
    /// The `iss` claim (peers require one). Defaults to the subject.
    pub issuer: Option<String>,
    /// The key id (`kid`) put in the token header, matching the JWKS entry.
    pub key_id: Option<String>,
}

/// The kinds of identity, as far as the rest of the addon needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    SharedSecret,
    /// A token read from a file: it cannot sign session control messages.
    PresentedJwt,
    SignedJwt,
    Spire,
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

/// All the trust domains' keys as one JWKS: upstream tries each key in turn.
fn merged_jwks(bundle: &str) -> Result<String> {
    use base64::Engine;
    let invalid = |why: String| Error::invalid_argument(format!("spireTrustBundle {why}"));
    let domains: serde_json::Map<String, serde_json::Value> = serde_json::from_str(bundle)
        .map_err(|e| {
            invalid(format!(
                "must be a JSON object of trust domain -> base64 JWKS: {e}"
            ))
        })?;
    let mut keys = Vec::new();
    for (domain, encoded) in domains {
        let encoded = encoded
            .as_str()
            .ok_or_else(|| invalid(format!("entry {domain:?} is not a base64 string")))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| invalid(format!("entry {domain:?} is not base64: {e}")))?;
        let jwks: serde_json::Value = serde_json::from_slice(&decoded)
            .map_err(|e| invalid(format!("entry {domain:?} is not a JWKS: {e}")))?;
        let list = jwks["keys"]
            .as_array()
            .ok_or_else(|| invalid(format!("entry {domain:?} has no \"keys\" array")))?;
        keys.extend(list.iter().cloned());
    }
    if keys.is_empty() {
        return Err(invalid("holds no keys".into()));
    }
    Ok(serde_json::json!({ "keys": keys }).to_string())
}

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value, what: &str) -> Result<T> {
    serde_json::from_value(value)
        .map_err(|e| Error::invalid_argument(format!("invalid {what}: {e}")))
}

fn jwt_verifier(bundle: &str, audience: &[String]) -> Result<AuthVerifier> {
    let config: IdentityVerifierConfig = from_json(
        serde_json::json!({
            "type": "jwt",
            "claims": { "audience": audience },
            // The algorithm of each key comes from its JWK entry; this one is a fallback.
            "key": { "type": "decoding", "algorithm": "ES256", "format": "jwks", "key": { "data": merged_jwks(bundle)? } },
        }),
        "JWT verifier",
    )?;
    config
        .build_auth_verifier()
        .map_err(|e| Error::new(Code::Auth, chain(&e)))
}

fn signing_provider(key: &JwtSigningKey, app: &str, audience: &[String]) -> Result<AuthProvider> {
    let subject = key.subject.clone().unwrap_or_else(|| app.to_string());
    let issuer = key.issuer.clone().unwrap_or_else(|| subject.clone());
    let claims = serde_json::json!({ "audience": audience, "subject": subject, "issuer": issuer });
    let config: IdentityProviderConfig = from_json(
        serde_json::json!({
            "type": "jwt",
            "claims": claims,
            "key": { "type": "encoding", "algorithm": key.algorithm, "format": "pem", "key": { "data": key.pem } },
        }),
        "jwtSigningKey (algorithm must be one of HS256..512, ES256, ES384, RS256..512, PS256..512, EdDSA)",
    )?;
    // Building a signing provider only parses the key: a failure is the caller's input.
    config.build_auth_provider().map_err(|e| {
        Error::invalid_argument(format!("jwtSigningKey cannot be used: {}", chain(&e)))
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The `exp` claim of a compact JWT, read without verifying it (peers verify).
fn expiry_of(token: &str) -> Option<u64> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&claims).ok()?["exp"].as_u64()
}

fn presented_jwt(path: &str) -> Result<AuthProvider> {
    // Upstream panics on a token file it cannot read, and presents expired tokens
    // that every peer then refuses; check both first.
    let token = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid_argument(format!("jwt file {path:?} cannot be read: {e}")))?;
    if let Some(expiry) = expiry_of(token.trim()).filter(|&exp| exp <= unix_now()) {
        return Err(Error::new(
            Code::Auth,
            format!(
                "the JWT in {path:?} expired {} s ago (exp {expiry})",
                unix_now() - expiry
            ),
        ));
    }
    let config: IdentityProviderConfig = from_json(
        serde_json::json!({ "type": "static_jwt", "file": path }),
        "jwt",
    )?;
    config
        .build_auth_provider()
        .map_err(|e| Error::new(Code::Auth, chain(&e)))
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

    #[test]
    fn trust_bundles_merge_every_domain() {
        use base64::Engine;
        let encode = |keys: &str| base64::engine::general_purpose::STANDARD.encode(keys);
        let bundle = serde_json::json!({
            "a.org": encode(r#"{"keys":[{"kid":"1"}]}"#),
            "b.org": encode(r#"{"keys":[{"kid":"2"},{"kid":"3"}]}"#),
        })
        .to_string();
        let merged: serde_json::Value =
            serde_json::from_str(&merged_jwks(&bundle).unwrap()).unwrap();
        assert_eq!(merged["keys"].as_array().unwrap().len(), 3);
        for bad in ["[]", r#"{"a.org": 5}"#, r#"{"a.org": "%%%"}"#, "{}"] {
            assert_eq!(
                merged_jwks(bad).unwrap_err().code,
                Code::InvalidArgument,
                "{bad}"
            );
        }
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

    /// A P-256 key made for these tests, with its public half as a JWK.
    const TEST_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgNrSP6hF48iishA6A
8OC/xDJxerE6G994sT+Gny5pnEKhRANCAAQ088BQoEua64TgbGry5x2kb5B8mVsu
cDajnv/EIUS36K26YldswKtylvuq9ofzkg5gM0LqNkfGvEAkuXkGB+bp
-----END PRIVATE KEY-----
";
    const TEST_KEY_JWK: &str = r#"{"kty":"EC","crv":"P-256","kid":"test","alg":"ES256","use":"sig",
        "x":"NPPAUKBLmuuE4Gxq8ucdpG-QfJlbLnA2o57_xCFEt-g","y":"rbpiV2zAq3KW-6r2h_OSDmAzQuo2R8a8QCS5eQYH5uk"}"#;

    #[tokio::test]
    async fn expired_tokens_from_trusted_keys_are_refused() {
        use base64::Engine;
        use slim_auth::traits::Signer;
        let jwks = format!(r#"{{"keys":[{TEST_KEY_JWK}]}}"#);
        let bundle = serde_json::json!({
            "test.org": base64::engine::general_purpose::STANDARD.encode(jwks)
        })
        .to_string();
        let audience = vec!["slim-test".to_string()];
        let verifier = jwt_verifier(&bundle, &audience).unwrap();
        let key = JwtSigningKey {
            pem: TEST_KEY_PEM.into(),
            algorithm: "ES256".into(),
            subject: None,
            issuer: None,
            key_id: Some("test".into()),
        };
        let AuthProvider::JwtSigner(signer) =
            signing_provider(&key, "org/ns/peer", &audience).unwrap()
        else {
            panic!("a signing key builds a JWT signer");
        };
        let token_expiring_at = |exp: u64| {
            let claims = serde_json::json!({
                "iss": "org/ns/peer", "sub": "org/ns/peer", "aud": audience,
                "iat": exp - 3600, "exp": exp,
            });
            signer.sign(&claims).unwrap()
        };
        // Beyond any clock-skew leeway in the past, and an hour ahead as the control.
        let expired = token_expiring_at(unix_now() - 3600);
        let fresh = token_expiring_at(unix_now() + 3600);
        verifier.verify(fresh).await.unwrap();
        let err = verifier.verify(expired).await.unwrap_err();
        // Upstream displays every JWT failure as "token invalid"; the cause says which.
        assert!(format!("{err:?}").contains("ExpiredSignature"), "{err:?}");
    }

    #[test]
    fn expiry_is_read_from_the_payload() {
        use base64::Engine;
        let encode = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let token = format!("{}.{}.sig", encode("{}"), encode(r#"{"exp":42}"#));
        assert_eq!(expiry_of(&token), Some(42));
        assert_eq!(expiry_of("not a token"), None);
        assert_eq!(expiry_of(&format!("x.{}.y", encode("{}"))), None);
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
