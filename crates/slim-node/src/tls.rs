//! Transport security between apps and nodes: TLS, mutual TLS, or plain text.

use std::path::Path;

use napi_derive::napi;
use slim_config::tls::client::TlsClientConfig;
use slim_config::tls::server::TlsServerConfig;

use std::sync::Arc;

use rustls::pki_types::ServerName;
use slim_config::tls::common::RustlsConfigLoader;
use tokio::net::TcpStream;

use crate::errors::{Code, Error, Result, chain};

/// TLS settings for an app's connection to a node. Give a CA as a file or as PEM text,
/// and for mutual TLS this app's certificate and key the same way.
///
/// @example
/// ```ts
/// const tls: TlsOptions = { caFile: '/etc/slim/ca.pem', certFile: 'app.pem', keyFile: 'app-key.pem' }
/// await app.connect({ endpoint: 'https://slim.example:46357', tls })
/// ```
/// @group Options
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Plain text, no TLS. Defaults to true for `http://` endpoints without other TLS settings.
    pub insecure: Option<bool>,
    /// TLS without verifying the node's certificate (testing only).
    pub insecure_skip_verify: Option<bool>,
    /// Also trust the system's CA certificates (default true).
    pub system_ca: Option<bool>,
    /// A file of the CA certificate(s) that sign the node's certificate.
    pub ca_file: Option<String>,
    /// The same CA certificate(s) as PEM text.
    pub ca_pem: Option<String>,
    /// This app's certificate file, for nodes that require mutual TLS.
    pub cert_file: Option<String>,
    /// The private key file of `certFile`.
    pub key_file: Option<String>,
    /// This app's certificate as PEM text.
    pub cert_pem: Option<String>,
    /// The private key of `certPem`, as PEM text.
    pub key_pem: Option<String>,
}

/// TLS for an embedded node: its certificate and key, and optionally the CA that
/// clients' certificates must be signed by (mutual TLS).
///
/// @example
/// ```ts
/// const tls: ServerTlsOptions = { certFile: 'node.pem', keyFile: 'node-key.pem', clientCaFile: 'ca.pem' }
/// const node = await startServer({ endpoint: '127.0.0.1:0', tls })
/// ```
/// @group Options
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct ServerTlsOptions {
    /// The node's certificate file.
    pub cert_file: Option<String>,
    /// The private key file of `certFile`.
    pub key_file: Option<String>,
    /// The node's certificate as PEM text.
    pub cert_pem: Option<String>,
    /// The private key of `certPem`, as PEM text.
    pub key_pem: Option<String>,
    /// When set, clients must present a certificate signed by this CA file (mutual TLS).
    pub client_ca_file: Option<String>,
    /// The same client CA as PEM text.
    pub client_ca_pem: Option<String>,
}

fn readable(path: &str, what: &str) -> Result<()> {
    if Path::new(path).is_file() {
        Ok(())
    } else {
        Err(Error::invalid_argument(format!(
            "{what} {path:?} is not a readable file"
        )))
    }
}

fn one_of<'a>(
    file: &'a Option<String>,
    pem: &'a Option<String>,
    what: &str,
) -> Result<Option<Source<'a>>> {
    match (file, pem) {
        (Some(_), Some(_)) => Err(Error::invalid_argument(format!(
            "give {what}File or {what}Pem, not both"
        ))),
        (Some(path), None) => {
            readable(path, &format!("{what}File"))?;
            Ok(Some(Source::File(path)))
        }
        (None, Some(pem)) if pem.contains("-----BEGIN ") => Ok(Some(Source::Pem(pem))),
        (None, Some(_)) => Err(Error::invalid_argument(format!(
            "{what}Pem holds no PEM block (-----BEGIN …-----)"
        ))),
        (None, None) => Ok(None),
    }
}

enum Source<'a> {
    File(&'a str),
    Pem(&'a str),
}

/// The certificate and key pair, both from files or both as PEM.
fn identity<'a>(
    cert_file: &'a Option<String>,
    key_file: &'a Option<String>,
    cert_pem: &'a Option<String>,
    key_pem: &'a Option<String>,
) -> Result<Option<(Source<'a>, Source<'a>)>> {
    let cert = one_of(cert_file, cert_pem, "cert")?;
    let key = one_of(key_file, key_pem, "key")?;
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert @ Source::File(_)), Some(key @ Source::File(_)))
        | (Some(cert @ Source::Pem(_)), Some(key @ Source::Pem(_))) => Ok(Some((cert, key))),
        (Some(_), Some(_)) => Err(Error::invalid_argument(
            "give the certificate and key the same way: both files or both PEM",
        )),
        _ => Err(Error::invalid_argument(
            "a certificate needs its key and a key its certificate",
        )),
    }
}

/// The TLS settings of a connection; a plain `http://` endpoint (`secure` false) without
/// any TLS option is plain text.
pub fn client(options: Option<&TlsOptions>, secure: bool) -> Result<TlsClientConfig> {
    let defaults = TlsOptions::default();
    let options = options.unwrap_or(&defaults);
    let ca = one_of(&options.ca_file, &options.ca_pem, "ca")?;
    let pair = identity(
        &options.cert_file,
        &options.key_file,
        &options.cert_pem,
        &options.key_pem,
    )?;
    let wants_tls = ca.is_some() || pair.is_some() || options.insecure_skip_verify == Some(true);
    let insecure = options.insecure.unwrap_or(!secure && !wants_tls);
    if insecure && wants_tls {
        return Err(Error::invalid_argument(
            "tls.insecure turns TLS off; drop it to use the CA, certificate or skip-verify settings",
        ));
    }
    let mut config = TlsClientConfig::default()
        .with_insecure(insecure)
        .with_insecure_skip_verify(options.insecure_skip_verify.unwrap_or(false));
    if let Some(system) = options.system_ca {
        config = config.with_include_system_ca_certs_pool(system);
    }
    config = match ca {
        Some(Source::File(path)) => config.with_ca_file(path),
        Some(Source::Pem(pem)) => config.with_ca_pem(pem),
        None => config,
    };
    config = match pair {
        Some((Source::File(cert), Source::File(key))) => config.with_cert_and_key_file(cert, key),
        Some((Source::Pem(cert), Source::Pem(key))) => config.with_cert_and_key_pem(cert, key),
        _ => config,
    };
    Ok(config)
}

/// Completes a TLS handshake on `stream` as the upstream client would. Upstream retries a
/// failed handshake like a refused connection, so without this a wrong CA shows up as a
/// timeout instead of its cause.
pub async fn check_handshake(
    config: &TlsClientConfig,
    host: &str,
    stream: TcpStream,
    endpoint: &str,
) -> Result<()> {
    let failed = |why: String| {
        Error::new(
            Code::Connect,
            format!("TLS handshake with {endpoint} failed: {why}"),
        )
    };
    let Some(rustls_config) = config.load_rustls_config().await.map_err(|e| {
        Error::invalid_argument(format!("the TLS settings cannot be used: {}", chain(&e)))
    })?
    else {
        return Ok(());
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let server_name = ServerName::try_from(host.to_string()).map_err(|e| failed(e.to_string()))?;
    let mut session = tokio_rustls::TlsConnector::from(Arc::new(rustls_config))
        .connect(server_name, stream)
        .await
        .map_err(|e| failed(e.to_string()))?;
    // With TLS 1.3 a server that refuses our certificate says so after the handshake.
    use tokio::io::AsyncReadExt;
    let mut byte = [0u8; 1];
    match tokio::time::timeout(
        std::time::Duration::from_millis(200),
        session.read(&mut byte),
    )
    .await
    {
        Ok(Err(e)) => Err(failed(e.to_string())),
        _ => Ok(()),
    }
}

pub fn server(options: Option<&ServerTlsOptions>) -> Result<TlsServerConfig> {
    let Some(options) = options else {
        return Ok(TlsServerConfig::default().with_insecure(true));
    };
    let Some(pair) = identity(
        &options.cert_file,
        &options.key_file,
        &options.cert_pem,
        &options.key_pem,
    )?
    else {
        return Err(Error::invalid_argument(
            "a TLS node needs its certificate and key (certFile and keyFile, or certPem and keyPem)",
        ));
    };
    let mut config = TlsServerConfig::default().with_insecure(false);
    config = match pair {
        (Source::File(cert), Source::File(key)) => config.with_cert_and_key_file(cert, key),
        (Source::Pem(cert), Source::Pem(key)) => config.with_cert_and_key_pem(cert, key),
        _ => config,
    };
    config = match one_of(&options.client_ca_file, &options.client_ca_pem, "clientCa")? {
        Some(Source::File(path)) => config.with_client_ca_file(path),
        Some(Source::Pem(pem)) => config.with_client_ca_pem(pem),
        None => config,
    };
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::Code;

    #[test]
    fn plain_http_is_insecure_by_default() {
        assert!(client(None, false).unwrap().insecure);
        assert!(!client(None, true).unwrap().insecure);
    }

    #[test]
    fn a_ca_turns_tls_on_even_for_http() {
        let options = TlsOptions {
            ca_pem: Some("-----BEGIN CERTIFICATE-----".into()),
            ..Default::default()
        };
        assert!(!client(Some(&options), false).unwrap().insecure);
    }

    #[test]
    fn contradictions_and_missing_halves_are_refused() {
        let cases = [
            TlsOptions {
                insecure: Some(true),
                ca_pem: Some("x".into()),
                ..Default::default()
            },
            TlsOptions {
                cert_pem: Some("x".into()),
                ..Default::default()
            },
            TlsOptions {
                ca_file: Some("/nonexistent/ca.pem".into()),
                ..Default::default()
            },
            TlsOptions {
                ca_file: Some("a".into()),
                ca_pem: Some("b".into()),
                ..Default::default()
            },
            TlsOptions {
                ca_pem: Some("garbage".into()),
                ..Default::default()
            },
        ];
        for options in cases {
            let err = client(Some(&options), true).unwrap_err();
            assert_eq!(err.code, Code::InvalidArgument, "{options:?}");
        }
        assert!(server(Some(&ServerTlsOptions::default())).is_err());
    }

    #[test]
    fn the_system_ca_pool_is_trusted_unless_turned_off() {
        assert!(
            client(None, true)
                .unwrap()
                .config
                .include_system_ca_certs_pool
        );
        let off = TlsOptions {
            system_ca: Some(false),
            ..Default::default()
        };
        assert!(
            !client(Some(&off), true)
                .unwrap()
                .config
                .include_system_ca_certs_pool
        );
    }
}
