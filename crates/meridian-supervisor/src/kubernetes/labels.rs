//! The names and labels the objects share: how Services, Deployments and budgets pick
//! the pods of a node, a role or a region.

use meridian_config::NodeSpec;
use serde_json::Value;

/// The labels and names every object shares.
pub(crate) struct Labels {
    pub deployment: String,
    pub namespace: String,
}

impl Labels {
    /// The name of the object of node `node`.
    pub fn object(&self, node: &NodeSpec) -> String {
        dns_label(&format!("{}-{}", self.deployment, node.name))
    }

    /// The name of a further object of node `node`, told apart by `suffix` (kept whole when
    /// the name must be cut to 63 characters).
    pub fn object_with(&self, node: &NodeSpec, suffix: &str) -> String {
        let base: String = self.object(node).chars().take(62 - suffix.len()).collect();
        format!("{}-{suffix}", base.trim_end_matches('-'))
    }

    /// The Secret the pods read the deployment's secrets from.
    pub fn secret(&self) -> String {
        dns_label(&format!("{}-secrets", self.deployment))
    }

    /// The ConfigMap holding the exported config.
    pub fn config_map(&self) -> String {
        dns_label(&format!("{}-config", self.deployment))
    }

    /// The labels that select node `node`'s pod (its Service's and Deployment's selector).
    pub fn selector(&self, node: &NodeSpec) -> Value {
        serde_json::json!({
            "app.kubernetes.io/instance": self.deployment,
            "meridian.dev/node": dns_label(&node.name),
        })
    }

    /// Every label of node `node`'s objects.
    pub fn of(&self, node: &NodeSpec) -> Value {
        let mut l = self.selector(node);
        l["app.kubernetes.io/name"] = "meridian".into();
        l["meridian.dev/role"] = node.role.as_str().into();
        if let Some(r) = &node.region {
            l["meridian.dev/region"] = dns_label(r).into();
        }
        l
    }

    /// The metadata of an object called `name`.
    pub fn meta(&self, name: &str, labels: Value) -> Value {
        serde_json::json!({ "name": name, "namespace": self.namespace, "labels": labels })
    }
}

/// `s` as a DNS label (what Kubernetes names and label values accept): lowercase letters,
/// digits and `-`, at most 63 characters, starting and ending alphanumeric.
pub(crate) fn dns_label(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let cut: String = mapped.chars().take(63).collect();
    cut.trim_matches('-').to_owned()
}
