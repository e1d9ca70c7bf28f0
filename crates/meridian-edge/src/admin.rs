//! A PoP's own endpoints, on the admin address (never the viewer port). `/health` and
//! `/metrics` are open to monitoring; everything that reads or changes the cache needs
//! `Authorization: Bearer <token>`, the token `up` writes to the state dir, so a viewer
//! can never purge a cache.

use crate::edge::Edge;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use tokio::net::TcpListener;

pub(crate) async fn serve(
    listener: TcpListener,
    edge: Edge,
    token: meridian_http::secrets::AdminToken,
    audit: std::sync::Arc<meridian_http::audit::AuditLog>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let opts = meridian_http::ServerOptions::admin();
    meridian_http::serve(
        listener,
        opts,
        move |peer| {
            let edge = edge.clone();
            let token = token.clone();
            let audit = audit.clone();
            hyper::service::service_fn(move |req: Request<Incoming>| {
                let edge = edge.clone();
                let token = token.clone();
                let audit = audit.clone();
                async move {
                    let res = audit
                        .observe(peer, req, |req| route(&edge, &token, req))
                        .await;
                    Ok::<_, Infallible>(res)
                }
            })
        },
        shutdown,
    )
    .await
}

async fn route(
    edge: &Edge,
    token: &meridian_http::secrets::AdminToken,
    req: Request<Incoming>,
) -> http::Response<meridian_http::Body> {
    let path = req.uri().path().to_owned();
    match (req.method(), path.as_str()) {
        (_, "/metrics") => return meridian_http::metrics(edge.metrics_text()),
        (_, "/health") => {
            // A PoP serves its cache even when every origin is down, so it stays healthy;
            // the body says how its origins look.
            let origins: Vec<_> = edge
                .origins()
                .groups
                .iter()
                .flat_map(|g| {
                    g.members
                        .iter()
                        .map(|m| (m.name.clone(), m.health.is_healthy()))
                })
                .collect();
            let healthy = origins.iter().filter(|(_, h)| *h).count();
            return meridian_http::json(
                StatusCode::OK,
                json!({
                    "status": "healthy",
                    "role": "edge",
                    "pop": edge.pop(),
                    "origins_healthy": healthy,
                    "origins_total": origins.len(),
                })
                .to_string(),
            );
        }
        _ => {}
    }
    if !token.accepts(req.headers()) {
        return meridian_http::admin::unauthorized();
    }
    match (req.method().clone(), path.as_str()) {
        (Method::POST, "/invalidate") => {
            let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return meridian_http::text(StatusCode::PAYLOAD_TOO_LARGE, "the invalidation is larger than 1 MiB"),
            };
            let parsed: Result<InvalidationRequest, _> = serde_json::from_slice(&body);
            let inv = match parsed {
                Ok(i) => i,
                Err(e) => {
                    return meridian_http::text(
                        StatusCode::BAD_REQUEST,
                        format!("expected {{\"paths\": [\"/static/*\", ...]}}: {e}"),
                    )
                }
            };
            if let Some(bad) = inv.paths.iter().find(|p| !p.starts_with('/')) {
                return meridian_http::text(
                    StatusCode::BAD_REQUEST,
                    format!("`{bad}` is not a path; invalidation paths start with /"),
                );
            }
            let started = std::time::Instant::now();
            let removed_on_disk = edge.invalidate(&inv.paths);
            let target = meridian_http::audit::Target(inv.paths.join(","));
            let mut res = meridian_http::json(
                StatusCode::OK,
                json!({
                    "id": inv.id.unwrap_or_default(),
                    "pop": edge.pop(),
                    "status": "Completed",
                    "paths": inv.paths,
                    "disk_objects_removed": removed_on_disk,
                    "took_ms": started.elapsed().as_secs_f64() * 1e3,
                })
                .to_string(),
            );
            res.extensions_mut().insert(target);
            res
        }
        (Method::GET, "/cache") => meridian_http::json(
            StatusCode::OK,
            serde_json::to_string(&edge.store().stats()).unwrap_or_default(),
        ),
        (Method::GET, "/origins") => {
            let groups: Vec<_> = edge
                .origins()
                .groups
                .iter()
                .map(|g| {
                    let order = g.ranked();
                    json!({
                        "group": g.cfg.name,
                        "selection": g.cfg.selection,
                        "members": order.iter().map(|&i| {
                            let m = &g.members[i];
                            json!({
                                "origin": m.name,
                                "address": m.addr.to_string(),
                                "healthy": m.health.is_healthy(),
                                "measured_rtt_ms": m.rtt_us.load(Ordering::Relaxed) as f64 / 1e3,
                                "modelled_rtt_ms": m.modelled_us as f64 / 1e3,
                            })
                        }).collect::<Vec<_>>(),
                    })
                })
                .collect();
            meridian_http::json(StatusCode::OK, json!({ "pop": edge.pop(), "origin_groups": groups }).to_string())
        }
        _ => meridian_http::text(
            StatusCode::NOT_FOUND,
            "edge admin endpoints: /health, /metrics (open); POST /invalidate, GET /cache, GET /origins (token)",
        ),
    }
}

#[derive(serde::Deserialize)]
struct InvalidationRequest {
    paths: Vec<String>,
    #[serde(default)]
    id: Option<String>,
}
