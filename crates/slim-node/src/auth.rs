//! Authentication of apps to the node: a transport-level credential (basic, a JWT the
//! app signs, a token file it presents), apart from the app's identity in its messages.

use std::time::Duration;

use napi_derive::napi;
use slim_config::auth::basic::Config as BasicAuth;
use slim_config::client::AuthenticationConfig as ClientAuth;
use slim_config::server::AuthenticationConfig as ServerAuth;

use crate::errors::{Error, Result};
use crate::jwt::from_json;
use crate::settings::duration;

/// A user name and password.
///
/// @example
/// ```ts
/// const basic: BasicCredentials = { username: 'edge', password: process.env.SLIM_PASSWORD ?? '' }
/// ```
/// @group Options
#[napi(object)]
#[derive(Debug, Clone)]
pub struct BasicCredentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

/// A JWT credential for the node: an app signs tokens with its private key, a node
/// verifies them with the matching public key.
///
/// @example
/// ```ts
/// const node = await startServer({ auth: { jwt: { key: publicPem, algorithm: 'ES256', audience: ['slim'] } } })
/// await app.connect({ endpoint: node.url, auth: { jwt: { key: privatePem, algorithm: 'ES256', audience: ['slim'] } } })
/// ```
/// @group Options
#[napi(object)]
#[derive(Debug, Clone)]
pub struct JwtCredentials {
    /// PEM text: the private key an app signs with, or the public key a node verifies with.
    pub key: String,
    /// JWS algorithm, e.g. `ES256`, `RS256`, `EdDSA`.
    pub algorithm: String,
    /// Audiences the token carries (app) or must carry (node).
    pub audience: Option<Vec<String>>,
    /// The token's issuer (app), or the issuer it must have (node).
    pub issuer: Option<String>,
    /// The token's subject (app only).
    pub subject: Option<String>,
    /// How long each token the app signs is valid, ms (app only; default one hour).
    pub lifetime: Option<f64>,
}

impl JwtCredentials {
    /// Upstream's JWT authentication settings, signing (`encoding`) or verifying.
    fn to_json(&self, signing: bool) -> Result<serde_json::Value> {
        let lifetime =
            duration(self.lifetime, "auth.jwt.lifetime")?.unwrap_or(Duration::from_secs(3600));
        Ok(serde_json::json!({
            "type": "jwt",
            "claims": { "audience": self.audience, "issuer": self.issuer, "subject": self.subject },
            "duration": format!("{}ms", lifetime.as_millis()),
            "key": {
                "type": if signing { "encoding" } else { "decoding" },
                "algorithm": self.algorithm,
                "format": "pem",
                "key": { "data": self.key },
            },
        }))
    }
}

/// How apps authenticate to a node: what an app presents, or what a node requires.
///
/// @example
/// ```ts
/// const auth: NodeAuth = { basic: { username: 'edge', password: process.env.SLIM_PASSWORD ?? '' } }
/// const node = await startServer({ endpoint: '127.0.0.1:0', auth })
/// await app.connect({ endpoint: node.url, auth })
/// ```
/// @group Options
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct NodeAuth {
    /// HTTP basic authentication.
    pub basic: Option<BasicCredentials>,
    /// A JWT in each request, signed by the app and verified by the node.
    pub jwt: Option<JwtCredentials>,
    /// A file holding a JWT the app presents as it is (re-read when it changes), for a
    /// node that requires `jwt`. Apps only.
    pub token_file: Option<String>,
}

impl NodeAuth {
    fn basic(&self) -> Result<Option<BasicAuth>> {
        match &self.basic {
            None => Ok(None),
            Some(basic) if basic.username.is_empty() => Err(Error::invalid_argument(
                "auth.basic.username must not be empty",
            )),
            Some(basic) => Ok(Some(BasicAuth::new(&basic.username, &basic.password))),
        }
    }

    fn one(&self) -> Result<()> {
        let given = [
            self.basic.is_some(),
            self.jwt.is_some(),
            self.token_file.is_some(),
        ];
        if given.iter().filter(|&&set| set).count() > 1 {
            return Err(Error::invalid_argument(
                "auth takes one of basic, jwt and tokenFile",
            ));
        }
        Ok(())
    }

    pub fn to_client(&self) -> Result<ClientAuth> {
        self.one()?;
        if let Some(file) = &self.token_file {
            if !std::path::Path::new(file).is_file() {
                return Err(Error::invalid_argument(format!(
                    "auth.tokenFile {file:?} is not a readable file"
                )));
            }
            return from_json(
                serde_json::json!({ "type": "static_jwt", "file": file }),
                "auth.tokenFile",
            );
        }
        match &self.jwt {
            Some(jwt) => from_json(jwt.to_json(true)?, "auth.jwt"),
            None => Ok(self.basic()?.map_or(ClientAuth::None, ClientAuth::Basic)),
        }
    }

    pub fn to_server(&self) -> Result<ServerAuth> {
        self.one()?;
        if self.token_file.is_some() {
            return Err(Error::invalid_argument(
                "auth.tokenFile is what an app presents; a node requires jwt (its public key)",
            ));
        }
        match &self.jwt {
            Some(jwt) => from_json(jwt.to_json(false)?, "auth.jwt"),
            None => Ok(self.basic()?.map_or(ServerAuth::None, ServerAuth::Basic)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_credentials_become_upstream_jwt_auth() {
        let jwt = JwtCredentials {
            key: "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n".into(),
            algorithm: "ES256".into(),
            audience: Some(vec!["slim".into()]),
            issuer: Some("example.org".into()),
            subject: None,
            lifetime: Some(60_000.0),
        };
        let auth = NodeAuth {
            basic: None,
            jwt: Some(jwt.clone()),
            token_file: None,
        };
        assert!(matches!(auth.to_client(), Ok(ClientAuth::Jwt(_))));
        assert!(matches!(auth.to_server(), Ok(ServerAuth::Jwt(_))));
        let both = NodeAuth {
            basic: Some(BasicCredentials {
                username: "u".into(),
                password: "p".into(),
            }),
            jwt: Some(jwt),
            token_file: None,
        };
        assert!(both.to_client().is_err());
    }

    #[test]
    fn empty_user_names_are_refused() {
        let auth = NodeAuth {
            basic: Some(BasicCredentials {
                username: String::new(),
                password: "x".into(),
            }),
            jwt: None,
            token_file: None,
        };
        assert!(auth.to_client().is_err());
        assert!(matches!(
            NodeAuth::default().to_server(),
            Ok(ServerAuth::None)
        ));
    }
}
