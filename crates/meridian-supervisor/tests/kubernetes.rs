//! The Kubernetes export's manifests, read as objects: every node a Deployment and a
//! Service whose fixed ClusterIP is the node's address in the exported config, probes and
//! scrape annotations on its admin port, budgets over the right pods, the data tier as a
//! CloudNativePG Cluster, and no secret value anywhere.

use meridian_config::{Config, NodeSpec, Role, DEFAULT_CONFIG};
use meridian_supervisor::kubernetes::{
    manifests, ExportError, ExportOptions, Manifests, ServiceRange,
};
use serde_json::Value;
use std::collections::HashSet;

/// The embedded default with the one change the export asks for (see the refusal test).
fn default_text() -> String {
    let text = DEFAULT_CONFIG.replace("origin_protocol = \"https\"", "origin_protocol = \"http\"");
    assert_ne!(
        text, DEFAULT_CONFIG,
        "the default config names origin_protocol"
    );
    text
}

fn options(range: ServiceRange) -> ExportOptions {
    ExportOptions {
        namespace: "edge".to_owned(),
        image: "registry.example/meridian:1".to_owned(),
        range,
    }
}

fn export(text: &str, origin: &str, range: ServiceRange) -> Result<Manifests, ExportError> {
    let cfg = Config::parse(text, origin).expect("the test's config is valid");
    manifests(&cfg, text, &options(range))
}

fn objects(m: &Manifests) -> Vec<(&str, &Value)> {
    m.files
        .iter()
        .flat_map(|f| {
            let dir = f.path.to_str().unwrap_or_default();
            f.objects.iter().map(move |o| (dir, o))
        })
        .collect()
}

fn of_kind<'a>(m: &'a Manifests, kind: &str) -> Vec<(&'a str, &'a Value)> {
    objects(m)
        .into_iter()
        .filter(|(_, o)| o["kind"] == kind)
        .collect()
}

/// The object of `kind` whose `meridian.dev/node` label is `node`'s name, and its file (of
/// a node's Services, the one at its address).
fn for_node<'a>(m: &'a Manifests, kind: &str, node: &NodeSpec) -> (&'a str, &'a Value) {
    let found: Vec<_> = of_kind(m, kind)
        .into_iter()
        .filter(|(_, o)| o["metadata"]["labels"]["meridian.dev/node"] == node.name.as_str())
        .filter(|(_, o)| kind != "Service" || o["spec"]["type"] == "ClusterIP")
        .collect();
    assert_eq!(found.len(), 1, "one {kind} for node {}", node.name);
    found[0]
}

/// Whether every label of `selector` is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &labels[k] == v))
}

#[test]
fn every_node_has_a_pod_and_a_service_at_its_address_in_the_exported_config() {
    let text = default_text();
    let original = Config::parse(&text, "default.toml").unwrap();
    let range = ServiceRange::new("10.100.0.0/16", Some("10.100.3.7".parse().unwrap())).unwrap();
    let m = export(&text, "default.toml", range).unwrap();

    // The ConfigMap holds the exported config, and it reads back placed on the ClusterIPs.
    let maps = of_kind(&m, "ConfigMap");
    assert_eq!(maps.len(), 1);
    let held = maps[0].1["data"]["meridian.toml"].as_str().unwrap();
    assert_eq!(held, m.config_text);
    let placed = Config::parse(held, "exported.toml").expect("the exported config is valid");
    assert!(!placed.simulation.wan, "the simulated WAN is off");
    assert!(placed.database.is_none() && placed.cache.is_none());

    let expected: Vec<String> = original
        .nodes()
        .into_iter()
        .filter(|n| !matches!(n.role, Role::Wan | Role::Db | Role::Cache))
        .map(|n| n.name)
        .collect();
    let nodes = placed.nodes();
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    assert_eq!(
        names, expected,
        "every node of the config runs, and only those"
    );
    assert!(nodes.iter().any(|n| n.role == Role::Edge));
    assert!(nodes.iter().any(|n| n.role == Role::Dns));
    assert_eq!(of_kind(&m, "Deployment").len(), nodes.len());
    let facing = nodes
        .iter()
        .filter(|n| matches!(n.role, Role::Edge | Role::Dns))
        .count();
    assert_eq!(of_kind(&m, "Service").len(), nodes.len() + facing);

    let mut ips = HashSet::new();
    for node in &nodes {
        let (dir, svc) = for_node(&m, "Service", node);
        let (_, dep) = for_node(&m, "Deployment", node);
        // Regional nodes are in their region's directory.
        let want_dir = node.region.as_deref().unwrap_or("global");
        assert!(
            dir.starts_with(&format!("{want_dir}/")),
            "{} in {dir}",
            node.name
        );

        let ip = svc["spec"]["clusterIP"].as_str().unwrap();
        assert_eq!(
            ip,
            node.address.ip().to_string(),
            "{}: address = ClusterIP",
            node.name
        );
        assert_eq!(node.admin.ip(), node.address.ip());
        assert!(range.contains(ip.parse().unwrap()), "{ip} in the range");
        let start: std::net::Ipv4Addr = "10.100.3.7".parse().unwrap();
        assert!(ip.parse::<std::net::Ipv4Addr>().unwrap() >= start);
        assert!(ips.insert(ip.to_owned()), "{ip} given twice");

        let ports: Vec<(u64, &str)> = svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                assert_eq!(p["port"], p["targetPort"]);
                (p["port"].as_u64().unwrap(), p["protocol"].as_str().unwrap())
            })
            .collect();
        for port in [node.address.port(), node.admin.port()] {
            assert!(
                ports.iter().any(|(p, _)| *p == u64::from(port)),
                "{}: {port}",
                node.name
            );
        }
        if node.role == Role::Dns {
            assert!(ports.contains(&(u64::from(node.address.port()), "UDP")));
            assert!(ports.contains(&(u64::from(node.address.port()), "TCP")));
        }
        // Viewers reach PoPs and DNS servers through a LoadBalancer that keeps their
        // address and has no admin port.
        let public: Vec<_> = of_kind(&m, "Service")
            .into_iter()
            .filter(|(_, o)| o["metadata"]["labels"]["meridian.dev/node"] == node.name.as_str())
            .filter(|(_, o)| o["spec"]["type"] == "LoadBalancer")
            .collect();
        if matches!(node.role, Role::Edge | Role::Dns) {
            assert_eq!(public.len(), 1, "{}", node.name);
            let spec = &public[0].1["spec"];
            assert_eq!(spec["externalTrafficPolicy"], "Local");
            assert_eq!(spec["selector"], svc["spec"]["selector"]);
            let open: Vec<u64> = spec["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["port"].as_u64().unwrap())
                .collect();
            assert!(open.contains(&u64::from(node.address.port())));
            assert!(
                !open.contains(&u64::from(node.admin.port())),
                "admin is not public"
            );
        } else {
            assert!(public.is_empty(), "{} is not public", node.name);
        }

        // The Service and the Deployment pick the same pod, and only it.
        let pod = &dep["spec"]["template"];
        let selector = &svc["spec"]["selector"];
        assert_eq!(selector, &dep["spec"]["selector"]["matchLabels"]);
        assert!(selects(selector, &pod["metadata"]["labels"]));
        let others = of_kind(&m, "Deployment")
            .into_iter()
            .filter(|(_, d)| selects(selector, &d["spec"]["template"]["metadata"]["labels"]))
            .count();
        assert_eq!(others, 1, "{}'s selector picks one Deployment", node.name);

        let admin = u64::from(node.admin.port());
        let c = &pod["spec"]["containers"][0];
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/health");
        assert_eq!(c["readinessProbe"]["httpGet"]["port"], admin);
        assert_eq!(c["livenessProbe"]["tcpSocket"]["port"], admin);
        let notes = &pod["metadata"]["annotations"];
        assert_eq!(notes["prometheus.io/scrape"], "true");
        assert_eq!(notes["prometheus.io/port"], admin.to_string());
        assert!(c["resources"]["requests"]["cpu"].is_string());
        assert!(c["resources"]["requests"]["memory"].is_string());
        assert_eq!(c["image"], "registry.example/meridian:1");
        let args: Vec<&str> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "run",
                "--config",
                "/etc/meridian/config/meridian.toml",
                "--node",
                &node.name,
                "--bind-any"
            ]
        );
        assert_eq!(svc["metadata"]["namespace"], "edge");
    }
}

#[test]
fn disruption_budgets_cover_instances_balancers_pops_and_dns_servers() {
    let m = export(&default_text(), "default.toml", ServiceRange::default()).unwrap();
    let budgets = of_kind(&m, "PodDisruptionBudget");
    let deployments = of_kind(&m, "Deployment");
    for (_, d) in &deployments {
        let labels = &d["spec"]["template"]["metadata"]["labels"];
        let role = labels["meridian.dev/role"].as_str().unwrap();
        let covering: Vec<_> = budgets
            .iter()
            .filter(|(_, b)| selects(&b["spec"]["selector"]["matchLabels"], labels))
            .collect();
        if role == "console" {
            assert!(covering.is_empty(), "the console is one pod with no peer");
        } else {
            assert_eq!(
                covering.len(),
                1,
                "{role} pod {} in one budget",
                labels["meridian.dev/node"]
            );
            assert_eq!(covering[0].1["spec"]["maxUnavailable"], 1);
        }
    }
    // A region's instance budget picks exactly that region's instances.
    let cfg = Config::parse(&default_text(), "d").unwrap();
    for region in &cfg.regions {
        let (dir, b) = budgets
            .iter()
            .find(|(_, b)| {
                b["spec"]["selector"]["matchLabels"]["meridian.dev/region"] == region.name.as_str()
            })
            .expect("a budget per region");
        assert!(dir.starts_with(&format!("{}/", region.name)));
        let picked = deployments
            .iter()
            .filter(|(_, d)| {
                selects(
                    &b["spec"]["selector"]["matchLabels"],
                    &d["spec"]["template"]["metadata"]["labels"],
                )
            })
            .count();
        let instances = cfg
            .nodes()
            .iter()
            .filter(|n| n.role == Role::Service && n.region.as_deref() == Some(&region.name))
            .count();
        assert!(instances > 1);
        assert_eq!(picked, instances, "{}", region.name);
    }
}

#[test]
fn the_data_tier_is_a_cloudnativepg_cluster_in_the_home_region() {
    let m = export(&default_text(), "default.toml", ServiceRange::default()).unwrap();
    let clusters = of_kind(&m, "Cluster");
    assert_eq!(clusters.len(), 1, "one Cluster, in the home region");
    let (path, c) = clusters[0];
    assert_eq!(path, "us-east-1/database.yaml");
    assert_eq!(c["apiVersion"], "postgresql.cnpg.io/v1");
    let name = c["metadata"]["name"].as_str().unwrap();
    assert!(!name.is_empty() && name.len() <= 63);
    assert!(name
        .chars()
        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-'));
    assert_eq!(c["metadata"]["namespace"], "edge");
    // multi_az: a primary and a synchronous standby.
    assert_eq!(c["spec"]["instances"], 2);
    assert_eq!(c["spec"]["minSyncReplicas"], 1);
    assert_eq!(c["spec"]["maxSyncReplicas"], 1);
    assert!(
        c["spec"]["storage"]["size"].is_string(),
        "CNPG requires storage"
    );
    assert!(c["spec"]["bootstrap"]["initdb"]["database"].is_string());
    assert!(m.notes.iter().any(|n| n.contains("CloudNativePG")));
    // The region's kustomization lists it.
    let k = m
        .files
        .iter()
        .find(|f| f.path.to_str() == Some("us-east-1/kustomization.yaml"))
        .unwrap();
    let listed = k.objects[0]["resources"].as_array().unwrap();
    assert!(listed.iter().any(|r| r == "database.yaml"));

    // The user's own server finds the Cluster's writer in DATABASE_URL; the demo does not.
    let database_urls = |m: &Manifests| -> Vec<Value> {
        of_kind(m, "Deployment")
            .into_iter()
            .filter(|(_, d)| d["metadata"]["labels"]["meridian.dev/role"] == "service")
            .map(|(_, d)| {
                let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
                    .as_array()
                    .unwrap();
                env.iter()
                    .find(|e| e["name"] == "DATABASE_URL")
                    .map(|e| e["valueFrom"]["secretKeyRef"].clone())
                    .unwrap_or(Value::Null)
            })
            .collect()
    };
    assert!(database_urls(&m).iter().all(Value::is_null));
    let own = default_text().replacen(
        "runtime = \"demo\"",
        "command = [\"/srv/api\", \"--port\", \"{port}\"]\nruntime = \"command\"",
        1,
    );
    let m = export(&own, "own.toml", ServiceRange::default()).unwrap();
    let urls = database_urls(&m);
    assert!(!urls.is_empty());
    for url in urls {
        assert_eq!(url["name"], format!("{name}-app"));
        assert_eq!(url["key"], "uri");
    }

    let m = export(SMALL, "small.toml", ServiceRange::default()).unwrap();
    assert!(
        of_kind(&m, "Cluster").is_empty(),
        "no [database], no Cluster"
    );
}

/// One region of one AZ, no data tier, secrets from files: what `[[host]]` accepts.
const SMALL: &str = r#"
[deployment]
name = "small"
zone = "small.example"

[network]
subnet = "127.68.0.0/16"

[[region]]
name = "us-east-1"
primary = true
location = { lat = 38.95, lon = -77.45 }
azs = ["us-east-1a"]

[distribution]
origin_protocol = "http"

[simulation]
wan = false

[secrets]
admin_token = { file = "/etc/meridian/admin_token" }
edge_signing_key = { file = "/etc/meridian/edge_signing_key" }
"#;

#[test]
fn secrets_come_from_a_secret_and_no_value_is_in_any_manifest() {
    let dir = std::env::temp_dir().join(format!("meridian-k8s-secrets-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    let token = "tok-3f9a1c77d2e84b01-never-in-a-manifest";
    std::fs::write(dir.join("keys/admin"), format!("{token}\n")).unwrap();
    let text = default_text().replacen(
        "[deployment]",
        "[secrets]\nadmin_token = { file = \"keys/admin\" }\nedge_signing_key = { env = \"EDGE_SIGNING\" }\n\n[deployment]",
        1,
    );
    let path = dir.join("meridian.toml");
    std::fs::write(&path, &text).unwrap();
    let m = export(&text, path.to_str().unwrap(), ServiceRange::default()).unwrap();
    let all =
        serde_json::to_string(&m.files.iter().map(|f| &f.objects).collect::<Vec<_>>()).unwrap();
    assert!(
        !all.contains(token),
        "the admin token's value is in a manifest"
    );
    assert!(
        !all.contains("keys/admin"),
        "the user's path is this machine's, not the pod's"
    );

    let placed = Config::parse(&m.config_text, "exported").unwrap();
    assert_eq!(
        placed.secrets.admin_token,
        meridian_config::SecretSource::File("/etc/meridian/secrets/admin_token".into())
    );
    assert_eq!(
        placed.secrets.edge_signing_key,
        meridian_config::SecretSource::Env("EDGE_SIGNING".into())
    );
    let secret = of_kind(&m, "Secret");
    assert_eq!(secret.len(), 1);
    assert_eq!(secret[0].0, "secret.example.yaml");
    for (_, v) in secret[0].1["stringData"].as_object().unwrap() {
        assert_eq!(v, "", "the example Secret holds no value");
    }
    let secret_name = secret[0].1["metadata"]["name"].as_str().unwrap();
    let top = m
        .files
        .iter()
        .find(|f| f.path.to_str() == Some("kustomization.yaml"))
        .unwrap();
    assert!(
        !top.objects[0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "secret.example.yaml"),
        "applying the kustomization never replaces the user's Secret"
    );
    let mut roles = std::collections::BTreeSet::new();
    for (_, d) in of_kind(&m, "Deployment") {
        let pod = &d["spec"]["template"]["spec"];
        let vol = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "secrets")
            .unwrap();
        assert_eq!(vol["secret"]["secretName"], secret_name);
        // Each pod gets only what its node reads: the signing key where edge requests
        // are signed (PoPs) or checked (balancers), the disk key at PoPs alone.
        let role = d["metadata"]["labels"]["meridian.dev/role"]
            .as_str()
            .unwrap();
        let files: Vec<&str> = vol["secret"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["key"].as_str().unwrap())
            .collect();
        let env = pod["containers"][0]["env"].as_array().unwrap();
        let signing = env.iter().find(|e| e["name"] == "EDGE_SIGNING");
        match role {
            "edge" | "lb" => {
                let signing = signing.expect("the variable is set");
                assert_eq!(signing["valueFrom"]["secretKeyRef"]["name"], secret_name);
                assert_eq!(
                    signing["valueFrom"]["secretKeyRef"]["key"],
                    "edge_signing_key"
                );
            }
            _ => assert!(signing.is_none(), "a {role} pod has the signing key"),
        }
        let expected: &[&str] = match role {
            "edge" => &["admin_token", "disk_cache_key"],
            _ => &["admin_token"],
        };
        assert_eq!(files, expected, "secret files of a {role} pod");
        roles.insert(role.to_owned());
    }
    for role in ["edge", "lb", "dns", "service", "console"] {
        assert!(
            roles.contains(role),
            "no {role} pod in the export: {roles:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_from_pops_to_balancers_carries_one_deployment_ca_and_no_ca_key() {
    // The embedded default as it is: PoPs reach balancers over TLS.
    let m = export(
        DEFAULT_CONFIG,
        "<embedded default>",
        ServiceRange::default(),
    )
    .unwrap();
    let placed = m
        .tls
        .as_ref()
        .expect("the export carries the deployment CA");
    assert_eq!(
        placed.distribution.origin_ca_file.as_deref(),
        Some(std::path::Path::new("/etc/meridian/tls/ca-cert.pem"))
    );
    for node in placed.nodes() {
        let (_, d) = for_node(&m, "Deployment", &node);
        let pod = &d["spec"]["template"]["spec"];
        let mounts: Vec<&Value> = pod["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["name"] == "tls")
            .collect();
        let items: Vec<&str> = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["name"] == "tls")
            .flat_map(|v| v["secret"]["items"].as_array().unwrap().iter())
            .map(|i| i["key"].as_str().unwrap())
            .collect();
        match node.role {
            Role::Edge => {
                assert_eq!(mounts.len(), 1, "{}", node.name);
                assert_eq!(mounts[0]["mountPath"], "/etc/meridian/tls");
                assert_eq!(items, ["ca-cert.pem"], "a PoP gets no balancer's key");
            }
            Role::Lb => {
                let r = node.region.as_deref().unwrap();
                let want = [
                    "ca-cert.pem".to_owned(),
                    format!("lb-{r}-cert.pem"),
                    format!("lb-{r}-key.pem"),
                ];
                assert_eq!(items, want, "{}", node.name);
                let paths: Vec<&str> = mounts
                    .iter()
                    .map(|v| v["mountPath"].as_str().unwrap())
                    .collect();
                for f in &want {
                    assert!(
                        paths.contains(&format!("/var/lib/meridian/tls/{f}").as_str()),
                        "{paths:?}"
                    );
                }
            }
            _ => assert!(mounts.is_empty() && items.is_empty(), "{}", node.name),
        }
    }
    let top = m
        .files
        .iter()
        .find(|f| f.path == std::path::Path::new("kustomization.yaml"))
        .unwrap();
    let generated = &top.objects[0]["secretGenerator"][0];
    assert_eq!(generated["options"]["disableNameSuffixHash"], true);
    let files: Vec<&str> = generated["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(files.len(), 1 + 2 * placed.regions.len(), "{files:?}");
    let all = serde_json::to_string(&objects(&m)).unwrap();
    assert!(!all.contains("ca-key"), "the CA's key is in no manifest");

    // Written: the CA once, its key owner-only; the balancers' certificates for the
    // addresses the PoPs dial.
    let dir = std::env::temp_dir().join(format!("k8s-tls-{}", std::process::id()));
    let cfg = Config::parse(DEFAULT_CONFIG, "<embedded default>").unwrap();
    meridian_supervisor::kubernetes::export(
        &cfg,
        DEFAULT_CONFIG,
        &options(ServiceRange::default()),
        &dir,
    )
    .unwrap();
    let tls = dir
        .join(meridian_supervisor::kubernetes::PKI_DIR)
        .join("tls");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&tls.join("ca-key.pem")), 0o600);
    assert_eq!(mode(&dir.join(".secrets")), 0o700);
    let ca = std::fs::read(tls.join("ca-cert.pem")).unwrap();
    let lb = placed.node("lb-us-east-1").unwrap();
    let client = meridian_http::pki::client_config(&tls.join("ca-cert.pem"));
    assert!(client.is_ok(), "the CA certificate reads as one");
    let cert = std::fs::read_to_string(tls.join("lb-us-east-1-cert.pem")).unwrap();
    assert!(cert.contains("BEGIN CERTIFICATE"));
    // Again: the same CA (pods already trusting it keep doing so).
    meridian_supervisor::kubernetes::export(
        &cfg,
        DEFAULT_CONFIG,
        &options(ServiceRange::default()),
        &dir,
    )
    .unwrap();
    assert_eq!(std::fs::read(tls.join("ca-cert.pem")).unwrap(), ca);
    assert!(
        lb.address.ip().to_string().starts_with("10."),
        "{}",
        lb.address
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn what_cannot_run_in_kubernetes_is_refused_with_the_key_and_the_fix() {
    // A config placed on hosts already: the export places every node itself.
    let hosts = format!(
        "{SMALL}\n[[host]]\nname = \"a\"\naddress = \"10.0.0.5\"\nroles = [\"lb\", \"service\", \"edge\", \"dns\", \"console\"]\n\n[[host]]\nname = \"b\"\naddress = \"10.0.0.6\"\nnodes = [\"dns-2\"]\n"
    );
    let cfg = Config::parse(&hosts, "hosts.toml").expect("a valid config on one host");
    let err = manifests(&cfg, &hosts, &options(ServiceRange::default())).unwrap_err();
    assert!(
        matches!(&err, ExportError::CannotPlace { key, file, .. } if key == "host" && file == "hosts.toml"),
        "{err}"
    );

    // Twenty-odd nodes do not fit in 14 addresses.
    let small = ServiceRange::new("10.0.0.0/28", Some("10.0.0.1".parse().unwrap())).unwrap();
    let err = export(&default_text(), "d", small).unwrap_err();
    assert!(
        matches!(err, ExportError::Range(ref m) if m.contains("--service-cidr")),
        "{err}"
    );
}
