//! The load balancer's own endpoints, on the admin address (never the viewer port):
//! `/metrics`, `/health` and `/targets` (what `aws elbv2 describe-target-health` shows).

use crate::proxy::LoadBalancer;
use http::StatusCode;
use meridian_health::Health;
use meridian_http::admin::{Router, ANY};
use serde_json::json;
use tokio::net::TcpListener;

pub(crate) async fn serve(
    listener: TcpListener,
    lb: LoadBalancer,
    shutdown: impl std::future::Future<Output = ()>,
) {
    Router::new(lb, "admin endpoints: /metrics, /health, /targets")
        .metrics(|lb| lb.metrics_text())
        .health(|lb| {
            let group = lb.group();
            let healthy = group.healthy_count();
            json!({
                "status": if healthy > 0 { "healthy" } else { "unhealthy" },
                "role": "lb",
                "name": lb.name(),
                "healthy_targets": healthy,
                "targets": group.targets.len(),
                // Every group's count: the keys above are the default group's.
                "target_groups": lb
                    .groups()
                    .iter()
                    .map(|g| (g.name.clone(), json!({ "healthy_targets": g.healthy_count(), "targets": g.targets.len() })))
                    .collect::<serde_json::Map<_, _>>(),
            })
        })
        .open(ANY, "/targets", |lb, _| async move { targets(&lb) })
        .serve(listener, shutdown)
        .await
}

/// What `aws elbv2 describe-target-health` shows.
fn targets(lb: &LoadBalancer) -> http::Response<meridian_http::Body> {
    let mut targets = Vec::new();
    for g in lb.groups() {
        let snapshot = g.board.snapshot();
        for t in &g.targets {
            let last = snapshot
                .iter()
                .find(|s| s.target == t.name)
                .and_then(|s| s.last_probe.clone());
            targets.push(json!({
                "target": t.name,
                "target_group": g.name,
                "az": t.az,
                "address": t.addr.to_string(),
                "health": match t.health.get() { Health::Healthy => "healthy", Health::Unhealthy => "unhealthy", Health::Unknown => "initial" },
                "outstanding_requests": t.outstanding(),
                "last_check": last,
            }));
        }
    }
    meridian_http::json(
        StatusCode::OK,
        json!({ "name": lb.name(), "targets": targets }).to_string(),
    )
}
