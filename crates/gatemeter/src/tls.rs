//! TLS for the HTTP API and the PostgreSQL endpoint (docs/security.md,
//! "TLS"): one certificate chain and key in PEM files, given by
//! `--tls-cert`/`--tls-key` or `[tls] cert_file`/`key_file`. With them,
//! HTTP speaks only HTTPS and PostgreSQL clients must ask for TLS
//! (`sslmode=require` or stricter).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::error::CliError;

/// The `[tls]` config keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFileConfig {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

/// Where the certificate chain and its key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TlsFileConfig {
    /// Flags beat the file; a certificate needs its key and the other way
    /// round.
    pub fn resolve(
        self,
        cert_flag: Option<PathBuf>,
        key_flag: Option<PathBuf>,
    ) -> Result<Option<TlsSettings>, CliError> {
        match (cert_flag.or(self.cert_file), key_flag.or(self.key_file)) {
            (None, None) => Ok(None),
            (Some(cert_file), Some(key_file)) => Ok(Some(TlsSettings {
                cert_file,
                key_file,
            })),
            (Some(_), None) => Err(CliError::Usage(
                "--tls-cert is set but --tls-key is not: give both, or neither".into(),
            )),
            (None, Some(_)) => Err(CliError::Usage(
                "--tls-key is set but --tls-cert is not: give both, or neither".into(),
            )),
        }
    }
}

/// One acceptor per protocol: they differ only in the ALPN name offered.
#[derive(Clone)]
pub struct TlsAcceptors {
    pub http: TlsAcceptor,
    pub pg: TlsAcceptor,
}

fn pem_error(path: &Path, what: &str, error: impl std::fmt::Display) -> CliError {
    CliError::Io {
        path: path.display().to_string(),
        reason: format!("cannot read {what} (PEM): {error}"),
    }
}

impl TlsSettings {
    /// Reads the PEM files and builds the acceptors; every failure names
    /// the file and what was wrong with it.
    pub fn acceptors(&self) -> Result<TlsAcceptors, CliError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert_file)
            .map_err(|e| pem_error(&self.cert_file, "the certificate", e))?
            .collect::<Result<_, _>>()
            .map_err(|e| pem_error(&self.cert_file, "the certificate", e))?;
        if chain.is_empty() {
            return Err(pem_error(
                &self.cert_file,
                "the certificate",
                "no CERTIFICATE block",
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key_file)
            .map_err(|e| pem_error(&self.key_file, "the private key", e))?;
        let config = |alpn: &[u8]| -> Result<TlsAcceptor, CliError> {
            let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
            let mut config = ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .and_then(|builder| {
                    builder
                        .with_no_client_auth()
                        .with_single_cert(chain.clone(), key.clone_key())
                })
                .map_err(|e| CliError::Io {
                    path: self.key_file.display().to_string(),
                    reason: format!("the key does not fit the certificate: {e}"),
                })?;
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok(TlsAcceptor::from(Arc::new(config)))
        };
        Ok(TlsAcceptors {
            http: config(b"http/1.1")?,
            // What libpq 17 and later offer.
            pg: config(b"postgresql")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_needs_its_key() {
        let resolved = TlsFileConfig::default().resolve(Some("cert.pem".into()), None);
        assert!(matches!(resolved, Err(CliError::Usage(m)) if m.contains("--tls-key")));
        let file = TlsFileConfig {
            cert_file: Some("file-cert.pem".into()),
            key_file: Some("key.pem".into()),
        };
        assert_eq!(
            file.resolve(Some("flag-cert.pem".into()), None)
                .expect("resolves"),
            Some(TlsSettings {
                cert_file: "flag-cert.pem".into(),
                key_file: "key.pem".into(),
            })
        );
    }

    #[test]
    fn unreadable_pem_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "not a certificate").expect("write");
        let settings = TlsSettings {
            cert_file: cert.clone(),
            key_file: dir.path().join("missing.pem"),
        };
        let error = settings.acceptors().err().expect("refused").to_string();
        assert!(
            error.contains("cert.pem") && error.contains("certificate"),
            "{error}"
        );
    }
}
