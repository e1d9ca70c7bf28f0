//! `meridian audit`: the admin actions of every node of a deployment, merged in time order.

use anyhow::{Context, Result};
use std::path::Path;
use std::process::ExitCode;

/// Prints the audit events of `state_dir` newer than `since` (all when None), oldest
/// first; as JSON lines with `json`, else as aligned columns.
pub fn print(state_dir: &Path, since: Option<&str>, json: bool) -> Result<ExitCode> {
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
