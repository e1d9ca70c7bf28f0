//! The kustomizations: one per directory (a region, or `global`) so a region can be
//! applied on its own (`kubectl apply -k DIR/eu-west-1`), and one at the top for all.

use super::labels::Labels;
use serde_json::{json, Value};

/// A directory's kustomization listing its `files`.
pub(crate) fn kustomization(files: &[&str]) -> Value {
    json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": files,
    })
}

/// The top kustomization: the namespace, then every directory, and the Secrets it
/// generates from files the export made (the deployment CA's, `tls.rs`).
pub(crate) fn top(l: &Labels, resources: &[&str], generators: Vec<Value>) -> Value {
    let mut k = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": l.namespace,
        "resources": resources,
    });
    if !generators.is_empty() {
        k["secretGenerator"] = Value::Array(generators);
    }
    k
}

/// The namespace everything goes to.
pub(crate) fn namespace(l: &Labels) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": l.namespace,
            "labels": { "app.kubernetes.io/name": "meridian", "app.kubernetes.io/instance": l.deployment },
        },
    })
}
