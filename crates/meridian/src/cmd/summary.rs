//! What `meridian validate` prints: the deployment a config describes, part by part.

use meridian_config::{Config, ServiceRuntime};

pub(crate) fn summary(cfg: &Config) -> String {
    use meridian_config::units::format_duration as d;
    let mut s = format!(
        "{}: valid deployment `{}` (zone {})\n\n",
        cfg.origin, cfg.deployment.name, cfg.deployment.zone
    );
    s.push_str(&format!("regions ({}):\n", cfg.regions.len()));
    for r in &cfg.regions {
        s.push_str(&format!(
            "  {:<16} {:<9} {:>7.2}, {:>7.2}   {} AZs ({}), {} instances\n",
            r.name,
            if r.primary { "primary" } else { "" },
            r.location.lat,
            r.location.lon,
            r.azs.len(),
            r.azs.join(", "),
            r.azs.len() as u32 * cfg.instances_per_az(r)
        ));
    }
    let runtime = match &cfg.service.runtime {
        ServiceRuntime::Demo { processing_time } => {
            format!(
                "built-in demo origin, {} processing per API request",
                d(*processing_time)
            )
        }
        ServiceRuntime::Command { argv } => format!("command `{}`", argv.join(" ")),
    };
    s.push_str(&format!(
        "\nservice `{}`: {runtime}, {} instance(s) per AZ\n",
        cfg.service.name, cfg.service.instances_per_az
    ));
    let lb = &cfg.load_balancer;
    let hc = &lb.health_check;
    s.push_str(&format!(
        "load balancer: {}, up to {} retries, target timeout {}, drain {}\n",
        lb.algorithm.as_str(),
        lb.max_retries,
        d(lb.target_timeout),
        d(lb.deregistration_delay)
    ));
    s.push_str(&format!(
        "  health check: {:?} {} every {} (timeout {}), healthy after {}, unhealthy after {}, matcher {}\n",
        hc.protocol,
        hc.path,
        d(hc.interval),
        d(hc.timeout),
        hc.healthy_threshold,
        hc.unhealthy_threshold,
        hc.matcher
    ));
    s.push_str(&groups_and_rules(lb));
    if let Some(db) = &cfg.database {
        s.push_str(&format!(
            "database: PostgreSQL, writer in {} (port {}), lease {}, cross-region promotion {}, promotable up to {} behind\n",
            db.home_region,
            db.port,
            d(db.lease),
            match db.promotion {
                meridian_config::Promotion::Automatic => "automatic",
                meridian_config::Promotion::Manual => "manual",
            },
            db.max_promotion_lag
        ));
        for (region, az, role) in db.instances() {
            if let Some(n) = cfg.db_node(&region, &az) {
                s.push_str(&format!(
                    "  {:<20} {:<16} {:<20} {}\n",
                    n.name,
                    region,
                    role.as_str(),
                    n.address
                ));
            }
        }
    }
    if let Some(cache) = &cfg.cache {
        s.push_str(&format!(
            "cache: Redis, a cache cluster in {} region(s) (port {}), maxmemory {} per node ({}), failover after {}\n",
            cache.clusters.len(),
            cache.port,
            cache.maxmemory,
            cache.eviction.as_str(),
            d(cache.failover)
        ));
        for c in &cache.clusters {
            for (az, role) in std::iter::once((&c.primary_az, meridian_config::CacheRole::Primary))
                .chain(
                    c.replica_az
                        .iter()
                        .map(|az| (az, meridian_config::CacheRole::Replica)),
                )
            {
                if let Some(n) = cfg.cache_node(&c.region, az) {
                    s.push_str(&format!(
                        "  {:<22} {:<16} {:<20} {}\n",
                        n.name,
                        c.region,
                        role.as_str(),
                        n.address
                    ));
                }
            }
            if let Some(e) = cfg.cache_endpoint(&c.region) {
                s.push_str(&format!(
                    "  {:<22} {:<16} {:<20} {}\n",
                    "primary endpoint", c.region, "-> current primary", e
                ));
            }
        }
    }
    let nodes = cfg.nodes();
    let lbs = nodes
        .iter()
        .filter(|n| n.role == meridian_config::Role::Lb)
        .count();
    let count = |r: meridian_config::Role| nodes.iter().filter(|n| n.role == r).count();
    s.push_str(&format!(
        "\nnodes `up` runs: {} ({} load balancers, {} service instances, {} edge PoPs, {} DNS servers, {} console, {} database, {} cache) on 127.{}.0.0/16\n",
        nodes.len(),
        lbs,
        count(meridian_config::Role::Service),
        count(meridian_config::Role::Edge),
        count(meridian_config::Role::Dns),
        count(meridian_config::Role::Console),
        count(meridian_config::Role::Db),
        count(meridian_config::Role::Cache),
        cfg.network.subnet[1]
    ));
    if cfg.console.enabled {
        let c = &cfg.console;
        s.push_str(&format!(
            "console: http://{}/, scrapes every {:?}, keeps {}s, {} alarm(s){}\n",
            cfg.console_address(),
            c.scrape_interval,
            c.retention.as_secs(),
            c.alarms.len(),
            c.webhook
                .as_deref()
                .map(|w| format!(", webhook {w}"))
                .unwrap_or_default()
        ));
    }
    let names = |v: Vec<&str>| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    s.push_str(&format!(
        "\ndns: {} server(s) on port {} for zone {}, {} record set(s):\n",
        cfg.dns.servers,
        cfg.dns.port,
        cfg.deployment.zone,
        cfg.dns.records.len()
    ));
    for r in &cfg.dns.records {
        s.push_str(&format!(
            "  {:<9} {:<6} {:<13} {} answer(s), ttl {}{}\n",
            r.name,
            format!("{:?}", r.kind),
            r.policy.as_str(),
            r.answers.len(),
            d(r.ttl),
            if r.generated {
                db_record_note(&r.name)
            } else {
                ""
            }
        ));
        if r.generated {
            for a in &r.answers {
                let Some(node) = cfg.node(&a.id) else {
                    continue;
                };
                let to = match a.alias {
                    Some(meridian_config::AliasTarget::DbWriter(_)) => {
                        cfg.db_writer_endpoint(&node)
                    }
                    _ => node.address,
                };
                s.push_str(&format!(
                    "      {:<20} {:<16} {:<22} check http://{}/health\n",
                    a.id,
                    a.region.as_deref().unwrap_or("-"),
                    to,
                    node.admin
                ));
            }
        }
    }
    let uses_latency = cfg
        .dns
        .records
        .iter()
        .any(|r| r.policy == meridian_config::Policy::Latency);
    if uses_latency {
        let feeds: Vec<String> = meridian_dns::measurement_sources(cfg)
            .iter()
            .map(|m| format!("{} for {}", m.pop, m.clients.join(", ")))
            .collect();
        s.push_str(&format!(
            "latency routing: round trips the PoPs measure ({}), then [[dns.latency]], then {}\n",
            if feeds.is_empty() {
                "no PoPs".to_owned()
            } else {
                feeds.join("; ")
            },
            if cfg.simulation.prior {
                "the latency model as a prior"
            } else {
                "nothing (`[simulation] prior = false`): the first answer"
            },
        ));
    }
    s.push_str(&format!(
        "client locations ({}): {}\n",
        cfg.client_locations.len(),
        names(
            cfg.client_locations
                .iter()
                .map(|c| c.name.as_str())
                .collect()
        ),
    ));
    if !cfg.edges.is_empty() {
        let d = &cfg.distribution;
        s.push_str(&format!(
            "\nedge PoPs ({}): {}\ndistribution: {} behavior(s) + default, {} origin group(s), {} cache polic(ies)\n",
            cfg.edges.len(),
            names(cfg.edges.iter().map(|e| e.name.as_str()).collect()),
            d.behaviors.len(),
            d.origin_groups.len(),
            d.cache_policies.len(),
        ));
        for b in d
            .behaviors
            .iter()
            .chain(std::iter::once(&d.default_behavior))
        {
            let mut functions: String = b
                .function_associations
                .iter()
                .map(|a| format!(", {} function {}", a.event_type.as_str(), a.function))
                .collect();
            if let Some(a) = &b.jwt_authorizer {
                functions.push_str(&format!(", JWT authorizer {a}"));
            }
            if !b.trusted_key_groups.is_empty() {
                functions.push_str(&format!(
                    ", signed by {}",
                    b.trusted_key_groups.join(" or ")
                ));
            }
            if let Some(w) = b.idempotency_window {
                functions.push_str(&format!(
                    ", Idempotency-Key kept {}",
                    meridian_config::units::format_duration(w)
                ));
            }
            s.push_str(&format!(
                "  {:<12} -> origin group {}, cache policy {}{functions}\n",
                b.path_pattern, b.origin_group, b.cache_policy
            ));
        }
        for f in &d.functions {
            let source = &f.source;
            let store = f
                .key_value_store
                .as_deref()
                .map(|s| format!(", key value store {s}"))
                .unwrap_or_default();
            s.push_str(&format!(
                "  function {} ({}, {source}{store})\n",
                f.name,
                f.runtime.as_str(),
            ));
        }
        protection(&mut s, &d.protection);
    }
    placement(&mut s, cfg);
    s
}

/// Which host runs which node (`[[host]]`), or that this machine runs them all.
fn placement(s: &mut String, cfg: &Config) {
    if cfg.hosts.is_empty() {
        s.push_str("placement: every node on this machine, each on its own loopback address\n");
        return;
    }
    s.push_str(&format!("placement ({} hosts):\n", cfg.hosts.len()));
    let nodes = cfg.nodes();
    for h in &cfg.hosts {
        let here: Vec<String> = nodes
            .iter()
            .filter(|n| cfg.host_of(n).is_some_and(|x| x.name == h.name))
            .map(|n| format!("{} {}", n.name, n.address))
            .collect();
        s.push_str(&format!(
            "  {:<16} {:<16} agent :{}  {}\n",
            h.name,
            h.address,
            h.agent_port,
            if here.is_empty() {
                "(no nodes)".to_owned()
            } else {
                here.join(", ")
            }
        ));
    }
}

/// The API protection lines of `validate`'s summary.
fn protection(s: &mut String, p: &meridian_config::Protection) {
    use meridian_config::units::format_duration;
    for r in &p.rules {
        s.push_str(&format!(
            "  rule {} ({}, {} match(es))\n",
            r.name,
            r.action.as_str(),
            r.matches.len()
        ));
    }
    for r in &p.rate_based_rules {
        let key: Vec<String> = r
            .key
            .iter()
            .map(|k| match k {
                meridian_config::RateKey::Ip => "ip".to_owned(),
                meridian_config::RateKey::ForwardedIp(h) => format!("forwarded-ip:{h}"),
                meridian_config::RateKey::Header(h) => format!("header:{h}"),
                meridian_config::RateKey::Cookie(c) => format!("cookie:{c}"),
                meridian_config::RateKey::QueryArgument(q) => format!("query:{q}"),
                meridian_config::RateKey::JwtClaim(c) => format!("jwt:{c}"),
            })
            .collect();
        s.push_str(&format!(
            "  rate-based rule {}: {} per {} per {} on {} ({}; counts shared between PoPs every 500ms)\n",
            r.name,
            r.limit,
            format_duration(r.window),
            key.join(" + "),
            r.path_pattern,
            r.action.as_str(),
        ));
    }
    for a in &p.jwt_authorizers {
        let jwks = a
            .jwks
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "a development key up makes (meridian token)".to_owned());
        s.push_str(&format!(
            "  JWT authorizer {} ({}; keys from {jwks})\n",
            a.name,
            a.algorithms.join(", ")
        ));
    }
    for g in &p.key_groups {
        let ids: Vec<&str> = g.public_keys.iter().map(|k| k.id.as_str()).collect();
        s.push_str(&format!("  key group {}: {}\n", g.name, ids.join(", ")));
    }
    if p.geo_restriction.restriction_type != meridian_config::GeoRestrictionType::None {
        s.push_str(&format!(
            "  geo restriction: {:?} {}\n",
            p.geo_restriction.restriction_type,
            p.geo_restriction.locations.join(", ")
        ));
    }
}

/// What a record set generated from `[database]` leads to, for `validate`.
fn db_record_note(name: &str) -> &'static str {
    if name == meridian_config::DB_WRITER_RECORD {
        " (generated from [database]: each node's writer endpoint, nearest region whose keeper is healthy)"
    } else {
        " (generated from [database]: each region's own PostgreSQL, nearest region whose keeper is healthy)"
    }
}

/// The balancer's declared target groups and listener rules, one line each (nothing when
/// the config declares none: one implicit group takes every request).
fn groups_and_rules(lb: &meridian_config::LoadBalancer) -> String {
    use meridian_config::units::format_duration as d;
    use meridian_config::{Action, Stickiness};
    let mut s = String::new();
    for g in &lb.target_groups {
        let sticky = match &g.stickiness {
            None => "no stickiness".to_owned(),
            Some(Stickiness::LbCookie { duration }) => {
                format!("sticky by AWSALB for {}", d(*duration))
            }
            Some(Stickiness::AppCookie {
                cookie_name,
                duration,
            }) => {
                format!("sticky by {cookie_name} (AWSALBAPP) for {}", d(*duration))
            }
        };
        let health = match &g.health_check.grpc_codes {
            Some(codes) => format!("{} (gRPC {codes})", g.health_check.path),
            None => g.health_check.path.clone(),
        };
        s.push_str(&format!(
            "  target group `{}`: {}, {}, {}, health {health}, drain {}, {sticky}, slow start {}\n",
            g.name,
            match g.websocket_streams {
                true => format!("{} (WebSockets as streams)", g.protocol_version.as_str()),
                false => g.protocol_version.as_str().to_owned(),
            },
            g.azs
                .as_ref()
                .map(|a| format!("AZs {}", a.join(", ")))
                .unwrap_or_else(|| "every instance".to_owned()),
            match g.anomaly_mitigation {
                true => format!("{} with anomaly mitigation", g.algorithm.as_str()),
                false => g.algorithm.as_str().to_owned(),
            },
            d(g.deregistration_delay),
            if g.slow_start.is_zero() {
                "off".to_owned()
            } else {
                d(g.slow_start)
            },
        ));
    }
    for r in &lb.rules {
        let c = &r.conditions;
        let mut when = Vec::new();
        let mut cond = |k: &str, v: &[String]| {
            if !v.is_empty() {
                when.push(format!("{k} {}", v.join("|")));
            }
        };
        cond("host", &c.host);
        cond("path", &c.path);
        cond("method", &c.method);
        let headers: Vec<String> = c
            .header
            .iter()
            .map(|h| format!("{}={}", h.name, h.values.join("|")))
            .collect();
        cond("header", &headers);
        let query: Vec<String> = c.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        cond("query", &query);
        let ips: Vec<String> = c.source_ip.iter().map(|c| c.to_string()).collect();
        cond("source_ip", &ips);
        let action = match &r.action {
            Action::Forward { groups } => format!(
                "forward {}",
                groups
                    .iter()
                    .map(|g| format!("{}:{}", g.target_group, g.weight))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Action::Redirect(rd) => format!(
                "redirect {} to {}://{}:{}{}?{}",
                rd.status, rd.protocol, rd.host, rd.port, rd.path, rd.query
            ),
            Action::FixedResponse { status, .. } => format!("fixed response {status}"),
        };
        let when = if when.is_empty() {
            "always".to_owned()
        } else {
            when.join(" and ")
        };
        s.push_str(&format!(
            "  rule {} `{}`: {when} -> {action}\n",
            r.priority, r.name
        ));
    }
    s
}
