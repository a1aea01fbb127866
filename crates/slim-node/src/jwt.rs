//! JWTs: the keys that verify peers' tokens (a trust bundle of JWKS per domain), a key
//! this app signs its own tokens with, and a token file it presents.

use napi_derive::napi;
use slim_auth::auth_provider::{AuthProvider, AuthVerifier};
use slim_config::auth::identity::{IdentityProviderConfig, IdentityVerifierConfig};

use crate::errors::{Code, Error, Result, chain};

/// A private key this app signs its JWTs with.
///
/// @example
/// ```ts
/// const jwtSigningKey: JwtSigningKey = { pem: privateKeyPem, algorithm: 'ES256', issuer: 'example.org' }
/// const identity = { jwtSigningKey, spireTrustBundle: JSON.stringify({ 'example.org': base64Jwks }), audience: ['slim'] }
/// ```
/// @group Options
#[napi(object)]
#[derive(Debug, Clone)]
pub struct JwtSigningKey {
    /// PEM text of the private key.
    pub pem: String,
    /// JWS algorithm, e.g. `ES256`, `ES384`, `RS256`, `EdDSA`.
    pub algorithm: String,
    /// The `sub` claim: this app's identity. Defaults to the app name. SLIM also puts it
    /// in the token header as the key id (`kid`), so the peers' JWKS entry for this key
    /// carries the same `kid`.
    pub subject: Option<String>,
    /// The `iss` claim (peers require one). Defaults to the subject.
    pub issuer: Option<String>,
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

pub fn from_json<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    what: &str,
) -> Result<T> {
    serde_json::from_value(value)
        .map_err(|e| Error::invalid_argument(format!("invalid {what}: {e}")))
}

pub fn jwt_verifier(bundle: &str, audience: &[String]) -> Result<AuthVerifier> {
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

pub fn signing_provider(
    key: &JwtSigningKey,
    app: &str,
    audience: &[String],
) -> Result<AuthProvider> {
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

pub fn presented_jwt(path: &str) -> Result<AuthProvider> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use slim_auth::traits::Verifier;

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
}
