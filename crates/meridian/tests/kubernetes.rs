//! `meridian export kubernetes` as a user runs it: every manifest it writes validates
//! against the Kubernetes schemas (`kubernetes-validate`, offline, strict), reads back as
//! the objects the export made, and renders with `kubectl kustomize` when kubectl is here
//! (only kubernetes-validate is required in CI: `scripts/test` installs it);
//! a config it cannot place is refused with the file, the key and the fix.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The oldest Kubernetes the manifests are for (static ClusterIPs kept apart from dynamic
/// ones, mixed-protocol LoadBalancers), and the schemas' newest.
const VERSIONS: &[Option<&str>] = &[Some("1.27.0"), None];

fn meridian(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .output()
        .expect("run meridian")
}

/// The embedded default, as a file (TLS from the PoPs to the balancers included: the
/// export carries the deployment CA).
fn default_for_kubernetes(dir: &Path) -> PathBuf {
    let path = dir.join("meridian.toml");
    std::fs::write(&path, meridian_config::DEFAULT_CONFIG).unwrap();
    path
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            found.extend(yaml_files(&p));
        } else if p.extension().is_some_and(|x| x == "yaml") {
            found.push(p);
        }
    }
    found.sort();
    found
}

/// Whether `tool` runs here. A missing one is skipped with a line that says so, but in
/// CI (`CI` set) a `required` one fails the test.
fn have(tool: &str, install: &str, required: bool) -> bool {
    let runs = Command::new(tool)
        .arg("--help")
        .output()
        .is_ok_and(|o| o.status.success());
    if runs {
        return true;
    }
    if required && std::env::var_os("CI").is_some() {
        panic!("{tool} is not installed; install it with `{install}` (scripts/test does)");
    }
    println!("SKIPPED: {tool} is not installed (install it with `{install}`)");
    false
}

fn export(config: &Path, out: &Path) {
    let o = meridian(&[
        "export",
        "kubernetes",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn every_exported_manifest_validates_against_the_kubernetes_schemas() {
    if !have(
        "kubernetes-validate",
        "pip3 install kubernetes-validate",
        true,
    ) {
        return;
    }
    let dir = common::tempdir();
    let out = dir.join("k8s");
    export(&default_for_kubernetes(&dir), &out);
    let files = yaml_files(&out);
    assert!(files.len() > 20, "{files:?}");
    for version in VERSIONS {
        let mut cmd = Command::new("kubernetes-validate");
        cmd.args(["--strict", "--quiet"]);
        if let Some(v) = version {
            cmd.args(["-k", v]);
        }
        let o = cmd.args(&files).output().unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            o.status.success(),
            "kubernetes-validate {version:?}:\n{report}"
        );
        assert!(!report.contains("ERROR"), "{report}");
        // Only the kinds that are no Kubernetes API go unchecked: kustomize's own and the
        // CloudNativePG Cluster (its structure is checked in meridian-supervisor's tests).
        for line in report
            .lines()
            .filter(|l| l.contains("Couldn't find schema"))
        {
            assert!(
                line.contains(
                    "kind Kustomization with api version kustomize.config.k8s.io/v1beta1"
                ) || line.contains("kind Cluster with api version postgresql.cnpg.io/v1"),
                "a manifest of a kind with no schema: {line}"
            );
        }
    }

    // A manifest the schemas refuse is reported: the check above can fail.
    let bad = dir.join("bad.yaml");
    let lb = std::fs::read_to_string(out.join("us-east-1/lb-us-east-1.yaml")).unwrap();
    std::fs::write(&bad, lb.replace("clusterIP:", "clusterIp:")).unwrap();
    let o = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "a misspelt field passes strict validation"
    );
}

#[test]
fn the_written_yaml_reads_back_as_the_exported_objects() {
    // PyYAML comes with kubernetes-validate.
    if !have(
        "kubernetes-validate",
        "pip3 install kubernetes-validate",
        true,
    ) {
        return;
    }
    let dir = common::tempdir();
    let out = dir.join("k8s");
    let config = default_for_kubernetes(&dir);
    export(&config, &out);
    let text = std::fs::read_to_string(&config).unwrap();
    let cfg = meridian_config::Config::parse(&text, config.to_str().unwrap()).unwrap();
    let opts = meridian_supervisor::kubernetes::ExportOptions {
        namespace: "meridian".to_owned(),
        image: "meridian:latest".to_owned(),
        range: meridian_supervisor::kubernetes::ServiceRange::default(),
    };
    let made = meridian_supervisor::kubernetes::manifests(&cfg, &text, &opts).unwrap();
    assert_eq!(made.files.len(), yaml_files(&out).len());
    for f in &made.files {
        let o = Command::new("python3")
            .args([
                "-c",
                "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
            ])
            .arg(out.join(&f.path))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let read: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            read,
            serde_json::Value::Array(f.objects.clone()),
            "{} reads back otherwise",
            f.path.display()
        );
    }
}

#[test]
fn kubectl_kustomize_renders_the_whole_deployment_and_each_region() {
    if !have(
        "kubectl",
        "see https://kubernetes.io/docs/tasks/tools/",
        false,
    ) {
        return;
    }
    let dir = common::tempdir();
    let out = dir.join("k8s");
    export(&default_for_kubernetes(&dir), &out);
    let render = |d: &Path| {
        let o = Command::new("kubectl")
            .arg("kustomize")
            .arg(d)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "kubectl kustomize {}: {}",
            d.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let all = render(&out);
    let count = |text: &str, kind: &str| {
        text.lines()
            .filter(|l| *l == format!("kind: {kind}"))
            .count()
    };
    let cfg = meridian_config::Config::parse(
        &std::fs::read_to_string(dir.join("meridian.toml")).unwrap(),
        "m",
    )
    .unwrap();
    let nodes = cfg
        .nodes()
        .into_iter()
        .filter(|n| {
            !matches!(
                n.role,
                meridian_config::Role::Wan
                    | meridian_config::Role::Db
                    | meridian_config::Role::Cache
            )
        })
        .count();
    assert_eq!(count(&all, "Deployment"), nodes);
    let facing = cfg
        .nodes()
        .iter()
        .filter(|n| {
            matches!(
                n.role,
                meridian_config::Role::Edge | meridian_config::Role::Dns
            )
        })
        .count();
    assert_eq!(
        count(&all, "Service"),
        nodes + facing,
        "PoPs and DNS servers have a public one"
    );
    assert_eq!(count(&all, "Namespace"), 1);
    assert_eq!(count(&all, "ConfigMap"), 1);
    assert_eq!(count(&all, "Cluster"), 1);
    // The secrets' Secret is the user's to make; the one rendered is the deployment CA's,
    // generated from the files the export made (the CA's key is not in it).
    assert_eq!(count(&all, "Secret"), 1, "only the deployment CA's");
    assert!(all.contains("ca-cert.pem: "), "the CA certificate is in it");
    assert!(all.contains("lb-us-east-1-key.pem: "));
    assert!(!all.contains("ca-key"), "the CA's key is not");
    for region in &cfg.regions {
        let one = render(&out.join(&region.name));
        let instances = cfg
            .nodes()
            .iter()
            .filter(|n| {
                n.role == meridian_config::Role::Service
                    && n.region.as_deref() == Some(&region.name)
            })
            .count();
        assert_eq!(
            count(&one, "Deployment"),
            instances + 1,
            "{}: instances and balancer",
            region.name
        );
        assert_eq!(count(&one, "PodDisruptionBudget"), 1);
    }
}

#[test]
fn a_config_the_export_cannot_place_is_refused_with_the_file_key_and_fix() {
    let dir = common::tempdir();
    let scaled = dir.join("scaled.toml");
    std::fs::write(
        &scaled,
        format!(
            "{}\n[service.autoscaling]\nmin = 1\nmax = 40\nmetric = \"requests_per_target\"\ntarget = 15\n",
            meridian_config::DEFAULT_CONFIG
        ),
    )
    .unwrap();
    let o = meridian(&[
        "export",
        "kubernetes",
        "--config",
        scaled.to_str().unwrap(),
        "--out",
        dir.join("k8s").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("scaled.toml"), "{err}");
    assert!(err.contains("`service.autoscaling`"), "{err}");
    assert!(err.contains("fix: remove [service.autoscaling]"), "{err}");
    assert!(
        !dir.join("k8s").exists(),
        "nothing is written for a refused config"
    );

    let config = default_for_kubernetes(&dir);
    let o = meridian(&[
        "export",
        "kubernetes",
        "--config",
        config.to_str().unwrap(),
        "--out",
        dir.join("k8s").to_str().unwrap(),
        "--service-cidr",
        "10.96.0.0/12",
        "--service-ip-start",
        "10.200.0.1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--service-ip-start 10.200.0.1 is not a host of the service range"),
        "{err}"
    );
    assert!(err.contains("fix:"), "{err}");
}

/// A deployment of one region on ports no other test uses: its balancer binds them on
/// every interface here.
const ONE_REGION: &str = r#"
[deployment]
name = "bound"
zone = "bound.example"

[network]
subnet = "127.69.0.0/16"
lb_port = 18931
admin_port = 19931
service_port = 18731

[[region]]
name = "us-east-1"
primary = true
location = { lat = 38.95, lon = -77.45 }
azs = ["us-east-1a"]

[distribution]
origin_protocol = "http"
access_log = false
"#;

/// Whether something accepts connections at `addr` now.
fn listening(addr: std::net::SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200)).is_ok()
}

#[test]
fn a_node_of_the_exported_config_binds_every_interface_for_its_cluster_ip() {
    let dir = common::tempdir();
    let config = dir.join("bound.toml");
    std::fs::write(&config, ONE_REGION).unwrap();
    let out = dir.join("k8s");
    export(&config, &out);
    // The ConfigMap's config, with the Secret's mount standing in a directory here.
    let map = std::fs::read_to_string(out.join("global/config.yaml")).unwrap();
    let start = map.find("  meridian.toml: |\n").unwrap() + "  meridian.toml: |\n".len();
    let exported: String = map[start..]
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let exported = exported.replace("/etc/meridian/secrets/", &format!("{}/", dir.display()));
    std::fs::write(dir.join("admin_token"), "bound-test-token\n").unwrap();
    std::fs::write(dir.join("edge_signing_key"), "bound-test-signing-key\n").unwrap();
    let placed = dir.join("placed.toml");
    std::fs::write(&placed, &exported).unwrap();
    let cfg = meridian_config::Config::parse(&exported, "placed.toml").unwrap();
    let lb = cfg
        .nodes()
        .into_iter()
        .find(|n| n.name == "lb-us-east-1")
        .unwrap();
    assert!(
        lb.address.ip().to_string().starts_with("10.96.0."),
        "the balancer's address is its ClusterIP: {}",
        lb.address
    );
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(["run", "--config"])
            .arg(&placed)
            .args(["--node", "lb-us-east-1"])
            .args(extra)
            .env("MERIDIAN_STATE_DIR", &state)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };

    // Not on this machine, the ClusterIP cannot be bound.
    let refused = run(&[]).wait_with_output().unwrap();
    assert!(
        !refused.status.success(),
        "bound an address this machine does not have"
    );

    let mut child = run(&["--bind-any"]);
    let here = |port: u16| listening(std::net::SocketAddr::new([127, 0, 0, 1].into(), port));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let ports = [lb.address.port(), lb.admin.port(), cfg.lb_tls_port()];
    while !ports.iter().all(|p| here(*p)) {
        if let Some(status) = child.try_wait().unwrap() {
            let o = child.wait_with_output().unwrap();
            panic!(
                "the balancer exited ({status}): {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the balancer did not listen on {ports:?} in 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}
