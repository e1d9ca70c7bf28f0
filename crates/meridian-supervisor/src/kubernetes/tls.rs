//! TLS from the PoPs to the balancers in Kubernetes: one deployment CA for every pod.
//!
//! A pod that made its own CA would be trusted by no other pod, so the export makes the
//! CA once (its key stays in `DIR/.secrets/pki`, in no manifest and no Secret) and signs each
//! balancer's certificate for its ClusterIP, as `meridian deploy` does for hosts. The top
//! kustomization generates one Secret from those files when it is applied. Each PoP pod
//! mounts the CA certificate at [`CA_DIR`] (the exported config names it as
//! `origin_ca_file`: the PoP's own `tls/` stays writable for its viewer certificate), and
//! each balancer pod mounts its certificate, key and the CA, file by file, into the state
//! dir's `tls/`, where a balancer reads them.

use super::error::ExportError;
use super::labels::Labels;
use meridian_config::{Config, NodeSpec, Role};
use serde_json::{json, Value};
use std::path::Path;

/// Where the CA and the balancers' certificates are made, under the output directory.
pub const PKI_DIR: &str = ".secrets/pki";

/// Where a PoP pod finds the CA certificate (`origin_ca_file` in the exported config).
pub(crate) const CA_DIR: &str = "/etc/meridian/tls";
const CA_FILE: &str = "ca-cert.pem";

/// The Secret the top kustomization generates from [`PKI_DIR`].
pub(crate) fn secret_name(l: &Labels) -> String {
    format!("{}-tls", l.secret())
}

/// The files of the state dir's `tls/` a node needs.
fn files_of(node: &NodeSpec) -> Vec<String> {
    match node.role {
        Role::Edge => vec![CA_FILE.to_owned()],
        Role::Lb => {
            let r = node.region.as_deref().unwrap_or_default();
            vec![
                CA_FILE.to_owned(),
                format!("lb-{r}-cert.pem"),
                format!("lb-{r}-key.pem"),
            ]
        }
        _ => Vec::new(),
    }
}

/// Whether the export carries the deployment CA.
pub(crate) fn on(cfg: &Config) -> bool {
    cfg.distribution.origin_protocol == meridian_config::OriginProtocol::Https
}

/// The node's mounts of the TLS Secret (none when it needs none): a PoP's CA directory,
/// a balancer's files in `state_dir/tls/`.
pub(crate) fn mounts(cfg: &Config, node: &NodeSpec, state_dir: &str) -> Vec<Value> {
    if !on(cfg) {
        return Vec::new();
    }
    if node.role == Role::Edge {
        return vec![json!({ "name": "tls", "mountPath": CA_DIR, "readOnly": true })];
    }
    files_of(node)
        .into_iter()
        .map(|f| {
            json!({
                "name": "tls",
                "mountPath": format!("{state_dir}/tls/{f}"),
                "subPath": f,
                "readOnly": true,
            })
        })
        .collect()
}

/// The pod's volume of the TLS Secret, with only the files it needs (no balancer's key
/// in a PoP), when it mounts any.
pub(crate) fn volume(cfg: &Config, l: &Labels, node: &NodeSpec) -> Option<Value> {
    let files = files_of(node);
    (on(cfg) && !files.is_empty()).then(|| {
        let items: Vec<Value> = files
            .iter()
            .map(|f| json!({ "key": f, "path": f }))
            .collect();
        json!({
            "name": "tls",
            "secret": { "secretName": secret_name(l), "defaultMode": 0o400, "items": items },
        })
    })
}

/// The `origin_ca_file` of the exported config, when it carries the CA.
pub(crate) fn origin_ca_file(cfg: &Config) -> Option<String> {
    on(cfg).then(|| format!("{CA_DIR}/{CA_FILE}"))
}

/// The top kustomization's generator of the TLS Secret from the files [`make`] writes.
pub(crate) fn generator(cfg: &Config, l: &Labels) -> Option<Value> {
    if !on(cfg) {
        return None;
    }
    let mut files = vec![format!("{CA_FILE}={PKI_DIR}/tls/{CA_FILE}")];
    for r in &cfg.regions {
        for part in ["cert", "key"] {
            let f = format!("lb-{}-{part}.pem", r.name);
            files.push(format!("{f}={PKI_DIR}/tls/{f}"));
        }
    }
    Some(json!({
        "name": secret_name(l),
        "files": files,
        // The Deployments name it; a hashed name would change under them.
        "options": { "disableNameSuffixHash": true },
    }))
}

/// Makes the CA (once: an export run again keeps it) and each balancer's certificate for
/// the names it is reached by in the exported config, under `out`. The certificates are
/// signed again at every export: another service range gives the balancers other names.
pub(crate) fn make(cfg: &Config, out: &Path) -> Result<(), ExportError> {
    if !on(cfg) {
        return Ok(());
    }
    let pki = out.join(PKI_DIR);
    let secrets = out.join(".secrets");
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExportError::Write { path, source }
    };
    std::fs::create_dir_all(&pki).map_err(at(&pki))?;
    // The CA's key is in there: owner-only.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o700))
        .map_err(at(&secrets))?;
    crate::secrets::balancer_certificates(cfg, &pki, true).map_err(|e| ExportError::Write {
        path: pki.clone(),
        source: std::io::Error::other(e.to_string()),
    })
}
