//! `meridian export`: the console's dashboards and alarms for Grafana and Prometheus, and
//! the deployment as Kubernetes manifests (written by `meridian_supervisor::kubernetes`).

use super::deployment::load_config;
use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ExportCmd {
    /// A Grafana dashboard (JSON) with the console's panels over Prometheus.
    Grafana {
        /// Deployment config; the embedded default when omitted.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Write here instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Prometheus recording and alerting rules (5xxErrorRate, CacheHitRate,
    /// HealthyHostCount, and one alert per [[console.alarm]]), for `promtool check rules`.
    PrometheusRules {
        /// Deployment config; the embedded default when omitted.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Write here instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Kubernetes manifests: per region a kustomization with a Deployment and a Service of
    /// fixed ClusterIP per node, disruption budgets, and (with [database]) a CloudNativePG
    /// Cluster; the config as a ConfigMap; an example of the Secret the pods read.
    Kubernetes(KubernetesArgs),
}

#[derive(clap::Args)]
pub struct KubernetesArgs {
    /// Deployment config; the embedded default when omitted.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The directory the manifests go to.
    #[arg(long)]
    out: PathBuf,
    /// The cluster's service range (kube-apiserver --service-cluster-ip-range): every node
    /// gets a fixed ClusterIP from it, which the exported config names as its address.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cidr: String,
    /// The first ClusterIP to take; the range's 100th address when omitted (the first ones
    /// are the cluster's own: the API server, the cluster DNS).
    #[arg(long)]
    service_ip_start: Option<std::net::Ipv4Addr>,
    /// The namespace of every object.
    #[arg(long, default_value = "meridian")]
    namespace: String,
    /// The image with the meridian binary (built from the repository's Containerfile).
    #[arg(long, default_value = "meridian:latest")]
    image: String,
}

pub fn run(command: ExportCmd) -> Result<ExitCode> {
    let (config, out, rules) = match command {
        ExportCmd::Kubernetes(args) => return kubernetes(args),
        ExportCmd::Grafana { config, out } => (config, out, false),
        ExportCmd::PrometheusRules { config, out } => (config, out, true),
    };
    let cfg = match load_config(config.as_deref()) {
        Ok((c, _)) => c,
        Err(code) => return Ok(code),
    };
    let text = if rules {
        meridian_console::export::prometheus_rules(&cfg)
    } else {
        serde_json::to_string_pretty(&meridian_console::export::grafana(&cfg))? + "\n"
    };
    match out {
        Some(path) => {
            std::fs::write(&path, text)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn kubernetes(args: KubernetesArgs) -> Result<ExitCode> {
    use meridian_supervisor::kubernetes::{export, ExportError, ExportOptions, ServiceRange};
    let (cfg, text) = match load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let refused = |e: ExportError| {
        eprintln!("error: {e}");
        Ok(ExitCode::from(2))
    };
    let range = match ServiceRange::new(&args.service_cidr, args.service_ip_start) {
        Ok(r) => r,
        Err(e) => return refused(e),
    };
    let opts = ExportOptions {
        namespace: args.namespace,
        image: args.image,
        range,
    };
    let written = match export(&cfg, &text, &opts, &args.out) {
        Ok(w) => w,
        Err(e @ (ExportError::CannotPlace { .. } | ExportError::Range(_))) => return refused(e),
        Err(e) => return Err(e.into()),
    };
    for note in &written.notes {
        eprintln!("note: {note}");
    }
    eprintln!(
        "wrote {} manifests to {}\nnext: create the Secret (see secret.example.yaml), then `kubectl apply -k {}`",
        written.files.len(),
        args.out.display(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
