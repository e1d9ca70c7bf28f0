//! `meridian audit`: the admin actions of every node of a deployment, merged in time order.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct AuditArgs {
    /// The deployment's state dir (its logs/audit-<node>.jsonl files).
    #[arg(long, default_value = ".meridian")]
    state_dir: PathBuf,
    /// Only events this recent, such as 1h or 15m.
    #[arg(long)]
    since: Option<String>,
    /// JSON lines instead of columns.
    #[arg(long)]
    json: bool,
}

pub fn run(a: AuditArgs) -> Result<ExitCode> {
    print(&a.state_dir, a.since.as_deref(), a.json)
}

/// Prints the audit events of `state_dir` newer than `since` (all when None), oldest
/// first; as JSON lines with `json`, else as aligned columns.
fn print(state_dir: &Path, since: Option<&str>, json: bool) -> Result<ExitCode> {
    let since = since
        .map(meridian_config::units::parse_duration)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--since: {}; {}", e.problem, e.fix))?;
    let events = meridian_http::audit::read_all(state_dir, since).with_context(|| {
        format!(
            "cannot read the audit logs in {}",
            state_dir.join("logs").display()
        )
    })?;
    for e in &events {
        if json {
            println!("{}", serde_json::to_string(e)?);
        } else {
            println!(
                "{}  {:<20} {:<15} {:<21} {:<24} {:>3}  {}",
                e.time, e.node, e.actor, e.source, e.action, e.result, e.target
            );
        }
    }
    if events.is_empty() {
        eprintln!("no audit events in {}", state_dir.join("logs").display());
    }
    Ok(ExitCode::SUCCESS)
}
