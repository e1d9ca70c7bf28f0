//! The plan: which changes each node takes by reload and which need a restart.

use super::*;

const BASE: &str = r#"
[deployment]
name = "plan"
zone = "plan.example"

[network]
subnet = "127.99.0.0/16"

[[region]]
name = "us-east-1"
primary = true
location = { lat = 38.95, lon = -77.45 }
azs = ["us-east-1a"]

[service]
runtime = "demo"
instances_per_az = 1

[[edge]]
name = "ashburn"
location = { lat = 39.04, lon = -77.49 }

[[edge]]
name = "london"
location = { lat = 51.51, lon = -0.13 }

[distribution]
[[distribution.origin_group]]
name = "regions"
members = ["lb:us-east-1"]

[[distribution.cache_policy]]
name = "api"
default_ttl = "300s"

[distribution.default_behavior]
origin_group = "regions"

[dns]
servers = 2
"#;

fn cfg(text: &str) -> Config {
    Config::parse(text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn lines(p: &Plan, node: &str) -> Vec<String> {
    p.nodes
        .iter()
        .filter(|n| n.node == node)
        .flat_map(|n| {
            n.changes
                .iter()
                .map(|c| format!("{:?} {:?} {}", c.sign, c.action, c.what))
        })
        .collect()
}

#[test]
fn the_same_config_plans_nothing() {
    let p = plan(&cfg(BASE), &cfg(BASE));
    assert!(p.is_empty(), "{p}");
    assert!(p.to_string().contains("0 node(s) to reload"), "{p}");
}

#[test]
fn a_ttl_and_a_record_set_are_reloads_on_every_pop_and_dns_node() {
    let new = BASE.replace("default_ttl = \"300s\"", "default_ttl = \"60s\"")
        + "\n[[dns.record]]\nname = \"www\"\ntype = \"A\"\nvalues = [\"192.0.2.7\"]\n";
    let p = plan(&cfg(BASE), &cfg(&new));
    for pop in ["edge-ashburn", "edge-london"] {
        assert_eq!(
            lines(&p, pop),
            vec!["Change Reload cache policy \"api\" default_ttl 5m → 1m".to_owned()],
            "{p}"
        );
    }
    let dns: Vec<&NodePlan> = p
        .nodes
        .iter()
        .filter(|n| n.role == Some(Role::Dns))
        .collect();
    assert_eq!(dns.len(), 2, "{p}");
    for n in dns {
        assert_eq!(n.changes.len(), 1, "{p}");
        assert_eq!(n.changes[0].sign, Sign::Add);
        assert_eq!(n.changes[0].action, Action::Reload);
        assert!(n.changes[0].what.starts_with("dns record set www"), "{p}");
    }
    assert_eq!(p.restarts().count(), 0, "{p}");
    assert!(
        p.nodes
            .iter()
            .all(|n| matches!(n.role, Some(Role::Edge | Role::Dns))),
        "{p}"
    );
    let text = p.to_string();
    assert!(
        text.contains("~ edge-ashburn: cache policy \"api\" default_ttl"),
        "{text}"
    );
    assert!(text.contains("+ dns-"), "{text}");
    assert!(
        text.ends_with("Plan: 4 node(s) to reload in place, 0 to restart."),
        "{text}"
    );
}

#[test]
fn origin_groups_and_addresses_need_restarts_a_balancer_check_reloads() {
    let new = BASE.replace(
        "members = [\"lb:us-east-1\"]",
        "members = [\"lb:us-east-1\"]\nresponse_timeout = \"2s\"",
    ) + "\n[load_balancer.health_check]\ninterval = \"2s\"\n";
    let p = plan(&cfg(BASE), &cfg(&new));
    let edge = p
        .nodes
        .iter()
        .find(|n| n.node == "edge-ashburn")
        .expect("the PoP changes");
    assert!(edge.needs_restart(), "{p}");
    assert!(
        edge.changes[0]
            .what
            .starts_with("origin group \"regions\" response_timeout"),
        "{p}"
    );
    let lb = p
        .nodes
        .iter()
        .find(|n| n.role == Some(Role::Lb))
        .expect("the balancer changes");
    assert!(!lb.needs_restart(), "{p}");
    assert!(lb.changes[0].what.contains("health_check interval"), "{p}");
    assert!(p.nodes.iter().all(|n| n.role != Some(Role::Dns)), "{p}");
    // A new subnet moves every node: all restart.
    let moved = plan(
        &cfg(BASE),
        &cfg(&BASE.replace("127.99.0.0/16", "127.98.0.0/16")),
    );
    assert_eq!(moved.reloads().count(), 0, "{moved}");
    assert!(moved.restarts().count() >= 5, "{moved}");
    assert!(
        moved.to_string().contains("! edge-london: network subnet"),
        "{moved}"
    );
}

#[test]
fn dns_settings_other_than_records_need_a_restart_and_removals_are_marked() {
    let with = BASE.to_owned()
        + "\n[[dns.record]]\nname = \"www\"\ntype = \"A\"\nvalues = [\"192.0.2.7\"]\n";
    let p = plan(&cfg(&with), &cfg(BASE));
    assert!(
        p.nodes.iter().all(|n| n
            .changes
            .iter()
            .all(|c| c.sign == Sign::Remove && c.action == Action::Reload)),
        "{p}"
    );
    assert!(p.to_string().contains("- dns-"), "{p}");
    let threads = plan(
        &cfg(BASE),
        &cfg(&BASE.replace("servers = 2", "servers = 2\nudp_threads = 3")),
    );
    assert!(
        threads
            .nodes
            .iter()
            .all(|n| n.role == Some(Role::Dns) && n.needs_restart()),
        "{threads}"
    );
}

#[test]
fn the_digest_is_stable_and_tells_files_apart() {
    assert_eq!(digest(BASE), digest(BASE));
    assert_ne!(digest(BASE), digest(&BASE.replace("300s", "60s")));
    assert_eq!(digest("").len(), 16);
}

#[test]
fn changed_fields_names_the_keys_that_differ() {
    let (a, b) = (cfg(BASE), cfg(&BASE.replace("300s", "60s")));
    assert_eq!(
        changed_fields(&a.distribution, &b.distribution),
        vec!["cache_policies".to_owned()]
    );
    assert!(changed_fields(&a.dns, &b.dns).is_empty());
}

#[test]
fn moved_nodes_are_those_added_removed_or_readdressed() {
    let base = cfg(BASE);
    assert!(moved_nodes(&base, &base).is_empty());
    let ttl = cfg(&BASE.replace("300s", "60s"));
    assert!(moved_nodes(&base, &ttl).is_empty());
    let one_dns = cfg(&BASE.replace("servers = 2", "servers = 1"));
    assert_eq!(moved_nodes(&base, &one_dns), vec!["dns-2".to_owned()]);
    let moved = moved_nodes(&base, &cfg(&BASE.replace("127.99.0.0/16", "127.98.0.0/16")));
    assert!(moved.contains(&"edge-london".to_owned()), "{moved:?}");
}

#[test]
fn a_behavior_that_associates_a_function_anew_needs_a_restart() {
    let with_fn = BASE.replace(
        "[distribution.default_behavior]",
        "[[distribution.function]]\nname = \"tag\"\ncode = \"function handler(event) { return event.request; }\"\n\n[[distribution.behavior]]\npath_pattern = \"/a/*\"\norigin_group = \"regions\"\n\n[distribution.default_behavior]",
    );
    let associated = with_fn.replace(
        "path_pattern = \"/a/*\"\norigin_group = \"regions\"",
        "path_pattern = \"/a/*\"\norigin_group = \"regions\"\nfunction_associations = [{ event_type = \"viewer-request\", function = \"tag\" }]",
    );
    let (a, b) = (cfg(&with_fn), cfg(&associated));
    assert_eq!(
        function_associations(&b.distribution),
        vec!["tag/viewer-request".to_owned()]
    );
    let p = plan(&a, &b);
    assert!(
        p.nodes
            .iter()
            .all(|n| n.role == Some(Role::Edge) && n.needs_restart()),
        "{p}"
    );
    // Another path for the same behavior keeps the pairs: a reload.
    let moved = cfg(&associated.replace("/a/*", "/b/*"));
    let p = plan(&b, &moved);
    assert!(!p.is_empty() && p.restarts().count() == 0, "{p}");
}

const GROUPS: &str = r#"
[load_balancer]
max_retries = 2

[[load_balancer.target_group]]
name = "web"
algorithm = "round_robin"

[[load_balancer.target_group]]
name = "api"

[[load_balancer.rule]]
name = "api"
path = "/api/*"
forward = [{ target_group = "api", weight = 100 }]
"#;

#[test]
fn balancer_rules_settings_and_group_settings_reload_the_rest_restarts() {
    let old = format!("{BASE}{GROUPS}");
    let new = old
        .replace("max_retries = 2", "max_retries = 1")
        .replace(
            "algorithm = \"round_robin\"",
            "algorithm = \"least_outstanding_requests\"\nslow_start = \"30s\"",
        )
        .replace(
            "weight = 100 }]",
            "weight = 90 }, { target_group = \"web\", weight = 10 }]",
        );
    let p = plan(&cfg(&old), &cfg(&new));
    let lb = lines(&p, "lb-us-east-1");
    assert!(
        !lb.is_empty() && lb.iter().all(|l| l.contains("Reload")),
        "{p}"
    );
    assert!(
        p.to_string().contains("~ lb-us-east-1: load_balancer target_groups \"web\" algorithm round_robin → least_outstanding_requests (reload)"),
        "{p}"
    );
    assert!(lb_restart_reasons(&cfg(&old).load_balancer, &cfg(&new).load_balancer).is_empty());

    // A new group, anomaly mitigation, the access log: restarts, each named.
    let added = format!("{old}\n[[load_balancer.target_group]]\nname = \"extra\"\n");
    let toggled = old.replace(
        "name = \"web\"\nalgorithm = \"round_robin\"",
        "name = \"web\"\nalgorithm = \"weighted_random\"\nanomaly_mitigation = true",
    );
    let logged = old.replace("max_retries = 2", "max_retries = 2\naccess_log = true");
    for (text, why) in [
        (&added, "target groups"),
        (&toggled, "anomaly_mitigation"),
        (&logged, "access_log"),
    ] {
        let p = plan(&cfg(&old), &cfg(text));
        assert_eq!(p.restarts().count(), 1, "{p}");
        assert!(p.restarts().all(|n| n.role == Some(Role::Lb)), "{p}");
        let reasons = lb_restart_reasons(&cfg(&old).load_balancer, &cfg(text).load_balancer);
        assert!(reasons.iter().any(|r| r.contains(why)), "{reasons:?}");
    }
    // The toggle's algorithm line still says reload; its mitigation line, restart.
    let p = plan(&cfg(&old), &cfg(&toggled)).to_string();
    assert!(
        p.contains("algorithm round_robin → weighted_random (reload)"),
        "{p}"
    );
    assert!(
        p.contains("anomaly_mitigation false → true (restart)"),
        "{p}"
    );
}
