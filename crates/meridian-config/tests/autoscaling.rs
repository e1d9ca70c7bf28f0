//! `[service.autoscaling]` (ECS service auto scaling, target tracking) and the homes of the
//! instances it adds: ECS's defaults, precise errors, and addresses that collide with
//! nothing.

use meridian_config::{Config, ScalingMetric};
use std::collections::HashSet;
use std::time::Duration;

const HEAD: &str = r#"[deployment]
name = "shop"
zone = "shop.example"

[[region]]
name = "us-east-1"
primary = true
location = { lat = 38.9, lon = -77.4 }
azs = ["us-east-1a", "us-east-1b"]

[service]
instances_per_az = 1

[service.autoscaling]
"#;

#[test]
fn off_without_the_section() {
    let c = Config::embedded_default();
    assert!(c.service.autoscaling.is_none());
    assert!(c.scaling_homes("us-east-1").is_empty());
}

#[test]
fn reads_a_policy_with_ecs_defaults() {
    let text = format!("{HEAD}min = 2\nmax = 5\nmetric = \"requests_per_target\"\ntarget = 40\n");
    let c = Config::parse(&text, "ok.toml").unwrap();
    let a = c.service.autoscaling.unwrap();
    assert_eq!(
        (a.min, a.max, a.metric),
        (2, 5, ScalingMetric::RequestsPerTarget)
    );
    assert_eq!(a.target, 40.0);
    assert_eq!(a.scale_out_cooldown, Duration::from_secs(300));
    assert_eq!(a.scale_in_cooldown, Duration::from_secs(300));
    assert_eq!(a.metric_interval, Duration::from_secs(60));
    assert!(!a.disable_scale_in);

    let text = format!(
        "{HEAD}min = 1\nmax = 4\nmetric = \"p95_latency\"\ntarget = \"250ms\"\nscale_out_cooldown = \"10s\"\nscale_in_cooldown = \"1m\"\nmetric_interval = \"1s\"\ndisable_scale_in = true\n"
    );
    let a = Config::parse(&text, "ok.toml")
        .unwrap()
        .service
        .autoscaling
        .unwrap();
    assert_eq!(a.metric, ScalingMetric::P95Latency);
    assert_eq!(a.target, 0.25);
    assert_eq!(a.scale_out_cooldown, Duration::from_secs(10));
    assert_eq!(a.scale_in_cooldown, Duration::from_secs(60));
    assert_eq!(a.metric_interval, Duration::from_secs(1));
    assert!(a.disable_scale_in);
}

#[test]
fn bad_values_name_line_key_and_fix() {
    // Configured: 2 instances (2 AZs x 1); min 3 is above it.
    let text = format!("{HEAD}min = 3\nmax = 4\nmetric = \"requests_per_target\"\ntarget = 40\nmetric_interval = \"10ms\"\ncooldown = \"1s\"\n");
    let errs = Config::parse(&text, "bad.toml").unwrap_err().0;
    let find = |key: &str| {
        errs.iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("no error for {key}: {errs:#?}"))
    };
    let m = find("service.autoscaling.min");
    assert_eq!((m.file.as_str(), m.line), ("bad.toml", 15));
    assert!(m.problem.contains("above the 2 instances"), "{}", m.problem);
    assert!(m.fix.contains("lower min to 2"), "{}", m.fix);
    assert_eq!(find("service.autoscaling.metric_interval").line, 19);
    assert!(find("service.autoscaling.cooldown")
        .fix
        .contains("scale_in_cooldown"));

    let text = format!("{HEAD}min = 2\nmax = 1\nmetric = \"cpu\"\ntarget = 150\n");
    let errs = Config::parse(&text, "bad.toml").unwrap_err().0;
    assert!(errs.iter().any(|e| e.key == "service.autoscaling.max"
        && e.line == 16
        && e.problem.contains("below `min`")));
    assert!(errs
        .iter()
        .any(|e| e.key == "service.autoscaling.target" && e.fix.contains("at most 100")));

    let errs = Config::parse(
        &format!("{HEAD}min = 1\nmax = 2\nmetric = \"rps\"\n"),
        "bad.toml",
    )
    .unwrap_err()
    .0;
    let m = errs
        .iter()
        .find(|e| e.key == "service.autoscaling.metric")
        .unwrap();
    assert_eq!(m.line, 17);
    assert!(m.fix.contains("requests_per_target"), "{}", m.fix);

    let errs = Config::parse(&format!("{HEAD}min = 1\n"), "bad.toml")
        .unwrap_err()
        .0;
    for key in ["max", "metric", "target"] {
        assert!(
            errs.iter()
                .any(|e| e.key == format!("service.autoscaling.{key}")),
            "{key}: {errs:#?}"
        );
    }
}

#[test]
fn added_instances_have_homes_of_their_own() {
    let text = format!("{HEAD}min = 1\nmax = 7\nmetric = \"requests_per_target\"\ntarget = 40\n");
    let c = Config::parse(&text, "ok.toml").unwrap();
    let homes = c.scaling_homes("us-east-1");
    let names: Vec<&str> = homes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "svc-us-east-1a-2",
            "svc-us-east-1b-2",
            "svc-us-east-1a-3",
            "svc-us-east-1b-3",
            "svc-us-east-1a-4"
        ]
    );
    // No address is any node's, nor any replacement home's.
    let mut taken: HashSet<std::net::SocketAddr> = HashSet::new();
    for n in c.nodes() {
        taken.insert(n.address);
        taken.insert(n.admin);
        if let Some(r) = c.replacement_of(&n) {
            taken.insert(r.address);
        }
    }
    for h in &homes {
        assert!(taken.insert(h.address), "{} collides", h.name);
        let r = c.replacement_of(h).unwrap();
        assert!(taken.insert(r.address), "{} collides", r.name);
        assert_eq!(c.node_or_replacement(&h.name).as_ref(), Some(h));
        assert_eq!(c.node_or_replacement(&r.name), Some(r));
    }
    // Filled by number, then AZ: the running ones stay spread over the AZs.
    let order: Vec<String> = c
        .service_homes("us-east-1")
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(
        &order[..4],
        [
            "svc-us-east-1a-1",
            "svc-us-east-1b-1",
            "svc-us-east-1a-2",
            "svc-us-east-1b-2"
        ]
    );
    assert_eq!(order.len(), 7);
    assert!(c.scaling_home("svc-us-east-1a-9").is_none());
}
