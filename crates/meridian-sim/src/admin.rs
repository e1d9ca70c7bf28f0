//! Asking a running node's admin endpoint: what the global benchmark and chaos runs read
//! (metrics, a PoP's origin choice) and change (the WAN's partitions).

use meridian_config::state::DeploymentState;
use meridian_config::Role;
use std::net::SocketAddr;
use std::time::Duration;

/// One request to `addr` with an empty body, Bearer `token` when given.
pub(crate) async fn call(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<meridian_http::client::Fetched, String> {
    Ok(meridian_http::client::call(addr, method, path, token, timeout, 8 << 20).await?)
}

/// A node's `/metrics` text, or None when it does not answer.
pub(crate) async fn metrics(addr: SocketAddr, timeout: Duration) -> Option<String> {
    let f = call(addr, http::Method::GET, "/metrics", None, timeout)
        .await
        .ok()?;
    Some(String::from_utf8_lossy(&f.body).into_owned())
}

/// Whether every series of `metric` whose labels contain `label` has the value `want`;
/// None when there is no such series.
pub(crate) fn all_series(text: &str, metric: &str, label: &str, want: &str) -> Option<bool> {
    let suffix = format!(" {want}");
    let mut any = false;
    for l in text
        .lines()
        .filter(|l| l.starts_with(metric) && l.contains(label))
    {
        any = true;
        if !l.trim_end().ends_with(&suffix) {
            return Some(false);
        }
    }
    any.then_some(true)
}

/// Sums a counter family from a node's /metrics, over the lines `keep` accepts.
pub(crate) async fn scrape_sum(addr: SocketAddr, name: &str, keep: impl Fn(&str) -> bool) -> f64 {
    let Some(text) = metrics(addr, Duration::from_secs(3)).await else {
        return 0.0;
    };
    text.lines()
        .filter(|l| l.starts_with(name) && keep(l))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// (application requests, bytes PoPs fetched from origins) across the deployment now.
pub(crate) async fn origin_counters(state: &DeploymentState) -> (f64, f64) {
    let mut requests = 0.0;
    let mut bytes = 0.0;
    for n in &state.nodes {
        match n.spec.role {
            Role::Service => {
                requests += scrape_sum(n.spec.address, "meridian_http_requests_total", |l| {
                    !l.contains("route=\"/health") && !l.contains("route=\"/metrics\"")
                })
                .await
            }
            Role::Edge => {
                bytes += scrape_sum(
                    n.spec.admin,
                    "meridian_edge_bytes_from_origins_total",
                    |_| true,
                )
                .await
            }
            _ => {}
        }
    }
    (requests, bytes)
}

#[cfg(test)]
mod tests {
    use super::all_series;

    #[test]
    fn series_by_label() {
        let text = "m{a=\"x\",az=\"1a\"} 0\nm{a=\"y\",az=\"1a\"} 0\nm{a=\"z\",az=\"1b\"} 1\n";
        assert_eq!(all_series(text, "m", "az=\"1a\"", "0"), Some(true));
        assert_eq!(all_series(text, "m", "az=\"1a\"", "1"), Some(false));
        assert_eq!(all_series(text, "m", "az=\"1c\"", "0"), None);
    }
}
