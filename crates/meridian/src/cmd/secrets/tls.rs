//! `meridian secrets rotate deployment-ca | lb-certificates`: the TLS side of secrets. The
//! balancers re-read their certificate files and the edges their trusted CAs (at most
//! every [`secrets::RELOAD`]), so a rotation needs no restart.

use anyhow::{Context, Result};
use meridian_config::Config;
use meridian_http::{pki, secrets};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The TLS names `meridian secrets` knows beside the secret files.
pub const NAMES: &[&str] = &["deployment-ca", "lb-certificates"];

/// The deployment's config: the given one, else the one running from the state dir.
fn config(config: Option<&Path>, state_dir: &Path) -> Result<Config> {
    let path: PathBuf = match config {
        Some(p) => p.to_owned(),
        None => meridian_config::state::DeploymentState::read(state_dir)
            .map(|s| s.config)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| {
                format!(
                    "the balancers' certificate names come from the deployment's config: none runs from {}; pass --config FILE",
                    state_dir.display()
                )
            })?,
    };
    Config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))
}

/// A new key and certificate for every region's balancer, from the current CA.
fn reissue(cfg: &Config, state_dir: &Path) -> Result<()> {
    for r in &cfg.regions {
        let names = meridian_lb::cert_names(cfg, &r.name);
        let (cert, _) = pki::issue_lb_cert(state_dir, &r.name, &names)
            .with_context(|| format!("issuing the certificate of lb-{}", r.name))?;
        println!(
            "issued a new key and certificate for lb-{} ({})",
            r.name,
            cert.display()
        );
    }
    Ok(())
}

/// Rotates `name` when it is one of [`NAMES`]; Ok(false) when it is not a TLS name.
pub fn rotate(
    name: &str,
    state_dir: &Path,
    config_path: Option<&Path>,
    grace: Duration,
) -> Result<bool> {
    if !NAMES.contains(&name) {
        return Ok(false);
    }
    let cfg = config(config_path, state_dir)?;
    if let Some(own) = &cfg.distribution.origin_ca_file {
        anyhow::bail!(
            "the edges trust {} ([distribution] origin_ca_file), not the deployment CA: renew the balancers' certificates with your CA, and the nodes pick the files up within {} s",
            own.display(),
            secrets::RELOAD.as_secs()
        );
    }
    let ca = pki::ca_cert_path(state_dir);
    if !ca.exists() {
        anyhow::bail!(
            "{} does not exist: `meridian up` makes the deployment CA; is {} its state dir?",
            ca.display(),
            state_dir.display()
        );
    }
    if name == "deployment-ca" {
        let until = pki::rotate_ca(state_dir, grace)
            .with_context(|| format!("rotating the CA in {}", ca.display()))?;
        println!(
            "made a new deployment CA ({}); the previous one is trusted until unix time {}",
            ca.display(),
            super::unix_time::unix(until)
        );
        // Edges trust the new CA before any balancer shows a certificate signed by it.
        let settle = secrets::RELOAD + Duration::from_secs(1);
        println!(
            "waiting {} s for the edges to trust it before the balancers change",
            settle.as_secs()
        );
        std::thread::sleep(settle);
    }
    reissue(&cfg, state_dir)?;
    println!(
        "the balancers serve the new certificates within {} s, without a restart",
        secrets::RELOAD.as_secs()
    );
    Ok(true)
}

/// Lines for `meridian secrets list`: the CA (and a previous one in its grace) and each
/// balancer certificate's age.
pub fn list(state_dir: &Path, line: impl Fn(&str, Option<Duration>, &Path, Option<SystemTime>)) {
    let age = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
    };
    let ca = pki::ca_cert_path(state_dir);
    if !ca.exists() {
        return;
    }
    line("deployment-ca", age(&ca), &ca, pki::previous_ca_until(&ca));
    let Ok(dir) = std::fs::read_dir(state_dir.join("tls")) else {
        return;
    };
    let mut certs: Vec<(String, PathBuf)> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let region = name.strip_prefix("lb-")?.strip_suffix("-cert.pem")?;
            Some((format!("lb-{region} cert"), e.path()))
        })
        .collect();
    certs.sort();
    for (name, path) in certs {
        line(&name, age(&path), &path, None);
    }
}
