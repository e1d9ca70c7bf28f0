//! A node's Service: the fixed ClusterIP the exported config names as the node's address.
//!
//! Peers reach a node through its Service even before it is ready
//! (`publishNotReadyAddresses`): Meridian's own health checks (the balancer's of its
//! targets, the DNS's of PoPs and balancers) decide where traffic goes, as they do on
//! hosts; Kubernetes' readiness only paces rollouts and disruption budgets. PoPs and DNS
//! servers face viewers, so theirs are LoadBalancers that keep the client's address
//! (`externalTrafficPolicy: Local`): the DNS routes by it and the PoPs log it.

use super::labels::Labels;
use super::workload::ports;
use meridian_config::{Config, NodeSpec, Role};
use serde_json::{json, Value};

/// The Service of node `node` (of the placed config `cfg`).
pub(crate) fn service(cfg: &Config, l: &Labels, node: &NodeSpec) -> Value {
    let ports: Vec<Value> = ports(cfg, node)
        .into_iter()
        .map(|(name, port, protocol)| {
            json!({ "name": name, "port": port, "targetPort": port, "protocol": protocol })
        })
        .collect();
    let mut spec = json!({
        "type": "ClusterIP",
        "clusterIP": node.address.ip().to_string(),
        "selector": l.selector(node),
        "publishNotReadyAddresses": true,
        "ports": ports,
    });
    if matches!(node.role, Role::Edge | Role::Dns) {
        spec["type"] = "LoadBalancer".into();
        spec["externalTrafficPolicy"] = "Local".into();
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": l.meta(&l.object(node), l.of(node)),
        "spec": spec,
    })
}
