//! Service instances started and stopped while `up` runs: what a rollout does to them.
//!
//! Every service instance has a second home (`Config::replacement_of`: `svc-<az>-<n>-b`,
//! same loopback address, service port + 1), held as an inactive slot from the start, so
//! the set of slots never changes and the supervisor's loops stay as they are. A slot's
//! version is written to `<state-dir>/instances/<node>.version` before its process starts;
//! the service node reads it there (`read_version`), so a restart after a crash keeps the
//! version the rollout gave it.

use crate::fleet::{Fleet, Slot};
use meridian_config::{Config, NodeSpec, Role};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The nodes `up` supervises, each with whether it runs from the start: every node of the
/// topology, and after them, idle, the homes of the instances autoscaling may add
/// (`Config::scaling_homes`) and each service instance's replacement home.
pub(crate) fn with_replacements(cfg: &Config, nodes: &[NodeSpec]) -> Vec<(NodeSpec, bool)> {
    let added: Vec<NodeSpec> = cfg
        .regions
        .iter()
        .flat_map(|r| cfg.scaling_homes(&r.name))
        .collect();
    let mut all: Vec<(NodeSpec, bool)> = nodes.iter().map(|n| (n.clone(), true)).collect();
    all.extend(added.iter().map(|n| (n.clone(), false)));
    all.extend(
        nodes
            .iter()
            .chain(&added)
            .filter_map(|n| cfg.replacement_of(n))
            .map(|n| (n, false)),
    );
    all
}

fn version_file(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join("instances").join(format!("{node}.version"))
}

fn write_version(state_dir: &Path, node: &str, version: &str) -> std::io::Result<()> {
    let path = version_file(state_dir, node);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, version)
}

/// The version a slot starts with: the config's, written down for a service instance that
/// runs from the start (empty for other roles).
pub(crate) fn initial_version(state_dir: &Path, cfg: &Config, spec: &NodeSpec) -> String {
    if spec.role != Role::Service {
        return String::new();
    }
    let v = cfg.service.version.clone();
    if cfg.node(&spec.name).is_some() {
        if let Err(e) = write_version(state_dir, &spec.name, &v) {
            tracing::error!(node = %spec.name, "cannot write its version: {e}");
        }
    }
    v
}

/// The version service node `node` runs: what the supervisor wrote for it, else the
/// config's (a node run on its own).
pub fn read_version(state_dir: &Path, cfg: &Config, node: &str) -> String {
    std::fs::read_to_string(version_file(state_dir, node))
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| meridian_config::valid_version(v))
        .unwrap_or_else(|| cfg.service.version.clone())
}

/// The slot of node `name`.
pub(crate) fn slot(shared: &Arc<dyn Fleet>, name: &str) -> Option<Arc<Slot>> {
    shared.slots().iter().find(|s| s.spec.name == name).cloned()
}

/// Starts (and from now on supervises) the instance of `slot` at `version`.
pub(crate) fn start(
    shared: &Arc<dyn Fleet>,
    slot: &Arc<Slot>,
    version: &str,
) -> std::io::Result<()> {
    write_version(shared.state_dir(), &slot.spec.name, version)?;
    *slot.version.lock().unwrap_or_else(|p| p.into_inner()) = version.to_owned();
    if slot.active.swap(true, Ordering::AcqRel) {
        return Ok(()); // already running
    }
    shared.clone().supervise(slot.clone());
    shared.publish();
    Ok(())
}

/// Stops the instance of `slot` for good (SIGTERM: it drains; SIGKILL at the stop
/// timeout), and waits for it to exit.
pub(crate) async fn stop(shared: &Arc<dyn Fleet>, slot: &Slot) {
    slot.active.store(false, Ordering::Release);
    let pid = || *slot.pid.lock().unwrap_or_else(|p| p.into_inner());
    let deadline = Instant::now() + shared.config().supervisor.stop_timeout;
    if let Some(p) = pid() {
        crate::fleet::signal(p, libc::SIGTERM);
    }
    while pid().is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(p) = pid() {
        crate::fleet::signal(p, libc::SIGKILL);
    }
    shared.publish();
}

/// Waits until the instance passes the balancer's health check, as `up` does at start;
/// the last failure when `timeout` passes first.
pub(crate) async fn wait_healthy(
    shared: &Arc<dyn Fleet>,
    slot: &Slot,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let (addr, check) = shared.readiness(&slot.spec);
    loop {
        let out = meridian_health::probe(addr, &check).await;
        if out.healthy {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(out.detail);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
