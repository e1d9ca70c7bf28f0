//! `meridian deploy --out DIR`: one bundle per host, enough to start that host's part of
//! the deployment with nothing but the bundle and the `meridian` binary.
//!
//! A bundle holds the config, the secrets the config names by file (made once for the
//! whole deployment, owner-only, the same in every bundle), a systemd unit that runs the
//! host's agent, and an install script that puts them in place. A config without
//! `[[host]]` gives one bundle, `local`, whose unit runs `meridian up`. Secrets named by
//! relative path are placed at that path beside the bundle's config, so the bundle runs
//! where it is unpacked; absolute ones are kept under `secrets/` and installed at their
//! path. Secrets named by environment variable go into `meridian.env` (owner-only), which
//! the unit reads as its `EnvironmentFile`. Secrets kept in a state dir are not written
//! (`validate` refuses them on hosts: each host would make its own).
//!
//! When PoPs reach balancers over TLS, the deployment CA is made once here too (its key
//! stays in `DIR/.secrets/pki`), and each bundle carries `state/tls/`: the CA certificate,
//! and the certificate and key of each balancer on that host. A bundle run where it is
//! unpacked uses `--state-dir state`; `install.sh` puts `state/tls` in the host's state dir.

use meridian_config::{Config, SecretSource};
use std::path::{Path, PathBuf};

/// Where the installed config and state live on a host.
const ETC: &str = "/etc/meridian";
/// The environment file of the secrets named by variable, beside the installed config.
const ENV_FILE: &str = "meridian.env";
/// A bundle's state dir, where it is unpacked.
const BUNDLE_STATE: &str = "state";
const STATE: &str = "/var/lib/meridian";
const BINARY: &str = "/usr/local/bin/meridian";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One written bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub host: String,
    pub dir: PathBuf,
}

/// Writes a bundle per host of `cfg` under `out` (the config text is `config_text`).
pub fn write(cfg: &Config, config_text: &str, out: &Path) -> Result<Vec<Bundle>, BundleError> {
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BundleError::Write { path, source }
    };
    // Secrets are made once, here, and copied into the bundles of the hosts whose nodes
    // read them (`secrets::read_on`).
    let made = out.join(".secrets");
    let mut secrets: Vec<(&str, PathBuf, String)> = Vec::new();
    // A variable may carry more than one secret: it goes where any of them is read.
    let mut variables: Vec<(Vec<&str>, String, String)> = Vec::new();
    for (key, source, bytes) in [
        ("admin_token", &cfg.secrets.admin_token, 16),
        ("edge_signing_key", &cfg.secrets.edge_signing_key, 16),
        ("db_password", &cfg.secrets.db_password, 16),
        ("cache_password", &cfg.secrets.cache_password, 16),
        ("disk_cache_key", &cfg.secrets.disk_cache_key, 32),
    ] {
        let value = || meridian_http::admin::key_secret(&made, key, bytes).map_err(at(&made));
        match source {
            SecretSource::File(path) => {
                secrets.push((key, named_path(cfg, config_text, path), value()?));
            }
            SecretSource::Env(name) => match variables.iter_mut().find(|(_, n, _)| n == name) {
                Some((keys, ..)) => keys.push(key),
                None => variables.push((vec![key], name.clone(), value()?)),
            },
            SecretSource::StateDir => {}
        }
    }
    // The deployment CA and every balancer's certificate, once for all hosts.
    let pki = out.join(".secrets").join("pki");
    let tls = !cfg.hosts.is_empty()
        && cfg.distribution.origin_protocol == meridian_config::OriginProtocol::Https;
    if tls {
        crate::secrets::balancer_certificates(cfg, &pki, false).map_err(|e| {
            BundleError::Write {
                path: pki.clone(),
                source: std::io::Error::other(e.to_string()),
            }
        })?;
    }
    let hosts: Vec<Option<&str>> = if cfg.hosts.is_empty() {
        vec![None]
    } else {
        cfg.hosts.iter().map(|h| Some(h.name.as_str())).collect()
    };
    let mut written = Vec::new();
    for host in hosts {
        let name = host.unwrap_or("local");
        let dir = out.join(name);
        std::fs::create_dir_all(&dir).map_err(at(&dir))?;
        let config = dir.join("meridian.toml");
        std::fs::write(&config, config_text).map_err(at(&config))?;
        let read_here = |key: &str| crate::secrets::read_on(cfg, host, key);
        let mut installs = Vec::new();
        for (_, path, value) in secrets.iter().filter(|(key, ..)| read_here(key)) {
            let (in_bundle, installed) = if path.is_absolute() {
                let file = path.file_name().map(PathBuf::from).unwrap_or_default();
                (Path::new("secrets").join(file), path.clone())
            } else {
                (path.clone(), Path::new(ETC).join(path))
            };
            let file = dir.join(&in_bundle);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(at(parent))?;
            }
            meridian_http::tls::write_secret(&file, format!("{value}\n").as_bytes())
                .map_err(at(&file))?;
            installs.push((in_bundle, installed));
        }
        let tls_files = if tls {
            bundle_tls(cfg, host, &pki, &dir.join(BUNDLE_STATE).join("tls"))?
        } else {
            Vec::new()
        };
        let lines: String = variables
            .iter()
            .filter(|(keys, ..)| keys.iter().any(|k| read_here(k)))
            .map(|(_, name, value)| format!("{name}={value}\n"))
            .collect();
        let with_env = !lines.is_empty();
        if with_env {
            let file = dir.join(ENV_FILE);
            meridian_http::tls::write_secret(&file, lines.as_bytes()).map_err(at(&file))?;
        }
        let unit_file = dir.join("meridian-agent.service");
        std::fs::write(&unit_file, unit(cfg, host, with_env)).map_err(at(&unit_file))?;
        let script = dir.join("install.sh");
        std::fs::write(
            &script,
            install_script(name, &installs, with_env, &tls_files),
        )
        .map_err(at(&script))?;
        set_mode(&script, 0o755).map_err(at(&script))?;
        written.push(Bundle {
            host: name.to_owned(),
            dir,
        });
    }
    Ok(written)
}

/// A secret's path as the config text names it. The reader resolves relative paths
/// against the config's directory; one the text writes out in full stays absolute.
fn named_path(cfg: &Config, config_text: &str, path: &Path) -> PathBuf {
    let config_dir = Path::new(&cfg.origin).parent().unwrap_or(Path::new(""));
    let written_in_full = path.to_str().is_some_and(|p| config_text.contains(p));
    match path.strip_prefix(config_dir) {
        Ok(rel) if !written_in_full && !config_dir.as_os_str().is_empty() => rel.to_path_buf(),
        _ => path.to_path_buf(),
    }
}

/// The systemd unit: the host's agent, or `up` for a one-machine deployment; `with_env`:
/// it reads the secrets named by variable from the environment file.
fn unit(cfg: &Config, host: Option<&str>, with_env: bool) -> String {
    let (what, command) = match host {
        Some(h) => (
            format!("host {h} of deployment {}", cfg.deployment.name),
            format!("agent --host {h}"),
        ),
        None => (
            format!(
                "deployment {} (every node on this machine)",
                cfg.deployment.name
            ),
            "up".to_owned(),
        ),
    };
    let env = if with_env {
        format!("EnvironmentFile={ETC}/{ENV_FILE}\n")
    } else {
        String::new()
    };
    format!(
        "[Unit]
Description=Meridian: {what}
Wants=network-online.target
After=network-online.target

[Service]
{env}ExecStart={BINARY} {command} --config {ETC}/meridian.toml --state-dir {STATE}
# The agent stops its nodes in order on SIGTERM; give it the time to drain them.
KillMode=mixed
TimeoutStopSec=90
Restart=on-failure
RestartSec=2
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"
    )
}

/// The install script: config, secrets (0600), unit, then start the agent.
fn install_script(
    name: &str,
    secrets: &[(PathBuf, PathBuf)],
    with_env: bool,
    tls: &[(String, u32)],
) -> String {
    let mut s = format!(
        "#!/bin/sh
# Installs Meridian's bundle for {name}: run as root on that host, beside the bundle's
# files, after copying the meridian binary to {BINARY}.
set -eu
here=\"$(cd \"$(dirname \"$0\")\" && pwd)\"
test -x {BINARY} || {{ echo \"copy the meridian binary to {BINARY} first\" >&2; exit 1; }}
install -d -m 0755 {ETC} {STATE}
install -m 0644 \"$here/meridian.toml\" {ETC}/meridian.toml
"
    );
    for (in_bundle, installed) in secrets {
        let parent = installed.parent().unwrap_or(Path::new("/"));
        s.push_str(&format!(
            "install -d -m 0700 {}\ninstall -m 0600 \"$here/{}\" {}\n",
            parent.display(),
            in_bundle.display(),
            installed.display()
        ));
    }
    if !tls.is_empty() {
        s.push_str(&format!("install -d -m 0700 {STATE}/tls\n"));
    }
    for (file, mode) in tls {
        s.push_str(&format!(
            "install -m {mode:04o} \"$here/{BUNDLE_STATE}/tls/{file}\" {STATE}/tls/{file}\n"
        ));
    }
    if with_env {
        s.push_str(&format!(
            "install -m 0600 \"$here/{ENV_FILE}\" {ETC}/{ENV_FILE}\n"
        ));
    }
    s.push_str(
        "install -m 0644 \"$here/meridian-agent.service\" /etc/systemd/system/meridian-agent.service
systemctl daemon-reload
systemctl enable --now meridian-agent.service
",
    );
    s
}

/// Copies into a bundle's `tls` what its host needs of the deployment CA made in `pki`:
/// the CA certificate, and the certificate and key of each balancer on the host (never
/// the CA's key). Returns each file's name and mode, for the install script.
fn bundle_tls(
    cfg: &Config,
    host: Option<&str>,
    pki: &Path,
    into: &Path,
) -> Result<Vec<(String, u32)>, BundleError> {
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BundleError::Write { path, source }
    };
    std::fs::create_dir_all(into).map_err(at(into))?;
    set_mode(into, 0o700).map_err(at(into))?;
    let mut files = vec![(meridian_http::pki::ca_cert_path(pki), 0o644)];
    for n in cfg.nodes() {
        let here = host.is_some_and(|h| cfg.host_of(&n).is_some_and(|x| x.name == h));
        if n.role == meridian_config::Role::Lb && here {
            let region = n.region.as_deref().unwrap_or_default();
            let (cert, key) = meridian_http::pki::lb_cert_paths(pki, region);
            files.extend([(cert, 0o644), (key, 0o600)]);
        }
    }
    let mut written = Vec::new();
    for (from, mode) in files {
        let name = from
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let to = into.join(&name);
        let bytes = std::fs::read(&from).map_err(at(&from))?;
        if mode == 0o600 {
            meridian_http::tls::write_secret(&to, &bytes).map_err(at(&to))?;
        } else {
            std::fs::write(&to, &bytes).map_err(at(&to))?;
        }
        written.push((name, mode));
    }
    Ok(written)
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}
