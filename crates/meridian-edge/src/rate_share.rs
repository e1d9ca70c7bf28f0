//! Rate counts shared between PoPs, so a client that spreads its requests over several
//! PoPs is still limited. Every [`SHARE_INTERVAL`] each PoP reads every other PoP's local
//! counts (`GET /protection/counts` on its admin port, with the admin token) and merges
//! them; reads, not pushes, so the audit log records no traffic of its own. A PoP that
//! cannot be reached simply stops counting (its counts age out): limits then hold per PoP
//! exactly and across the rest approximately, as stated in `meridian_protect::rate`.

use crate::edge::Edge;
use crate::protect::SHARE_INTERVAL;
use meridian_config::Config;
use meridian_protect::rate::Snapshot;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// What `GET /protection/counts` answers.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Counts {
    pub pop: String,
    /// By rate-based rule name.
    pub rules: Vec<(String, Snapshot)>,
}

/// Every other PoP's name and admin address.
pub(crate) fn peers(cfg: &Config, me: &str) -> Vec<(String, SocketAddr)> {
    cfg.nodes()
        .into_iter()
        .filter(|n| n.role == meridian_config::Role::Edge)
        .filter_map(|n| Some((cfg.pop_of(&n)?.name.clone(), n.admin)))
        .filter(|(name, _)| name != me)
        .collect()
}

/// Polls the peers until the task is aborted.
pub(crate) async fn run(
    edge: Edge,
    peers: Vec<(String, SocketAddr)>,
    token: meridian_http::secrets::AdminToken,
) {
    let mut tick = tokio::time::interval(SHARE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let t = token.current();
        let polls = peers.iter().map(|(name, addr)| {
            let t = t.clone();
            async move { (name, poll(*addr, &t).await) }
        });
        for (name, got) in futures_util::future::join_all(polls).await {
            match got {
                // Under the name polled, never the one the answer claims: one PoP cannot
                // overwrite another's counts.
                Ok(c) => edge.0.protect.merge(name, c.rules, SystemTime::now()),
                Err(e) => tracing::debug!(peer = %name, error = %e, "no rate counts from the PoP"),
            }
        }
    }
}

async fn poll(addr: SocketAddr, token: &str) -> Result<Counts, String> {
    let got = meridian_http::client::call(
        addr,
        http::Method::GET,
        "/protection/counts",
        Some(token),
        // Counts older than an interval are worth less than the next ones.
        SHARE_INTERVAL.min(Duration::from_millis(400)),
        8 << 20,
    )
    .await?;
    if got.status != 200 {
        return Err(format!("GET /protection/counts answered {}", got.status));
    }
    serde_json::from_slice(&got.body).map_err(|e| e.to_string())
}
