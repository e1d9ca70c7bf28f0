//! TLS for viewer listeners: rustls with the ring provider, TLS 1.2 and 1.3 only, HTTP/2
//! by ALPN, certificates from PEM files, and development certificates made on the spot.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {detail}\n  fix: check the path in [distribution.tls], or remove that table to use a development certificate")]
    Read {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("{path} holds no certificate in PEM form\n  fix: give the full chain, starting with -----BEGIN CERTIFICATE-----")]
    NoCertificate { path: PathBuf },
    #[error("the certificate and key cannot be used together: {0}")]
    Config(String),
    #[error("cannot make a development certificate in {dir}: {detail}")]
    DevCert { dir: PathBuf, detail: String },
}

/// A server config for a certificate chain and key in PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Read {
            what: "certificate",
            path: cert.to_owned(),
            detail: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Read {
            what: "certificate",
            path: cert.to_owned(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Read {
        what: "private key",
        path: key.to_owned(),
        detail: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

pub fn acceptor(config: Arc<rustls::ServerConfig>) -> tokio_rustls::TlsAcceptor {
    tokio_rustls::TlsAcceptor::from(config)
}

/// Where the development certificate of a state dir lives.
pub fn dev_cert_paths(state_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = state_dir.join("tls");
    (dir.join("dev-cert.pem"), dir.join("dev-key.pem"))
}

/// Makes a self-signed development certificate for `names` (DNS names or IP addresses)
/// in `<state_dir>/tls/` unless one is there already; returns (cert, key) paths.
pub fn ensure_dev_cert(state_dir: &Path, names: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert_path, key_path) = dev_cert_paths(state_dir);
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let err = |detail: String| TlsError::DevCert {
        dir: state_dir.join("tls"),
        detail,
    };
    let certified = rcgen::generate_simple_self_signed(names.to_vec()).map_err(|e| err(e.to_string()))?;
    let dir = state_dir.join("tls");
    std::fs::create_dir_all(&dir).map_err(|e| err(e.to_string()))?;
    // Write to temporary names and rename, so a concurrent reader never sees half a file.
    let tmp_cert = dir.join(format!(".cert.{}", std::process::id()));
    let tmp_key = dir.join(format!(".key.{}", std::process::id()));
    std::fs::write(&tmp_cert, certified.cert.pem()).map_err(|e| err(e.to_string()))?;
    std::fs::write(&tmp_key, certified.key_pair.serialize_pem()).map_err(|e| err(e.to_string()))?;
    restrict(&tmp_key);
    std::fs::rename(&tmp_key, &key_path).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp_cert, &cert_path).map_err(|e| err(e.to_string()))?;
    Ok((cert_path, key_path))
}

/// Makes a secret file readable by its owner only.
pub fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}
