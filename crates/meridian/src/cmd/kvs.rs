//! `meridian kvs`: CloudFront KeyValueStore's data-plane calls against a running
//! deployment. Changes go to every PoP (each holds its own copy); reads ask one.

use super::deployment::{admin_token, running_deployment};
use anyhow::{Context, Result};
use bytes::Bytes;
use meridian_config::{Config, Role};
use meridian_functions::kvs::{MAX_KEY_BYTES, MAX_VALUE_BYTES};
use meridian_http::percent::encode;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum KvsCmd {
    /// The key value stores, or with --store every key and value of one (from one PoP).
    List {
        /// A store's name ([[distribution.key_value_store]]).
        #[arg(long)]
        store: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Print one key's value (from the first PoP that answers). Exits 1 when it is not set.
    Get {
        /// The store's name ([[distribution.key_value_store]]).
        #[arg(long)]
        store: String,
        /// The key.
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Set a key on every PoP (keys up to 512 bytes, values up to 1 KB, as CloudFront).
    /// Exits 1 unless every PoP applied it.
    Put {
        /// The store's name ([[distribution.key_value_store]]).
        #[arg(long)]
        store: String,
        /// The key.
        key: String,
        /// The value (up to 1 KB).
        value: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a key on every PoP. Exits 1 unless every PoP applied it.
    Delete {
        /// The store's name ([[distribution.key_value_store]]).
        #[arg(long)]
        store: String,
        /// The key.
        key: String,
        #[command(flatten)]
        target: Target,
    },
}

/// Which deployment to talk to: the one `meridian up` runs from the state dir, or the
/// nodes a config places (for nodes started with `meridian run`).
#[derive(clap::Args)]
pub struct Target {
    /// The deployment's config: its PoPs' admin addresses; by default the config of the
    /// deployment running from the state dir.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The state dir (admin-token, endpoints.json); $MERIDIAN_STATE_DIR, else .meridian.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

/// The PoPs (name, admin address) and the admin token of the target deployment.
struct Pops {
    pops: Vec<(String, SocketAddr)>,
    token: String,
}

impl Target {
    fn resolve(&self) -> Result<Pops> {
        // The same variable `meridian run` nodes read, so one setting serves both.
        let state_dir = self
            .state_dir
            .clone()
            .or_else(|| std::env::var_os("MERIDIAN_STATE_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(".meridian"));
        let (config, pops) = match &self.config {
            Some(p) => {
                let config = Config::load(p)
                    .map_err(|e| anyhow::anyhow!("{e}"))
                    .with_context(|| format!("cannot read the config {}", p.display()))?;
                let pops = edges(
                    config
                        .nodes()
                        .into_iter()
                        .map(|n| (n.role, n.name, n.admin)),
                );
                (config, pops)
            }
            None => {
                let (config, state) = running_deployment(&state_dir)?;
                let pops = edges(
                    state
                        .nodes
                        .into_iter()
                        .map(|n| (n.spec.role, n.spec.name, n.spec.admin)),
                );
                (config, pops)
            }
        };
        if pops.is_empty() {
            anyhow::bail!("the deployment has no edge PoPs");
        }
        let token = admin_token(&config, &state_dir)?.trim().to_owned();
        Ok(Pops { pops, token })
    }
}

fn edges(nodes: impl Iterator<Item = (Role, String, SocketAddr)>) -> Vec<(String, SocketAddr)> {
    nodes
        .filter(|(role, _, _)| *role == Role::Edge)
        .map(|(_, name, admin)| (name.trim_start_matches("edge-").to_owned(), admin))
        .collect()
}

/// CloudFront's limits, checked before anything is sent so a PoP never sees half a change.
fn check(key: &str, value: Option<&str>) -> Result<(), String> {
    if key.is_empty() {
        return Err("the key is empty".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "the key is {} bytes; a key is at most {MAX_KEY_BYTES} bytes",
            key.len()
        ));
    }
    if let Some(v) = value {
        if v.len() > MAX_VALUE_BYTES {
            return Err(format!(
                "the value is {} bytes; a value is at most {MAX_VALUE_BYTES} bytes (1 KB)",
                v.len()
            ));
        }
    }
    Ok(())
}

fn key_path(store: &str, key: &str) -> String {
    format!("/kvs?store={}&key={}", encode(store), encode(key))
}

pub async fn run(cmd: KvsCmd) -> Result<ExitCode> {
    match cmd {
        KvsCmd::List { store, target } => {
            let path = match &store {
                Some(s) => format!("/kvs?store={}", encode(s)),
                None => "/kvs".to_owned(),
            };
            let (pop, status, body) = ask_one(&target.resolve()?, &path).await?;
            if status != 200 {
                eprintln!("error: PoP {pop} answered {status}: {}", text(&body));
                return Ok(ExitCode::FAILURE);
            }
            let v: serde_json::Value = serde_json::from_slice(&body)
                .with_context(|| format!("PoP {pop} answered something that is not JSON"))?;
            if store.is_some() {
                for item in v["items"].as_array().into_iter().flatten() {
                    println!(
                        "{}\t{}",
                        item["key"].as_str().unwrap_or_default(),
                        item["value"].as_str().unwrap_or_default()
                    );
                }
            } else {
                for s in v["stores"].as_array().into_iter().flatten() {
                    println!("{}", s.as_str().unwrap_or_default());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        KvsCmd::Get { store, key, target } => {
            if let Err(msg) = check(&key, None) {
                eprintln!("error: {msg}");
                return Ok(ExitCode::from(2));
            }
            let (pop, status, body) = ask_one(&target.resolve()?, &key_path(&store, &key)).await?;
            if status != 200 {
                eprintln!("error: PoP {pop} answered {status}: {}", text(&body));
                return Ok(ExitCode::FAILURE);
            }
            let v: serde_json::Value = serde_json::from_slice(&body)
                .with_context(|| format!("PoP {pop} answered something that is not JSON"))?;
            println!("{}", v["value"].as_str().unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        KvsCmd::Put {
            store,
            key,
            value,
            target,
        } => {
            if let Err(msg) = check(&key, Some(&value)) {
                eprintln!("error: {msg}");
                return Ok(ExitCode::from(2));
            }
            let pops = target.resolve()?;
            change(
                pops,
                http::Method::PUT,
                &key_path(&store, &key),
                Bytes::from(value),
            )
            .await
        }
        KvsCmd::Delete { store, key, target } => {
            if let Err(msg) = check(&key, None) {
                eprintln!("error: {msg}");
                return Ok(ExitCode::from(2));
            }
            let pops = target.resolve()?;
            change(
                pops,
                http::Method::DELETE,
                &key_path(&store, &key),
                Bytes::new(),
            )
            .await
        }
    }
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).trim().to_owned()
}

/// Asks the PoPs in order until one answers (any status): reads need only one copy.
async fn ask_one(pops: &Pops, path: &str) -> Result<(String, u16, Bytes)> {
    let mut failures = Vec::new();
    for (pop, admin) in &pops.pops {
        match meridian_http::client::call(
            *admin,
            http::Method::GET,
            path,
            Some(&pops.token),
            Duration::from_secs(5),
            1 << 23,
        )
        .await
        {
            Ok(f) => return Ok((pop.clone(), f.status, f.body)),
            Err(e) => failures.push(format!("{pop}: {e}")),
        }
    }
    anyhow::bail!("no PoP answered ({})", failures.join("; "))
}

/// One change to every PoP, a progress line per PoP and a summary; exit 1 unless all
/// applied it.
async fn change(pops: Pops, method: http::Method, path: &str, body: Bytes) -> Result<ExitCode> {
    let total = pops.pops.len();
    let mut done = 0;
    let results =
        meridian_edge::client::call_all(pops.pops, &pops.token, method, path, body, |r| {
            done += 1;
            match &r.result {
                Ok((t, body)) => {
                    let note = match serde_json::from_slice::<serde_json::Value>(body) {
                        Ok(v) if v["deleted"] == false => " (the key was not set)",
                        _ => "",
                    };
                    eprintln!(
                        "  [{done}/{total}] {:<12} updated in {:.1} ms{note}",
                        r.pop,
                        t.as_secs_f64() * 1e3
                    )
                }
                Err(e) => eprintln!("  [{done}/{total}] {:<12} FAILED: {e}", r.pop),
            }
        })
        .await;
    let mut failed: Vec<&str> = results
        .iter()
        .filter(|r| r.result.is_err())
        .map(|r| r.pop.as_str())
        .collect();
    failed.sort_unstable();
    let updated = total - failed.len();
    if failed.is_empty() {
        println!("{updated}/{total} PoPs updated");
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{updated}/{total} PoPs updated; failed: {}",
            failed.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_cloudfronts() {
        assert!(check(&"k".repeat(512), Some(&"v".repeat(1024))).is_ok());
        assert!(check(&"k".repeat(513), None)
            .unwrap_err()
            .contains("512 bytes"));
        assert!(check("k", Some(&"v".repeat(1025)))
            .unwrap_err()
            .contains("1 KB"));
        assert!(check("", None).is_err());
    }
}
