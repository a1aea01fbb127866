//! App identity: how an app proves who it is and verifies its peers.
//! Shared secrets today; the options object is open for JWT and SPIRE.

use napi_derive::napi;
use slim_auth::auth_provider::{AuthProvider, AuthVerifier};
use slim_auth::traits::{TokenProvider, Verifier};

use crate::errors::{Code, Error, Result};

/// Upstream's minimum HMAC key length for shared secrets.
pub const MIN_SHARED_SECRET_BYTES: usize = 32;

/// How an app authenticates. Exactly one method must be given.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct IdentityOptions {
    /// A secret shared by every app of the deployment (at least 32 bytes).
    pub shared_secret: Option<String>,
}

pub struct Identity {
    pub provider: AuthProvider,
    pub verifier: AuthVerifier,
}

fn check_shared_secret(secret: &str) -> Result<()> {
    if secret.len() < MIN_SHARED_SECRET_BYTES {
        return Err(Error::invalid_argument(format!(
            "sharedSecret must be at least {MIN_SHARED_SECRET_BYTES} bytes, got {}",
            secret.len()
        )));
    }
    Ok(())
}

impl Identity {
    /// Builds and initialises the provider and verifier for the app `id` (`org/ns/app`).
    pub async fn build(id: &str, options: &IdentityOptions) -> Result<Self> {
        let Some(secret) = options.shared_secret.as_deref() else {
            return Err(Error::invalid_argument(
                "an identity is required: pass sharedSecret (at least 32 bytes)",
            ));
        };
        check_shared_secret(secret)?;
        let mut provider = AuthProvider::shared_secret_from_str(id, secret)?;
        let mut verifier = AuthVerifier::shared_secret_from_str(id, secret)?;
        provider.initialize().await?;
        verifier.initialize().await?;
        // Fail here, not at the first message, if the provider cannot issue tokens.
        provider
            .get_token()
            .map_err(|e| Error::new(Code::Auth, format!("identity cannot issue tokens: {e}")))?;
        Ok(Self { provider, verifier })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn short_secret_is_rejected_with_its_length() {
        let options = IdentityOptions {
            shared_secret: Some("short".into()),
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
    }

    #[tokio::test]
    async fn long_secret_builds() {
        let options = IdentityOptions {
            shared_secret: Some("a-development-secret-of-32-bytes!!".into()),
        };
        assert!(Identity::build("org/ns/app", &options).await.is_ok());
    }
}
