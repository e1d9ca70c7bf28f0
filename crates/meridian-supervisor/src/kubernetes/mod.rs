//! `meridian export kubernetes --out DIR`: the deployment as Kubernetes manifests, one
//! kustomization per region and one for what has no region (PoPs, DNS, console, config).
//!
//! Addresses: Meridian's nodes find each other at the addresses in the config, and a pod's
//! IP is only known once it runs. So every node gets a Service with a fixed `clusterIP`
//! from the cluster's service range (`addresses.rs`), the exported config places each node
//! on a `[[host]]` of its own at that ClusterIP (`config.rs`), and the pod runs `meridian
//! run --node NAME --bind-any`: it binds the configured ports on every interface and the
//! Service forwards the ClusterIP's traffic there. Nothing in the config is a pod IP, and
//! every address a node reads from it is one the cluster routes.
//!
//! What cannot run there is refused (`ExportError::CannotPlace`, with the key and the fix)
//! or left out with a note the CLI prints: the simulated WAN (the network is real), the
//! Redis cache tier, and PostgreSQL, which becomes a CloudNativePG `Cluster` (`cnpg.rs`).

mod addresses;
mod cnpg;
mod config;
mod disruption;
mod error;
mod kustomize;
mod labels;
mod service;
mod tls;
mod workload;
mod yaml;

pub use addresses::ServiceRange;
pub use config::SECRETS_DIR;
pub use error::ExportError;
pub use tls::PKI_DIR;
pub use workload::CONFIG_PATH;

use labels::Labels;

use meridian_config::{Config, Role};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The directory of the manifests of nodes that belong to no region.
pub const GLOBAL: &str = "global";

/// What the export is told about the cluster.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The namespace every object goes to.
    pub namespace: String,
    /// The image that holds the `meridian` binary (built from the repository's Containerfile).
    pub image: String,
    /// Where the fixed ClusterIPs come from.
    pub range: ServiceRange,
}

/// What an export wrote, and what it left out.
#[derive(Debug, Clone, Default)]
pub struct Exported {
    /// Every manifest written, relative to the output directory.
    pub files: Vec<PathBuf>,
    /// Parts of the config not exported, one sentence each, for the CLI to print.
    pub notes: Vec<String>,
    /// The config the pods run, as written into the ConfigMap.
    pub config_text: String,
}

/// The objects of one file, relative to the output directory.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub path: PathBuf,
    /// A comment for the file's head (how to use it), if any.
    pub header: Option<String>,
    pub objects: Vec<Value>,
}

/// Everything an export writes, before it is written.
#[derive(Debug, Clone)]
pub struct Manifests {
    pub files: Vec<Manifest>,
    /// Parts of the config not exported, one sentence each, for the CLI to print.
    pub notes: Vec<String>,
    /// The config the pods run, as the ConfigMap holds it.
    pub config_text: String,
    /// That config, when the pods need the deployment CA made for it (`tls.rs`).
    pub tls: Option<Config>,
}

/// The objects of one directory (a region, or [`GLOBAL`]), file by file.
struct Dir {
    name: String,
    files: Vec<(String, Vec<Value>)>,
}

/// Writes the manifests of `cfg` (read from `config_text`) under `out`.
pub fn export(
    cfg: &Config,
    config_text: &str,
    opts: &ExportOptions,
    out: &Path,
) -> Result<Exported, ExportError> {
    let m = manifests(cfg, config_text, opts)?;
    if let Some(placed) = &m.tls {
        tls::make(placed, out)?;
    }
    for f in &m.files {
        let mut text = f.header.clone().unwrap_or_default();
        text.push_str(&yaml::documents(&f.objects));
        write(out, &f.path, &text)?;
    }
    Ok(Exported {
        files: m.files.into_iter().map(|f| f.path).collect(),
        notes: m.notes,
        config_text: m.config_text,
    })
}

/// The manifests of `cfg` (read from `config_text`).
pub fn manifests(
    cfg: &Config,
    config_text: &str,
    opts: &ExportOptions,
) -> Result<Manifests, ExportError> {
    let placed = config::place(cfg, config_text, &opts.range)?;
    let k8s = &placed.config;
    let labels = Labels {
        deployment: k8s.deployment.name.clone(),
        namespace: opts.namespace.clone(),
    };
    let mut global = Dir {
        name: GLOBAL.to_owned(),
        files: vec![(
            "config.yaml".to_owned(),
            vec![workload::config_map(&labels, &placed.text)],
        )],
    };
    let digest = meridian_config::diff::digest(&placed.text);
    let database = cfg.database.as_ref().map(|db| cnpg::name(&labels, db));
    let mut regions: Vec<Dir> = k8s
        .regions
        .iter()
        .map(|r| Dir {
            name: r.name.clone(),
            files: Vec::new(),
        })
        .collect();
    for node in k8s.nodes() {
        let mut objects = vec![workload::deployment(
            k8s,
            &labels,
            &node,
            &opts.image,
            &digest,
            database.as_deref(),
        )];
        objects.extend(service::services(k8s, &labels, &node));
        let file = format!("{}.yaml", node.name);
        let dir = match node.region.as_deref() {
            Some(r) => regions.iter_mut().find(|d| d.name == r),
            None => None,
        };
        dir.unwrap_or(&mut global).files.push((file, objects));
    }
    for d in &mut regions {
        d.files.push((
            "disruption.yaml".to_owned(),
            vec![disruption::budget(&labels, Role::Service, Some(&d.name))],
        ));
    }
    global.files.push((
        "disruption.yaml".to_owned(),
        [Role::Lb, Role::Edge, Role::Dns]
            .into_iter()
            .map(|role| disruption::budget(&labels, role, None))
            .collect(),
    ));
    if let Some(db) = &cfg.database {
        if let Some(d) = regions.iter_mut().find(|d| d.name == db.home_region) {
            d.files
                .push(("database.yaml".to_owned(), vec![cnpg::cluster(&labels, db)]));
        }
    }
    let mut files = Vec::new();
    let mut dirs = vec![global];
    dirs.extend(regions);
    for d in &dirs {
        let names: Vec<&str> = d.files.iter().map(|(f, _)| f.as_str()).collect();
        let kustomization = kustomize::kustomization(&names);
        for (file, objects) in &d.files {
            files.push(manifest(Path::new(&d.name).join(file), objects.clone()));
        }
        files.push(manifest(
            Path::new(&d.name).join("kustomization.yaml"),
            vec![kustomization],
        ));
    }
    files.push(manifest(
        "namespace.yaml".into(),
        vec![kustomize::namespace(&labels)],
    ));
    let mut top: Vec<&str> = vec!["namespace.yaml"];
    top.extend(dirs.iter().map(|d| d.name.as_str()));
    let generators: Vec<Value> = tls::generator(k8s, &labels).into_iter().collect();
    files.push(manifest(
        "kustomization.yaml".into(),
        vec![kustomize::top(&labels, &top, generators)],
    ));
    let header = format!(
        "# The Secret every pod reads its secrets from, with its keys and no values. Make the\n# real one from files of your own (each one random line, e.g. `openssl rand -hex 32`):\n#   kubectl -n {ns} create secret generic {name} --from-file=admin_token=./admin_token \\\n#     --from-file=edge_signing_key=./edge_signing_key --from-file=disk_cache_key=./disk_cache_key\n# This file is not in kustomization.yaml, so applying the deployment never replaces them.\n",
        ns = opts.namespace,
        name = labels.secret()
    );
    files.push(Manifest {
        path: "secret.example.yaml".into(),
        header: Some(header),
        objects: vec![workload::secret_example(&labels)],
    });
    let tls = tls::on(k8s).then(|| k8s.clone());
    Ok(Manifests {
        files,
        notes: placed.notes,
        config_text: placed.text,
        tls,
    })
}

fn manifest(path: PathBuf, objects: Vec<Value>) -> Manifest {
    Manifest {
        path,
        header: None,
        objects,
    }
}

fn write(out: &Path, rel: &Path, text: &str) -> Result<(), ExportError> {
    let path = out.join(rel);
    let at = |source| ExportError::Write {
        path: path.clone(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(at)?;
    }
    std::fs::write(&path, text).map_err(at)
}
