//! HTTPS: a certificate chain and key from PEM files, served with rustls.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

use crate::ConfigError;

/// A certificate chain and its private key, for [`Server::tls`](super::Server::tls).
///
/// ```no_run
/// use callnext::serve::{Server, TlsConfig};
///
/// let tls = TlsConfig::from_pem_files("cert.pem", "key.pem").unwrap();
/// let server = Server::new().tls(tls);
/// # let _ = server;
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    certs: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("certificates", &self.certs.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl TlsConfig {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or
    /// SEC1), and checks that the key belongs to the certificate.
    ///
    /// # Errors
    ///
    /// A file that cannot be read, holds no certificate or key, or a key that does not match;
    /// the message names the file.
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, ConfigError> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let certs = CertificateDer::pem_file_iter(cert)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|err| {
                ConfigError::invalid(
                    "tls_cert",
                    format!("{}: {}", cert.display(), pem_error(&err)),
                )
            })?;
        if certs.is_empty() {
            return Err(ConfigError::invalid(
                "tls_cert",
                format!("{}: no PEM certificate in it", cert.display()),
            ));
        }
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|err| {
            ConfigError::invalid("tls_key", format!("{}: {}", key.display(), pem_error(&err)))
        })?;
        let config = Self {
            certs,
            key: Arc::new(key_der),
        };
        // Builds once to check that the key is usable and matches the certificate.
        config
            .server_config(false)
            .map_err(|err| ConfigError::invalid("tls_key", format!("{}: {err}", key.display())))?;
        Ok(config)
    }

    /// The rustls configuration, with ALPN `h2` (unless HTTP/1 only) and `http/1.1`.
    pub(crate) fn server_config(
        &self,
        http2: bool,
    ) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.certs.clone(), self.key.clone_key())?;
        config.alpn_protocols = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Ok(Arc::new(config))
    }
}

fn pem_error(err: &rustls_pki_types::pem::Error) -> String {
    match err {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => {
            "no PEM item of the expected kind in it".to_owned()
        }
        other => format!("not valid PEM ({other:?})"),
    }
}
