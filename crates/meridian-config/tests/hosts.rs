//! `[[host]]`: which machine runs each node, the addresses nodes get there, and the errors
//! for placements that cannot run.

use meridian_config::{Config, Role};

/// One region with two AZs and one instance per AZ, a PoP, a DNS server, no console.
fn config(hosts: &str) -> String {
    format!(
        r#"[deployment]
name = "h"
zone = "h.example"
[[region]]
name = "us-east-1"
primary = true
location = {{ lat = 38.9, lon = -77.4 }}
azs = ["us-east-1a", "us-east-1b"]
[service]
instances_per_az = 1
[[edge]]
name = "ashburn"
location = {{ lat = 39.0, lon = -77.5 }}
[distribution]
origin_protocol = "http"
[dns]
servers = 1
[console]
enabled = false
[secrets]
admin_token = {{ file = "/etc/meridian/admin-token" }}
edge_signing_key = {{ file = "/etc/meridian/edge-signing-key" }}
{hosts}"#
    )
}

const FOUR_HOSTS: &str = r#"
[[host]]
name = "front"
address = "10.77.0.2"
nodes = ["edge-ashburn", "dns-1"]
[[host]]
name = "balancer"
address = "10.77.0.3"
roles = ["lb"]
[[host]]
name = "app-a"
address = "10.77.0.4"
region = "us-east-1"
az = "us-east-1a"
roles = ["service"]
[[host]]
name = "app-b"
address = "10.77.0.5"
az = "us-east-1b"
roles = ["service"]
"#;

fn errors(hosts: &str) -> Vec<meridian_config::ConfigError> {
    Config::parse(&config(hosts), "hosts.toml").unwrap_err().0
}

#[test]
fn nodes_bind_their_hosts_address_and_peers_find_them_there() {
    let cfg = Config::parse(&config(FOUR_HOSTS), "hosts.toml").unwrap();
    let at = |name: &str| {
        let n = cfg.node(name).unwrap();
        (n.address.to_string(), n.admin.to_string())
    };
    assert_eq!(
        at("edge-ashburn"),
        ("10.77.0.2:8080".into(), "10.77.0.2:9900".into())
    );
    assert_eq!(
        at("dns-1").1,
        "10.77.0.2:9901",
        "the second node on a host moves its admin port up by one"
    );
    assert_eq!(
        at("lb-us-east-1"),
        ("10.77.0.3:8080".into(), "10.77.0.3:9900".into())
    );
    assert_eq!(at("svc-us-east-1a-1").0, "10.77.0.4:8000");
    assert_eq!(at("svc-us-east-1b-1").0, "10.77.0.5:8000");
    // Everything that reaches a node asks the placement.
    assert_eq!(
        cfg.lb_address("us-east-1").unwrap().to_string(),
        "10.77.0.3:8080"
    );
    assert_eq!(
        cfg.lb_admin("us-east-1").unwrap().to_string(),
        "10.77.0.3:9900"
    );
    assert_eq!(
        cfg.pop_addresses("ashburn").unwrap().0.to_string(),
        "10.77.0.2:8080"
    );
    let targets: Vec<String> = cfg
        .targets_of("us-east-1")
        .iter()
        .map(|n| n.address.to_string())
        .collect();
    assert_eq!(targets, ["10.77.0.4:8000", "10.77.0.5:8000"]);
    let host = cfg.host("app-a").unwrap();
    assert_eq!(cfg.agent_admin(host).to_string(), "10.77.0.4:9800");
    let lb = cfg.node("lb-us-east-1").unwrap();
    assert_eq!(cfg.host_of(&lb).map(|h| h.name.as_str()), Some("balancer"));
    assert_eq!(lb.role, Role::Lb);
}

#[test]
fn instances_sharing_a_host_leave_a_port_between_them_for_their_replacements() {
    let cfg = Config::parse(
        &config(
            r#"
[[host]]
name = "all"
address = "10.77.0.9"
roles = ["edge", "dns", "lb", "service"]
"#,
        ),
        "hosts.toml",
    );
    let errs = cfg
        .as_ref()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    // The PoP and the balancer both want 8080 on one address.
    assert!(
        errs.contains("would both listen on 10.77.0.9:8080"),
        "{errs}"
    );
    let cfg = Config::parse(
        &config(
            r#"
[[host]]
name = "front"
address = "10.77.0.2"
roles = ["edge", "dns", "lb"]
[[host]]
name = "apps"
address = "10.77.0.4"
roles = ["service"]
"#,
        )
        .replace(
            "[[edge]]\nname = \"ashburn\"\nlocation = { lat = 39.0, lon = -77.5 }\n",
            "",
        ),
        "hosts.toml",
    );
    let errs = cfg
        .as_ref()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    let cfg = cfg.unwrap_or_else(|_| panic!("{errs}"));
    let ports: Vec<u16> = cfg
        .targets_of("us-east-1")
        .iter()
        .map(|n| n.address.port())
        .collect();
    assert_eq!(ports, [8000, 8002]);
}

#[test]
fn a_node_on_no_host_is_named_with_the_fix() {
    let e = errors(
        r#"
[[host]]
name = "front"
address = "10.77.0.2"
nodes = ["edge-ashburn", "dns-1"]
[[host]]
name = "balancer"
address = "10.77.0.3"
roles = ["lb"]
[[host]]
name = "app-a"
address = "10.77.0.4"
az = "us-east-1a"
roles = ["service"]
"#,
    );
    let e = e
        .iter()
        .find(|e| e.problem.contains("svc-us-east-1b-1"))
        .unwrap_or_else(|| panic!("{e:?}"));
    assert!(e.problem.contains("is on no host"), "{e:?}");
    assert!(e.fix.contains("roles = [\"service\"]"), "{e:?}");
    assert_eq!(
        (e.file.as_str(), e.line),
        ("hosts.toml", 24),
        "at the first [[host]]"
    );
}

#[test]
fn unknown_nodes_roles_regions_and_bad_addresses_are_precise_errors() {
    let e = errors(
        r#"
[[host]]
name = "front"
address = "10.77.0.256"
nodes = ["edge-paris"]
roles = ["wan"]
region = "mars-1"
"#,
    );
    let all = format!("{e:?}");
    assert!(all.contains("`10.77.0.256` is not an IP address"), "{all}");
    assert!(all.contains("`wan` is not a role a host can run"), "{all}");
    let e = errors(
        r#"
[[host]]
name = "front"
address = "10.77.0.2"
nodes = ["edge-paris", "edge-ashburn"]
region = "mars-1"
roles = ["lb", "service", "dns"]
"#,
    );
    let find = |needle: &str| {
        e.iter()
            .find(|x| x.problem.contains(needle))
            .unwrap_or_else(|| panic!("no error with {needle:?}: {e:?}"))
    };
    let unknown = find("there is no node `edge-paris`");
    assert!(unknown.fix.contains("edge-ashburn"), "{unknown:?}");
    assert_eq!(
        (unknown.line, unknown.column),
        (27, 10),
        "at the name in `nodes`"
    );
    find("names region `mars-1`, which the config does not have");
}

#[test]
fn hosts_refuse_the_simulated_wan_the_state_dirs_secrets_and_the_data_tier() {
    let mut text = config(FOUR_HOSTS).replace(
        "[secrets]\nadmin_token = { file = \"/etc/meridian/admin-token\" }\n",
        "[simulation]\nwan = true\n[database]\n[service.autoscaling]\nmin = 1\nmax = 4\nmetric = \"requests_per_target\"\ntarget = 50\n[secrets]\n",
    );
    text.push('\n');
    let e = Config::parse(&text, "hosts.toml").unwrap_err().0;
    let all: Vec<&str> = e.iter().map(|e| e.problem.as_str()).collect();
    for needle in [
        "the simulated WAN runs on one machine",
        "every host needs the same `admin_token`",
        "the data tier ([database], [cache]) is not placed on hosts yet",
        "autoscaling adds instances on this machine's addresses",
    ] {
        assert!(all.iter().any(|p| p.contains(needle)), "{needle}: {all:?}");
    }
}

#[test]
fn without_hosts_the_config_means_one_machine_as_before() {
    let cfg = Config::embedded_default();
    assert!(cfg.hosts.is_empty());
    let lb = cfg.node("lb-us-east-1").unwrap();
    assert_eq!(lb.address.to_string(), "127.10.1.1:8080");
    assert!(cfg.host_of(&lb).is_none());
}

#[test]
fn the_console_shares_a_host_on_its_own_port() {
    let text = config(&FOUR_HOSTS.replace(
        r#"nodes = ["edge-ashburn", "dns-1"]"#,
        r#"nodes = ["edge-ashburn", "dns-1", "console"]"#,
    ))
    .replace("[console]\nenabled = false\n", "");
    let cfg = Config::parse(&text, "hosts.toml").unwrap_or_else(|e| panic!("{e}"));
    let console = cfg.node("console").unwrap();
    assert_eq!(
        console.address.to_string(),
        "10.77.0.2:9902",
        "third node on the host"
    );
    assert_eq!(cfg.console_address(), console.address);
}
