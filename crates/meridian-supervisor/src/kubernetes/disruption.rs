//! PodDisruptionBudgets: a drain takes one pod of a kind at a time. Each node is one pod
//! (see `workload.rs`), so a budget per node could only block a drain forever; a budget
//! over all of a region's instances, or over every balancer, PoP or DNS server, keeps all
//! but one of them up, and Meridian's health checks move the traffic off the missing one.

use super::labels::{dns_label, Labels};
use meridian_config::Role;
use serde_json::{json, Value};

/// The budget over every node of `role` (in `region`, when given).
pub(crate) fn budget(l: &Labels, role: Role, region: Option<&str>) -> Value {
    let mut selector = json!({
        "app.kubernetes.io/instance": l.deployment,
        "meridian.dev/role": role.as_str(),
    });
    let mut name = format!("{}-{}", l.deployment, role.as_str());
    if let Some(r) = region {
        selector["meridian.dev/region"] = dns_label(r).into();
        name = format!("{name}-{r}");
    }
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": l.meta(&dns_label(&name), selector.clone()),
        "spec": {
            "maxUnavailable": 1,
            "selector": { "matchLabels": selector },
        },
    })
}
