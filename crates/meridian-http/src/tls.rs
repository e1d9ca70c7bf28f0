//! TLS for viewer listeners: rustls with the ring provider, TLS 1.2 and 1.3 only, HTTP/2
//! by ALPN, certificates from PEM files, and development certificates made on the spot.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

pub use crate::secret_file::write_secret;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {detail}\n  fix: check the path in [[distribution.certificate]], or remove it to use a development certificate")]
    Read {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("cannot read the CA certificate {path}: {detail}\n  fix: `meridian up` makes <state-dir>/tls/ca-cert.pem; or name your CA's PEM file in [distribution] origin_ca_file, or set origin_protocol = \"http\"")]
    Ca { path: PathBuf, detail: String },
    #[error("{path} holds no certificate in PEM form\n  fix: give the full chain, starting with -----BEGIN CERTIFICATE-----")]
    NoCertificate { path: PathBuf },
    #[error("the certificate and key cannot be used together: {0}")]
    Config(String),
    #[error("cannot make a development certificate in {dir}: {detail}")]
    DevCert { dir: PathBuf, detail: String },
}

/// One certificate for [`server_config`]: PEM files and the names it serves.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// Server names (`*.example.com` for a wildcard); may be empty for the default.
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn load(
    c: &CertFiles,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let read_err = |what, path: &Path, e: &dyn std::fmt::Display| TlsError::Read {
        what,
        path: path.to_owned(),
        detail: e.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.cert)
        .map_err(|e| read_err("certificate", &c.cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err("certificate", &c.cert, &e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: c.cert.clone(),
        });
    }
    let key =
        PrivateKeyDer::from_pem_file(&c.key).map_err(|e| read_err("private key", &c.key, &e))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Config(format!("{}: {e}", c.key.display())))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match().map_err(|e| {
        TlsError::Config(format!("{} and {}: {e}", c.cert.display(), c.key.display()))
    })?;
    Ok(Arc::new(ck))
}

/// Picks a certificate by the client's SNI: an exact name, then a wildcard one label up,
/// then the first certificate.
#[derive(Debug)]
struct BySni {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name().map(|n| n.to_ascii_lowercase()) else {
            return Some(self.default.clone());
        };
        if let Some(c) = self.exact.get(&name) {
            return Some(c.clone());
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(c) = self.wildcard.get(parent) {
                return Some(c.clone());
            }
        }
        Some(self.default.clone())
    }
}

/// The protocol versions of every Meridian TLS endpoint and client: 1.3 and 1.2. Older
/// ones (SSL 3, TLS 1.0, 1.1) are broken or deprecated (RFC 8996) and never offered.
pub static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The cipher suites, pinned rather than left to the library's defaults so that an upgrade
/// cannot widen them unnoticed: AEAD only, forward secret only (ECDHE), AES-GCM first
/// (hardware AES), ChaCha20-Poly1305 for machines without it. No CBC, no RSA key exchange.
pub static CIPHER_SUITES: &[rustls::SupportedCipherSuite] = {
    use rustls::crypto::ring::cipher_suite::*;
    &[
        TLS13_AES_256_GCM_SHA384,
        TLS13_AES_128_GCM_SHA256,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ]
};

/// The ring provider restricted to [`CIPHER_SUITES`] (key exchange: X25519, P-256, P-384).
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::CryptoProvider {
        cipher_suites: CIPHER_SUITES.to_vec(),
        ..rustls::crypto::ring::default_provider()
    }
}

impl BySni {
    fn load(
        certs: &[CertFiles],
        provider: &rustls::crypto::CryptoProvider,
    ) -> Result<BySni, TlsError> {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut default = None;
        for c in certs {
            let ck = load(c, provider)?;
            default.get_or_insert_with(|| ck.clone());
            for n in &c.names {
                let n = n.to_ascii_lowercase();
                match n.strip_prefix("*.") {
                    Some(parent) => wildcard.insert(parent.to_owned(), ck.clone()),
                    None => exact.insert(n, ck.clone()),
                };
            }
        }
        let default = default.ok_or_else(|| TlsError::Config("no certificate was given".into()))?;
        Ok(BySni {
            exact,
            wildcard,
            default,
        })
    }
}

/// What identifies one version of a file: a renewal writes a new file (a rename gives a
/// new inode) or rewrites it (a new modification time or length).
pub(crate) type FileStamp = Option<(u64, std::time::SystemTime, u64)>;

fn stamps(files: &[CertFiles]) -> Vec<FileStamp> {
    files
        .iter()
        .flat_map(|c| [stamp(&c.cert), stamp(&c.key)])
        .collect()
}

pub(crate) fn stamp(path: &Path) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.modified().ok()?, m.len()))
}

/// The certificates of a listener, read again when their files change: a renewed
/// certificate (an ACME client's, or `meridian secrets rotate lb-certificates`) is served
/// from the next handshake on, without a restart. The files are looked at no more than
/// once per [`crate::secrets::RELOAD`]; a pair that does not load (a key written before
/// its certificate) leaves the previous one in use until the next look.
#[derive(Debug)]
struct Reloading {
    files: Vec<CertFiles>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    state: RwLock<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    checked: Instant,
    stamps: Vec<FileStamp>,
    sni: Arc<BySni>,
}

impl Reloading {
    fn stamps(&self) -> Vec<FileStamp> {
        stamps(&self.files)
    }

    fn current(&self) -> Arc<BySni> {
        {
            let s = self.state.read().unwrap_or_else(|p| p.into_inner());
            if s.checked.elapsed() < crate::secret_file::RELOAD {
                return s.sni.clone();
            }
        }
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        if s.checked.elapsed() >= crate::secret_file::RELOAD {
            s.checked = Instant::now();
            let stamps = self.stamps();
            if stamps != s.stamps {
                match BySni::load(&self.files, &self.provider) {
                    Ok(sni) => {
                        s.sni = Arc::new(sni);
                        s.stamps = stamps;
                        tracing::info!("certificates changed on disk: serving the new ones");
                    }
                    Err(e) => tracing::warn!("keeping the certificates in use: {e}"),
                }
            }
        }
        s.sni.clone()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current().resolve(hello)
    }
}

/// A server config for one or more certificates chosen by SNI: [`VERSIONS`] only, the
/// suites of [`provider`], HTTP/2 and HTTP/1.1 by ALPN. The certificates are read again
/// when their files change (see [`Reloading`]).
pub fn server_config(certs: &[CertFiles]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(provider());
    // The stamps are taken before reading: a change in between is then seen at the next
    // look, rather than recorded as already loaded.
    let stamps = stamps(certs);
    let reloading = Reloading {
        files: certs.to_vec(),
        provider: provider.clone(),
        state: RwLock::new(Loaded {
            checked: Instant::now(),
            stamps,
            sni: Arc::new(BySni::load(certs, &provider)?),
        }),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(reloading));
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
    let dir = state_dir.join("tls");
    let err = |detail: String| TlsError::DevCert {
        dir: dir.clone(),
        detail,
    };
    // One maker at a time: two PoPs starting together would otherwise each write a key and
    // a certificate, and one of them could read the other's key beside its own certificate.
    crate::secret_file::made_once(&dir, "dev-cert", || {
        if cert_path.exists() && key_path.exists() {
            return Ok(());
        }
        let certified = rcgen::generate_simple_self_signed(names.to_vec())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        // Both go to temporary names and are renamed, so a concurrent reader never sees
        // half a file; the key is owner-only from the moment it exists.
        write_secret(&key_path, certified.key_pair.serialize_pem().as_bytes())?;
        let tmp_cert = dir.join(format!(".cert.{}", std::process::id()));
        std::fs::write(&tmp_cert, certified.cert.pem())?;
        std::fs::rename(&tmp_cert, &cert_path)
    })
    .map_err(|e| err(e.to_string()))?;
    Ok((cert_path, key_path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("meridian-http-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn nodes_starting_together_make_one_matching_dev_pair() {
        for round in 0..4 {
            let d = scratch(&format!("dev-race-{round}"));
            let names = vec!["localhost".to_owned()];
            let makers: Vec<_> = (0..6)
                .map(|_| {
                    let (d, names) = (d.clone(), names.clone());
                    std::thread::spawn(move || ensure_dev_cert(&d, &names))
                })
                .collect();
            for m in makers {
                let (cert, key) = m.join().unwrap().expect("a pair");
                // Every maker gets a key that belongs to the certificate beside it.
                server_config(&[CertFiles {
                    names: names.clone(),
                    cert,
                    key,
                }])
                .expect("the key matches the certificate");
            }
            let _ = std::fs::remove_dir_all(&d);
        }
    }

    #[test]
    fn the_dev_key_is_owner_only() {
        let d = scratch("devcert");
        let (cert, key) = ensure_dev_cert(&d, &["localhost".into()]).unwrap();
        assert_eq!(mode(&key), 0o600);
        assert!(std::fs::read_to_string(&cert)
            .unwrap()
            .contains("BEGIN CERTIFICATE"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
