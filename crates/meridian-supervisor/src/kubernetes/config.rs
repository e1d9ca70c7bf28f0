//! The config the pods run: the user's, with every node placed on a `[[host]]` of its own
//! whose address is the node's fixed ClusterIP, and with what Kubernetes provides instead
//! of this machine (secrets from a mounted Secret, the real network instead of the WAN).
//!
//! The result is read back through the config's own checks (`check_placement` included),
//! so what the manifests say and what the nodes read cannot drift apart.

use super::addresses::ServiceRange;
use super::error::ExportError;
use meridian_config::{Config, Role, SecretSource, Secrets};
use toml::{Table, Value};

/// The placed config, its text, and the notes on what was left out.
pub(crate) struct Placed {
    pub config: Config,
    pub text: String,
    pub notes: Vec<String>,
}

/// Where the pod finds the deployment's secrets (the Secret's keys, one file each).
pub const SECRETS_DIR: &str = "/etc/meridian/secrets";

/// The secrets the pods read, as `[secrets]` keys (and the Secret's keys).
pub(crate) const SECRET_KEYS: &[&str] = &["admin_token", "edge_signing_key", "disk_cache_key"];

/// Each of [`SECRET_KEYS`] with where `secrets` says it comes from.
pub(crate) fn secret_sources(secrets: &Secrets) -> Vec<(&'static str, &SecretSource)> {
    SECRET_KEYS
        .iter()
        .map(|k| {
            let s = match *k {
                "admin_token" => &secrets.admin_token,
                "edge_signing_key" => &secrets.edge_signing_key,
                _ => &secrets.disk_cache_key,
            };
            (*k, s)
        })
        .collect()
}

/// Refuses what cannot run in Kubernetes yet, naming the user's file and key.
fn refuse(cfg: &Config) -> Result<(), ExportError> {
    let cannot = |key: &str, problem: &str, fix: &str| ExportError::CannotPlace {
        file: cfg.origin.clone(),
        key: key.to_owned(),
        problem: problem.to_owned(),
        fix: fix.to_owned(),
    };
    if !cfg.hosts.is_empty() {
        return Err(cannot(
            "host",
            "the Kubernetes export places every node itself (one pod and one Service each)",
            "remove the [[host]] entries; `meridian deploy` is the export for machines of your own",
        ));
    }
    if cfg.service.autoscaling.is_some() {
        return Err(cannot(
            "service.autoscaling",
            "autoscaling starts instances on the supervisor's machine; in Kubernetes each instance is a Deployment of its own",
            "remove [service.autoscaling] and set `[service] instances_per_az`",
        ));
    }
    Ok(())
}

/// Places `cfg` (read from `text`) on ClusterIPs from `range`.
pub(crate) fn place(cfg: &Config, text: &str, range: &ServiceRange) -> Result<Placed, ExportError> {
    refuse(cfg)?;
    let bug = |e: String| ExportError::ExportedConfig(e);
    let mut table: Table = text.parse().map_err(|e| bug(format!("{e}")))?;
    let mut notes = Vec::new();
    if cfg.simulation.wan {
        notes.push(
            "the simulated WAN is off: between pods the network is the cluster's own".to_owned(),
        );
    }
    let simulation = table
        .entry("simulation")
        .or_insert_with(|| Value::Table(Table::new()));
    if let Value::Table(t) = simulation {
        t.insert("wan".to_owned(), Value::Boolean(false));
    }
    if let Some(db) = &cfg.database {
        table.remove("database");
        notes.push(format!(
            "[database] runs as the CloudNativePG Cluster in {}/database.yaml (needs the CloudNativePG operator){}; instances of `runtime = \"command\"` get its writer as DATABASE_URL, the demo instances do not connect to it (the config cannot name an outside PostgreSQL yet)",
            db.home_region,
            if db.replicas.is_empty() {
                String::new()
            } else {
                format!(
                    ", without the replicas in {}",
                    db.replicas.iter().map(|r| r.region.as_str()).collect::<Vec<_>>().join(", ")
                )
            }
        ));
    }
    if cfg.cache.is_some() {
        table.remove("cache");
        notes.push("[cache] (Redis) is not exported yet: the instances run without it".to_owned());
    }
    let mut secrets = Table::new();
    for (key, source) in secret_sources(&cfg.secrets) {
        let mut s = Table::new();
        match source {
            // A variable stays one: the pod sets it from the Secret's key.
            SecretSource::Env(name) => s.insert("env".to_owned(), Value::String(name.clone())),
            SecretSource::File(_) | SecretSource::StateDir => s.insert(
                "file".to_owned(),
                Value::String(format!("{SECRETS_DIR}/{key}")),
            ),
        };
        secrets.insert(key.to_owned(), Value::Table(s));
    }
    table.insert("secrets".to_owned(), Value::Table(secrets));
    // The PoPs trust the one deployment CA the export makes, mounted from its Secret.
    if let Some(ca) = super::tls::origin_ca_file(cfg) {
        let d = table
            .entry("distribution")
            .or_insert_with(|| Value::Table(Table::new()));
        if let Value::Table(d) = d {
            d.insert("origin_ca_file".to_owned(), Value::String(ca));
        }
    }

    let unplaced = serialize(&table)?;
    let unplaced = Config::parse(&unplaced, &cfg.origin).map_err(|e| bug(e.to_string()))?;
    let nodes: Vec<_> = unplaced
        .nodes()
        .into_iter()
        .filter(|n| !matches!(n.role, Role::Wan | Role::Db | Role::Cache))
        .collect();
    let ips = range.take(nodes.len())?;
    let hosts: Vec<Value> = nodes
        .iter()
        .zip(&ips)
        .map(|(n, ip)| {
            let mut h = Table::new();
            h.insert("name".to_owned(), Value::String(n.name.clone()));
            h.insert("address".to_owned(), Value::String(ip.to_string()));
            h.insert(
                "nodes".to_owned(),
                Value::Array(vec![Value::String(n.name.clone())]),
            );
            Value::Table(h)
        })
        .collect();
    table.insert("host".to_owned(), Value::Array(hosts));
    let text = format!(
        "# Exported by `meridian export kubernetes` from {}: every node is on a [[host]] of its\n# own whose address is its Service's fixed ClusterIP (service range {}).\n\n{}",
        cfg.origin,
        range.cidr(),
        serialize(&table)?
    );
    let origin = format!("{} (exported for Kubernetes)", cfg.origin);
    let config = Config::parse(&text, &origin).map_err(|e| bug(e.to_string()))?;
    Ok(Placed {
        config,
        text,
        notes,
    })
}

fn serialize(table: &Table) -> Result<String, ExportError> {
    toml::to_string(table).map_err(|e| ExportError::ExportedConfig(e.to_string()))
}
