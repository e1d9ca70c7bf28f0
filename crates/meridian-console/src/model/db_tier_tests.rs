//! The database tier through the whole model: here rather than in `db_tier`, which the
//! model depends on, so the tier's own tests need not depend back on the model.

use crate::db_tier::tests::metrics;

const CONFIG: &str = r#"
[deployment]
name = "t"
zone = "t.example"
[network]
subnet = "127.85.0.0/16"
[[region]]
name = "us"
primary = true
location = { lat = 40.7, lon = -74.0 }
azs = ["us-a", "us-b"]
[[region]]
name = "eu"
location = { lat = 51.5, lon = -0.1 }
azs = ["eu-a"]
[database]
[console]
[[console.alarm]]
name = "lag"
kind = "replication_lag"
threshold = 5
[[console.alarm]]
name = "sync"
kind = "no_sync_standby"
"#;

/// The whole tick: panels per region, a promotion in the timeline, both alarms firing.
#[test]
fn the_console_shows_the_tier_its_failover_and_its_alarms() {
    let cfg = meridian_config::Config::parse(CONFIG, "t.toml").unwrap();
    let mut state = crate::model::State::new(cfg, 0);
    let names: Vec<String> = state.targets().iter().map(|t| t.name.clone()).collect();
    let scrape = |db: &dyn Fn(&str) -> Option<String>| -> Vec<Result<String, String>> {
        names
            .iter()
            .map(|n| db(n).ok_or_else(|| "not in this test".to_owned()))
            .collect()
    };
    let before = |n: &str| match n {
        "db-us-a" => Some(metrics(
            0,
            0.0,
            10,
            &[("db-us-b", "sync"), ("db-eu-a", "async")],
        )),
        "db-us-b" => Some(metrics(1, 0.0, 0, &[])),
        "db-eu-a" => Some(metrics(1, 1.0, 0, &[])),
        _ => None,
    };
    state.tick(1.0, scrape(&before));
    let o = state.overview();
    let us = o.regions.iter().find(|r| r.name == "us").unwrap();
    let db = us.db.as_ref().unwrap();
    assert_eq!(db.primary.as_deref(), Some("db-us-a"));
    assert_eq!(db.nodes[1].role, Some("sync_standby"));
    assert!(o.alarms.iter().all(|a| a.state == crate::alarms::State::Ok));
    // The primary is lost; its standby is promoted with no standby of its own, and the
    // replica falls behind.
    let after = |n: &str| match n {
        "db-us-b" => Some(metrics(0, 0.0, 20, &[("db-eu-a", "async")])),
        "db-eu-a" => Some(metrics(1, 9.0, 0, &[])),
        _ => None,
    };
    let fired = state.tick(2.0, scrape(&after));
    let o = state.overview();
    assert!(
        o.events
            .iter()
            .any(|e| e.kind == crate::events::Kind::Failover
                && e.subject == "db-us-b"
                && e.message.contains("now the database primary")),
        "{:?}",
        o.events
    );
    let firing: Vec<(&str, &str)> = fired
        .iter()
        .filter(|t| t.state == "ALARM")
        .map(|t| (t.alarm.as_str(), t.subject.as_str()))
        .collect();
    assert!(firing.contains(&("lag", "db-eu-a")), "{firing:?}");
    assert!(firing.contains(&("sync", "db-us-b")), "{firing:?}");
}
