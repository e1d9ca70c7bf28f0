//! What `up` makes before any node starts: the deployment's secrets (or a check that the
//! ones the config names exist), the PoPs' development certificate, JWT development keys,
//! and the deployment CA with each balancer's certificate.

use meridian_config::{Config, Role};
use std::path::Path;

/// Whether a node of `role` reads the deployment secret `key` (`admin_token`,
/// `edge_signing_key`, `db_password`, `cache_password`, `disk_cache_key`): a host's bundle
/// and a pod carry only their nodes' secrets, so a DNS server never holds the database
/// password and a balancer never the PoPs' disk key. Every node serves an admin API.
pub(crate) fn read_by(key: &str, role: Role) -> bool {
    match key {
        "admin_token" => true,
        // PoPs sign what they send to origins; balancers check it.
        "edge_signing_key" => matches!(role, Role::Edge | Role::Lb),
        "disk_cache_key" => role == Role::Edge,
        "db_password" => matches!(role, Role::Db | Role::Service),
        "cache_password" => matches!(role, Role::Cache | Role::Service),
        _ => true,
    }
}

/// Whether anything that runs on `host` reads the secret `key` (None: every node, as `up`
/// runs them; a host's agent serves an admin API of its own).
pub(crate) fn read_on(cfg: &Config, host: Option<&str>, key: &str) -> bool {
    let Some(host) = host else {
        return true;
    };
    key == "admin_token"
        || cfg
            .nodes()
            .iter()
            .any(|n| cfg.host_of(n).is_some_and(|h| h.name == host) && read_by(key, n.role))
}

/// What could not be made, and where.
pub(crate) struct Unprepared {
    pub path: std::path::PathBuf,
    pub source: std::io::Error,
}

/// Makes (or checks) everything the nodes read from the state dir `state_dir`; `host`: the
/// host an agent runs (None: `up`, every node on this machine).
pub(crate) fn prepare(
    cfg: &Config,
    state_dir: &Path,
    host: Option<&str>,
) -> Result<(), Unprepared> {
    // Made once here, so the nodes started next share one token (PoPs, DNS, WAN) and one
    // database password, and the PoPs one certificate.
    // (where, file, random bytes): keys are 32 bytes (AES-256), the others 16.
    let mut secrets = vec![
        (
            "admin_token",
            &cfg.secrets.admin_token,
            meridian_http::admin::TOKEN_FILE,
            16,
        ),
        (
            "edge_signing_key",
            &cfg.secrets.edge_signing_key,
            meridian_http::signing::KEY_FILE,
            16,
        ),
    ];
    if cfg.database.is_some() {
        secrets.push((
            "db_password",
            &cfg.secrets.db_password,
            meridian_http::admin::DB_PASSWORD_FILE,
            16,
        ));
    }
    if cfg.cache.is_some() {
        secrets.push((
            "cache_password",
            &cfg.secrets.cache_password,
            meridian_redis::PASSWORD_FILE,
            16,
        ));
    }
    if cfg.edges.iter().any(|p| p.disk_encryption) {
        secrets.push((
            "disk_cache_key",
            &cfg.secrets.disk_cache_key,
            meridian_http::admin::DISK_CACHE_KEY_FILE,
            32,
        ));
    }
    // A host has only its nodes' secrets (its bundle carries no others).
    let secrets: Vec<_> = secrets
        .into_iter()
        .filter(|(key, ..)| read_on(cfg, host, key))
        .map(|(_, source, file, bytes)| (source, file, bytes))
        .collect();
    // Secrets the config places in a file or variable: a missing one is said once here,
    // not by every node failing in a restart loop. Nothing is made outside the state dir.
    for (source, file, _) in &secrets {
        if **source != meridian_config::SecretSource::StateDir {
            meridian_http::secrets::configured(source, state_dir, file).map_err(|e| {
                Unprepared {
                    path: state_dir.to_path_buf(),
                    source: std::io::Error::other(e.to_string()),
                }
            })?;
        }
    }
    let secrets: Vec<(&str, usize)> = secrets
        .into_iter()
        .filter(|(source, _, _)| **source == meridian_config::SecretSource::StateDir)
        .map(|(_, file, bytes)| (file, bytes))
        .collect();
    for (file, bytes) in secrets {
        meridian_http::admin::key_secret(state_dir, file, bytes).map_err(|source| Unprepared {
            path: state_dir.join(file),
            source,
        })?;
    }
    if !cfg.edges.is_empty() && cfg.distribution.certificates.is_empty() {
        meridian_http::tls::ensure_dev_cert(state_dir, &meridian_edge::dev_cert_names(cfg))
            .map_err(|e| Unprepared {
                path: state_dir.to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })?;
    }

    // Development signing keys of JWT authorizers without a JWKS file, made once here so
    // the PoPs starting together all read the same one (`meridian token` mints with it).
    if !cfg.edges.is_empty() {
        for a in &cfg.distribution.protection.jwt_authorizers {
            if a.jwks.is_none() {
                meridian_protect::dev_key::ensure(state_dir, &a.name).map_err(|e| Unprepared {
                    path: state_dir.join("jwt"),
                    source: std::io::Error::other(e.to_string()),
                })?;
            }
        }
    }

    // On a host, the deployment CA and the balancers' certificates come with the bundle
    // (`meridian deploy` made them once): a CA made here would be this host's alone, and
    // no PoP on another host would trust its balancer.
    if let Some(host) = host {
        return deployment_ca_present(cfg, state_dir, host);
    }
    // The deployment CA and each balancer's certificate, before any edge needs the CA.
    balancer_certificates(cfg, state_dir, false).map_err(|e| Unprepared {
        path: state_dir.join("tls"),
        source: std::io::Error::other(e.to_string()),
    })
}

/// The deployment CA (made once in `dir`) and a certificate for each region's balancer,
/// for the names it is reached by in `cfg`: what `up` keeps in its state dir, and what
/// `meridian deploy` and the Kubernetes export make once to hand out. `fresh`: sign the
/// balancers' certificates again even where there are some (an export for other
/// addresses); otherwise those there are kept.
pub(crate) fn balancer_certificates(
    cfg: &Config,
    dir: &Path,
    fresh: bool,
) -> Result<(), meridian_http::tls::TlsError> {
    for r in &cfg.regions {
        let names = meridian_lb::cert_names(cfg, &r.name);
        if fresh {
            meridian_http::pki::issue_lb_cert(dir, &r.name, &names)?;
        } else {
            meridian_http::pki::ensure_lb_cert(dir, &r.name, &names)?;
        }
    }
    Ok(())
}

/// On a host whose PoPs reach balancers over TLS, or whose balancers serve it: the
/// deployment CA (and this host's balancers' certificates) must be in the state dir.
fn deployment_ca_present(cfg: &Config, state_dir: &Path, host: &str) -> Result<(), Unprepared> {
    use meridian_config::Role;
    if cfg.distribution.origin_protocol != meridian_config::OriginProtocol::Https {
        return Ok(());
    }
    let here: Vec<meridian_config::NodeSpec> = cfg
        .nodes()
        .into_iter()
        .filter(|n| cfg.host_of(n).is_some_and(|h| h.name == host))
        .collect();
    let mut needed = Vec::new();
    if here.iter().any(|n| matches!(n.role, Role::Edge | Role::Lb)) {
        needed.push(meridian_http::pki::ca_cert_path(state_dir));
    }
    for n in here.iter().filter(|n| n.role == Role::Lb) {
        let (cert, key) =
            meridian_http::pki::lb_cert_paths(state_dir, n.region.as_deref().unwrap_or_default());
        needed.extend([cert, key]);
    }
    match needed.into_iter().find(|p| !p.exists()) {
        None => Ok(()),
        Some(missing) => Err(Unprepared {
            path: missing,
            source: std::io::Error::other(
                "missing: PoPs reach balancers over TLS, and every host needs the one deployment CA; install this host's bundle from `meridian deploy` (it carries `state/tls/`), or set `[distribution] origin_protocol = \"http\"`",
            ),
        }),
    }
}
