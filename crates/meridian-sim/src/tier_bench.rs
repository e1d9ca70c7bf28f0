//! `bench global --tiered-cache`: the full deployment under the same cacheable load twice
//! in one run, once with the PoPs going straight to the balancers and once through the
//! regional edge caches, every cache emptied before each, so the two origin request counts
//! stand side by side.

use crate::admin::origin_counters;
use crate::load::{self, Arch, LoadOptions};
use bytes::Bytes;
use http_body_util::Full;
use meridian_config::state::DeploymentState;
use meridian_config::Role;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

/// One half of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct TierPhase {
    pub tier: bool,
    pub requests: u64,
    pub failed: u64,
    pub mean_ms: f64,
    /// Requests that reached an application instance (health checks excluded).
    pub origin_requests: u64,
}

/// Both halves, without the tier first.
#[derive(Debug, Clone, Serialize)]
pub struct TierComparison {
    pub seconds_per_phase: f64,
    pub phases: Vec<TierPhase>,
}

const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Empties every edge cache (PoPs and regional caches) through its admin API.
async fn empty_caches(edges: &[SocketAddr], token: &str) -> Result<(), String> {
    for &admin in edges {
        let req = http::Request::post("/invalidate")
            .header(http::header::HOST, admin.to_string())
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from_static(br#"{"paths":["/*"]}"#)))
            .map_err(|e| e.to_string())?;
        let f = meridian_http::client::fetch_from(None, admin, req, ADMIN_TIMEOUT, 1 << 20)
            .await
            .map_err(|e| format!("invalidating at {admin}: {e}"))?;
        if !(200..300).contains(&f.status) {
            return Err(format!("invalidating at {admin}: {}", f.status));
        }
    }
    Ok(())
}

/// Sends every PoP's misses through the tier (`on`) or straight to the balancers.
async fn set_tier(pops: &[SocketAddr], token: &str, on: bool) -> Result<(), String> {
    for &admin in pops {
        let path = format!("/tier?enabled={on}");
        let f = crate::admin::call(admin, http::Method::POST, &path, Some(token), ADMIN_TIMEOUT)
            .await?;
        if !(200..300).contains(&f.status) {
            let body = String::from_utf8_lossy(&f.body).into_owned();
            return Err(format!("{admin} {path}: {} {body}", f.status));
        }
    }
    Ok(())
}

/// Runs the comparison against a deployment whose config has the tier on: `lo` is the
/// load of each half (cacheable requests only), `token` the deployment's admin token. The
/// tier is left on afterwards, as the config says.
pub async fn compare(
    lo: LoadOptions,
    state: &DeploymentState,
    token: &str,
    mut say: impl FnMut(String),
) -> Result<TierComparison, String> {
    let lo = LoadOptions {
        cacheable_only: true,
        ..lo
    };
    let cfg = &lo.config;
    if !cfg.distribution.tiered_cache.enabled {
        return Err("the deployment has no regional edge caches: set [distribution.tiered_cache] enabled = true and restart it".into());
    }
    let edges: Vec<_> = state
        .nodes
        .iter()
        .filter(|n| n.spec.role == Role::Edge)
        .collect();
    let all: Vec<SocketAddr> = edges.iter().map(|n| n.spec.admin).collect();
    let pops: Vec<SocketAddr> = edges
        .iter()
        .filter(|n| cfg.pop_of(&n.spec).is_some())
        .map(|n| n.spec.admin)
        .collect();
    let mut phases = Vec::new();
    for on in [false, true] {
        say(format!(
            "tiered cache {}: {}s of cacheable requests at {}/s from each of {} locations, every cache emptied first",
            if on { "on" } else { "off" },
            lo.duration.as_secs_f64(),
            lo.rate,
            cfg.client_locations.len()
        ));
        empty_caches(&all, token).await?;
        set_tier(&pops, token, on).await?;
        let before = origin_counters(state).await.0;
        let runs = load::run(&lo, Arch::Full, load::show_progress).await;
        eprintln!();
        let after = origin_counters(state).await.0;
        let mean_ms = load::mean_ms(&runs).unwrap_or(f64::NAN);
        phases.push(TierPhase {
            tier: on,
            requests: runs.iter().map(|r| r.ok + r.failed).sum(),
            failed: runs.iter().map(|r| r.failed).sum(),
            mean_ms: (mean_ms * 10.0).round() / 10.0,
            origin_requests: (after - before).max(0.0) as u64,
        });
    }
    set_tier(&pops, token, true).await?;
    Ok(TierComparison {
        seconds_per_phase: lo.duration.as_secs_f64(),
        phases,
    })
}

impl TierComparison {
    /// The comparison as a Markdown section of the report.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "\n## Tiered caching\n\nThe full deployment, {} s of cacheable requests each, every cache emptied before each half.\n\n\
             | regional edge caches | requests | failed | mean ms | origin requests |\n|---|---:|---:|---:|---:|\n",
            self.seconds_per_phase
        );
        for p in &self.phases {
            s.push_str(&format!(
                "| {} | {} | {} | {:.1} | {} |\n",
                if p.tier { "on" } else { "off" },
                p.requests,
                p.failed,
                p.mean_ms,
                p.origin_requests
            ));
        }
        s
    }
}
