//! The deployment CA: `meridian up` makes one per state dir and signs a certificate for
//! each balancer with it, so the edge can verify whom it sends viewers' requests to
//! instead of trusting whatever answers on a balancer's address.
//!
//! Files, in `<state-dir>/tls/`: `ca-cert.pem` (public: what edges trust), `ca-key.pem`
//! (owner-only), and per region `lb-<region>-cert.pem` and `lb-<region>-key.pem`.

use crate::tls::{write_secret, TlsError};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    if cert_path.exists() && key_path.exists() && ca_cert_path(state_dir).exists() {
        return Ok((cert_path, key_path));
    }
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

/// A client config that trusts only the CA certificates in `ca_file`: TLS 1.3 and 1.2,
/// the cipher suites of [`crate::tls::provider`], HTTP/1.1 (the upstream pool speaks it).
pub fn client_config(ca_file: &Path) -> Result<Arc<rustls::ClientConfig>, TlsError> {
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
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(crate::tls::provider()))
        .with_protocol_versions(crate::tls::VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

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
