//! Meridian's CDN edge: one `edge` node per point of presence (CloudFront's edge location).
//!
//! A PoP terminates viewers' HTTP/1.1, HTTP/2 and TLS connections (and HTTP/3 over QUIC
//! when the distribution's `http_version` says so), picks the distribution's
//! behavior for the path, answers from its two-tier cache under RFC 9111 with CloudFront's
//! TTL rules, collapses concurrent misses into one origin fetch, serves stale content while
//! revalidating or when origins fail, and fetches from the best healthy member of an
//! origin group, failing over inside the viewer's request. Admin endpoints (invalidation,
//! cache and origin status) listen on their own address and need the deployment's token.

mod admin;
pub mod client;
pub mod clock;
mod compress;
mod edge;
pub mod functions;
pub mod http3;
pub mod key;
pub mod live;
mod log;
pub mod origin;
mod phases;
mod protect;
mod rate_share;
pub mod sealed;
pub mod store;
pub mod viewer;

pub use edge::Edge;
pub use log::AccessLog;
pub use phases::outcome::Outcome;

use meridian_config::{Config, NodeSpec};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file in a state dir that holds the admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// Everything one PoP node needs to run.
pub struct EdgeOptions {
    pub pop: String,
    pub config: Config,
    pub listen: SocketAddr,
    /// The HTTPS listener, with its TLS config.
    pub https: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
    pub admin: SocketAddr,
    /// Re-read every few seconds: a rotated token works without a restart.
    pub admin_token: meridian_http::secrets::AdminToken,
    /// Where admin actions are recorded.
    pub audit: Arc<meridian_http::audit::AuditLog>,
    /// Where the disk tier keeps its files (emptied at start).
    pub disk_dir: Option<PathBuf>,
    /// The key sealing the disk tier's files; None: files are plaintext.
    pub disk_key: Option<Arc<sealed::DiskKey>>,
    pub access_log: Option<PathBuf>,
    /// The deployment's edge signing keys (origin access control); None: origin requests
    /// go unsigned.
    pub signer: Option<Arc<meridian_http::signing::Signer>>,
    /// What the cache reads "now" from: the system clock, or a test's manual one.
    pub clock: Arc<dyn clock::Clock>,
    /// What origins are ranked by until they are measured (see `Member::rank_key`); the
    /// supervisor hands over the latency model when `[simulation] prior` is on.
    pub prior: meridian_config::Prior,
    /// The digest of the config file (`/health` reports it; empty when not from a file).
    pub config_digest: String,
    /// New configs to serve without a restart (SIGHUP); None: the config is fixed.
    pub reloads: Option<live::Reloads>,
}

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("node `{0}` is not an edge PoP of this config")]
    NotAPop(String),
    #[error(transparent)]
    Bind(#[from] meridian_http::BindError),
    #[error(transparent)]
    Tls(#[from] meridian_http::tls::TlsError),
    #[error(transparent)]
    H3(#[from] http3::H3Error),
    #[error("the disk cache key {path} is unusable: {source}")]
    DiskKey {
        path: PathBuf,
        #[source]
        source: sealed::SealError,
    },
    #[error(transparent)]
    Secret(#[from] meridian_http::secrets::SecretError),
    #[error(transparent)]
    Setup(#[from] edge::SetupError),
    #[error(transparent)]
    DevKey(#[from] meridian_protect::dev_key::DevKeyError),
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The admin token of a state dir, made (random, owner-only) when there is none yet.
pub fn admin_token(state_dir: &Path) -> Result<String, EdgeError> {
    // One token for every node's admin endpoint: meridian-http makes and keeps it.
    meridian_http::admin::token(state_dir).map_err(|source| EdgeError::Io {
        path: state_dir.join(meridian_http::admin::TOKEN_FILE),
        source,
    })
}

/// The disk cache key from where `[secrets] disk_cache_key` says: the state dir's file
/// (made, random and owner-only, when there is none) or the named file or variable.
pub fn disk_key(
    source: &meridian_config::SecretSource,
    state_dir: &Path,
) -> Result<sealed::DiskKey, EdgeError> {
    let file = meridian_http::admin::DISK_CACHE_KEY_FILE;
    let path = match meridian_http::secrets::location(source, state_dir, file) {
        meridian_http::secrets::Location::File(p) => p,
        meridian_http::secrets::Location::Env(v) => PathBuf::from(format!("${v}")),
    };
    let hex = match source {
        meridian_config::SecretSource::StateDir => {
            meridian_http::admin::key_secret(state_dir, file, 32).map_err(|source| {
                EdgeError::Io {
                    path: path.clone(),
                    source,
                }
            })?
        }
        other => meridian_http::secrets::configured(other, state_dir, file)
            .map_err(|e| EdgeError::Io {
                path: path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?
            .current(),
    };
    sealed::DiskKey::from_hex(&hex).map_err(|source| EdgeError::DiskKey { path, source })
}

/// Names a development certificate should cover for this deployment.
pub fn dev_cert_names(cfg: &Config) -> Vec<String> {
    let zone = &cfg.deployment.zone;
    let mut names = vec![
        zone.clone(),
        format!("*.{zone}"),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
    ];
    for p in &cfg.edges {
        if let Some((a, _)) = cfg.pop_addresses(&p.name) {
            names.push(a.ip().to_string());
        }
    }
    names
}

/// The config as a PoP serves it: the origin CA and development JWKS resolved against
/// the state dir (what a reload must compare with what is served).
pub fn prepare_config(cfg: &Config, state_dir: &Path) -> Result<Config, EdgeError> {
    with_dev_jwks(with_origin_ca(cfg, state_dir)?, state_dir)
}

/// The config with the CA the edge verifies balancers against resolved: the one it
/// names, else the deployment CA of the state dir; checked now, so a PoP that cannot verify
/// its origins says so at start.
fn with_origin_ca(cfg: &Config, state_dir: &Path) -> Result<Config, EdgeError> {
    let mut cfg = cfg.clone();
    if cfg.distribution.origin_protocol == meridian_config::OriginProtocol::Https {
        let ca = cfg
            .distribution
            .origin_ca_file
            .get_or_insert_with(|| meridian_http::pki::ca_cert_path(state_dir));
        meridian_http::pki::client_config(ca)?;
    }
    Ok(cfg)
}

/// The config with every JWT authorizer that names no JWKS file pointed at the state dir's
/// development key (made when missing; `up` makes them before starting PoPs).
fn with_dev_jwks(mut cfg: Config, state_dir: &Path) -> Result<Config, EdgeError> {
    for a in &mut cfg.distribution.protection.jwt_authorizers {
        if a.jwks.is_none() {
            a.jwks = Some(meridian_protect::dev_key::ensure(state_dir, &a.name)?);
        }
    }
    Ok(cfg)
}

impl EdgeOptions {
    /// The options of PoP node `node`, with state (token, certificate, disk cache, access
    /// log) under `state_dir`.
    pub fn from_config(cfg: &Config, node: &NodeSpec, state_dir: &Path) -> Result<Self, EdgeError> {
        // A PoP, or a regional edge cache (`[distribution.tiered_cache]`).
        let pop = cfg
            .edge_site(node)
            .ok_or_else(|| EdgeError::NotAPop(node.name.clone()))?;
        let certs: Vec<meridian_http::tls::CertFiles> = if cfg.distribution.certificates.is_empty()
        {
            let (cert, key) = meridian_http::tls::ensure_dev_cert(state_dir, &dev_cert_names(cfg))?;
            vec![meridian_http::tls::CertFiles {
                names: Vec::new(),
                cert,
                key,
            }]
        } else {
            cfg.distribution
                .certificates
                .iter()
                .map(|c| meridian_http::tls::CertFiles {
                    names: c.names.clone(),
                    cert: c.cert.clone(),
                    key: c.key.clone(),
                })
                .collect()
        };
        let tls = meridian_http::tls::server_config(&certs)?;
        let config = with_dev_jwks(with_origin_ca(cfg, state_dir)?, state_dir)?;
        let https = cfg
            .tls_address(node)
            .ok_or_else(|| EdgeError::NotAPop(node.name.clone()))?;
        Ok(EdgeOptions {
            pop: pop.name.clone(),
            listen: node.address,
            https: Some((https, tls)),
            admin: node.admin,
            admin_token: meridian_http::secrets::AdminToken::load(
                &cfg.secrets.admin_token,
                state_dir,
            )?,
            audit: Arc::new(meridian_http::audit::AuditLog::open_or_warn(
                state_dir, &node.name,
            )),
            disk_dir: (pop.disk_cache.0 > 0).then(|| state_dir.join("cache").join(&pop.name)),
            disk_key: if pop.disk_encryption {
                Some(Arc::new(disk_key(&cfg.secrets.disk_cache_key, state_dir)?))
            } else {
                None
            },
            access_log: cfg.distribution.access_log.then(|| {
                state_dir
                    .join("logs")
                    .join(format!("access-{}.log", pop.name))
            }),
            // `up` makes the key; a PoP run without one signs nothing.
            signer: meridian_http::secrets::signer(&cfg.secrets.edge_signing_key, state_dir)
                .ok()
                .map(Arc::new),
            clock: Arc::new(clock::SystemClock),
            prior: None,
            config_digest: String::new(),
            reloads: None,
            config,
        })
    }
}

/// Runs a PoP until `shutdown` resolves, then drains open requests.
pub async fn run(
    mut opts: EdgeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), EdgeError> {
    let pop = opts
        .config
        .edge_site_named(&opts.pop)
        .ok_or_else(|| EdgeError::NotAPop(opts.pop.clone()))?;
    let listener = meridian_http::bind(opts.listen).await?;
    let admin_listener = meridian_http::bind(opts.admin).await?;
    let https_listener = match &opts.https {
        Some((addr, _)) => Some(meridian_http::bind(*addr).await?),
        None => None,
    };
    // HTTP/3 on UDP at the HTTPS address and port, with the same certificates.
    let h3_endpoint = match &opts.https {
        Some((addr, tls)) if opts.config.distribution.http_version.http3() => {
            Some(http3::bind(*addr, tls)?)
        }
        _ => None,
    };
    let store = store::Store::new(
        pop.memory_cache.0,
        opts.disk_dir.clone(),
        pop.disk_cache.0,
        opts.disk_key.clone(),
    )
    .map_err(|source| EdgeError::Io {
        path: opts.disk_dir.clone().unwrap_or_default(),
        source,
    })?;
    // Origin connections leave from the PoP's own address, as they would from its machine.
    let edge = Edge::new(
        &pop.name,
        &opts.config,
        &opts.prior,
        Some(opts.listen.ip()),
        store,
        AccessLog::open(opts.access_log.clone()),
        opts.clock.clone(),
    )?;
    if let Some(s) = &opts.signer {
        edge.origins().sign_with(s.clone());
    }
    let checks = edge.origins().start_checks();
    let live = live::LiveEdge::new(edge.clone(), &opts.config_digest);
    let reloader = opts.reloads.take().map(|mut rx| {
        let live = live.clone();
        tokio::spawn(async move {
            while let Some((cfg, digest)) = rx.recv().await {
                match live.reload(&cfg, &digest) {
                    Ok(()) => tracing::info!(config = %digest, "edge reloaded its distribution"),
                    Err(e) => tracing::error!("reload refused, keeping the current config: {e}"),
                }
            }
        })
    });
    // Rate counts from the other PoPs (`rate_share.rs`), when there are limits to share.
    let share = (!opts
        .config
        .distribution
        .protection
        .rate_based_rules
        .is_empty())
    .then(|| {
        tokio::spawn(rate_share::run(
            edge.clone(),
            rate_share::peers(&opts.config, &pop.name),
            opts.admin_token.clone(),
        ))
    });
    tracing::info!(pop = %pop.name, listen = %opts.listen, https = ?opts.https.as_ref().map(|h| h.0), http3 = h3_endpoint.is_some(), admin = %opts.admin, "edge listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        edge.clone(),
        opts.admin_token.clone(),
        opts.audit.clone(),
        stopped(stop_rx.clone()),
    ));
    let server_opts = meridian_http::ServerOptions::default();
    let https_task = match (https_listener, &opts.https) {
        (Some(l), Some((_, tls))) => {
            let e = live.clone();
            let acceptor = meridian_http::tls::acceptor(tls.clone());
            Some(tokio::spawn(meridian_http::serve_handlers(
                l,
                server_opts.clone(),
                Some(acceptor),
                move |peer| e.viewers(peer),
                stopped(stop_rx.clone()),
            )))
        }
        _ => None,
    };
    let h3_task = h3_endpoint.map(|endpoint| {
        tokio::spawn(http3::serve(
            endpoint,
            live.clone(),
            server_opts.clone(),
            stopped(stop_rx.clone()),
        ))
    });
    let e = live.clone();
    let main = meridian_http::serve_handlers(
        listener,
        server_opts,
        None,
        move |peer| e.viewers(peer),
        async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        },
    );
    main.await;
    if let Some(t) = https_task {
        let _ = t.await;
    }
    if let Some(t) = h3_task {
        let _ = t.await;
    }
    for c in checks {
        c.abort();
    }
    if let Some(s) = share {
        s.abort();
    }
    if let Some(r) = reloader {
        r.abort();
    }
    let _ = admin_task.await;
    tracing::info!(pop = %pop.name, "edge stopped");
    Ok(())
}

/// What a PoP's viewer listeners serve on one connection: each request takes the
/// distribution current when it arrives and keeps it to the end (checking that costs one
/// atomic load), over any protocol's request body.
#[derive(Clone)]
pub struct Viewers {
    live: live::LiveEdge,
    seen: u64,
    edge: Edge,
    peer: meridian_http::Peer,
}

impl live::LiveEdge {
    /// The handler for one viewer connection.
    pub fn viewers(&self, peer: meridian_http::Peer) -> Viewers {
        let (seen, edge) = self.snapshot();
        Viewers {
            live: self.clone(),
            seen,
            edge,
            peer,
        }
    }
}

impl meridian_http::Handler for Viewers {
    fn call<B>(
        &self,
        req: http::Request<B>,
        interim: Option<meridian_http::interim::InterimConn>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = http::Response<meridian_http::Body>> + Send>,
    >
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<meridian_http::BoxError>,
    {
        // A connection opened before a reload takes the lock for each request after it.
        let edge = if self.live.generation() == self.seen {
            self.edge.clone()
        } else {
            self.live.now()
        };
        let mut peer = self.peer.clone();
        if interim.is_some() {
            peer.interim = interim;
        }
        Box::pin(async move { edge.handle(req, peer).await })
    }
}

#[cfg(test)]
mod tests {
    use super::disk_key;
    use meridian_config::SecretSource;

    #[test]
    fn the_disk_key_comes_from_where_the_config_says() {
        let dir = std::env::temp_dir().join(format!("meridian-disk-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // The state dir: made once (64 hex digits), kept after.
        let made = dir.join(meridian_http::admin::DISK_CACHE_KEY_FILE);
        disk_key(&SecretSource::StateDir, &dir).unwrap();
        let first = std::fs::read_to_string(&made).unwrap();
        assert_eq!(first.trim().len(), 64, "{first}");
        disk_key(&SecretSource::StateDir, &dir).unwrap();
        assert_eq!(std::fs::read_to_string(&made).unwrap(), first);
        // A variable: read, never made; a missing one names itself.
        std::fs::remove_file(&made).unwrap();
        let var = "MERIDIAN_TEST_DISK_KEY_NOT_SET";
        let e = disk_key(&SecretSource::Env(var.into()), &dir).unwrap_err();
        assert!(e.to_string().contains(var), "{e}");
        assert!(
            !made.exists(),
            "nothing is made in the state dir for a variable"
        );
        // A file: read; a key that is not 32 bytes of hex is refused with its path.
        let file = dir.join("mounted-key");
        std::fs::write(&file, format!("{}\n", "ab".repeat(32))).unwrap();
        disk_key(&SecretSource::File(file.clone()), &dir).unwrap();
        std::fs::write(&file, "short\n").unwrap();
        let e = disk_key(&SecretSource::File(file.clone()), &dir).unwrap_err();
        assert!(e.to_string().contains("mounted-key"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
