//! `[service] version` and `[service.deployment]` (ECS's deployment configuration): the
//! defaults ECS has, and precise errors for values a rollout cannot use.

use meridian_config::{Config, DeploymentConfiguration};
use std::time::Duration;

const HEAD: &str = r#"[deployment]
name = "shop"
zone = "shop.example"

[[region]]
name = "us-east-1"
primary = true
location = { lat = 38.9, lon = -77.4 }
azs = ["us-east-1a"]

[service]
"#;

#[test]
fn defaults_are_ecs_defaults() {
    let c = Config::parse(HEAD, "ok.toml").unwrap();
    assert_eq!(c.service.version, "1");
    let d = &c.service.deployment;
    assert_eq!((d.minimum_healthy_percent, d.maximum_percent), (100, 200));
    assert!(d.circuit_breaker);
    assert_eq!(*d, DeploymentConfiguration::default());
}

#[test]
fn every_setting_is_read() {
    let text = format!(
        "{HEAD}version = \"2024.05.1\"\n\n[service.deployment]\nminimum_healthy_percent = 50\nmaximum_percent = 100\ncircuit_breaker = false\nhealth_check_timeout = \"5s\"\nmax_5xx_rate = 0.1\n"
    );
    let c = Config::parse(&text, "ok.toml").unwrap();
    assert_eq!(c.service.version, "2024.05.1");
    let d = &c.service.deployment;
    assert_eq!((d.minimum_healthy_percent, d.maximum_percent), (50, 100));
    assert!(!d.circuit_breaker);
    assert_eq!(d.health_check_timeout, Duration::from_secs(5));
    assert_eq!(d.max_5xx_rate, 0.1);
}

#[test]
fn bad_values_name_line_key_and_fix() {
    let text = format!(
        "{HEAD}version = \"two words\"\n\n[service.deployment]\nminimum_healthy_percent = 150\nmaximum_percent = 100\nmax_5xx_rate = 5\nmax_surge = 1\n"
    );
    let errs = Config::parse(&text, "bad.toml").unwrap_err().0;
    let find = |key: &str| {
        errs.iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("no error for {key}: {errs:#?}"))
    };
    let v = find("service.version");
    assert_eq!((v.file.as_str(), v.line), ("bad.toml", 12));
    assert!(v.problem.contains("not a service version"), "{}", v.problem);
    let m = find("service.deployment.minimum_healthy_percent");
    assert_eq!(m.line, 15);
    assert!(m.fix.contains("0 to 100"), "{}", m.fix);
    let r = find("service.deployment.max_5xx_rate");
    assert_eq!(r.line, 17);
    assert!(r.fix.contains("0.05"), "{}", r.fix);
    let u = find("service.deployment.max_surge");
    assert_eq!(u.line, 18);
    assert_eq!(errs.len(), 4, "{errs:#?}");
}

#[test]
fn both_bounds_at_100_is_refused() {
    let text = format!(
        "{HEAD}\n[service.deployment]\nminimum_healthy_percent = 100\nmaximum_percent = 100\n"
    );
    let errs = Config::parse(&text, "bad.toml").unwrap_err().0;
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].key, "service.deployment.maximum_percent");
    assert_eq!(errs[0].line, 15);
    assert!(
        errs[0].fix.contains("raise maximum_percent"),
        "{}",
        errs[0].fix
    );
}

#[test]
fn an_instance_has_a_second_home_that_collides_with_nothing() {
    let c = Config::embedded_default();
    let nodes = c.nodes();
    let svc = nodes.iter().find(|n| n.name == "svc-us-east-1a-1").unwrap();
    let b = c.replacement_of(svc).unwrap();
    assert_eq!(b.name, "svc-us-east-1a-1-b");
    assert_eq!(b.address.ip(), svc.address.ip());
    assert_eq!(b.address.port(), svc.address.port() + 1);
    assert!(nodes
        .iter()
        .all(|n| n.address != b.address && n.admin != b.address));
    assert_eq!(c.node_or_replacement("svc-us-east-1a-1-b"), Some(b));
    assert_eq!(c.node_or_replacement("lb-us-east-1-b"), None);
    assert!(c
        .replacement_of(nodes.iter().find(|n| n.name == "lb-us-east-1").unwrap())
        .is_none());
}

#[test]
fn bake_time_is_read_and_off_by_default() {
    let c = Config::parse(HEAD, "ok.toml").unwrap();
    assert!(c.service.deployment.bake_time.is_zero());
    let text = format!("{HEAD}\n[service.deployment]\nbake_time = \"2s\"\n");
    let c = Config::parse(&text, "ok.toml").unwrap();
    assert_eq!(c.service.deployment.bake_time, Duration::from_secs(2));
}
