//! `[cache]`: the ElastiCache-style cache tier, its nodes and addresses, and the errors
//! for layouts that cannot run.

use meridian_config::{CacheRole, Config, Eviction, Role};
use std::time::Duration;

/// Two regions on 127.81/16: one with two AZs, one (`solo`) with a single AZ.
fn config(cache: &str) -> String {
    format!(
        r#"[deployment]
name = "c"
zone = "c.example"
[network]
subnet = "127.81.0.0/16"
[[region]]
name = "us-east-1"
primary = true
location = {{ lat = 38.9, lon = -77.4 }}
azs = ["us-east-1a", "us-east-1b"]
[[region]]
name = "solo"
location = {{ lat = 1, lon = 1 }}
azs = ["solo-a"]
{cache}"#
    )
}

fn errors(cache: &str) -> Vec<meridian_config::ConfigError> {
    Config::parse(&config(cache), "cache.toml").unwrap_err().0
}

#[test]
fn the_default_deployment_runs_a_multi_az_cache_cluster_in_every_region() {
    let cfg = Config::embedded_default();
    let cache = cfg.cache.as_ref().expect("the seed has a cache tier");
    assert_eq!(cache.port, 6379);
    assert_eq!(cache.maxmemory.0, 64 << 20);
    assert_eq!(cache.eviction, Eviction::AllkeysLru);
    assert_eq!(cache.failover, Duration::from_secs(3));
    let regions: Vec<&str> = cache.clusters.iter().map(|c| c.region.as_str()).collect();
    assert_eq!(regions, ["us-east-1", "eu-west-1", "ap-southeast-1"]);
    let nodes: Vec<_> = cfg
        .nodes()
        .into_iter()
        .filter(|n| n.role == Role::Cache)
        .collect();
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "redis-us-east-1a",
            "redis-us-east-1b",
            "redis-eu-west-1a",
            "redis-eu-west-1b",
            "redis-ap-southeast-1a",
            "redis-ap-southeast-1b"
        ]
    );
    assert_eq!(nodes[0].address.to_string(), "127.10.1.70:6379");
    assert_eq!(nodes[1].address.to_string(), "127.10.1.71:6379");
    assert_eq!(nodes[2].address.to_string(), "127.10.2.70:6379");
    assert_eq!(nodes[0].admin.to_string(), "127.10.1.70:9900");
    // Not behind the WAN: a cache is used from inside its region.
    assert_eq!(
        meridian_config::Placement::BehindRelay.listen_of(&nodes[0]),
        nodes[0].address
    );
    assert_eq!(
        cfg.cache_endpoint("eu-west-1").unwrap().to_string(),
        "127.10.2.79:6379"
    );
    assert_eq!(
        cache.nodes()[1],
        ("us-east-1".into(), "us-east-1b".into(), CacheRole::Replica)
    );
}

#[test]
fn no_cache_table_means_no_cache_nodes() {
    let cfg = Config::parse(&config(""), "c.toml").unwrap();
    assert!(cfg.cache.is_none());
    assert!(cfg.nodes().iter().all(|n| n.role != Role::Cache));
    assert!(cfg.cache_endpoint("us-east-1").is_none());
}

#[test]
fn a_cache_table_picks_its_regions_and_settings() {
    let cfg = Config::parse(
        &config(
            "[cache]\nregions = [\"us-east-1\"]\nport = 6400\nmaxmemory = \"8MiB\"\neviction = \"allkeys-lfu\"\nfailover = \"1500ms\"\n",
        ),
        "c.toml",
    )
    .unwrap();
    let cache = cfg.cache.unwrap();
    assert_eq!(cache.clusters.len(), 1);
    assert_eq!(cache.clusters[0].replica_az.as_deref(), Some("us-east-1b"));
    assert_eq!(cache.port, 6400);
    assert_eq!(cache.maxmemory.0, 8 << 20);
    assert_eq!(cache.eviction, Eviction::AllkeysLfu);
    assert_eq!(cache.failover, Duration::from_millis(1500));
    // Single-AZ regions are fine without Multi-AZ.
    let cfg = Config::parse(&config("[cache]\nmulti_az = false\n"), "c.toml").unwrap();
    assert_eq!(cfg.cache.unwrap().nodes().len(), 2);
}

#[test]
fn impossible_cache_tiers_get_precise_errors() {
    // Every region by default, and `solo` has one AZ: Multi-AZ cannot place its replica.
    let errs = errors("[cache]\n");
    assert!(
        errs.iter()
            .any(|e| e.problem.contains("Multi-AZ needs a second AZ in solo")
                && e.fix.contains("multi_az = false")),
        "{errs:#?}"
    );
    let errs = errors("[cache]\nregions = [\"us-east-1\", \"mars-1\"]\n");
    assert!(
        errs.iter().any(|e| e.key == "cache.regions"
            && e.problem.contains("mars-1")
            && e.fix.contains("us-east-1, solo")
            && e.line == 16),
        "{errs:#?}"
    );
    let errs = errors("[cache]\nregions = [\"us-east-1\", \"us-east-1\"]\n");
    assert!(
        errs.iter().any(|e| e.problem.contains("listed twice")),
        "{errs:#?}"
    );
    let errs = errors("[cache]\nregions = [\"us-east-1\"]\nmaxmemory = \"64KiB\"\n");
    assert!(
        errs.iter()
            .any(|e| e.key == "cache.maxmemory" && e.fix.contains("64MiB")),
        "{errs:#?}"
    );
    let errs = errors("[cache]\nregions = [\"us-east-1\"]\nmaxmemory = \"lots\"\n");
    assert!(errs.iter().any(|e| e.key == "cache.maxmemory"), "{errs:#?}");
    let errs = errors("[cache]\nregions = [\"us-east-1\"]\neviction = \"allkeys-lur\"\n");
    assert!(
        errs.iter()
            .any(|e| e.key == "cache.eviction" && e.fix.contains("did you mean \"allkeys-lru\"")),
        "{errs:#?}"
    );
    let errs = errors("[cache]\nregions = [\"us-east-1\"]\nfailover = \"5m\"\n");
    assert!(
        errs.iter()
            .any(|e| e.key == "cache.failover" && e.fix.contains("3s")),
        "{errs:#?}"
    );
    let errs = errors("[cache]\nregions = [\"us-east-1\"]\nport = 0\n");
    assert!(errs.iter().any(|e| e.key == "cache.port"), "{errs:#?}");
    let errs = errors("[cache]\nregions = [\"us-east-1\"]\nmaxmem = \"8MiB\"\n");
    assert!(
        errs.iter()
            .any(|e| e.key == "cache.maxmem" && e.fix.contains("maxmemory")),
        "{errs:#?}"
    );
    let all = errors("[cache]\nregions = [\"mars-1\"]\n");
    let text = all.iter().map(|e| e.to_string()).collect::<String>();
    assert!(text.contains("cache.toml:"), "{text}");
    assert!(all.iter().all(|e| e.line > 0), "{all:#?}");
}
