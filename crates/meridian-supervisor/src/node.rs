//! One node in this process.

use crate::state_dir::state_dir;
use meridian_config::{Config, Placement, Role, ServiceRuntime};
use meridian_demo::{DemoOptions, Identity};
use meridian_http::secrets::Secret;
use std::os::unix::process::CommandExt;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("the config has no node named `{name}`; its nodes are: {known}")]
    UnknownNode { name: String, known: String },
    #[error(transparent)]
    Bind(#[from] meridian_http::BindError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the DNS node cannot start: {0}")]
    DnsOptions(#[from] meridian_dns::OptionsError),
    #[error(transparent)]
    Dns(#[from] meridian_dns::RunError),
    #[error(transparent)]
    Edge(#[from] meridian_edge::EdgeError),
    #[error("the balancer cannot serve TLS: {0}")]
    LbTls(#[from] meridian_http::tls::TlsError),
    #[error(transparent)]
    Console(#[from] meridian_console::ConsoleError),
    #[error(transparent)]
    Wan(#[from] meridian_sim::wan::WanError),
    #[error(transparent)]
    Db(#[from] meridian_db::DbError),
    #[error(transparent)]
    Cache(#[from] meridian_redis::CacheError),
    #[error("node `{0}` is not a database instance of this config")]
    NotADatabase(String),
    #[error("node `{0}` is not a cache node of this config")]
    NotACache(String),
    #[error("the balancer requires edge signatures but cannot read the signing key {path}: {source}; `meridian up` makes it, or write one (a random secret on one line)")]
    SigningKey {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Secret(#[from] meridian_http::secrets::SecretError),
    #[error("cannot read or make the secret {path}: {source}")]
    AdminToken {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start `{program}`: {source}")]
    Exec {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// The exit status of a node that restarting cannot fix (sysexits' EX_CONFIG): `up`
/// stops restarting it and says so, instead of looping.
pub const EXIT_NEEDS_A_PERSON: u8 = 78;

impl NodeError {
    /// Whether starting the node again cannot help.
    pub fn needs_a_person(&self) -> bool {
        match self {
            NodeError::Db(e) => e.needs_a_person(),
            NodeError::Cache(e) => e.needs_a_person(),
            NodeError::UnknownNode { .. }
            | NodeError::NotADatabase(_)
            | NodeError::NotACache(_) => true,
            _ => false,
        }
    }
}

/// The audit log of node `name`, in the state dir.
fn audit_log(name: &str) -> std::sync::Arc<meridian_http::audit::AuditLog> {
    std::sync::Arc::new(meridian_http::audit::AuditLog::open_or_warn(
        &state_dir(),
        name,
    ))
}

/// The deployment's admin token, from the state dir (`up` makes it before any node
/// starts; a node run on its own makes it there when it is missing).
fn admin_token(config: &Config) -> Result<meridian_http::secrets::AdminToken, NodeError> {
    Ok(meridian_http::secrets::AdminToken::load(
        &config.secrets.admin_token,
        &state_dir(),
    )?)
}

/// Runs node `name` of `config` until SIGINT or SIGTERM, then drains and returns. The
/// config gives public addresses; `placement` says where the listeners bind.
/// With `source`, a PoP, DNS or balancer node reloads that file on SIGHUP (`reload.rs`).
pub async fn run_node(
    config: &Config,
    name: &str,
    placement: Placement,
    source: Option<crate::reload::Source>,
) -> Result<(), NodeError> {
    let Some(node) = config.node_or_replacement(name) else {
        let known: Vec<String> = config.nodes().into_iter().map(|n| n.name).collect();
        return Err(NodeError::UnknownNode {
            name: name.to_owned(),
            known: known.join(", "),
        });
    };
    match node.role {
        Role::Lb => {
            let mut opts = meridian_lb::LbOptions::from_config(config, &node)
                .with_deployment_tls(config, &state_dir())?
                .with_access_log(&state_dir());
            opts.listen = placement.listen(opts.listen);
            if let Some((addr, _)) = &mut opts.tls {
                *addr = placement.listen(*addr);
            }
            opts.admin = placement.admin(opts.admin);
            match meridian_http::secrets::signer(&config.secrets.edge_signing_key, &state_dir()) {
                Ok(s) => opts.signer = Some(std::sync::Arc::new(s)),
                Err(e) if config.load_balancer.require_edge_signature => {
                    return Err(NodeError::SigningKey {
                        path: state_dir().join(meridian_http::signing::KEY_FILE),
                        source: std::io::Error::other(e.to_string()),
                    });
                }
                Err(e) => {
                    if !config.load_balancer.claim_headers.is_empty() {
                        tracing::warn!(
                            error = %e,
                            headers = ?config.load_balancer.claim_headers,
                            "no edge signing key: forwarded claims will be removed from every request (`meridian up` makes the key)"
                        );
                    }
                }
            }
            // SIGHUP: the balancer takes what it can in place (`meridian-lb`'s `live.rs`).
            let reloading = source.as_ref().and_then(|src| {
                Some(meridian_lb::Reloading {
                    digest: src.digest.clone(),
                    reloads: crate::reload::on_sighup(&src.path, &node.name, Ok)?,
                })
            });
            meridian_lb::run_reloading(
                opts,
                Some(admin_token(config)?),
                reloading,
                meridian_http::shutdown_signal(),
            )
            .await?;
        }
        Role::Wan => {
            let mut opts = meridian_sim::wan::WanOptions::new(node.admin, admin_token(config)?);
            opts.audit = audit_log(&node.name);
            meridian_sim::wan::run(config, opts, meridian_http::shutdown_signal()).await?;
        }
        Role::Console => {
            meridian_console::run_in(
                config.clone(),
                placement.listen_of(&node),
                Some(state_dir()),
                meridian_http::ServerOptions::default(),
                meridian_http::shutdown_signal(),
            )
            .await?;
        }
        Role::Edge => {
            let mut opts = meridian_edge::EdgeOptions::from_config(config, &node, &state_dir())?;
            opts.prior = meridian_sim::world::prior(config);
            opts.listen = placement.listen(opts.listen);
            if let Some((addr, _)) = &mut opts.https {
                *addr = placement.listen(*addr);
            }
            opts.admin = placement.admin(opts.admin);
            if let Some(src) = &source {
                opts.config_digest = src.digest.clone();
                opts.reloads = crate::reload::on_sighup(&src.path, &node.name, |c| {
                    meridian_edge::prepare_config(&c, &state_dir()).map_err(|e| e.to_string())
                });
            }
            meridian_edge::run(opts, meridian_http::shutdown_signal()).await?;
        }
        Role::Db => {
            let mut opts = db_options(config, &node)?;
            opts.listen = placement.listen(opts.listen);
            meridian_db::run(opts, meridian_http::shutdown_signal()).await?;
        }
        Role::Cache => {
            let opts = cache_options(config, &node)?;
            meridian_redis::run(opts, meridian_http::shutdown_signal()).await?;
        }
        Role::Dns => {
            let mut opts = meridian_dns::DnsOptions::from_config(config, &node)?;
            opts.admin_token = Some(admin_token(config)?);
            opts.audit = audit_log(&node.name);
            opts.prior = meridian_sim::world::prior(config);
            opts.listen = placement.listen(opts.listen);
            opts.admin = placement.admin(opts.admin);
            if let Some(src) = &source {
                opts.config_digest = src.digest.clone();
                opts.reloads = crate::reload::on_sighup(&src.path, &node.name, Ok);
            }
            meridian_dns::run(opts, meridian_http::shutdown_signal()).await?;
        }
        Role::Service => match &config.service.runtime {
            ServiceRuntime::Demo { processing_time } => {
                let opts = DemoOptions {
                    identity: Identity {
                        region: node.region.clone().unwrap_or_default(),
                        az: node.az.clone().unwrap_or_default(),
                        instance: node.name.clone(),
                    },
                    processing_time: *processing_time,
                    database: match config.database {
                        Some(_) => demo_database(config, &node, db_password(config)?),
                        None => None,
                    },
                    quote_cache: demo_quote_cache(config, &node, || cache_password(config))?,
                };
                let version = crate::instances::read_version(&state_dir(), config, &node.name);
                meridian_demo::serve_version(
                    placement.listen_of(&node),
                    opts,
                    meridian_demo::ServiceVersion(version),
                    meridian_http::ServerOptions::for_instance(),
                    meridian_http::shutdown_signal(),
                )
                .await?;
            }
            ServiceRuntime::Command { argv } => {
                // Replace this process with the user's server so signals reach it directly.
                // The user's server binds where the placement says this node listens.
                let listen = placement.listen_of(&node);
                let fill = |a: &String| {
                    a.replace("{host}", &listen.ip().to_string())
                        .replace("{port}", &listen.port().to_string())
                };
                let args: Vec<String> = argv.iter().map(fill).collect();
                let err = std::process::Command::new(&args[0])
                    .args(&args[1..])
                    .env("HOST", listen.ip().to_string())
                    .env("PORT", listen.port().to_string())
                    .env("MERIDIAN_REGION", node.region.clone().unwrap_or_default())
                    .env("MERIDIAN_AZ", node.az.clone().unwrap_or_default())
                    .env("MERIDIAN_INSTANCE", &node.name)
                    .env(
                        "MERIDIAN_SERVICE_VERSION",
                        crate::instances::read_version(&state_dir(), config, &node.name),
                    )
                    .exec();
                return Err(NodeError::Exec {
                    program: args[0].clone(),
                    source: err,
                });
            }
        },
    }
    Ok(())
}

/// A database node's PostgreSQL: its role in `[database]`, where its primary is, which
/// standbys the primary waits for, its data under `<state-dir>/db/<node>`, and the
/// deployment's database password.
fn db_options(
    config: &Config,
    node: &meridian_config::NodeSpec,
) -> Result<meridian_db::PgOptions, NodeError> {
    let not_db = || NodeError::NotADatabase(node.name.clone());
    let db = config.database.as_ref().ok_or_else(not_db)?;
    let instances = db.instances();
    let spec_of =
        |(region, az, _): &(String, String, meridian_config::DbRole)| config.db_node(region, az);
    let role = instances
        .iter()
        .find(|(_, az, _)| Some(az) == node.az.as_ref())
        .map(|i| i.2)
        .ok_or_else(not_db)?;
    let primary = instances.first().and_then(spec_of).ok_or_else(not_db)?;
    let named = |wanted: meridian_config::DbRole| -> Vec<String> {
        instances
            .iter()
            .filter(|i| i.2 == wanted)
            .filter_map(spec_of)
            .map(|n| n.name)
            .collect()
    };
    let dir = state_dir();
    let password = db_password(config)?;
    let is_primary = role == meridian_config::DbRole::Primary;
    Ok(meridian_db::PgOptions {
        name: node.name.clone(),
        role,
        listen: node.address,
        admin: node.admin,
        // Through the WAN when there is one: replication pays the distance between regions.
        upstream: (!is_primary).then_some(primary.address),
        // From the node's own address, so the WAN places the stream in its region (a
        // primary's too: after a failover it streams from the new one).
        source: Some(node.address.ip()),
        sync_standbys: if is_primary {
            named(meridian_config::DbRole::SyncStandby)
        } else {
            Vec::new()
        },
        replicas: if is_primary {
            [
                named(meridian_config::DbRole::SyncStandby),
                named(meridian_config::DbRole::Replica),
            ]
            .concat()
        } else {
            Vec::new()
        },
        data_dir: dir.join("db").join(&node.name),
        password,
        // Every other database node: the lease's witnesses, and the primaries to follow.
        peers: instances
            .iter()
            .filter_map(spec_of)
            .filter(|p| p.name != node.name)
            .map(|p| meridian_db::Peer {
                name: p.name.clone(),
                region: p.region.clone().unwrap_or_default(),
                admin: p.admin,
                address: p.address,
            })
            .collect(),
        lease: db.lease,
        admin_token: admin_token(config)?,
        public: node.address,
        writer: Some(config.db_writer_endpoint(node)),
        region: node.region.clone().unwrap_or_default(),
        home_region: db.home_region.clone(),
        promotion: db.promotion,
        max_promotion_lag: db.max_promotion_lag.0,
    })
}

/// A cache node's Redis: its role in its region's cache cluster, its peer (the other node
/// of the cluster), the region's primary endpoint, its directory under
/// `<state-dir>/cache/<node>`, and the deployment's cache password.
fn cache_options(
    config: &Config,
    node: &meridian_config::NodeSpec,
) -> Result<meridian_redis::CacheOptions, NodeError> {
    let not_cache = || NodeError::NotACache(node.name.clone());
    let cache = config.cache.as_ref().ok_or_else(not_cache)?;
    let region = node.region.as_deref().ok_or_else(not_cache)?;
    let nodes = cache.nodes();
    let role = nodes
        .iter()
        .find(|(r, az, _)| r == region && Some(az) == node.az.as_ref())
        .map(|n| n.2)
        .ok_or_else(not_cache)?;
    let peer = nodes
        .iter()
        .filter(|(r, az, _)| r == region && Some(az) != node.az.as_ref())
        .find_map(|(r, az, _)| config.cache_node(r, az))
        .map(|p| meridian_redis::Peer {
            name: p.name,
            address: p.address,
            admin: p.admin,
        });
    let dir = state_dir();
    let password = cache_password(config)?;
    Ok(meridian_redis::CacheOptions {
        name: node.name.clone(),
        role,
        listen: node.address,
        admin: node.admin,
        peer,
        password,
        maxmemory: cache.maxmemory.0,
        eviction: cache.eviction.as_str().to_owned(),
        failover: cache.failover,
        dir: dir.join("cache").join(&node.name),
        admin_token: admin_token(config)?,
        endpoint: config.cache_endpoint(region),
        audit: audit_log(&node.name),
    })
}

/// Where a demo instance caches quotes: its region's Redis primary endpoint, with the
/// cache tier's password (read only when there is a cache to give it to). None when
/// `[cache]` leaves the region out (or is absent).
fn demo_quote_cache(
    config: &Config,
    node: &meridian_config::NodeSpec,
    password: impl FnOnce() -> Result<Secret, NodeError>,
) -> Result<Option<meridian_demo::QuoteCacheOptions>, NodeError> {
    let Some(endpoint) = node
        .region
        .as_deref()
        .and_then(|region| config.cache_endpoint(region))
    else {
        return Ok(None);
    };
    Ok(Some(meridian_demo::QuoteCacheOptions::new(
        endpoint,
        Some(password()?),
    )))
}

/// The cache tier's password, from where `[secrets]` says (the state dir by default, which
/// `up` fills before any node); re-read, so `meridian secrets rotate cache-password` needs
/// no restart.
fn cache_password(config: &Config) -> Result<Secret, NodeError> {
    Ok(meridian_http::secrets::configured(
        &config.secrets.cache_password,
        &state_dir(),
        meridian_redis::PASSWORD_FILE,
    )?)
}

/// The database password, from where `[secrets]` says; re-read, so `meridian secrets
/// rotate db-password` needs no restart.
fn db_password(config: &Config) -> Result<Secret, NodeError> {
    Ok(meridian_http::secrets::configured(
        &config.secrets.db_password,
        &state_dir(),
        meridian_http::admin::DB_PASSWORD_FILE,
    )?)
}

/// Where a demo instance keeps orders: the writer endpoints of its region's database nodes
/// (then every other region's, so losing the region's keepers does not stop writes), and
/// its region's own PostgreSQL to read from, a replica or standby before the primary.
/// None without a `[database]`.
fn demo_database(
    config: &Config,
    node: &meridian_config::NodeSpec,
    password: Secret,
) -> Option<meridian_demo::DatabaseOptions> {
    let db = config.database.as_ref()?;
    let mut instances: Vec<(meridian_config::NodeSpec, meridian_config::DbRole)> = db
        .instances()
        .into_iter()
        .filter_map(|(region, az, role)| Some((config.db_node(&region, &az)?, role)))
        .collect();
    let home = |spec: &meridian_config::NodeSpec| spec.region == node.region;
    // Own region first; a stable sort keeps the configured order within each part.
    instances.sort_by_key(|(spec, _)| !home(spec));
    let writers = instances
        .iter()
        .map(|(spec, _)| config.db_writer_endpoint(spec))
        .collect();
    let mut readers: Vec<_> = instances.iter().filter(|(spec, _)| home(spec)).collect();
    readers.sort_by_key(|(_, role)| *role == meridian_config::DbRole::Primary);
    let readers = readers.into_iter().map(|(spec, _)| spec.address).collect();
    Some(meridian_demo::DatabaseOptions::new(
        writers, readers, password,
    ))
}

#[cfg(test)]
mod tests {
    use meridian_config::{Config, Role};
    use meridian_http::secrets::Secret;

    fn addrs(list: &[std::net::SocketAddr]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    /// A demo instance writes through its own region's writer endpoints first and reads
    /// its own region's replica or standby before the primary.
    #[test]
    fn demo_instances_get_their_regions_writers_and_readers() {
        let config = Config::embedded_default();
        let service_in = |region: &str| {
            config
                .nodes()
                .into_iter()
                .find(|n| n.role == Role::Service && n.region.as_deref() == Some(region))
                .expect("a service instance in the region")
        };
        let singapore =
            super::demo_database(&config, &service_in("ap-southeast-1"), "pw".into()).unwrap();
        assert_eq!(
            addrs(&singapore.writers),
            [
                "127.10.3.60:5434",
                "127.10.1.60:5434",
                "127.10.1.61:5434",
                "127.10.2.60:5434"
            ]
        );
        assert_eq!(addrs(&singapore.readers), ["127.10.3.60:5432"]);
        let virginia =
            super::demo_database(&config, &service_in("us-east-1"), "pw".into()).unwrap();
        assert_eq!(
            addrs(&virginia.writers)[..2],
            ["127.10.1.60:5434", "127.10.1.61:5434"]
        );
        // The synchronous standby first: it has every acknowledged write.
        assert_eq!(
            addrs(&virginia.readers),
            ["127.10.1.61:5432", "127.10.1.60:5432"]
        );
        assert_eq!(virginia.password.current(), "pw");
    }

    /// A demo instance caches quotes in its own region's Redis endpoint, and only where
    /// `[cache]` covers its region.
    #[test]
    fn demo_instances_get_their_regions_cache_endpoint() {
        let text = meridian_config::DEFAULT_CONFIG.replace(
            "regions = [\"us-east-1\", \"eu-west-1\", \"ap-southeast-1\"]   # default: every region",
            "regions = [\"eu-west-1\"]",
        );
        let config = Config::parse(&text, "test").expect("the default with one cache region");
        let service_in = |region: &str| {
            config
                .nodes()
                .into_iter()
                .find(|n| n.role == Role::Service && n.region.as_deref() == Some(region))
                .expect("a service instance in the region")
        };
        let password = || Ok("pw".into());
        let ireland = super::demo_quote_cache(&config, &service_in("eu-west-1"), password)
            .unwrap()
            .expect("eu-west-1 has a cache");
        assert_eq!(Some(ireland.endpoint), config.cache_endpoint("eu-west-1"));
        assert_eq!(ireland.password.map(|p| p.current()).as_deref(), Some("pw"));
        // No cache in the region: quotes bypass, and the password is not even read.
        let unread = || -> Result<Secret, super::NodeError> { panic!("read the password") };
        assert!(
            super::demo_quote_cache(&config, &service_in("us-east-1"), unread)
                .unwrap()
                .is_none()
        );
    }

    /// The CLI and the edge still name the token file through the edge crate.
    #[test]
    fn one_admin_token_file() {
        assert_eq!(
            meridian_edge::ADMIN_TOKEN_FILE,
            meridian_http::admin::TOKEN_FILE
        );
    }
}
