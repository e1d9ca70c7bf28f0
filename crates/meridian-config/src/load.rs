//! Reading a config: syntax, then every section with defaults, then cross-checks.

use crate::error::{ConfigErrors, Diagnostics};
use crate::model::*;
use crate::raw;
use crate::read::Table;
use crate::units::ByteSize;
use std::collections::HashSet;
use std::time::Duration;

/// The seed's deployment, used when no config file is given.
pub const DEFAULT_CONFIG: &str = include_str!("../default.toml");
/// How the embedded default is named in messages.
pub const DEFAULT_ORIGIN: &str = "<embedded default>";

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
                d.error(
                    span.unwrap_or(0..0),
                    "",
                    format!("TOML syntax: {msg}"),
                    "fix the syntax at the marked place (see https://toml.io for the format)",
                );
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
            }
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
        None => Some(Service {
            name: "app".to_owned(),
            runtime: ServiceRuntime::Demo {
                processing_time: Duration::ZERO,
            },
            instances_per_az: 1,
        }),
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
        (Some(s), Some(r)) => crate::distribution::read_distribution(&s, d, r),
        (None, Some(r)) => Some(crate::distribution::default_distribution(r)),
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
            crate::console::read_console(&s, d, &places)
        }
        (None, _, _) => Some(crate::console::default_console()),
        _ => None,
    };
    // Absent or broken regions are reported already: the data tier is read only on sound ones.
    let database = match (t.table(d, "database"), &regions) {
        (Some(s), Some(r)) => Some(crate::database::read_database(&s, d, r)),
        (None, _) => Some(None),
        (Some(_), None) => None,
    };
    let cache = match (t.table(d, "cache"), &regions) {
        (Some(s), Some(r)) => Some(crate::cache_tier::read_cache(&s, d, r)),
        (None, _) => Some(None),
        (Some(_), None) => None,
    };
    let secrets = match t.table(d, "secrets") {
        Some(s) => crate::security::read_secrets(&s, d),
        None => Some(crate::Secrets::default()),
    };
    let client_locations = read_named(t, d, "client_location", |s, d, name| {
        let location = read_location(s, d);
        let country = s.str(d, "country");
        let continent = s.str(d, "continent");
        if let (Some(c), Some(f)) = (&continent, s.get("continent")) {
            if !CONTINENTS.contains(&c.as_str()) {
                d.error(
                    f.span,
                    &f.key,
                    format!("`{c}` is not a continent code"),
                    "use AF, AN, AS, EU, NA, OC or SA",
                );
            }
        }
        s.finish(d);
        Some(ClientLocation {
            name,
            location: location?,
            country,
            continent,
        })
    });
    check_totals(t, d, regions.as_deref(), service.as_ref());
    if let (Some(dns), Some(regions), Some(edges)) = (&dns, &regions, &edges) {
        check_aliases(d, dns, regions, edges);
    }
    let mut dns = dns;
    if let (Some(dns), Some(Some(db)), Some(regions)) = (&mut dns, &database, &regions) {
        crate::db_records::add_db_records(dns, db, regions);
    }
    t.finish(d);
    Some(Config {
        origin: origin.to_owned(),
        deployment: deployment?,
        network: network?,
        regions: regions?,
        service: service?,
        load_balancer: load_balancer?,
        supervisor: supervisor?,
        edges: edges?,
        distribution: distribution?,
        dns: dns?,
        client_locations: client_locations?,
        simulation: simulation?,
        console: console?,
        database: database?,
        cache: cache?,
        secrets: secrets?,
    })
}

fn read_deployment(t: &Table, d: &mut Diagnostics) -> Option<Deployment> {
    let name = t.req_str(d, "name", "add `name = \"my-app\"`");
    let zone = t.req_str(
        d,
        "zone",
        "add `zone = \"example.com\"`, the DNS zone you serve",
    );
    if let (Some(z), Some(f)) = (&zone, t.get("zone")) {
        if !is_dns_name(z.trim_end_matches('.')) {
            d.error(
                f.span,
                &f.key,
                format!("`{z}` is not a valid DNS zone name"),
                "use letters, digits and hyphens in dot-separated labels, such as \"example.com\"",
            );
        }
    }
    if let (Some(n), Some(f)) = (&name, t.get("name")) {
        check_identifier(d, n, &f.key, f.span.clone());
    }
    t.finish(d);
    Some(Deployment {
        name: name?,
        zone: zone?.trim_end_matches('.').to_ascii_lowercase(),
    })
}

/// Whether `s` is a DNS name of letters, digits and inner hyphens in dot-separated labels
/// (no trailing dot): zones, and the host names a distribution answers for.
pub fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Node names become process names, file names and metric labels: keep them plain.
fn check_identifier(d: &mut Diagnostics, value: &str, key: &str, span: std::ops::Range<usize>) {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-');
    if !ok {
        d.error(
            span,
            key,
            format!("`{value}` is not a valid name"),
            "use lowercase letters, digits and hyphens (at most 63), such as \"us-east-1\"",
        );
    }
}

fn default_network() -> Network {
    Network {
        subnet: [127, 10],
        lb_port: 8080,
        https_port: 8443,
        service_port: 8000,
        admin_port: 9900,
    }
}

fn read_network(t: &Table, d: &mut Diagnostics) -> Option<Network> {
    let mut n = default_network();
    if let Some(s) = t.str(d, "subnet") {
        let f = t.get("subnet")?;
        match parse_loopback_16(&s) {
            Some(sub) => n.subnet = sub,
            None => d.error(
                f.span,
                &f.key,
                format!("`{s}` is not a /16 inside the loopback range 127.0.0.0/8"),
                "use a subnet such as \"127.10.0.0/16\"; every node gets its own address in it",
            ),
        }
    }
    let port = |d: &mut Diagnostics, key, default: u16| {
        t.int(d, key, 1..=65535)
            .map(|p| p as u16)
            .unwrap_or(default)
    };
    n.lb_port = port(d, "lb_port", n.lb_port);
    n.https_port = port(d, "https_port", n.https_port);
    n.service_port = port(d, "service_port", n.service_port);
    n.admin_port = port(d, "admin_port", n.admin_port);
    let ports = [
        ("lb_port", n.lb_port),
        ("https_port", n.https_port),
        ("service_port", n.service_port),
        ("admin_port", n.admin_port),
    ];
    for (i, (a, pa)) in ports.iter().enumerate() {
        for (b, pb) in &ports[i + 1..] {
            if pa == pb {
                let f = t.get(b)?;
                d.error(
                    f.span,
                    &f.key,
                    format!("`{b}` and `{a}` are both {pa}"),
                    "give each kind of listener its own port",
                );
            }
        }
    }
    t.finish(d);
    Some(n)
}

fn parse_loopback_16(s: &str) -> Option<[u8; 2]> {
    let (addr, len) = s.split_once('/')?;
    if len.trim() != "16" {
        return None;
    }
    let ip: std::net::Ipv4Addr = addr.trim().parse().ok()?;
    let o = ip.octets();
    (o[0] == 127 && o[2] == 0 && o[3] == 0).then_some([o[0], o[1]])
}

fn read_location(t: &Table, d: &mut Diagnostics) -> Option<Coordinates> {
    let Some(loc) = t.table(d, "location") else {
        if !t.has("location") {
            t.missing(
                d,
                "location",
                "add `location = { lat = 38.9, lon = -77.4 }`",
            );
        }
        return None;
    };
    let lat = loc.float(d, "lat");
    let lon = loc.float(d, "lon");
    if !loc.has("lat") {
        loc.missing(d, "lat", "add the latitude in degrees, -90 to 90");
    }
    if !loc.has("lon") {
        loc.missing(d, "lon", "add the longitude in degrees, -180 to 180");
    }
    for (key, value, limit) in [("lat", lat, 90.0), ("lon", lon, 180.0)] {
        if let (Some(v), Some(f)) = (value, loc.get(key)) {
            if !(-limit..=limit).contains(&v) {
                d.error(
                    f.span,
                    &f.key,
                    format!("`{}` is {v}, outside -{limit} to {limit} degrees", f.key),
                    "use decimal degrees; south and west are negative",
                );
            }
        }
    }
    loc.finish(d);
    Some(Coordinates {
        lat: lat?,
        lon: lon?,
    })
}

/// Reads `[[key]]` entries that each have a unique `name`, handing the rest to `each`.
pub(crate) fn read_named<T>(
    t: &Table,
    d: &mut Diagnostics,
    key: &'static str,
    mut each: impl FnMut(&Table, &mut Diagnostics, String) -> Option<T>,
) -> Option<Vec<T>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut ok = true;
    for s in t.tables(d, key) {
        let name = s.req_str(d, "name", "add `name = \"...\"`");
        if let (Some(n), Some(f)) = (&name, s.get("name")) {
            check_identifier(d, n, &f.key, f.span.clone());
            if !seen.insert(n.clone()) {
                d.error(
                    f.span,
                    &f.key,
                    format!("there are two [[{key}]] entries named `{n}`"),
                    "give each one its own name",
                );
            }
        }
        match name.and_then(|n| each(&s, d, n)) {
            Some(v) => out.push(v),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn read_regions(t: &Table, d: &mut Diagnostics) -> Option<Vec<Region>> {
    if !t.has("region") {
        t.missing(
            d,
            "region",
            "add at least one [[region]] with `name`, `location` and `azs`",
        );
        return None;
    }
    let regions = read_named(t, d, "region", |s, d, name| {
        let primary = s.bool(d, "primary").unwrap_or(false);
        let location = read_location(s, d);
        let mut azs = Vec::new();
        match s.str_list(d, "azs") {
            Some(list) if list.is_empty() => {
                let f = s.get("azs")?;
                d.error(
                    f.span,
                    &f.key,
                    format!("region `{name}` has no availability zone"),
                    format!("list at least one, for example azs = [\"{name}a\", \"{name}b\"]"),
                );
            }
            Some(list) => {
                for az in list {
                    let key = format!("{}.azs", s.path);
                    check_identifier(d, az.get_ref(), &key, az.span());
                    azs.push(az.into_inner());
                }
            }
            None if !s.has("azs") => s.missing(
                d,
                "azs",
                &format!("list the region's availability zones, for example azs = [\"{name}a\", \"{name}b\"]"),
            ),
            None => {}
        }
        let instances_per_az = s.int(d, "instances_per_az", 0..=64).map(|n| n as u32);
        s.finish(d);
        Some(Region {
            name,
            primary,
            location: location?,
            azs,
            instances_per_az,
        })
    })?;
    let primaries: Vec<&Region> = regions.iter().filter(|r| r.primary).collect();
    if primaries.len() > 1 {
        let f = t.get("region")?;
        d.error(
            f.span,
            &f.key,
            format!(
                "{} regions are marked primary: {}",
                primaries.len(),
                primaries
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "mark exactly one region `primary = true`",
        );
    }
    if regions.len() > 200 {
        let f = t.get("region")?;
        d.error(
            f.span,
            &f.key,
            "more than 200 regions",
            "use at most 200 regions",
        );
    }
    let mut azs = HashSet::new();
    for r in &regions {
        for az in &r.azs {
            if !azs.insert(az.clone()) {
                let f = t.get("region")?;
                d.error(
                    f.span,
                    &f.key,
                    format!("availability zone `{az}` appears twice"),
                    "AZ names are global: give each its own name",
                );
            }
        }
    }
    Some(regions)
}

fn read_service(t: &Table, d: &mut Diagnostics) -> Option<Service> {
    let name = t.str(d, "name").unwrap_or_else(|| "app".to_owned());
    let runtime_name = t.str(d, "runtime").unwrap_or_else(|| "demo".to_owned());
    let processing_time = t.duration(d, "processing_time").unwrap_or(Duration::ZERO);
    let command = t.str_list(d, "command");
    let instances_per_az = t.int(d, "instances_per_az", 1..=64).unwrap_or(1) as u32;
    let runtime = match runtime_name.as_str() {
        "demo" => Some(ServiceRuntime::Demo { processing_time }),
        "command" => match command {
            Some(argv) if !argv.is_empty() => Some(ServiceRuntime::Command {
                argv: argv.into_iter().map(|a| a.into_inner()).collect(),
            }),
            _ => {
                t.missing(
                    d,
                    "command",
                    "add `command = [\"my-server\", \"--listen\", \"{host}:{port}\"]`",
                );
                None
            }
        },
        other => {
            let f = t.get("runtime")?;
            d.error(
                f.span,
                &f.key,
                format!("`{other}` is not a service runtime"),
                "use \"demo\" (the built-in RichesReach API) or \"command\" (your own server)",
            );
            None
        }
    };
    t.finish(d);
    Some(Service {
        name,
        runtime: runtime?,
        instances_per_az,
    })
}

fn default_lb() -> LoadBalancer {
    LoadBalancer {
        algorithm: Algorithm::RoundRobin,
        health_check: HealthCheck::default(),
        target_timeout: Duration::from_secs(30),
        deregistration_delay: Duration::from_secs(5),
        max_retries: 2,
        max_request_body: ByteSize(10 << 20),
        idle_timeout: Duration::from_secs(60),
        require_edge_signature: false,
        unsigned_paths: vec!["/health".to_owned()],
        tls_port: None,
    }
}

fn read_lb(t: &Table, d: &mut Diagnostics) -> Option<LoadBalancer> {
    let mut lb = default_lb();
    if let Some(a) = t.str(d, "algorithm") {
        match a.as_str() {
            "round_robin" => lb.algorithm = Algorithm::RoundRobin,
            "least_outstanding_requests" => lb.algorithm = Algorithm::LeastOutstandingRequests,
            other => {
                let f = t.get("algorithm")?;
                d.error(
                    f.span,
                    &f.key,
                    format!("`{other}` is not a load balancing algorithm"),
                    format!("use one of: {}", Algorithm::NAMES.join(", ")),
                );
            }
        }
    }
    lb.target_timeout = t.duration(d, "target_timeout").unwrap_or(lb.target_timeout);
    lb.deregistration_delay = t
        .duration(d, "deregistration_delay")
        .unwrap_or(lb.deregistration_delay);
    lb.max_retries = t.int(d, "max_retries", 0..=10).unwrap_or(2) as u32;
    lb.max_request_body = t.size(d, "max_request_body").unwrap_or(lb.max_request_body);
    lb.idle_timeout = t.duration(d, "idle_timeout").unwrap_or(lb.idle_timeout);
    lb.require_edge_signature = t
        .bool(d, "require_edge_signature")
        .unwrap_or(lb.require_edge_signature);
    if let Some(paths) = t.str_list(d, "unsigned_paths") {
        let mut ok = Vec::new();
        for p in paths {
            if p.get_ref().starts_with('/') {
                ok.push(p.into_inner());
            } else if let Some(f) = t.get("unsigned_paths") {
                d.error(
                    p.span(),
                    &f.key,
                    format!("`{}` is not a path", p.get_ref()),
                    "write each as an absolute path such as \"/health\"".to_owned(),
                );
            }
        }
        lb.unsigned_paths = ok;
    }
    lb.tls_port = t.int(d, "tls_port", 1..=65535).map(|p| p as u16);
    if let Some(hc) = t.table(d, "health_check") {
        lb.health_check = read_health_check(&hc, d)?;
    }
    t.finish(d);
    Some(lb)
}

/// Reads a health check; bounds follow ALB's (interval 1 s to 300 s, thresholds 2 to 10),
/// except that Meridian allows a 1 s interval and a threshold of 1 for fast failover.
pub(crate) fn read_health_check(t: &Table, d: &mut Diagnostics) -> Option<HealthCheck> {
    let mut hc = HealthCheck::default();
    if let Some(p) = t.str(d, "protocol") {
        match p.as_str() {
            "http" => hc.protocol = CheckProtocol::Http,
            "tcp" => hc.protocol = CheckProtocol::Tcp,
            other => {
                let f = t.get("protocol")?;
                d.error(
                    f.span,
                    &f.key,
                    format!("`{other}` is not a health check protocol"),
                    "use \"http\" or \"tcp\"",
                );
            }
        }
    }
    if let Some(path) = t.str(d, "path") {
        if !path.starts_with('/') {
            let f = t.get("path")?;
            d.error(
                f.span,
                &f.key,
                format!("`{path}` is not an absolute path"),
                format!("start it with a slash: \"/{path}\""),
            );
        }
        hc.path = path;
    }
    hc.interval = t.duration(d, "interval").unwrap_or(hc.interval);
    hc.timeout = t.duration(d, "timeout").unwrap_or(hc.timeout);
    hc.healthy_threshold = t.int(d, "healthy_threshold", 1..=10).unwrap_or(2) as u32;
    hc.unhealthy_threshold = t.int(d, "unhealthy_threshold", 1..=10).unwrap_or(2) as u32;
    if let Some(m) = t.str(d, "matcher") {
        match StatusMatcher::parse(&m) {
            Ok(sm) => hc.matcher = sm,
            Err(problem) => {
                let f = t.get("matcher")?;
                d.error(
                    f.span,
                    &f.key,
                    problem,
                    "write codes like \"200\", \"200,302\" or \"200-299\"",
                );
            }
        }
    }
    hc.body_contains = t.str(d, "body_contains");
    if let Some(f) = t.get("interval") {
        if hc.interval < Duration::from_secs(1) || hc.interval > Duration::from_secs(300) {
            d.error(
                f.span,
                &f.key,
                "the health check interval must be from 1s to 300s",
                "use an interval such as \"1s\" (fastest) or \"30s\"",
            );
        }
    }
    if hc.timeout >= hc.interval {
        if let Some(f) = t.get("timeout").or_else(|| t.get("interval")) {
            d.error(
                f.span,
                &f.key,
                format!(
                    "the timeout ({}) must be shorter than the interval ({})",
                    crate::units::format_duration(hc.timeout),
                    crate::units::format_duration(hc.interval)
                ),
                "lower `timeout` or raise `interval`",
            );
        }
    }
    t.finish(d);
    Some(hc)
}

fn default_supervisor() -> Supervisor {
    Supervisor {
        restart_backoff: Duration::from_millis(200),
        restart_backoff_max: Duration::from_secs(10),
        ready_timeout: Duration::from_secs(30),
        stop_timeout: Duration::from_secs(5),
    }
}

fn read_simulation(t: &Table, d: &mut Diagnostics) -> Option<Simulation> {
    let mut s = Simulation::default();
    s.wan = t.bool(d, "wan").unwrap_or(s.wan);
    if let Some(x) = t.float(d, "inflation") {
        if (1.0..=5.0).contains(&x) {
            s.inflation = x;
        } else if let Some(f) = t.get("inflation") {
            d.error(
                f.span,
                &f.key,
                format!("`inflation` is {x}; routes are at least as long as the great circle and rarely 5 times it"),
                "use a factor from 1.0 to 5.0 (1.5 is typical)",
            );
        }
    }
    s.access = t.duration(d, "access").unwrap_or(s.access);
    s.jitter = t.duration(d, "jitter").unwrap_or(s.jitter);
    s.bandwidth = t.size(d, "bandwidth").filter(|b| b.0 > 0);
    let place = "name a region, pop:<name> or client:<name>";
    for (from, to, rtt) in read_latencies(t, d, ("from", place), ("to", place)) {
        s.latency.push(PlaceLatency { from, to, rtt });
    }
    t.finish(d);
    Some(s)
}

/// `[[<table>.latency]]` entries: two named ends (key, fix when missing) and an `rtt`.
fn read_latencies(
    t: &Table,
    d: &mut Diagnostics,
    a: (&'static str, &str),
    b: (&'static str, &str),
) -> Vec<(String, String, Duration)> {
    let mut out = Vec::new();
    for l in t.tables(d, "latency") {
        let x = l.req_str(d, a.0, a.1);
        let y = l.req_str(d, b.0, b.1);
        let rtt = l.duration(d, "rtt");
        if !l.has("rtt") {
            l.missing(d, "rtt", "add the round trip, for example rtt = \"70ms\"");
        }
        l.finish(d);
        if let (Some(x), Some(y), Some(rtt)) = (x, y, rtt) {
            out.push((x, y, rtt));
        }
    }
    out
}

fn read_supervisor(t: &Table, d: &mut Diagnostics) -> Option<Supervisor> {
    let mut s = default_supervisor();
    s.restart_backoff = t
        .duration(d, "restart_backoff")
        .unwrap_or(s.restart_backoff);
    s.restart_backoff_max = t
        .duration(d, "restart_backoff_max")
        .unwrap_or(s.restart_backoff_max);
    s.ready_timeout = t.duration(d, "ready_timeout").unwrap_or(s.ready_timeout);
    s.stop_timeout = t.duration(d, "stop_timeout").unwrap_or(s.stop_timeout);
    t.finish(d);
    Some(s)
}

fn read_pop(t: &Table, d: &mut Diagnostics, name: String) -> Option<Pop> {
    let location = read_location(t, d);
    let memory_cache = t.size(d, "memory_cache").unwrap_or(ByteSize(256 << 20));
    let disk_cache = t.size(d, "disk_cache").unwrap_or(ByteSize(1 << 30));
    let disk_encryption = t.bool(d, "disk_encryption").unwrap_or(true) && disk_cache.0 > 0;
    t.finish(d);
    Some(Pop {
        name,
        location: location?,
        memory_cache,
        disk_cache,
        disk_encryption,
    })
}

fn read_dns(t: &Table, d: &mut Diagnostics) -> Option<Dns> {
    let mut dns = default_dns();
    dns.servers = t.int(d, "servers", 0..=16).unwrap_or(2) as u32;
    dns.port = t
        .int(d, "port", 1..=65535)
        .map(|p| p as u16)
        .unwrap_or(dns.port);
    dns.default_ttl = t.duration(d, "default_ttl").unwrap_or(dns.default_ttl);
    dns.udp_threads = t
        .int(d, "udp_threads", 1..=64)
        .map(|n| n as u32)
        .unwrap_or(dns.udp_threads);
    if let Some(mode) = t.str(d, "when_all_unhealthy") {
        dns.when_all_unhealthy = match mode.as_str() {
            "fail_open" => AllUnhealthy::FailOpen,
            "fail_closed" => AllUnhealthy::FailClosed,
            "static" => AllUnhealthy::Static(
                t.str_list(d, "static_answer")
                    .map(|v| v.into_iter().map(|s| s.into_inner()).collect())
                    .unwrap_or_default(),
            ),
            other => {
                let f = t.get("when_all_unhealthy")?;
                d.error(
                    f.span,
                    &f.key,
                    format!("`{other}` is not a way to answer when all targets are unhealthy"),
                    "use \"fail_open\" (like Route 53), \"fail_closed\" or \"static\" with static_answer = [...]",
                );
                AllUnhealthy::FailOpen
            }
        };
        if dns.when_all_unhealthy == AllUnhealthy::Static(Vec::new()) {
            t.missing(d, "static_answer", "add static_answer = [\"192.0.2.10\"]");
        }
    }
    dns.zone_file = t.str(d, "zone_file").map(std::path::PathBuf::from);
    dns.geoip_database = t.str(d, "geoip_database").map(std::path::PathBuf::from);
    if let Some(hc) = t.table(d, "health_check") {
        dns.health_check = read_health_check(&hc, d)?;
    }
    for s in t.tables(d, "record") {
        if let Some(r) = read_record_set(&s, d, dns.default_ttl) {
            dns.records.push(r);
        }
    }
    for (client, region, rtt) in read_latencies(
        t,
        d,
        ("client", "name the client location"),
        ("region", "name the region"),
    ) {
        dns.latency_overrides.push(LatencyOverride {
            client,
            region,
            rtt,
        });
    }
    t.finish(d);
    Some(dns)
}

/// Route 53's fast checks: every second, a short timeout, two in a row to flip.
fn default_dns_check() -> HealthCheck {
    HealthCheck {
        timeout: Duration::from_millis(300),
        ..HealthCheck::default()
    }
}

pub(crate) fn default_dns() -> Dns {
    Dns {
        servers: 2,
        port: 8053,
        udp_threads: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        default_ttl: Duration::from_secs(30),
        when_all_unhealthy: AllUnhealthy::FailOpen,
        records: Vec::new(),
        health_check: default_dns_check(),
        latency_overrides: Vec::new(),
        zone_file: None,
        geoip_database: None,
    }
}

fn read_record_set(t: &Table, d: &mut Diagnostics, default_ttl: Duration) -> Option<RecordSet> {
    let name = t.req_str(
        d,
        "name",
        "add the name relative to the zone, such as name = \"api\" (\"@\" is the apex)",
    );
    let kind = match t.str(d, "type") {
        Some(k) => match RecordKind::parse(&k.to_ascii_uppercase()) {
            Some(k) => Some(k),
            None => {
                let f = t.get("type")?;
                d.error(
                    f.span,
                    &f.key,
                    format!("`{k}` is not a record type Meridian serves"),
                    format!("use one of: {}", RecordKind::NAMES.join(", ")),
                );
                None
            }
        },
        None => {
            if !t.has("type") {
                t.missing(
                    d,
                    "type",
                    "add type = \"A\" (or AAAA, CNAME, TXT, MX, NS, CAA)",
                );
            }
            None
        }
    };
    let ttl = t.duration(d, "ttl").unwrap_or(default_ttl);
    let policy = match t.str(d, "policy") {
        None => Policy::Simple,
        Some(p) => match Policy::parse(&p) {
            Some(p) => p,
            None => {
                let f = t.get("policy")?;
                d.error(
                    f.span,
                    &f.key,
                    format!("`{p}` is not a routing policy"),
                    format!("use one of: {}", Policy::NAMES.join(", ")),
                );
                Policy::Simple
            }
        },
    };
    let mut answers = Vec::new();
    // A simple record may give its values inline.
    if let Some(values) = read_values(t, d, kind) {
        answers.push(plain_answer("default", values));
    }
    if let Some(alias) = t.str(d, "alias") {
        let f = t.get("alias")?;
        let mut a = plain_answer("default", Vec::new());
        a.alias = parse_alias(d, &alias, &f.key, f.span.clone());
        a.alias_at = Some((f.span, f.key));
        a.evaluate_target_health = t.bool(d, "evaluate_target_health").unwrap_or(true);
        answers.push(a);
    }
    let mut ids = HashSet::new();
    for a in t.tables(d, "answer") {
        if let Some(ans) = read_answer(&a, d, policy, kind) {
            if !ids.insert(ans.id.clone()) {
                let f = a.get("id")?;
                d.error(
                    f.span,
                    &f.key,
                    format!("two answers share the id `{}`", ans.id),
                    "give each answer of a record set its own id",
                );
            }
            answers.push(ans);
        }
    }
    if answers.is_empty() {
        d.error(
            t.span.clone(),
            &t.path,
            "the record set has no answer",
            "add values = [...], alias = \"lb:<region>\", or [[dns.record.answer]] entries",
        );
    }
    if policy == Policy::Failover {
        let primaries = answers
            .iter()
            .filter(|a| a.failover == Some(FailoverRole::Primary))
            .count();
        if primaries != 1 {
            d.error(
                t.span.clone(),
                &t.path,
                format!(
                    "a failover record set needs exactly one primary answer, it has {primaries}"
                ),
                "mark one answer failover = \"primary\" and the other \"secondary\"",
            );
        }
    }
    t.finish(d);
    let name = name?;
    Some(RecordSet {
        name,
        kind: kind?,
        ttl,
        policy,
        answers,
        generated: false,
    })
}

/// `plain_answer` for the generated record sets.
pub(crate) fn empty_answer(id: &str) -> Answer {
    plain_answer(id, Vec::new())
}

fn plain_answer(id: &str, values: Vec<String>) -> Answer {
    Answer {
        id: id.to_owned(),
        values,
        alias: None,
        evaluate_target_health: false,
        health_check: None,
        weight: 1,
        location: None,
        region: None,
        bias: 0,
        failover: None,
        geo: None,
        cidrs: Vec::new(),
        ip_default: false,
        alias_at: None,
    }
}

fn parse_alias(
    d: &mut Diagnostics,
    alias: &str,
    key: &str,
    span: std::ops::Range<usize>,
) -> Option<AliasTarget> {
    match alias.split_once(':') {
        Some(("lb", r)) => Some(AliasTarget::Lb(r.to_owned())),
        Some(("pop", p)) => Some(AliasTarget::Pop(p.to_owned())),
        _ => {
            d.error(span, key, format!("`{alias}` is not an alias target"), "write \"lb:<region>\" for a region's load balancer or \"pop:<name>\" for an edge PoP");
            None
        }
    }
}

/// A record set's values, each checked against the record type where it is written.
fn read_values(t: &Table, d: &mut Diagnostics, kind: Option<RecordKind>) -> Option<Vec<String>> {
    let values = t.str_list(d, "values")?;
    let key = format!("{}.values", t.path);
    for v in &values {
        if let Some(Err((problem, fix))) = kind.map(|k| check_value(k, v.get_ref())) {
            d.error(v.span(), &key, problem, fix);
        }
    }
    Some(values.into_iter().map(|v| v.into_inner()).collect())
}

fn is_domain(s: &str) -> bool {
    s == "@"
        || (!s.is_empty()
            && s.len() <= 253
            && s.trim_end_matches('.').split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            }))
}

/// Whether a value can be served as a record of this type.
fn check_value(kind: RecordKind, v: &str) -> Result<(), (String, String)> {
    let bad = |what: &str, fix: &str| Err((format!("`{v}` is not {what}"), fix.to_owned()));
    match kind {
        RecordKind::A if v.parse::<std::net::Ipv4Addr>().is_err() => bad(
            "an IPv4 address",
            "write a dotted quad such as \"192.0.2.1\"",
        ),
        RecordKind::AAAA if v.parse::<std::net::Ipv6Addr>().is_err() => bad(
            "an IPv6 address",
            "write an address such as \"2001:db8::1\"",
        ),
        RecordKind::CNAME | RecordKind::NS if !is_domain(v) => bad(
            "a domain name",
            "write a name such as \"www\" (in the zone) or \"host.example.net.\"",
        ),
        RecordKind::MX => match v.split_whitespace().collect::<Vec<_>>()[..] {
            [pref, host] if pref.parse::<u16>().is_ok() && is_domain(host) => Ok(()),
            _ => bad(
                "`PREFERENCE HOST`",
                "write it as \"10 mail\" or \"20 mx.example.net.\"",
            ),
        },
        RecordKind::CAA => match v.split_whitespace().collect::<Vec<_>>()[..] {
            [flags, "issue" | "issuewild", value]
                if (flags == "0" || flags == "128")
                    && value.starts_with('"')
                    && value.ends_with('"') =>
            {
                Ok(())
            }
            _ => bad(
                "a CAA record Meridian serves",
                "write it as 0 issue \"letsencrypt.org\" (tags issue and issuewild)",
            ),
        },
        RecordKind::TXT if v.len() > 4000 => bad(
            "a TXT value of reasonable length",
            "keep TXT values under 4000 characters",
        ),
        _ => Ok(()),
    }
}

fn read_answer(
    t: &Table,
    d: &mut Diagnostics,
    policy: Policy,
    kind: Option<RecordKind>,
) -> Option<Answer> {
    let id = t.req_str(
        d,
        "id",
        "give the answer an id (Route 53's set identifier), such as id = \"us-east-1\"",
    );
    let mut a = plain_answer("", Vec::new());
    if let Some(values) = read_values(t, d, kind) {
        a.values = values;
    }
    if let Some(alias) = t.str(d, "alias") {
        let f = t.get("alias")?;
        a.alias = parse_alias(d, &alias, &f.key, f.span.clone());
        a.alias_at = Some((f.span, f.key));
        a.evaluate_target_health = true;
    }
    if a.values.is_empty() && a.alias.is_none() {
        t.missing(
            d,
            "values",
            "add values = [\"192.0.2.1\"] or alias = \"lb:<region>\"",
        );
    }
    a.evaluate_target_health = t
        .bool(d, "evaluate_target_health")
        .unwrap_or(a.evaluate_target_health);
    if let Some(url) = t.str(d, "health_check") {
        let f = t.get("health_check")?;
        match parse_check_url(&url) {
            Some(hc) => a.health_check = Some(hc),
            None => d.error(f.span, &f.key, format!("`{url}` is not a health check URL"), "write it as http://ADDRESS:PORT/path, for example \"http://192.0.2.1:8080/health\""),
        }
    }
    a.weight = t.int(d, "weight", 0..=255).unwrap_or(1) as u32;
    a.region = t.str(d, "region");
    if t.has("location") {
        a.location = read_location(t, d);
    }
    a.bias = t.int(d, "bias", -99..=99).unwrap_or(0) as i32;
    if let Some(role) = t.str(d, "failover") {
        a.failover = match role.as_str() {
            "primary" => Some(FailoverRole::Primary),
            "secondary" => Some(FailoverRole::Secondary),
            other => {
                let f = t.get("failover")?;
                d.error(
                    f.span,
                    &f.key,
                    format!("`{other}` is not a failover role"),
                    "use \"primary\" or \"secondary\"",
                );
                None
            }
        };
    }
    if let Some(g) = t.str(d, "geo") {
        a.geo = Some(match g.as_str() {
            "*" => GeoMatch::Default,
            c if c.len() == 2
                && c.chars().all(|x| x.is_ascii_uppercase())
                && CONTINENTS.contains(&c) =>
            {
                GeoMatch::Continent(c.to_owned())
            }
            c if c.len() == 2 && c.chars().all(|x| x.is_ascii_uppercase()) => {
                GeoMatch::Country(c.to_owned())
            }
            other => {
                let f = t.get("geo")?;
                d.error(f.span, &f.key, format!("`{other}` is not a location"), "use a continent code (AF, AN, AS, EU, NA, OC, SA), a two-letter country code such as \"GB\", or \"*\" for the default");
                GeoMatch::Default
            }
        });
    }
    if let Some(list) = t.str_list(d, "cidrs") {
        for c in list {
            if c.get_ref() == "*" {
                a.ip_default = true;
            } else if let Some(cidr) = Cidr::parse(c.get_ref()) {
                a.cidrs.push(cidr);
            } else {
                d.error(c.span(), &format!("{}.cidrs", t.path), format!("`{}` is not a network", c.get_ref()), "write networks as \"203.0.113.0/24\" or \"2001:db8::/32\", or \"*\" for everyone else");
            }
        }
    }
    // Each policy needs its own fields.
    let need = |d: &mut Diagnostics, ok: bool, key: &str, fix: &str| {
        if !ok {
            t.missing(d, key, fix);
        }
    };
    match policy {
        Policy::Failover => need(
            d,
            a.failover.is_some(),
            "failover",
            "add failover = \"primary\" or \"secondary\"",
        ),
        Policy::Geolocation => need(
            d,
            a.geo.is_some(),
            "geo",
            "add geo = \"EU\" (continent), \"GB\" (country) or \"*\" (default)",
        ),
        Policy::IpBased => need(
            d,
            !a.cidrs.is_empty() || a.ip_default,
            "cidrs",
            "add cidrs = [\"203.0.113.0/24\"] (or [\"*\"] for everyone else)",
        ),
        Policy::Latency => need(
            d,
            a.region.is_some() || a.location.is_some() || a.alias.is_some(),
            "region",
            "add region = \"us-east-1\" (or location, or an alias)",
        ),
        Policy::Geoproximity => need(
            d,
            a.region.is_some() || a.location.is_some() || a.alias.is_some(),
            "location",
            "add location = { lat = .., lon = .. } (or region, or an alias)",
        ),
        _ => {}
    }
    t.finish(d);
    a.id = id?;
    Some(a)
}

const CONTINENTS: &[&str] = &["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

fn parse_check_url(url: &str) -> Option<(std::net::SocketAddr, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Some((authority.parse().ok()?, path.to_owned()))
}

/// Aliases must name a region or PoP of this deployment.
fn check_aliases(d: &mut Diagnostics, dns: &Dns, regions: &[Region], edges: &[Pop]) {
    for a in dns.records.iter().flat_map(|r| &r.answers) {
        let (Some(alias), Some((span, key))) = (&a.alias, &a.alias_at) else {
            continue;
        };
        let (known, what, names): (bool, &str, Vec<&str>) = match alias {
            AliasTarget::Lb(r) => (
                regions.iter().any(|x| &x.name == r),
                "region",
                regions.iter().map(|x| x.name.as_str()).collect(),
            ),
            AliasTarget::Pop(p) => (
                edges.iter().any(|x| &x.name == p),
                "[[edge]] PoP",
                edges.iter().map(|x| x.name.as_str()).collect(),
            ),
            // Only generated, from `[database]` itself.
            AliasTarget::DbWriter(_) | AliasTarget::DbReader(_) => continue,
        };
        if !known {
            let name = match alias {
                AliasTarget::Lb(n)
                | AliasTarget::Pop(n)
                | AliasTarget::DbWriter(n)
                | AliasTarget::DbReader(n) => n,
            };
            d.error(
                span.clone(),
                key,
                format!("the alias names no {what} `{name}`"),
                format!("use one of: {}", names.join(", ")),
            );
        }
    }
}

/// Address space is one /16: regions and instances per region must fit it.
fn check_totals(
    t: &Table,
    d: &mut Diagnostics,
    regions: Option<&[Region]>,
    service: Option<&Service>,
) {
    let (Some(regions), Some(service)) = (regions, service) else {
        return;
    };
    for (i, r) in regions.iter().enumerate() {
        let n = r.azs.len() as u32 * r.instances_per_az.unwrap_or(service.instances_per_az);
        if n > 200 {
            if let Some(f) = t.get("region") {
                d.error(
                    f.span,
                    &format!("region[{i}]"),
                    format!(
                        "region `{}` would run {n} instances; at most 200 fit its address block",
                        r.name
                    ),
                    "lower instances_per_az",
                );
            }
        }
    }
}
