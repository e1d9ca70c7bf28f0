//! A node's Service: the fixed ClusterIP the exported config names as the node's address.
//!
//! Peers reach a node through its Service even before it is ready
//! (`publishNotReadyAddresses`): Meridian's own health checks (the balancer's of its
//! targets, the DNS's of PoPs and balancers) decide where traffic goes, as they do on
//! hosts; Kubernetes' readiness only paces rollouts and disruption budgets. PoPs and DNS
//! servers face viewers, so each also gets a LoadBalancer with its viewer ports only (the
//! admin port stays inside the cluster) that keeps the client's address
//! (`externalTrafficPolicy: Local`): the DNS routes by it and the PoPs log it.

use super::labels::Labels;
use super::workload::ports;
use meridian_config::{Config, NodeSpec, Role};
use serde_json::{json, Value};

/// The Services of node `node` (of the placed config `cfg`): the one at its address, and
/// for a PoP or a DNS server the public one.
pub(crate) fn services(cfg: &Config, l: &Labels, node: &NodeSpec) -> Vec<Value> {
    let listeners = ports(cfg, node);
    let as_ports = |only_public: bool| -> Vec<Value> {
        listeners
            .iter()
            .filter(|(name, _, _)| !only_public || *name != "admin")
            .map(|(name, port, protocol)| {
                json!({ "name": name, "port": port, "targetPort": port, "protocol": protocol })
            })
            .collect()
    };
    let mut made = vec![json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": l.meta(&l.object(node), l.of(node)),
        "spec": {
            "type": "ClusterIP",
            "clusterIP": node.address.ip().to_string(),
            "selector": l.selector(node),
            "publishNotReadyAddresses": true,
            "ports": as_ports(false),
        },
    })];
    if matches!(node.role, Role::Edge | Role::Dns) {
        made.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": l.meta(&l.object_with(node, "public"), l.of(node)),
            "spec": {
                "type": "LoadBalancer",
                "externalTrafficPolicy": "Local",
                "selector": l.selector(node),
                "ports": as_ports(true),
            },
        }));
    }
    made
}
