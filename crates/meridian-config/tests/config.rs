use meridian_config::{Algorithm, Config, DbRole, Role, ServiceRuntime, DEFAULT_CONFIG};
use std::time::Duration;

#[test]
fn embedded_default_is_the_seed_deployment() {
    let c = Config::embedded_default();
    let names: Vec<&str> = c.regions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["us-east-1", "eu-west-1", "ap-southeast-1"]);
    assert_eq!(c.primary_region().name, "us-east-1");
    assert!(c.regions.iter().all(|r| r.azs.len() >= 2));
    // Real coordinates: Virginia is west of Ireland, Singapore near the equator.
    assert!(c.regions[0].location.lon < c.regions[1].location.lon);
    assert!(c.regions[2].location.lat.abs() < 5.0);
    assert!(c.edges.len() >= 5);
    assert!(matches!(c.service.runtime, ServiceRuntime::Demo { .. }));
    assert_eq!(
        c.load_balancer.health_check.interval,
        Duration::from_secs(1)
    );
}

#[test]
fn topology_gives_every_node_its_own_loopback_address() {
    let c = Config::embedded_default();
    let nodes = c.nodes();
    let lbs = nodes.iter().filter(|n| n.role == Role::Lb).count();
    assert_eq!(lbs, 3);
    let mut addrs: Vec<_> = nodes.iter().map(|n| n.address.ip()).collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), nodes.len(), "addresses must be unique");
    assert!(nodes.iter().all(|n| n.address.ip().is_loopback()));
    let targets = c.targets_of("eu-west-1");
    assert!(targets.len() >= 2);
    assert!(targets
        .iter()
        .all(|t| t.region.as_deref() == Some("eu-west-1")));
}

const BAD: &str = r#"
[deployment]
name = "shop"
zone = "shop.example"

[[region]]
name = "us-east-1"
location = { lat = 38.9, lon = -77.4 }
azs = ["us-east-1a", "us-east-1b"]

[[region]]
name = "eu-west-1"
location = { lat = 53.3, lon = -6.2 }
azs = []

[service]
instnces_per_az = 2

[load_balancer.health_check]
interval = "5 parsecs"
"#;

#[test]
fn three_mistakes_give_three_precise_errors() {
    let errs = Config::parse(BAD, "bad.toml").unwrap_err().0;
    assert_eq!(errs.len(), 3, "{errs:#?}");
    // In file order: the empty AZ list, the typo, the duration.
    assert_eq!(errs[0].line, 14);
    assert_eq!(errs[0].key, "region[1].azs");
    assert!(errs[0].problem.contains("no availability zone"));
    assert_eq!((errs[1].line, errs[1].column), (17, 1));
    assert_eq!(errs[1].key, "service.instnces_per_az");
    assert!(
        errs[1].fix.contains("`instances_per_az`"),
        "{}",
        errs[1].fix
    );
    assert_eq!((errs[2].line, errs[2].column), (20, 12));
    assert_eq!(errs[2].key, "load_balancer.health_check.interval");
    assert!(errs[2].problem.contains("parsecs"));
    for e in &errs {
        assert_eq!(e.file, "bad.toml");
        assert!(!e.fix.is_empty());
    }
    let shown = meridian_config::ConfigErrors(errs).to_string();
    assert!(shown.contains("--> bad.toml:17:1"), "{shown}");
    assert!(shown.contains("3 errors"), "{shown}");
}

#[test]
fn syntax_errors_point_at_the_line() {
    let errs = Config::parse("[deployment]\nname = \"x\nzone = 1\n", "s.toml")
        .unwrap_err()
        .0;
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, 2);
    assert!(errs[0].problem.starts_with("TOML syntax"));
}

#[test]
fn a_duplicate_key_names_its_path_and_a_duplicate_table_its_table() {
    let key = "[deployment]\nname = \"x\"\n[load_balancer]\nalgorithm = \"round_robin\"\nalgorithm = \"round_robin\"\n";
    let errs = Config::parse(key, "d.toml").unwrap_err().0;
    assert_eq!(
        (errs[0].line, errs[0].key.as_str()),
        (5, "load_balancer.algorithm")
    );
    assert!(errs[0].fix.contains("set twice"), "{}", errs[0].fix);
    // A header with a comment, and CRLF line ends.
    let commented = "[load_balancer] # the ALB\r\nalgorithm = \"a\"\r\nalgorithm = \"b\"\r\n";
    let errs = Config::parse(commented, "d.toml").unwrap_err().0;
    assert_eq!(errs[0].key, "load_balancer.algorithm");
    let table = "[deployment]\nname = \"x\"\n[deployment]\nzone = \"y\"\n";
    let errs = Config::parse(table, "d.toml").unwrap_err().0;
    assert_eq!((errs[0].line, errs[0].key.as_str()), (3, "deployment"));
    assert!(errs[0].fix.contains("merge"), "{}", errs[0].fix);
}

fn with(extra: &str) -> String {
    format!(
        "[deployment]\nname = \"x\"\nzone = \"x.example\"\n[[region]]\nname = \"r1\"\nlocation = {{ lat = 1, lon = 2 }}\nazs = [\"r1a\"]\n{extra}"
    )
}

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::parse(&with(""), "m.toml").unwrap();
    assert_eq!(c.load_balancer.algorithm, Algorithm::RoundRobin);
    assert_eq!(c.service.instances_per_az, 1);
    // One instance, its balancer, the two DNS servers and the console every deployment
    // gets by default.
    assert_eq!(c.nodes().len(), 5);
    assert!(c.nodes().iter().any(|n| n.role == Role::Console));
    let off = Config::parse(&with("[console]\nenabled = false\n"), "m.toml").unwrap();
    assert_eq!(off.nodes().len(), 4);
}

#[test]
fn value_errors_name_the_fix() {
    let cases = [
        ("[load_balancer]\nalgorithm = \"random\"\n", "load_balancer.algorithm", "round_robin"),
        ("[load_balancer.health_check]\nmatcher = \"200-2xx\"\n", "load_balancer.health_check.matcher", "200-299"),
        ("[load_balancer.health_check]\ninterval = \"2s\"\ntimeout = \"3s\"\n", "load_balancer.health_check.timeout", "lower `timeout`"),
        ("[load_balancer.health_check]\nhealthy_threshold = 0\n", "load_balancer.health_check.healthy_threshold", "from 1 to 10"),
        ("[network]\nsubnet = \"10.0.0.0/16\"\n", "network.subnet", "127.10.0.0/16"),
        ("[[edge]]\nname = \"p\"\nlocation = { lat = 1, lon = 2 }\nmemory_cache = \"1 potato\"\n", "edge[0].memory_cache", "MiB"),
        ("[service]\nruntime = \"command\"\n", "service.command", "command = ["),
        ("[[client_location]]\nname = \"Big City\"\nlocation = { lat = 1, lon = 2 }\n", "client_location[0].name", "lowercase"),
        ("[[client_location]]\nname = \"c\"\nlocation = { lat = 100, lon = 2 }\n", "client_location[0].location.lat", "degrees"),
        ("[[console.alarm]]\nname = \"a\"\nkind = \"error_rat\"\nthreshold = 0.1\n", "console.alarm[0].kind", "did you mean \"error_rate\""),
        ("[[console.alarm]]\nname = \"a\"\nkind = \"hit_rate\"\n", "console.alarm[0].threshold", "threshold = 0.05"),
        ("[[console.alarm]]\nname = \"a\"\nkind = \"error_rate\"\nthreshold = 5\n", "console.alarm[0].threshold", "from 0 to 1"),
        ("[console]\nwebhook = \"ftp://x\"\n", "console.webhook", "http://127.0.0.1"),
        ("[console]\nretention = \"48h\"\n", "console.retention", "1h"),
        ("[console.prices]\n[[console.prices.place]]\nplace = \"mars\"\n", "console.prices.place[0].place", "r1"),
    ];
    for (extra, key, fix) in cases {
        let errs = Config::parse(&with(extra), "v.toml").unwrap_err().0;
        assert_eq!(errs.len(), 1, "{extra}: {errs:#?}");
        assert_eq!(errs[0].key, key, "{extra}");
        assert!(
            errs[0].fix.contains(fix),
            "{extra}: fix was {:?}",
            errs[0].fix
        );
    }
}

#[test]
fn duplicate_names_and_two_primaries_are_errors() {
    let src = with("[[region]]\nname = \"r1\"\nprimary = true\nlocation = { lat = 1, lon = 2 }\nazs = [\"r2a\"]\n");
    let errs = Config::parse(&src, "d.toml").unwrap_err().0;
    assert!(
        errs.iter()
            .any(|e| e.problem.contains("two [[region]] entries named `r1`")),
        "{errs:#?}"
    );
}

#[test]
fn default_text_is_what_validate_reads() {
    assert!(Config::parse(DEFAULT_CONFIG, "meridian.toml").is_ok());
}

#[test]
fn dns_record_errors_point_at_the_value() {
    let cases = [
        ("[[dns.record]]\nname = \"a\"\ntype = \"A\"\nvalues = [\"192.0.2.1\", \"300.1.1.1\"]\n", "dns.record[0].values", "IPv4", 11),
        ("[[dns.record]]\nname = \"m\"\ntype = \"MX\"\nvalues = [\"mail\"]\n", "dns.record[0].values", "10 mail", 11),
        ("[[dns.record]]\nname = \"api\"\ntype = \"A\"\npolicy = \"latency\"\n[[dns.record.answer]]\nid = \"x\"\nalias = \"lb:mars-1\"\n", "dns.record[0].answer[0].alias", "r1", 14),
        ("[[dns.record]]\nname = \"api\"\ntype = \"A\"\npolicy = \"fastest\"\nvalues = [\"192.0.2.1\"]\n", "dns.record[0].policy", "latency", 11),
        ("[[dns.record]]\nname = \"f\"\ntype = \"A\"\npolicy = \"failover\"\n[[dns.record.answer]]\nid = \"a\"\nvalues = [\"192.0.2.1\"]\nfailover = \"secondary\"\n", "dns.record[0]", "primary", 8),
        ("[[dns.record]]\nname = \"g\"\ntype = \"A\"\npolicy = \"geolocation\"\n[[dns.record.answer]]\nid = \"a\"\nvalues = [\"192.0.2.1\"]\n", "dns.record[0].answer[0].geo", "geo = ", 12),
    ];
    for (extra, key, fix, line) in cases {
        let errs = Config::parse(&with(extra), "d.toml").unwrap_err().0;
        assert_eq!(errs.len(), 1, "{extra}: {errs:#?}");
        assert_eq!(errs[0].key, key, "{extra}");
        let said = format!("{} / {}", errs[0].problem, errs[0].fix);
        assert!(said.contains(fix), "{extra}: said {said:?}");
        assert_eq!(errs[0].line, line, "{extra}");
    }
}

#[test]
fn the_default_distribution_is_the_seeds_cloudfront_setup() {
    let c = Config::embedded_default();
    let d = &c.distribution;
    assert!(c.nodes().iter().filter(|n| n.role == Role::Edge).count() >= 5);
    // Quotes have their own behavior (it runs the drop-tracking function), cached as the
    // rest of the API.
    let quotes = d.behavior_for("/api/quotes/AAPL");
    assert_eq!(quotes.path_pattern, "/api/quotes/*");
    assert_eq!(quotes.function_associations.len(), 1);
    let api = d.behavior_for("/api/other");
    assert_eq!(api.path_pattern, "/api/*");
    assert_eq!(quotes.cache_policy, api.cache_policy);
    let p = d.cache_policy(&api.cache_policy).unwrap();
    assert_eq!(
        (p.default_ttl, p.max_ttl),
        (Duration::from_secs(300), Duration::from_secs(3600))
    );
    // A user's portfolio is never cached at the edge; orders may be POSTed.
    let mine = d.behavior_for("/api/portfolio/alice");
    let p = d.cache_policy(&mine.cache_policy).unwrap();
    assert_eq!((p.min_ttl, p.max_ttl), (Duration::ZERO, Duration::ZERO));
    let orders = d.behavior_for("/api/orders");
    assert!(orders.allowed_methods.iter().any(|m| m == "POST"));
    let st = d
        .cache_policy(&d.behavior_for("/static/app.js").cache_policy)
        .unwrap();
    assert_eq!(
        (st.default_ttl, st.max_ttl),
        (Duration::from_secs(86_400), Duration::from_secs(31_536_000))
    );
    let gql = d
        .cache_policy(&d.behavior_for("/graphql").cache_policy)
        .unwrap();
    for q in ["extensions", "operationName", "variables"] {
        assert!(
            gql.query_strings.admits(q, false),
            "{q} is in the GraphQL cache key"
        );
    }
    assert!(!gql.query_strings.admits("utm_source", false));
    assert_eq!(
        d.behavior_for("/").path_pattern,
        "*",
        "the default behavior"
    );
    let g = d.origin_group("regions").unwrap();
    assert_eq!(g.members.len(), 3);
    assert_eq!(g.failover_statuses, [500, 502, 503, 504]);
}

const BAD_DISTRIBUTION: &str = r#"
[deployment]
name = "shop"
zone = "shop.example"

[[region]]
name = "us-east-1"
location = { lat = 38.9, lon = -77.4 }
azs = ["us-east-1a"]

[[edge]]
name = "paris"
location = { lat = 48.85, lon = 2.35 }

[distribution]
aliases = ["cdn.shop.example", "*.img.shop.example", "shop.example/static"]
[[distribution.origin_group]]
name = "app"
members = ["lb:us-west-2", "ftp://x"]
selection = "fastest"

[[distribution.cache_policy]]
name = "api"
min_ttl = "10m"
default_ttl = "1m"
query_strings = "allow_list"

[[distribution.origin_request_policy]]
name = "viewer-and-country"
headers = "all"
header_names = ["CloudFront-Viewer-Country", "authorization"]

[[distribution.behavior]]
path_pattern = "/api/*"
origin_group = "ap"
cache_policy = "apii"
viewer_protocol_policy = "https"
allowed_methods = ["GET", "FETCH"]
"#;

#[test]
fn distribution_mistakes_each_get_a_precise_error() {
    let errs = Config::parse(BAD_DISTRIBUTION, "shop.toml").unwrap_err().0;
    let find = |key: &str| {
        errs.iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("no error for {key}: {errs:#?}"))
    };
    let e = find("distribution.origin_group[0].members");
    assert!(
        e.problem.contains("lb:us-west-2") && e.fix.contains("us-east-1"),
        "{e}"
    );
    assert_eq!(e.line, 19);
    let e = find("distribution.aliases");
    assert!(
        e.problem.contains("shop.example/static") && e.fix.contains("*.example.com"),
        "{e}"
    );
    assert_eq!(e.line, 16);
    assert!(errs.iter().any(|e| e.problem.contains("ftp://x")));
    assert!(find("distribution.origin_group[0].selection")
        .fix
        .contains("latency"));
    assert!(find("distribution.cache_policy[0].default_ttl")
        .problem
        .contains("min_ttl <= default_ttl"));
    assert!(find("distribution.cache_policy[0].query_string_names")
        .fix
        .contains("query_string_names"));
    let e = find("distribution.origin_request_policy[0].header_names");
    assert!(
        e.problem.contains("`authorization` is a viewer header") && e.fix.contains("allow_list"),
        "{e}"
    );
    assert_eq!(e.line, 31);
    assert!(find("distribution.behavior[0].origin_group")
        .fix
        .contains("app"));
    assert!(find("distribution.behavior[0].cache_policy")
        .fix
        .contains("api"));
    assert!(find("distribution.behavior[0].viewer_protocol_policy")
        .fix
        .contains("redirect-to-https"));
    assert!(errs.iter().any(
        |e| e.key == "distribution.behavior[0].allowed_methods" && e.problem.contains("FETCH")
    ));
    assert!(errs
        .iter()
        .any(|e| e.key == "distribution.behavior[0].allowed_methods"
            && e.problem.contains("GET and HEAD")));
    let text = errs.iter().map(|e| e.to_string()).collect::<String>();
    assert!(text.contains("shop.toml:"), "{text}");
}

#[test]
fn the_default_data_tier_is_multi_az_with_a_replica_per_region() {
    let cfg = Config::embedded_default();
    let db = cfg.database.as_ref().expect("the seed has a data tier");
    assert_eq!(db.home_region, "us-east-1");
    let instances: Vec<(String, String, DbRole)> = db.instances();
    assert_eq!(
        instances,
        [
            ("us-east-1".into(), "us-east-1a".into(), DbRole::Primary),
            ("us-east-1".into(), "us-east-1b".into(), DbRole::SyncStandby),
            ("eu-west-1".into(), "eu-west-1a".into(), DbRole::Replica),
            (
                "ap-southeast-1".into(),
                "ap-southeast-1a".into(),
                DbRole::Replica
            ),
        ]
    );
    let dbs: Vec<_> = cfg
        .nodes()
        .into_iter()
        .filter(|n| n.role == Role::Db)
        .collect();
    let names: Vec<&str> = dbs.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "db-us-east-1a",
            "db-us-east-1b",
            "db-eu-west-1a",
            "db-ap-southeast-1a"
        ]
    );
    assert_eq!(dbs[0].address.to_string(), "127.10.1.60:5432");
    assert_eq!(
        meridian_config::Placement::BehindRelay
            .listen_of(&dbs[0])
            .to_string(),
        "127.10.1.60:15432",
        "behind the WAN"
    );
    assert_eq!(dbs[1].address.to_string(), "127.10.1.61:5432");
    assert_eq!(dbs[2].address.to_string(), "127.10.2.60:5432");
    assert_eq!(dbs[0].admin.to_string(), "127.10.1.60:9900");
    // No [database]: no data tier, no database nodes.
    let plain = Config::parse(&with(""), "plain.toml").unwrap();
    assert!(plain.database.is_none());
    assert!(plain.nodes().iter().all(|n| n.role != Role::Db));
}

#[test]
fn impossible_data_tiers_get_precise_errors() {
    let bad = |db: &str| {
        let text = format!(
            "{}\n[[region]]\nname = \"solo\"\nlocation = {{ lat = 1, lon = 1 }}\nazs = [\"solo-a\"]\n\n[database]\n{db}\n",
            with("")
        );
        Config::parse(&text, "db.toml").unwrap_err().0
    };
    let errs = bad("home_region = \"us-west-2\"");
    assert!(
        errs.iter().any(|e| e.key == "database.home_region"
            && e.problem.contains("us-west-2")
            && e.fix.contains("solo")),
        "{errs:#?}"
    );
    let errs = bad("home_region = \"solo\"");
    assert!(
        errs.iter()
            .any(|e| e.problem.contains("Multi-AZ needs a second AZ")
                && e.fix.contains("multi_az = false")),
        "{errs:#?}"
    );
    assert!(Config::parse(
        &format!("{}\n[[region]]\nname = \"solo\"\nlocation = {{ lat = 1, lon = 1 }}\nazs = [\"solo-a\"]\n\n[database]\nhome_region = \"solo\"\nmulti_az = false\n", with("")),
        "db.toml"
    )
    .is_ok());
    let errs = bad("replica_regions = [\"mars-1\"]");
    assert!(
        errs.iter()
            .any(|e| e.key == "database.replica_regions" && e.problem.contains("mars-1")),
        "{errs:#?}"
    );
    let errs = bad("standby_az = \"solo-a\"");
    assert!(
        errs.iter()
            .any(|e| e.key == "database.standby_az" && e.problem.contains("is not an AZ of")),
        "{errs:#?}"
    );
    let errs = bad("lease = \"5m\"");
    assert!(
        errs.iter()
            .any(|e| e.key == "database.lease" && e.fix.contains("10s")),
        "{errs:#?}"
    );
    let errs = bad("promotion = \"sometimes\"");
    assert!(
        errs.iter()
            .any(|e| e.key == "database.promotion" && e.fix.contains("manual")),
        "{errs:#?}"
    );
    assert!(errs.iter().all(|e| e.line > 0), "{errs:#?}");
}

/// A short smoke run of what `fuzz/fuzz_targets/config.rs` does at length: the default
/// config mutated thousands of ways is read or refused with errors, never a panic.
#[test]
fn mutated_configs_are_read_or_refused_never_a_panic() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n.max(1) as u64) as usize
    };
    let pieces = [
        "",
        "\n",
        "=",
        "\"",
        "[",
        "]]",
        "{",
        "}",
        ",",
        "0",
        "-1",
        "99999999999999999999",
        "1e308",
        "\"\"",
        "true",
        "[database]\n",
        "[[region]]\n",
        "azs = []\n",
        "port = 0\n",
        "lease = \"0s\"\n",
        "ä",
        "\u{0}",
    ];
    let base: Vec<char> = DEFAULT_CONFIG.chars().collect();
    let mut refused = 0;
    for _ in 0..1500 {
        let mut text = base.clone();
        for _ in 0..1 + next(4) {
            let at = next(text.len());
            match next(3) {
                0 => {
                    let end = (at + next(40)).min(text.len());
                    text.drain(at..end);
                }
                1 => {
                    let piece = pieces[next(pieces.len())];
                    text.splice(at..at, piece.chars());
                }
                _ => {
                    let end = (at + next(80)).min(text.len());
                    let copy: Vec<char> = text[at..end].to_vec();
                    let to = next(text.len());
                    text.splice(to..to, copy);
                }
            }
        }
        let text: String = text.into_iter().collect();
        if let Err(e) = Config::parse(&text, "mutated.toml") {
            refused += 1;
            assert!(
                e.0.iter()
                    .all(|e| !e.problem.is_empty() && !e.fix.is_empty()),
                "{e}"
            );
        }
    }
    assert!(
        refused > 100,
        "the mutations should break most configs: {refused}"
    );
}

#[test]
fn targeted_cache_control_fields_are_rfc_9213_names() {
    let c = Config::embedded_default();
    assert_eq!(
        c.distribution.cache_control_targets,
        ["meridian-cdn-cache-control", "cdn-cache-control"]
    );
    let c = Config::parse(
        &with("[distribution]\ncache_control_targets = [\"Akamai-Cache-Control\"]\n"),
        "t.toml",
    )
    .unwrap();
    assert_eq!(
        c.distribution.cache_control_targets,
        ["akamai-cache-control"]
    );
    let errs = Config::parse(
        &with("[distribution]\ncache_control_targets = [\"Cache-Control\", \"bad name\"]\n"),
        "t.toml",
    )
    .unwrap_err()
    .0;
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs
        .iter()
        .all(|e| e.key == "distribution.cache_control_targets" && e.line == 9));
}
