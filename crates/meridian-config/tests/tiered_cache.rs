//! `[distribution.tiered_cache]`: off by default; on, a regional edge cache node per region
//! on the region's own addresses; a wrong Origin Shield region is refused precisely.

use meridian_config::{Config, Role, DEFAULT_CONFIG};

fn with(table: &str) -> Result<Config, String> {
    let text = format!("{DEFAULT_CONFIG}\n[distribution.tiered_cache]\n{table}\n");
    Config::parse(&text, "meridian.toml").map_err(|e| e.to_string())
}

fn recs(c: &Config) -> Vec<meridian_config::NodeSpec> {
    c.nodes()
        .into_iter()
        .filter(|n| n.name.starts_with("edge-rec-"))
        .collect()
}

#[test]
fn off_by_default_so_the_default_deployment_is_unchanged() {
    let c = Config::parse(DEFAULT_CONFIG, "default").unwrap();
    assert!(!c.distribution.tiered_cache.enabled);
    assert!(recs(&c).is_empty());
    assert_eq!(c.regional_cache_address("us-east-1"), None);
}

#[test]
fn on_a_regional_cache_per_region_in_the_regions_block() {
    let c = with("enabled = true\norigin_shield_region = \"us-east-1\"").unwrap();
    let r = recs(&c);
    assert_eq!(r.len(), c.regions.len());
    for (n, region) in r.iter().zip(&c.regions) {
        assert_eq!(n.role, Role::Edge);
        assert_eq!(n.region.as_deref(), Some(region.name.as_str()));
        let lb = c.lb_address(&region.name).unwrap();
        // The region's block (127.x.<region>.*): the WAN places it in its region.
        assert_eq!(
            n.address.ip().to_string().rsplit_once('.').unwrap().0,
            lb.ip().to_string().rsplit_once('.').unwrap().0
        );
        assert_ne!(n.address, lb);
        let site = c.edge_site(n).unwrap();
        assert_eq!(site.name, format!("rec-{}", region.name));
        // Not a PoP: the DNS never sends viewers to it.
        assert!(c.pop_of(n).is_none());
    }
    assert_eq!(
        c.distribution.tiered_cache.origin_shield_region.as_deref(),
        Some("us-east-1")
    );
    // Every node keeps its own address.
    let mut addrs: Vec<_> = c.nodes().iter().map(|n| n.address).collect();
    let all = addrs.len();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), all);
}

#[test]
fn a_shield_needs_a_known_region_and_the_tier() {
    let e = with("origin_shield_region = \"us-east-2\"").unwrap_err();
    assert!(e.contains("meridian.toml:"), "{e}");
    assert!(
        e.contains("`us-east-2` is not a region of this deployment"),
        "{e}"
    );
    assert!(e.contains("us-east-1, eu-west-1, ap-southeast-1"), "{e}");
    let e = with("enabled = false\norigin_shield_region = \"eu-west-1\"").unwrap_err();
    assert!(e.contains("needs the regional edge caches"), "{e}");
    assert!(e.contains("set enabled = true"), "{e}");
}
