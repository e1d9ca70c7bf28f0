//! SIGHUP to a node: read its config file again, validate it, and hand it to the running
//! PoP, DNS server or load balancer, which swaps what it serves in place. A file that does not validate
//! is refused with one line in the log; the node keeps its current config.

use meridian_config::Config;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// The config file a node was started from, and its digest then.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub digest: String,
}

/// Sends `prepare`d configs read from `path` on every SIGHUP; the receiver goes to the
/// node. `prepare` adds what the node resolves at start (a PoP's CA and JWKS files).
pub(crate) fn on_sighup<F>(
    path: &Path,
    node: &str,
    prepare: F,
) -> Option<mpsc::Receiver<(Config, String)>>
where
    F: Fn(Config) -> Result<Config, String> + Send + 'static,
{
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGHUP, config reloads are off: {e}");
            return None;
        }
    };
    let (tx, rx) = mpsc::channel(4);
    let (path, node) = (path.to_owned(), node.to_owned());
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match read(&path).and_then(|(cfg, digest)| Ok((prepare(cfg)?, digest))) {
                Ok(next) => {
                    tracing::info!(node = %node, config = %next.1, "SIGHUP: reloading {}", path.display());
                    if tx.send(next).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::error!(node = %node, "SIGHUP: {e}; keeping the current config"),
            }
        }
    });
    Some(rx)
}

/// The config in `path` and the digest of its text, or one line saying why not.
fn read(path: &Path) -> Result<(Config, String), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let cfg = Config::parse(&text, &path.display().to_string()).map_err(|e| {
        let first = e.0.first().map(|x| x.to_string()).unwrap_or_default();
        let first = first.lines().next().unwrap_or_default().to_owned();
        format!(
            "{} does not validate ({} error(s), first: {first}; `meridian validate {}` shows all)",
            path.display(),
            e.0.len(),
            path.display()
        )
    })?;
    Ok((cfg, meridian_config::diff::digest(&text)))
}
