//! The console's view of a region's cache cluster, from the keepers' metrics: which node
//! is primary, its memory and hit rate, and the replica's link.

use meridian_config::Config;
use meridian_console::model::State;

const CONFIG: &str = r#"
[deployment]
name = "c"
zone = "c.example"
[network]
subnet = "127.81.0.0/16"
[[region]]
name = "east"
primary = true
location = { lat = 39.0, lon = -77.5 }
azs = ["east-a", "east-b"]
[cache]
"#;

#[test]
fn a_region_shows_its_cache_primary_memory_hit_rate_and_replica_link() {
    let cfg = Config::parse(CONFIG, "c.toml").unwrap();
    let mut state = State::new(cfg, 1_000);
    // First the configured roles, then a failover to the second AZ.
    let before = |name: &str| -> Result<String, String> {
        match name {
            "redis-east-a" => Ok("meridian_cache_up 1\nmeridian_cache_primary 1\n".into()),
            "redis-east-b" => Ok("meridian_cache_up 1\nmeridian_cache_primary 0\n".into()),
            _ => Err("not running".into()),
        }
    };
    let scrapes = state.targets().iter().map(|t| before(&t.name)).collect();
    state.tick(999.0, scrapes);
    let scrape = |name: &str| -> Result<String, String> {
        match name {
            // After a failover: the node in the second AZ is primary, the first follows it.
            "redis-east-b" => Ok("meridian_cache_up 1\nmeridian_cache_primary 1\nmeridian_cache_replication_link_up 0\nmeridian_cache_used_memory_bytes 2000000\nmeridian_cache_maxmemory_bytes 67108864\nmeridian_cache_hit_ratio 0.75\n".into()),
            "redis-east-a" => Ok("meridian_cache_up 1\nmeridian_cache_primary 0\nmeridian_cache_replication_link_up 1\nmeridian_cache_replication_lag_bytes 42\nmeridian_cache_hit_ratio 0\n".into()),
            _ => Err("not running".into()),
        }
    };
    let scrapes = state.targets().iter().map(|t| scrape(&t.name)).collect();
    state.tick(1_000.0, scrapes);
    let region = &state.overview().regions[0];
    let cache = region
        .cache
        .as_ref()
        .expect("the region has a cache cluster");
    assert_eq!(cache.primary.as_deref(), Some("redis-east-b"));
    let primary = cache.nodes.iter().find(|n| n.primary).unwrap();
    assert_eq!(primary.hit_rate, Some(0.75));
    assert_eq!(primary.maxmemory, Some(67108864.0));
    let replica = cache.nodes.iter().find(|n| !n.primary).unwrap();
    assert!(replica.link_up && replica.up);
    assert_eq!(replica.lag_bytes, Some(42.0));
    let json = serde_json::to_value(state.overview()).unwrap();
    assert_eq!(json["regions"][0]["cache"]["primary"], "redis-east-b");
    let timeline = json.to_string();
    assert!(
        timeline.contains("redis-east-b is now its region's cache primary"),
        "{timeline}"
    );
}
