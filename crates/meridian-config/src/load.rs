//! Reading a config: syntax, then every section (each file holds its own reader, defaults
//! and checks), then the checks that span sections.

use crate::cache_tier::{read_cache, CacheTier};
use crate::client_location::{read_client_location, ClientLocation};
use crate::common::read_named;
use crate::console::{default_console, read_console, Console};
use crate::database::{read_database, Database};
use crate::deployment::{read_deployment, Deployment};
use crate::distribution::{default_distribution, read_distribution, Distribution};
use crate::dns::{check_aliases, default_dns, read_dns, Dns};
use crate::edge::{read_pop, Pop};
use crate::error::{ConfigErrors, Diagnostics};
use crate::host::{read_host, Host};
use crate::load_balancer::{default_lb, read_lb, LoadBalancer};
use crate::network::{default_network, read_network, Network};
use crate::raw;
use crate::read::Table;
use crate::region::{check_totals, read_regions, Region};
use crate::security::{read_secrets, Secrets};
use crate::service::{default_service, read_service, Service};
use crate::simulation::{read_simulation, Simulation};
use crate::supervisor::{default_supervisor, read_supervisor, Supervisor};
use serde::Serialize;

/// The seed's deployment, used when no config file is given.
pub const DEFAULT_CONFIG: &str = include_str!("../default.toml");
/// How the embedded default is named in messages.
pub const DEFAULT_ORIGIN: &str = "<embedded default>";

/// A whole deployment, validated.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Where the config came from, for messages (`<embedded default>` or a path).
    pub origin: String,
    pub deployment: Deployment,
    pub network: Network,
    pub regions: Vec<Region>,
    pub service: Service,
    pub load_balancer: LoadBalancer,
    pub supervisor: Supervisor,
    pub edges: Vec<Pop>,
    pub distribution: Distribution,
    pub dns: Dns,
    pub client_locations: Vec<ClientLocation>,
    pub simulation: Simulation,
    pub console: Console,
    /// The data tier; None when the deployment keeps no state of its own.
    pub database: Option<Database>,
    /// The cache tier (ElastiCache); None when the deployment runs no Redis.
    pub cache: Option<CacheTier>,
    /// Where the admin token and the edge signing key come from.
    pub secrets: Secrets,
    /// The machines nodes run on (`[[host]]`); none means this one machine.
    pub hosts: Vec<Host>,
}

impl Config {
    /// The embedded default deployment.
    pub fn embedded_default() -> Config {
        match Config::parse(DEFAULT_CONFIG, DEFAULT_ORIGIN) {
            Ok(c) => c,
            // The default is checked by a test; failing here is a build defect, not user input.
            Err(e) => panic!("the embedded default config is invalid:\n{e}"),
        }
    }

    /// Reads a config file; the error lists every problem found.
    pub fn load(path: &std::path::Path) -> Result<Config, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoadError::Read {
            path: path.display().to_string(),
            source: e,
        })?;
        Ok(Config::parse(&text, &path.display().to_string())?)
    }

    /// Parses config text; `origin` names it in messages.
    pub fn parse(src: &str, origin: &str) -> Result<Config, ConfigErrors> {
        let mut d = Diagnostics::new(origin, src);
        let root = match raw::parse(src) {
            Ok(v) => v,
            Err((msg, span)) => {
                let span = span.unwrap_or(0..0);
                let (key, fix) = match msg.starts_with("duplicate key") {
                    true => duplicate(src, span.clone()),
                    false => (
                        String::new(),
                        "fix the syntax at the marked place (see https://toml.io for the format)"
                            .to_owned(),
                    ),
                };
                d.error(span, &key, format!("TOML syntax: {msg}"), fix);
                return Err(d.finish().err().unwrap_or_else(|| ConfigErrors(Vec::new())));
            }
        };
        let mut cfg =
            Table::new(String::new(), &root, &mut d).and_then(|t| read_root(&t, &mut d, origin));
        // Files named in the config are relative to the config file.
        if let (Some(c), Some(dir)) = (cfg.as_mut(), std::path::Path::new(origin).parent()) {
            if origin != DEFAULT_ORIGIN {
                let fix = |p: &mut std::path::PathBuf| {
                    if p.is_relative() {
                        *p = dir.join(&*p);
                    }
                };
                if let Some(zf) = c.dns.zone_file.as_mut() {
                    fix(zf);
                }
                for cert in &mut c.distribution.certificates {
                    fix(&mut cert.cert);
                    fix(&mut cert.key);
                }
                for f in &mut c.distribution.functions {
                    if let crate::distribution::FunctionSource::File(p) = &mut f.source {
                        fix(p);
                    }
                }
                for source in [
                    &mut c.secrets.admin_token,
                    &mut c.secrets.edge_signing_key,
                    &mut c.secrets.db_password,
                    &mut c.secrets.cache_password,
                    &mut c.secrets.disk_cache_key,
                ] {
                    if let crate::security::SecretSource::File(p) = source {
                        fix(p);
                    }
                }
                for s in &mut c.distribution.key_value_stores {
                    if let Some(p) = s.file.as_mut() {
                        fix(p);
                    }
                }
            }
        }
        if let Some(c) = &cfg {
            c.check_placement(&mut d);
        }
        d.finish()?;
        // Every reader that gives up records why, so this is only a guard against a bug.
        cfg.ok_or_else(|| {
            let mut d = Diagnostics::new(origin, src);
            d.error(
                0..0,
                "",
                "the config could not be read",
                "report this as a Meridian bug, with the config",
            );
            d.finish().err().unwrap_or(ConfigErrors(Vec::new()))
        })
    }

    /// The primary region (validation guarantees there is exactly one).
    pub fn primary_region(&self) -> &Region {
        self.regions
            .iter()
            .find(|r| r.primary)
            .unwrap_or(&self.regions[0])
    }

    pub fn instances_per_az(&self, region: &Region) -> u32 {
        region
            .instances_per_az
            .unwrap_or(self.service.instances_per_az)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(#[from] ConfigErrors),
}

fn read_root(t: &Table, d: &mut Diagnostics, origin: &str) -> Option<Config> {
    let deployment = match t.table(d, "deployment") {
        Some(s) => read_deployment(&s, d),
        None if !t.has("deployment") => {
            t.missing(
                d,
                "deployment",
                "add a [deployment] table with `name` and `zone`",
            );
            None
        }
        None => None,
    };
    let network = match t.table(d, "network") {
        Some(s) => read_network(&s, d),
        None => Some(default_network()),
    };
    let regions = read_regions(t, d);
    let service = match t.table(d, "service") {
        Some(s) => read_service(&s, d),
        None => Some(default_service()),
    };
    let load_balancer = match t.table(d, "load_balancer") {
        Some(s) => read_lb(&s, d),
        None => Some(default_lb()),
    };
    let supervisor = match t.table(d, "supervisor") {
        Some(s) => read_supervisor(&s, d),
        None => Some(default_supervisor()),
    };
    let edges = read_named(t, d, "edge", read_pop);
    let distribution = match (t.table(d, "distribution"), &regions) {
        (Some(s), Some(r)) => read_distribution(&s, d, r),
        (None, Some(r)) => Some(default_distribution(r)),
        (_, None) => None,
    };
    let dns = match t.table(d, "dns") {
        Some(s) => read_dns(&s, d),
        None => Some(default_dns()),
    };
    let simulation = match t.table(d, "simulation") {
        Some(s) => read_simulation(&s, d),
        None => Some(Simulation::default()),
    };
    let console = match (t.table(d, "console"), &regions, &edges) {
        (Some(s), Some(r), Some(e)) => {
            let places: Vec<String> = r
                .iter()
                .map(|r| r.name.clone())
                .chain(e.iter().map(|p| p.name.clone()))
                .collect();
            read_console(&s, d, &places)
        }
        (None, _, _) => Some(default_console()),
        _ => None,
    };
    // Absent or broken regions are reported already: the data tier is read only on sound ones.
    let database = match (t.table(d, "database"), &regions) {
        (Some(s), Some(r)) => Some(read_database(&s, d, r)),
        (None, _) => Some(None),
        (Some(_), None) => None,
    };
    let cache = match (t.table(d, "cache"), &regions) {
        (Some(s), Some(r)) => Some(read_cache(&s, d, r)),
        (None, _) => Some(None),
        (Some(_), None) => None,
    };
    let secrets = match t.table(d, "secrets") {
        Some(s) => read_secrets(&s, d),
        None => Some(Secrets::default()),
    };
    let client_locations = read_named(t, d, "client_location", read_client_location);
    let hosts = read_named(t, d, "host", read_host);
    check_totals(t, d, regions.as_deref(), service.as_ref());
    if let (
        Some(r),
        Some(Service {
            autoscaling: Some(a),
            instances_per_az,
            ..
        }),
    ) = (regions.as_deref(), service.as_ref())
    {
        let counts: Vec<(&str, u32)> = r
            .iter()
            .map(|r| {
                let per_az = r.instances_per_az.unwrap_or(*instances_per_az);
                (r.name.as_str(), r.azs.len() as u32 * per_az)
            })
            .collect();
        crate::autoscaling::check_capacity(d, a, &counts);
    }
    if let (Some(dns), Some(regions), Some(edges)) = (&dns, &regions, &edges) {
        check_aliases(d, dns, regions, edges);
    }
    let mut dns = dns;
    if let (Some(dns), Some(Some(db)), Some(regions)) = (&mut dns, &database, &regions) {
        crate::db_records::add_db_records(dns, db, regions);
    }
    t.finish(d);
    let mut load_balancer = load_balancer?;
    let distribution = distribution?;
    load_balancer.claim_headers = distribution.protection.claim_headers();
    Some(Config {
        origin: origin.to_owned(),
        deployment: deployment?,
        network: network?,
        regions: regions?,
        service: service?,
        load_balancer,
        supervisor: supervisor?,
        edges: edges?,
        distribution,
        dns: dns?,
        client_locations: client_locations?,
        simulation: simulation?,
        console: console?,
        database: database?,
        cache: cache?,
        secrets: secrets?,
        hosts: hosts?,
    })
}

/// The key path a duplicate key error is about, and the fix: the table header in effect
/// at `span` (the last `[...]` line before it) and the key the span marks; a table header
/// written twice is the table itself.
fn duplicate(src: &str, span: std::ops::Range<usize>) -> (String, String) {
    let name = src.get(span.clone()).unwrap_or("").trim().trim_matches('"');
    let before = src.get(..span.start).unwrap_or(src);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    if before[line_start..].trim_start().starts_with('[') {
        let fix = format!("the table [{name}] is written twice: merge the two into one");
        return (name.to_owned(), fix);
    }
    // The header's name: between its brackets, whatever follows them (a comment).
    let table = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .and_then(|l| l.trim_start_matches('[').split(']').next())
        .map(|t| t.trim().to_owned());
    let key = match table {
        Some(t) if !t.is_empty() => format!("{t}.{name}"),
        _ => name.to_owned(),
    };
    let fix = format!("`{key}` is set twice in its table: keep one of the two");
    (key, fix)
}
