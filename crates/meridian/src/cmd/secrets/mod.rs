//! `meridian secrets`: rotate a secret with a grace period, and list secrets (never their
//! values). Nodes re-read secret files every few seconds, so nothing restarts.

mod tls;
mod unix_time;

use anyhow::Result;
use clap::Subcommand;
use meridian_config::{Config, Secrets};
use meridian_http::secrets::{self, Location, SecretError};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};
use unix_time::unix;

#[derive(Subcommand)]
pub enum SecretsCmd {
    /// Replace a secret (admin-token, edge-signing-key, db-password or cache-password);
    /// the old value is still accepted until the grace period ends, so running nodes and
    /// tools holding it keep working (see the README for what that means per secret).
    /// deployment-ca makes a new CA (the old one trusted during the grace) and new
    /// balancer certificates; lb-certificates makes new balancer keys and certificates.
    Rotate {
        /// admin-token, edge-signing-key, db-password, cache-password, deployment-ca or
        /// lb-certificates.
        name: String,
        /// The deployment's state dir.
        #[arg(long, default_value = ".meridian")]
        state_dir: PathBuf,
        /// How long the old value stays valid (such as 30s, 10m, 1h).
        #[arg(long, default_value = "10m")]
        grace: String,
        /// The deployment's config, for secrets that [secrets] places elsewhere; by
        /// default the config of the deployment running from the state dir, if any.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Each secret's file, age, and whether a previous value is in its grace period.
    List {
        #[arg(long, default_value = ".meridian")]
        state_dir: PathBuf,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// The deployment's config: the given one, else the running one's; None when neither.
fn deployment(config: Option<&Path>, state_dir: &Path) -> Result<Option<Config>> {
    let path = match config {
        Some(p) => Some(p.to_owned()),
        None => meridian_config::state::DeploymentState::read(state_dir)
            .ok()
            .map(|s| s.config),
    };
    match path {
        Some(p) => Ok(Some(Config::load(&p).map_err(|e| anyhow::anyhow!("{e}"))?)),
        None => Ok(None),
    }
}

fn source<'a>(secrets: &'a Secrets, name: &str) -> Option<&'a meridian_config::SecretSource> {
    match name {
        meridian_http::admin::TOKEN_FILE => Some(&secrets.admin_token),
        meridian_http::signing::KEY_FILE => Some(&secrets.edge_signing_key),
        meridian_http::admin::DB_PASSWORD_FILE => Some(&secrets.db_password),
        meridian_http::admin::CACHE_PASSWORD_FILE => Some(&secrets.cache_password),
        _ => None,
    }
}

/// Whether the deployment uses the secret `name`: the passwords only with [database] or
/// [cache]. Without a known config, a password is used when its file is there.
fn used(config: Option<&Config>, name: &str, state_dir: &Path) -> Result<(), SecretError> {
    let section = match name {
        meridian_http::admin::DB_PASSWORD_FILE => "[database]",
        meridian_http::admin::CACHE_PASSWORD_FILE => "[cache]",
        _ => return Ok(()),
    };
    let present = match config {
        Some(c) if section == "[database]" => c.database.is_some(),
        Some(c) => c.cache.is_some(),
        None => state_dir.join(name).exists(),
    };
    if present {
        Ok(())
    } else {
        Err(SecretError::NotUsed {
            name: name.to_owned(),
            section,
        })
    }
}

/// Runs `cmd`; a rotation is an admin action, so it goes to the audit log (as the `cli`
/// node, the actor the local user) whether it worked or not.
pub fn run(cmd: SecretsCmd) -> Result<ExitCode> {
    let SecretsCmd::Rotate {
        name, state_dir, ..
    } = &cmd
    else {
        return execute(cmd);
    };
    let (name, state_dir) = (name.clone(), state_dir.clone());
    let result = execute(cmd);
    let code = match &result {
        Ok(c) if *c == ExitCode::SUCCESS => 200,
        Ok(_) => 400,
        Err(_) => 500,
    };
    if state_dir.is_dir() {
        meridian_http::audit::AuditLog::open_or_warn(&state_dir, "cli").record(
            &meridian_http::audit::AuditEvent {
                time: meridian_http::audit::rfc3339(SystemTime::now()),
                node: "cli".into(),
                actor: local_actor(),
                source: "local".into(),
                action: "secrets rotate".into(),
                target: name,
                result: code,
            },
        );
    }
    result
}

/// The local user as an audit actor: `uid:N` (the owner of this process).
fn local_actor() -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| format!("uid:{}", m.uid()))
        .unwrap_or_else(|_| "uid:unknown".into())
}

fn execute(cmd: SecretsCmd) -> Result<ExitCode> {
    match cmd {
        SecretsCmd::Rotate {
            name,
            state_dir,
            grace,
            config,
        } => {
            let grace = match super::flags::duration_flag("grace", &grace) {
                Ok(g) => g,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            if tls::rotate(&name, &state_dir, config.as_deref(), grace)? {
                return Ok(ExitCode::SUCCESS);
            }
            let config = deployment(config.as_deref(), &state_dir)?;
            let all = config
                .as_ref()
                .map(|c| c.secrets.clone())
                .unwrap_or_default();
            let Some(src) = source(&all, &name) else {
                eprintln!(
                    "error: {}, {}",
                    SecretError::Unknown(name),
                    tls::NAMES.join(", ")
                );
                return Ok(ExitCode::from(2));
            };
            if let Err(e) = used(config.as_ref(), &name, &state_dir) {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(2));
            }
            let path = match secrets::location(src, &state_dir, &name) {
                Location::File(p) => p,
                Location::Env(var) => {
                    eprintln!("error: {}", SecretError::FromEnv(name, var));
                    return Ok(ExitCode::from(2));
                }
            };
            let r = secrets::rotate(&path, grace)?;
            if name == meridian_http::admin::DB_PASSWORD_FILE {
                // PostgreSQL holds one password per role: the grace is the clients'.
                println!(
                    "rotated {name} ({}); the primary's keeper sets it on the role within seconds, and from then on new sessions need it (open ones stay); Meridian's clients fall back to the previous value until unix time {} ({} from now)",
                    r.path.display(),
                    unix(r.previous_until),
                    meridian_config::units::format_duration(grace),
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "rotated {name} ({}); the previous value is accepted until unix time {} ({} from now); nodes pick the new one up within {} s",
                r.path.display(),
                unix(r.previous_until),
                meridian_config::units::format_duration(grace),
                secrets::RELOAD.as_secs()
            );
            Ok(ExitCode::SUCCESS)
        }
        SecretsCmd::List { state_dir, config } => {
            let config = deployment(config.as_deref(), &state_dir)?;
            let all = config
                .as_ref()
                .map(|c| c.secrets.clone())
                .unwrap_or_default();
            println!("{:<24} {:<8} {:<48} PREVIOUS", "SECRET", "AGE", "WHERE");
            for name in secrets::NAMES {
                let Some(src) = source(&all, name) else {
                    continue;
                };
                if used(config.as_ref(), name, &state_dir).is_err() {
                    continue;
                }
                let info = secrets::describe(name, secrets::location(src, &state_dir, name));
                row(
                    &info.name,
                    info.age,
                    &place(&info.location),
                    info.previous_until,
                );
            }
            tls::list(&state_dir, |name, age, path, until| {
                row(name, age, &path.display().to_string(), until)
            });
            // Keys `rotate` does not replace, so that the list shows all key material: the
            // disk tier's sealing key (the objects on disk are sealed under it) and the JWT
            // signing keys `up` made for development.
            let fixed = "not rotated by `rotate`";
            let sealed = config
                .as_ref()
                .is_some_and(|c| c.edges.iter().any(|p| p.disk_encryption));
            if sealed {
                let file = meridian_http::admin::DISK_CACHE_KEY_FILE;
                let at = secrets::location(&all.disk_cache_key, &state_dir, file);
                let info = secrets::describe(file, at);
                line(&info.name, info.age, &place(&info.location), fixed);
            }
            for (name, path) in jwt_keys(&state_dir) {
                let info = secrets::describe(&name, Location::File(path));
                line(&info.name, info.age, &place(&info.location), fixed);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One line of `meridian secrets list` for a secret that rotates.
fn row(name: &str, age: Option<Duration>, place: &str, previous_until: Option<SystemTime>) {
    let previous = match previous_until {
        Some(u) => format!(
            "in grace, {} s left",
            unix(u).saturating_sub(unix(SystemTime::now()))
        ),
        None => "none".into(),
    };
    line(name, age, place, &previous);
}

fn line(name: &str, age: Option<Duration>, place: &str, previous: &str) {
    // Whole units a reader takes in at a glance: 90s, 45m, 30h, 12d.
    let age = age
        .map(|a| match a.as_secs() {
            s if s < 120 => format!("{s}s"),
            s if s < 2 * 3600 => format!("{}m", s / 60),
            s if s < 2 * 86_400 => format!("{}h", s / 3600),
            s => format!("{}d", s / 86_400),
        })
        .unwrap_or_else(|| "-".into());
    println!("{name:<24} {age:<8} {place:<48} {previous}");
}

/// Where a secret is, as `secrets list` shows it.
fn place(location: &Location) -> String {
    match location {
        Location::File(p) if p.exists() => p.display().to_string(),
        Location::File(p) => format!("{} (missing)", p.display()),
        Location::Env(v) => format!("${v}"),
    }
}

/// The JWT signing keys `up` made in the state dir (`jwt/<authorizer>.key.pk8`).
fn jwt_keys(state_dir: &Path) -> Vec<(String, PathBuf)> {
    let mut keys: Vec<(String, PathBuf)> = std::fs::read_dir(state_dir.join("jwt"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let authorizer = file.strip_suffix(".key.pk8")?;
            Some((format!("jwt {authorizer} key"), e.path()))
        })
        .collect();
    keys.sort();
    keys
}
