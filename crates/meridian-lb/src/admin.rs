//! The load balancer's own endpoints, on the admin address (never the viewer port):
//! `/metrics`, `/health` and `/targets` (what `aws elbv2 describe-target-health` shows).

use crate::LoadBalancer;
use http::{Request, StatusCode};
use hyper::body::Incoming;
use meridian_health::Health;
use serde_json::json;
use std::convert::Infallible;
use tokio::net::TcpListener;

pub(crate) async fn serve(
    listener: TcpListener,
    lb: LoadBalancer,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let opts = meridian_http::ServerOptions::admin();
    meridian_http::serve(
        listener,
        opts,
        move |_| {
            let lb = lb.clone();
            hyper::service::service_fn(move |req: Request<Incoming>| {
                let lb = lb.clone();
                async move { Ok::<_, Infallible>(route(&lb, req.uri().path())) }
            })
        },
        shutdown,
    )
    .await
}

fn route(lb: &LoadBalancer, path: &str) -> http::Response<meridian_http::Body> {
    match path {
        "/metrics" => meridian_http::metrics(lb.metrics_text()),
        "/health" => {
            let group = lb.group();
            let healthy = group.healthy_count();
            let status = if healthy > 0 {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = json!({
                "status": if healthy > 0 { "healthy" } else { "unhealthy" },
                "role": "lb",
                "name": lb.name(),
                "healthy_targets": healthy,
                "targets": group.targets.len(),
            });
            meridian_http::json(status, body.to_string())
        }
        "/targets" => {
            let snapshot = lb.board().snapshot();
            let targets: Vec<_> = lb
                .group()
                .targets
                .iter()
                .map(|t| {
                    let last = snapshot.iter().find(|s| s.target == t.name).and_then(|s| s.last_probe.clone());
                    json!({
                        "target": t.name,
                        "az": t.az,
                        "address": t.addr.to_string(),
                        "health": match t.health.get() { Health::Healthy => "healthy", Health::Unhealthy => "unhealthy", Health::Unknown => "initial" },
                        "outstanding_requests": t.outstanding(),
                        "last_check": last,
                    })
                })
                .collect();
            meridian_http::json(
                StatusCode::OK,
                json!({ "name": lb.name(), "targets": targets }).to_string(),
            )
        }
        _ => meridian_http::text(
            StatusCode::NOT_FOUND,
            "admin endpoints: /metrics, /health, /targets",
        ),
    }
}
