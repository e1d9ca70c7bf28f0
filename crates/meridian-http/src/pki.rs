//! The deployment CA: `meridian up` makes one per state dir and signs a certificate for
//! each balancer with it, so the edge can verify whom it sends viewers' requests to
//! instead of trusting whatever answers on a balancer's address.
//!
//! Files, in `<state-dir>/tls/`: `ca-cert.pem` (public: what edges trust), `ca-key.pem`
//! (owner-only), and per region `lb-<region>-cert.pem` and `lb-<region>-key.pem`.

use crate::secret_file::write_secret;
use crate::tls::TlsError;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The deployment CA's certificate in a state dir.
pub fn ca_cert_path(state_dir: &Path) -> PathBuf {
    state_dir.join("tls").join("ca-cert.pem")
}

fn ca_key_path(state_dir: &Path) -> PathBuf {
    state_dir.join("tls").join("ca-key.pem")
}

/// Where the certificate and key of the balancer of `region` live.
pub fn lb_cert_paths(state_dir: &Path, region: &str) -> (PathBuf, PathBuf) {
    let dir = state_dir.join("tls");
    (
        dir.join(format!("lb-{region}-cert.pem")),
        dir.join(format!("lb-{region}-key.pem")),
    )
}

/// The CA's parameters, always the same: a CA certificate made again from its key has the
/// subject and key identifier of the one edges trust, so it can sign more balancers later.
fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Meridian deployment CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(p)
}

fn write_public(path: &Path, pem: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}", std::process::id()));
    std::fs::write(&tmp, pem)?;
    std::fs::rename(&tmp, path)
}

/// The CA of a state dir, made when there is none yet.
fn ensure_ca(state_dir: &Path) -> Result<(rcgen::Certificate, KeyPair), TlsError> {
    let err = |detail: String| TlsError::DevCert {
        dir: state_dir.join("tls"),
        detail,
    };
    let (cert_path, key_path) = (ca_cert_path(state_dir), ca_key_path(state_dir));
    std::fs::create_dir_all(state_dir.join("tls")).map_err(|e| err(e.to_string()))?;
    let key = match std::fs::read_to_string(&key_path) {
        Ok(pem) if cert_path.exists() => {
            KeyPair::from_pem(&pem).map_err(|e| err(format!("{}: {e}", key_path.display())))?
        }
        _ => {
            let key = KeyPair::generate().map_err(|e| err(e.to_string()))?;
            write_secret(&key_path, key.serialize_pem().as_bytes())
                .map_err(|e| err(e.to_string()))?;
            let cert = ca_params()
                .and_then(|p| p.self_signed(&key))
                .map_err(|e| err(e.to_string()))?;
            write_public(&cert_path, &cert.pem()).map_err(|e| err(e.to_string()))?;
            key
        }
    };
    let cert = ca_params()
        .and_then(|p| p.self_signed(&key))
        .map_err(|e| err(e.to_string()))?;
    Ok((cert, key))
}

/// Makes the deployment CA (once) and a certificate for the balancer of `region` signed by
/// it (once per region) for `names` (DNS names or IP addresses). Returns (cert, key) paths.
pub fn ensure_lb_cert(
    state_dir: &Path,
    region: &str,
    names: &[String],
) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert_path, key_path) = lb_cert_paths(state_dir, region);
    let ready = || cert_path.exists() && key_path.exists() && ca_cert_path(state_dir).exists();
    if ready() {
        return Ok((cert_path, key_path));
    }
    // One maker at a time (balancers started together share the CA and must not each make
    // one), checked again under the lock.
    let dir = state_dir.join("tls");
    let mut issued = None;
    crate::secret_file::made_once(&dir, "pki", || {
        if !ready() {
            issued = Some(issue_lb_cert(state_dir, region, names));
        }
        Ok(())
    })
    .map_err(|e| TlsError::DevCert {
        dir: dir.clone(),
        detail: e.to_string(),
    })?;
    issued.unwrap_or(Ok((cert_path, key_path)))
}

/// A new key and certificate for the balancer of `region`, signed by the current CA. The
/// key is written first and the certificate second: a balancer reading in between keeps
/// the pair it has (they do not match) and takes the new one at its next look.
pub fn issue_lb_cert(
    state_dir: &Path,
    region: &str,
    names: &[String],
) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert_path, key_path) = lb_cert_paths(state_dir, region);
    let err = |detail: String| TlsError::DevCert {
        dir: state_dir.join("tls"),
        detail,
    };
    let (ca, ca_key) = ensure_ca(state_dir)?;
    let key = KeyPair::generate().map_err(|e| err(e.to_string()))?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(|e| err(e.to_string()))?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("lb-{region}"));
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .map_err(|e| err(e.to_string()))?;
    write_secret(&key_path, key.serialize_pem().as_bytes()).map_err(|e| err(e.to_string()))?;
    write_public(&cert_path, &cert.pem()).map_err(|e| err(e.to_string()))?;
    Ok((cert_path, key_path))
}

/// The file that holds the CA certificate trusted beside the current one after a rotation:
/// the unix time its trust ends on the first line, then the PEM.
pub fn previous_ca_path(state_dir: &Path) -> PathBuf {
    crate::secret_file::previous_path(&ca_cert_path(state_dir))
}

/// Replaces the deployment CA with a new key and certificate. The old certificate stays
/// trusted until now + `grace` (in [`previous_ca_path`]), so balancers whose certificate
/// the old CA signed keep working while theirs are issued again ([`issue_lb_cert`]).
/// Returns the end of the grace.
pub fn rotate_ca(state_dir: &Path, grace: Duration) -> Result<SystemTime, TlsError> {
    let err = |detail: String| TlsError::DevCert {
        dir: state_dir.join("tls"),
        detail,
    };
    let cert_path = ca_cert_path(state_dir);
    let old = std::fs::read_to_string(&cert_path).map_err(|e| TlsError::Ca {
        path: cert_path.clone(),
        detail: e.to_string(),
    })?;
    let until = SystemTime::now() + grace;
    let unix = until
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Old first, then the new pair: a node reading in between trusts the old CA twice.
    write_public(&previous_ca_path(state_dir), &format!("{unix}\n{old}"))
        .map_err(|e| err(e.to_string()))?;
    let key = KeyPair::generate().map_err(|e| err(e.to_string()))?;
    let cert = ca_params()
        .and_then(|p| p.self_signed(&key))
        .map_err(|e| err(e.to_string()))?;
    write_secret(&ca_key_path(state_dir), key.serialize_pem().as_bytes())
        .map_err(|e| err(e.to_string()))?;
    write_public(&cert_path, &cert.pem()).map_err(|e| err(e.to_string()))?;
    Ok(until)
}

/// The end of the previous CA's trust, when a rotation left one that is still trusted.
pub fn previous_ca_until(ca_file: &Path) -> Option<SystemTime> {
    let text = std::fs::read_to_string(crate::secret_file::previous_path(ca_file)).ok()?;
    let until = UNIX_EPOCH + Duration::from_secs(text.lines().next()?.trim().parse().ok()?);
    (until > SystemTime::now()).then_some(until)
}

fn read_roots(ca_file: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let read_err = |detail: String| TlsError::Ca {
        path: ca_file.to_owned(),
        detail,
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca_file).map_err(|e| read_err(e.to_string()))? {
        roots
            .add(c.map_err(|e| read_err(e.to_string()))?)
            .map_err(|e| read_err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate {
            path: ca_file.to_owned(),
        });
    }
    // The CA a rotation replaced, while its grace lasts. A damaged one is left out: the
    // current CA alone is what the rotation is moving to.
    if previous_ca_until(ca_file).is_some() {
        if let Ok(text) = std::fs::read(crate::secret_file::previous_path(ca_file)) {
            for c in CertificateDer::pem_slice_iter(&text).flatten() {
                let _ = roots.add(c);
            }
        }
    }
    Ok(roots)
}

fn file_stamps(ca_file: &Path) -> [crate::tls::FileStamp; 2] {
    [
        crate::tls::stamp(ca_file),
        crate::tls::stamp(&crate::secret_file::previous_path(ca_file)),
    ]
}

fn verifier_for(
    ca_file: &Path,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(read_roots(ca_file)?), provider.clone())
        .build()
        .map_err(|e| TlsError::Ca {
            path: ca_file.to_owned(),
            detail: e.to_string(),
        })
}

/// Verifies upstream certificates against the CA file, read again when it (or the
/// previous CA's file) changes and when the previous CA's grace ends: a rotated CA is
/// trusted without a restart. The files are looked at no more than once per
/// [`crate::secrets::RELOAD`]; a file that does not load leaves the trust as it was.
#[derive(Debug)]
struct TrustedCas {
    ca_file: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    state: RwLock<Trust>,
}

#[derive(Debug)]
struct Trust {
    checked: Instant,
    stamps: [crate::tls::FileStamp; 2],
    previous_until: Option<SystemTime>,
    verifier: Arc<WebPkiServerVerifier>,
}

impl TrustedCas {
    fn stamps(&self) -> [crate::tls::FileStamp; 2] {
        file_stamps(&self.ca_file)
    }

    fn build(&self) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
        verifier_for(&self.ca_file, &self.provider)
    }

    fn current(&self) -> Arc<WebPkiServerVerifier> {
        {
            let t = self.state.read().unwrap_or_else(|p| p.into_inner());
            if t.checked.elapsed() < crate::secret_file::RELOAD {
                return t.verifier.clone();
            }
        }
        let mut t = self.state.write().unwrap_or_else(|p| p.into_inner());
        if t.checked.elapsed() >= crate::secret_file::RELOAD {
            t.checked = Instant::now();
            let stamps = self.stamps();
            let grace_over = t.previous_until.is_some_and(|u| u <= SystemTime::now());
            if stamps != t.stamps || grace_over {
                let previous_until = previous_ca_until(&self.ca_file);
                match self.build() {
                    Ok(v) => {
                        t.verifier = v;
                        t.stamps = stamps;
                        t.previous_until = previous_until;
                        tracing::info!(ca = %self.ca_file.display(), "trusted CAs changed: verifying with the new set");
                    }
                    Err(e) => tracing::warn!("keeping the trusted CAs in use: {e}"),
                }
            }
        }
        t.verifier.clone()
    }
}

impl ServerCertVerifier for TrustedCas {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.current().verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

/// A client config that trusts only the CA certificates in `ca_file`: TLS 1.3 and 1.2,
/// the cipher suites of [`crate::tls::provider`], HTTP/1.1 (the upstream pool speaks it).
pub fn client_config(ca_file: &Path) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = Arc::new(crate::tls::provider());
    // Stamps before reading, so a change in between is seen at the next look.
    let stamps = file_stamps(ca_file);
    let previous_until = previous_ca_until(ca_file);
    let trusted = TrustedCas {
        ca_file: ca_file.to_owned(),
        provider: provider.clone(),
        state: RwLock::new(Trust {
            checked: Instant::now(),
            stamps,
            previous_until,
            verifier: verifier_for(ca_file, &provider)?,
        }),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(crate::tls::VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(trusted))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balancer_certificates_chain_to_the_deployment_ca() {
        let d = std::env::temp_dir().join(format!("meridian-pki-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let names = vec!["127.87.1.1".to_owned(), "lb-r1.example.test".to_owned()];
        let (cert, key) = ensure_lb_cert(&d, "r1", &names).unwrap();
        // A second region, signed by the CA made again from its key file.
        let (cert2, _) = ensure_lb_cert(&d, "r2", &names).unwrap();
        use std::os::unix::fs::PermissionsExt;
        for k in [key, ca_key_path(&d)] {
            let mode = std::fs::metadata(&k).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", k.display());
        }
        let roots = {
            let mut r = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca_cert_path(&d)).unwrap() {
                r.add(c.unwrap()).unwrap();
            }
            Arc::new(r)
        };
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots,
            Arc::new(crate::tls::provider()),
        )
        .build()
        .unwrap();
        for c in [cert, cert2] {
            let leaf = CertificateDer::from_pem_file(&c).unwrap();
            for name in ["lb-r1.example.test", "127.87.1.1"] {
                let sn = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
                verifier
                    .verify_server_cert(&leaf, &[], &sn, &[], rustls::pki_types::UnixTime::now())
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
