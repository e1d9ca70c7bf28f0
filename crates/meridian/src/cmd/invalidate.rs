//! `meridian invalidate`: CloudFront's CreateInvalidation, to every PoP at once.

use super::deployment::{admin_token, running_deployment};
use anyhow::Result;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct InvalidateArgs {
    /// One or more paths, such as '/static/*' '/api/quotes/AAPL' (quote wildcards).
    #[arg(long, required = true, num_args = 1..)]
    paths: Vec<String>,
    /// The state dir of a running `meridian up` (endpoints.json and admin-token).
    #[arg(long, default_value = ".meridian")]
    state_dir: PathBuf,
}

/// `meridian invalidate`: the same paths to every PoP, with progress and a summary.
pub async fn run(InvalidateArgs { paths, state_dir }: InvalidateArgs) -> Result<ExitCode> {
    let state_dir = state_dir.as_path();
    if let Some(bad) = paths.iter().find(|p| !p.starts_with('/')) {
        eprintln!("error: `{bad}` is not a path\n  = fix: invalidation paths start with /, such as '/static/*'");
        return Ok(ExitCode::from(2));
    }
    let (config, state) = running_deployment(state_dir)?;
    let token = admin_token(&config, state_dir)?;
    let pops: Vec<(String, SocketAddr)> = state
        .nodes
        .iter()
        .filter(|n| n.spec.role == meridian_config::Role::Edge)
        .map(|n| {
            (
                n.spec.name.trim_start_matches("edge-").to_owned(),
                n.spec.admin,
            )
        })
        .collect();
    if pops.is_empty() {
        eprintln!(
            "error: the deployment in {} has no edge PoPs",
            state_dir.display()
        );
        return Ok(ExitCode::from(2));
    }
    let id = format!(
        "I{:016X}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    );
    let total = pops.len();
    eprintln!("invalidation {id}: {} path(s) to {total} PoPs", paths.len());
    let mut done = 0;
    let results = meridian_edge::client::invalidate_all(pops, token.trim(), &paths, &id, |r| {
        done += 1;
        match &r.result {
            Ok(t) => eprintln!(
                "  [{done}/{total}] {:<12} applied in {:.1} ms",
                r.pop,
                t.as_secs_f64() * 1e3
            ),
            Err(e) => eprintln!("  [{done}/{total}] {:<12} FAILED: {e}", r.pop),
        }
    })
    .await;
    let failed = results.iter().filter(|r| r.result.is_err()).count();
    if failed == 0 {
        println!("Completed: every PoP ({total}) has applied {id}");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("InProgress: {failed} of {total} PoPs did not apply {id}; run it again when they are up");
        Ok(ExitCode::FAILURE)
    }
}
