//! A node's pod: a Deployment of one replica running `meridian run --node NAME --bind-any`
//! (one node is one process with one address, so replicas of it would be one node twice),
//! the ConfigMap it reads its config from, and the Secret it reads its secrets from.

use super::config::{secret_sources, SECRETS_DIR, SECRET_KEYS};
use super::labels::Labels;
use meridian_config::{Config, NodeSpec, Role, SecretSource, ServiceRuntime};
use serde_json::{json, Value};

/// Where the pod finds the exported config (the ConfigMap's one key).
pub const CONFIG_PATH: &str = "/etc/meridian/config/meridian.toml";
/// Where a pod keeps its state dir (an `emptyDir`: PoP caches, dev certificates).
const STATE_DIR: &str = "/var/lib/meridian";
/// The user the Containerfile makes to run the binary.
pub(crate) const RUN_AS: u32 = 10001;

/// Every port a node listens on: (name, port, protocol). Port names are what Services and
/// probes refer to; the admin port is named only when it is not the main one.
pub(crate) fn ports(cfg: &Config, node: &NodeSpec) -> Vec<(&'static str, u16, &'static str)> {
    let mut p = match node.role {
        Role::Dns => vec![
            ("dns-udp", node.address.port(), "UDP"),
            ("dns-tcp", node.address.port(), "TCP"),
        ],
        _ => vec![("http", node.address.port(), "TCP")],
    };
    if let Some(tls) = cfg.tls_address(node) {
        p.push(("https", tls.port(), "TCP"));
    }
    if node.admin.port() != node.address.port() || node.role == Role::Dns {
        p.push(("admin", node.admin.port(), "TCP"));
    }
    p
}

/// What a node of `role` asks the scheduler for: enough to run the reference deployment's
/// load; no CPU limit, so a burst is not throttled.
fn requests(role: Role) -> Value {
    let (cpu, memory) = match role {
        Role::Lb | Role::Edge => ("250m", "256Mi"),
        Role::Service | Role::Console => ("100m", "128Mi"),
        _ => ("100m", "64Mi"),
    };
    json!({ "requests": { "cpu": cpu, "memory": memory }, "limits": { "memory": "1Gi" } })
}

/// The Deployment of node `node` (of the placed config `cfg`).
/// `digest` is the exported config's: a new config is a new pod template, so applying
/// it rolls the pods. With `database` (the CloudNativePG Cluster's name), an instance
/// running the user's own server gets `DATABASE_URL` from the Secret the operator makes
/// for the Cluster's application user (`<cluster>-app`, key `uri`, the writer endpoint).
pub(crate) fn deployment(
    cfg: &Config,
    l: &Labels,
    node: &NodeSpec,
    image: &str,
    digest: &str,
    database: Option<&str>,
) -> Value {
    let admin = node.admin.port();
    let listeners = ports(cfg, node);
    let privileged = listeners.iter().any(|(_, p, _)| *p < 1024);
    let container_ports: Vec<Value> = listeners
        .into_iter()
        .map(|(name, port, protocol)| {
            json!({ "name": name, "containerPort": port, "protocol": protocol })
        })
        .collect();
    let mut env = vec![json!({ "name": crate::state_dir::STATE_DIR_ENV, "value": STATE_DIR })];
    // A pod gets only the secrets its node reads (`secrets::read_by`).
    let sources: Vec<_> = secret_sources(&cfg.secrets)
        .into_iter()
        .filter(|(key, _)| crate::secrets::read_by(key, node.role))
        // The disk key only where a PoP seals its disk tier with it.
        .filter(|(key, _)| *key != "disk_cache_key" || cfg.edges.iter().any(|e| e.disk_encryption))
        .collect();
    for (key, source) in &sources {
        if let SecretSource::Env(var) = source {
            env.push(json!({
                "name": var,
                "valueFrom": { "secretKeyRef": { "name": l.secret(), "key": key } },
            }));
        }
    }
    let own_server = matches!(cfg.service.runtime, ServiceRuntime::Command { .. });
    if let (Some(cluster), Role::Service, true) = (database, node.role, own_server) {
        env.push(json!({
            "name": "DATABASE_URL",
            "valueFrom": { "secretKeyRef": { "name": format!("{cluster}-app"), "key": "uri" } },
        }));
    }
    let mut security = json!({
        "runAsNonRoot": true,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
    });
    // A non-root process may bind a port below 1024 (DNS's 53) only with this namespaced
    // sysctl, which Kubernetes counts as safe (allowed without a policy change).
    if privileged {
        security["sysctls"] =
            json!([{ "name": "net.ipv4.ip_unprivileged_port_start", "value": "0" }]);
    }
    let files: Vec<Value> = sources
        .iter()
        .filter(|(_, source)| !matches!(source, SecretSource::Env(_)))
        .map(|(key, _)| json!({ "key": key, "path": key }))
        .collect();
    let mut mounts = vec![
        json!({ "name": "config", "mountPath": parent(CONFIG_PATH), "readOnly": true }),
        json!({ "name": "state", "mountPath": STATE_DIR }),
        json!({ "name": "tmp", "mountPath": "/tmp" }),
    ];
    // Only the keys this node reads (no `items` would mount them all); none, no volume.
    if !files.is_empty() {
        mounts.push(json!({ "name": "secrets", "mountPath": SECRETS_DIR, "readOnly": true }));
    }
    mounts.extend(super::tls::mounts(cfg, node, STATE_DIR));
    let mut volumes = vec![
        json!({ "name": "config", "configMap": { "name": l.config_map() } }),
        json!({ "name": "state", "emptyDir": {} }),
        json!({ "name": "tmp", "emptyDir": {} }),
    ];
    if !files.is_empty() {
        volumes.push(json!({ "name": "secrets", "secret": {
            "secretName": l.secret(),
            "defaultMode": 0o400,
            "items": files,
        } }));
    }
    volumes.extend(super::tls::volume(cfg, l, node));
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": l.meta(&l.object(node), l.of(node)),
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": l.selector(node) },
            "template": {
                "metadata": {
                    "labels": l.of(node),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": admin.to_string(),
                        "prometheus.io/path": "/metrics",
                        "meridian.dev/config-digest": digest,
                    },
                },
                "spec": {
                    "securityContext": security,
                    // Nodes drain their connections on SIGTERM before they exit.
                    "terminationGracePeriodSeconds": 60,
                    "containers": [{
                        "name": node.role.as_str(),
                        "image": image,
                        "args": ["run", "--config", CONFIG_PATH, "--node", node.name, "--bind-any"],
                        "env": env,
                        "ports": container_ports,
                        // Ready when the node says it is healthy: a balancer only with a
                        // healthy target. It gates rollouts and disruption budgets.
                        "readinessProbe": {
                            "httpGet": { "path": "/health", "port": admin },
                            "periodSeconds": 5,
                            "failureThreshold": 3,
                        },
                        // Alive while its admin endpoint answers /health at all. Not on its
                        // status: a balancer whose instances are all down reports 503, and
                        // restarting it cannot help.
                        "livenessProbe": {
                            "tcpSocket": { "port": admin },
                            "initialDelaySeconds": 10,
                            "periodSeconds": 10,
                            "failureThreshold": 6,
                        },
                        "resources": requests(node.role),
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": { "drop": ["ALL"] },
                        },
                        "volumeMounts": mounts,
                    }],
                    "volumes": volumes,
                },
            },
        },
    })
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(p, _)| p).unwrap_or("/")
}

/// The ConfigMap holding the exported config `text`.
pub(crate) fn config_map(l: &Labels, text: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": l.meta(&l.config_map(), json!({
            "app.kubernetes.io/name": "meridian",
            "app.kubernetes.io/instance": l.deployment,
        })),
        "data": { "meridian.toml": text },
    })
}

/// The Secret the pods read, with every value empty: an example of its keys, never a
/// value (the user makes the real one, see the file's header).
pub(crate) fn secret_example(l: &Labels) -> Value {
    let keys: serde_json::Map<String, Value> = SECRET_KEYS
        .iter()
        .map(|k| ((*k).to_owned(), Value::String(String::new())))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": l.meta(&l.secret(), json!({
            "app.kubernetes.io/name": "meridian",
            "app.kubernetes.io/instance": l.deployment,
        })),
        "stringData": keys,
    })
}
