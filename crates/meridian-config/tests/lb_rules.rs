//! `[[load_balancer.target_group]]` and `[[load_balancer.rule]]`: what is read, and the
//! precise errors for what cannot be.

use meridian_config::{Action, Config, Stickiness};
use std::time::Duration;

fn with(extra: &str) -> String {
    format!(
        "[deployment]\nname = \"x\"\nzone = \"x.example\"\n[[region]]\nname = \"r1\"\nlocation = {{ lat = 1, lon = 2 }}\nazs = [\"r1a\", \"r1b\"]\n[load_balancer]\nalgorithm = \"round_robin\"\n{extra}"
    )
}

const GOOD: &str = r#"
[[load_balancer.target_group]]
name = "blue"
stickiness = { type = "lb_cookie", duration = "1h" }
slow_start = "30s"

[[load_balancer.target_group]]
name = "green"
azs = ["r1b"]
algorithm = "least_outstanding_requests"
deregistration_delay = "10s"
stickiness = { type = "app_cookie", cookie_name = "SESSION", duration = "2h" }
health_check = { path = "/ready", interval = "2s" }

[[load_balancer.rule]]
name = "canary"
header = { name = "X-Canary", values = ["1", "yes"] }
forward = [{ target_group = "blue", weight = 95 }, { target_group = "green", weight = 5 }]

[[load_balancer.rule]]
priority = 5
host = ["old.example.com"]
redirect = { status = 302, host = "new.example.com", path = "/#{path}" }

[[load_balancer.rule]]
path = "/maintenance/*"
method = ["GET", "HEAD"]
query = { mode = "x*" }
source_ip = ["10.0.0.0/8", "127.0.0.1/32"]
fixed_response = { status = 503, content_type = "text/plain", body = "down" }
"#;

#[test]
fn target_groups_and_rules_are_read() {
    let c = Config::parse(&with(GOOD), "lb.toml").unwrap();
    let lb = &c.load_balancer;
    let groups = lb.effective_target_groups();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].name, "blue");
    assert_eq!(groups[0].slow_start, Duration::from_secs(30));
    assert_eq!(
        groups[0].stickiness,
        Some(Stickiness::LbCookie {
            duration: Duration::from_secs(3600)
        })
    );
    assert_eq!(groups[1].azs.as_deref(), Some(&["r1b".to_owned()][..]));
    assert_eq!(groups[1].health_check.path, "/ready");
    assert_eq!(groups[1].deregistration_delay, Duration::from_secs(10));
    // Sorted by priority: the explicit 5 before the written ones (10, 30).
    let names: Vec<_> = lb.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["rule-5", "canary", "rule-30"]);
    assert!(matches!(&lb.rules[1].action, Action::Forward { groups } if groups[1].weight == 5));
    assert_eq!(lb.rules[2].conditions.source_ip.len(), 2);
}

#[test]
fn without_groups_there_is_one_implicit_default() {
    let c = Config::parse(&with(""), "lb.toml").unwrap_or_else(|e| panic!("{e}"));
    let groups = c.load_balancer.effective_target_groups();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].name, "default");
    assert_eq!(groups[0].algorithm, c.load_balancer.algorithm);
    assert!(groups[0].stickiness.is_none() && groups[0].slow_start.is_zero());
    assert!(c.load_balancer.rules.is_empty());
}

#[test]
fn rule_mistakes_each_get_a_precise_error() {
    let group = "[[load_balancer.target_group]]\nname = \"blue\"\n";
    // (config, line of the error, key, words of the fix)
    let cases = [
        (
            "[[load_balancer.rule]]\npath = \"/x\"\nforward = \"bleu\"\n",
            14,
            "load_balancer.rule[0].forward",
            "named `bleu`",
        ),
        (
            "[[load_balancer.rule]]\nforward = [{ target_group = \"blue\", weight = 1000 }]\n",
            13,
            "load_balancer.rule[0].forward[0].weight",
            "from 0 to 999",
        ),
        (
            "[[load_balancer.rule]]\nforward = [{ target_group = \"blue\", weight = -1 }]\n",
            13,
            "load_balancer.rule[0].forward[0].weight",
            "from 0 to 999",
        ),
        (
            "[[load_balancer.rule]]\nforward = []\n",
            13,
            "load_balancer.rule[0].forward",
            "target_group = \"blue\"",
        ),
        (
            "[[load_balancer.rule]]\nsource_ip = [\"10.0.0.0/33\"]\nforward = \"blue\"\n",
            13,
            "load_balancer.rule[0].source_ip",
            "10.0.0.0/8",
        ),
        (
            "[[load_balancer.rule]]\nhost = []\nforward = \"blue\"\n",
            13,
            "load_balancer.rule[0].host",
            "non-empty",
        ),
        (
            "[[load_balancer.rule]]\nheader = { name = \"X\", values = [] }\nforward = \"blue\"\n",
            13,
            "load_balancer.rule[0].header.values",
            "non-empty",
        ),
        (
            "[[load_balancer.rule]]\npath = \"/x\"\nauthenticate_oidc = { issuer = \"x\" }\n",
            14,
            "load_balancer.rule[0].authenticate_oidc",
            "forward, redirect, fixed_response",
        ),
        (
            "[[load_balancer.rule]]\npath = \"/x\"\n",
            12,
            "load_balancer.rule[0]",
            "exactly one",
        ),
        (
            "[[load_balancer.rule]]\nredirect = { status = 307 }\n",
            13,
            "load_balancer.rule[0].redirect.status",
            "from 301 to 302",
        ),
    ];
    for (extra, line, key, fix) in cases {
        let text = with(&format!("{group}{extra}"));
        let errs = Config::parse(&text, "lb.toml").unwrap_err().0;
        assert_eq!(errs.len(), 1, "{extra}: {errs:#?}");
        let e = &errs[0];
        assert_eq!((e.file.as_str(), e.line), ("lb.toml", line), "{extra}: {e}");
        assert_eq!(e.key, key, "{extra}: {e}");
        assert!(e.fix.contains(fix), "{extra}: fix was {:?}", e.fix);
    }
}

#[test]
fn target_group_mistakes_each_get_a_precise_error() {
    let cases = [
        (
            "slow_start = \"10s\"\n",
            "load_balancer.target_group[0].slow_start",
            "30s",
        ),
        (
            "stickiness = { type = \"cookie\" }\n",
            "load_balancer.target_group[0].stickiness.type",
            "lb_cookie",
        ),
        (
            "stickiness = { type = \"app_cookie\" }\n",
            "load_balancer.target_group[0].stickiness.cookie_name",
            "SESSION",
        ),
        (
            "azs = []\n",
            "load_balancer.target_group[0].azs",
            "name at least one AZ",
        ),
        (
            "algorithm = \"random\"\n",
            "load_balancer.target_group[0].algorithm",
            "round_robin",
        ),
        (
            "anomaly_mitigation = true\n",
            "load_balancer.target_group[0].anomaly_mitigation",
            "algorithm = \"weighted_random\"",
        ),
        (
            "anomaly_mitigation = true\nalgorithm = \"least_outstanding_requests\"\n",
            "load_balancer.target_group[0].anomaly_mitigation",
            "algorithm = \"weighted_random\"",
        ),
        (
            "websocket_streams = true\n",
            "load_balancer.target_group[0].websocket_streams",
            "protocol_version = \"http2\"",
        ),
    ];
    for (extra, key, fix) in cases {
        let text = with(&format!(
            "[[load_balancer.target_group]]\nname = \"blue\"\n{extra}"
        ));
        let errs = Config::parse(&text, "lb.toml").unwrap_err().0;
        assert_eq!(errs.len(), 1, "{extra}: {errs:#?}");
        assert_eq!(errs[0].line, 12, "{extra}: {}", errs[0]);
        assert_eq!(errs[0].key, key, "{extra}");
        assert!(
            errs[0].fix.contains(fix),
            "{extra}: fix was {:?}",
            errs[0].fix
        );
    }
}

#[test]
fn weighted_random_takes_anomaly_mitigation() {
    let text = with(
        "[[load_balancer.target_group]]\nname = \"blue\"\nalgorithm = \"weighted_random\"\nanomaly_mitigation = true\n[[load_balancer.target_group]]\nname = \"green\"\nalgorithm = \"weighted_random\"\n",
    );
    let c = Config::parse(&text, "lb.toml").unwrap_or_else(|e| panic!("{e}"));
    let g = &c.load_balancer.target_groups;
    assert_eq!(g[0].algorithm, meridian_config::Algorithm::WeightedRandom);
    assert!(g[0].anomaly_mitigation);
    // Off unless asked, as ALB's.
    assert!(!g[1].anomaly_mitigation);
}

#[test]
fn an_http2_group_takes_websocket_streams() {
    let text = with(
        "[[load_balancer.target_group]]\nname = \"blue\"\nprotocol_version = \"http2\"\nwebsocket_streams = true\n[[load_balancer.target_group]]\nname = \"green\"\nprotocol_version = \"http2\"\n",
    );
    let c = Config::parse(&text, "lb.toml").unwrap_or_else(|e| panic!("{e}"));
    let g = &c.load_balancer.target_groups;
    assert!(g[0].websocket_streams);
    assert!(!g[1].websocket_streams, "off unless asked");
}

#[test]
fn the_default_deployment_routes_grpc_quotes_to_a_grpc_group() {
    let c = Config::embedded_default();
    let lb = &c.load_balancer;
    let names: Vec<&str> = lb.target_groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["default", "quotes-grpc"]);
    // The first group is what the implicit one was: the balancer's own settings.
    assert_eq!(lb.target_groups[0].algorithm, lb.algorithm);
    assert_eq!(lb.target_groups[0].health_check.path, "/health");
    let grpc = &lb.target_groups[1];
    assert_eq!(
        grpc.protocol_version,
        meridian_config::ProtocolVersion::Grpc
    );
    assert_eq!(grpc.health_check.path, "/grpc.health.v1.Health/Check");
    assert_eq!(lb.rules.len(), 1);
    assert_eq!(lb.rules[0].conditions.path, ["/richesreach.v1.Quotes/*"]);
    assert!(
        matches!(&lb.rules[0].action, Action::Forward { groups } if groups[0].target_group == "quotes-grpc")
    );
    let b = c
        .distribution
        .behaviors
        .iter()
        .find(|b| b.path_pattern == "/richesreach.v1.Quotes/*")
        .expect("a gRPC behavior");
    assert!(b.grpc);
}
