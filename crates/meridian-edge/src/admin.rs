//! A PoP's own endpoints, on the admin address (never the viewer port). `/health` and
//! `/metrics` are open to monitoring; everything that reads or changes the cache needs
//! `Authorization: Bearer <token>`, the token `up` writes to the state dir, so a viewer
//! can never purge a cache.

use crate::edge::Edge;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use meridian_http::admin::Router;
use serde_json::json;
use std::sync::atomic::Ordering;
use tokio::net::TcpListener;

pub(crate) async fn serve(
    listener: TcpListener,
    edge: Edge,
    token: meridian_http::secrets::AdminToken,
    audit: std::sync::Arc<meridian_http::audit::AuditLog>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    Router::new(
        edge,
        "edge admin endpoints: /health, /metrics (open); POST /invalidate, GET /cache, GET /origins, POST /tier?enabled=, GET|PUT|DELETE /kvs, GET /protection, GET /protection/counts (token)",
    )
    .token(token)
    .audit(audit)
    .token_by_default()
    .metrics(|edge| edge.metrics_text())
    .health(health)
    .guarded(&[Method::POST], "/invalidate", |edge, req| async move {
        invalidate(&edge, req).await
    })
    .guarded(&[Method::GET], "/cache", |edge, _| async move {
        meridian_http::json(
            StatusCode::OK,
            serde_json::to_string(&edge.store().stats()).unwrap_or_default(),
        )
    })
    .guarded(&[Method::GET], "/origins", |edge, _| async move { origins(&edge) })
    .guarded(&[Method::POST], "/tier", |edge, req| async move { tier(&edge, &req) })
    .guarded(
        &[Method::GET, Method::PUT, Method::DELETE],
        "/kvs",
        |edge, req| async move { kvs(&edge, req).await },
    )
    .guarded(&[Method::GET], "/protection", |edge, _| async move {
        let report = edge.0.protect.report(std::time::SystemTime::now());
        meridian_http::json(StatusCode::OK, report.to_string())
    })
    .guarded(&[Method::GET], "/protection/counts", |edge, _| async move {
        let counts = crate::rate_share::Counts {
            pop: edge.pop().to_owned(),
            rules: edge.0.protect.snapshots(std::time::SystemTime::now()),
        };
        meridian_http::json(
            StatusCode::OK,
            serde_json::to_string(&counts).unwrap_or_default(),
        )
    })
    .serve(listener, shutdown)
    .await
}

/// Sends this PoP's misses through the regional caches or straight to the balancers
/// (`?enabled=true|false`), so `bench global` can measure both in one run of one
/// deployment. Only where the config has the tier: a PoP without it has no caches to use.
fn tier(edge: &Edge, req: &Request<Incoming>) -> http::Response<meridian_http::Body> {
    let on = match req.uri().query().unwrap_or("") {
        "enabled=true" => true,
        "enabled=false" => false,
        _ => {
            return meridian_http::text(
                StatusCode::BAD_REQUEST,
                "say ?enabled=true or ?enabled=false",
            )
        }
    };
    if !edge.0.dist.tiered_cache.enabled {
        return meridian_http::text(
            StatusCode::CONFLICT,
            "this deployment has no regional edge caches: set [distribution.tiered_cache] enabled = true",
        );
    }
    let was = edge
        .origins()
        .tier_on
        .swap(on, std::sync::atomic::Ordering::Relaxed);
    meridian_http::json(
        StatusCode::OK,
        serde_json::json!({"pop": edge.pop(), "tier": on, "was": was}).to_string(),
    )
}

/// A PoP serves its cache even when every origin is down, so it stays healthy; the body
/// says how its origins look.
fn health(edge: &Edge) -> serde_json::Value {
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
    json!({
        "status": "healthy",
        "role": "edge",
        "pop": edge.pop(),
        "config": edge.config_digest(),
        "origins_healthy": healthy,
        "origins_total": origins.len(),
    })
}

/// The PoP's key value stores: `GET /kvs` lists them, `GET /kvs?store=S` lists a store's
/// keys and values, `GET|PUT|DELETE /kvs?store=S&key=K` reads, sets (the body is the value)
/// or deletes one key. A change is seen by the next function invocation.
async fn kvs(edge: &Edge, req: Request<Incoming>) -> http::Response<meridian_http::Body> {
    use meridian_http::percent::query_param;
    let q = req.uri().query().map(str::to_owned);
    let Some(name) = query_param(q.as_deref(), "store") else {
        return meridian_http::json(
            StatusCode::OK,
            json!({ "pop": edge.pop(), "stores": edge.functions().store_names() }).to_string(),
        );
    };
    let Some(store) = edge.functions().store(&name) else {
        let known = edge.functions().store_names();
        let known = match known.is_empty() {
            true => "the distribution declares none ([[distribution.key_value_store]])".to_owned(),
            false => format!("known: {}", known.join(", ")),
        };
        return meridian_http::text(
            StatusCode::NOT_FOUND,
            format!("no key value store named `{name}`; {known}"),
        );
    };
    let key = query_param(q.as_deref(), "key");
    let target =
        meridian_http::audit::Target(format!("{name}/{}", key.clone().unwrap_or_default()));
    let mut res = match (req.method().clone(), key) {
        (Method::GET, None) => {
            let items: Vec<_> = store
                .list()
                .into_iter()
                .map(|(k, v)| json!({ "key": k, "value": v }))
                .collect();
            meridian_http::json(
                StatusCode::OK,
                json!({ "pop": edge.pop(), "store": name, "items": items, "bytes": store.size_bytes() }).to_string(),
            )
        }
        (Method::GET, Some(k)) => match store.get(&k) {
            Some(v) => meridian_http::json(
                StatusCode::OK,
                json!({ "pop": edge.pop(), "key": k, "value": v }).to_string(),
            ),
            None => meridian_http::text(StatusCode::NOT_FOUND, format!("no key `{k}` in `{name}`")),
        },
        (Method::PUT, Some(k)) => {
            let body = match Limited::new(req.into_body(), 1 << 16).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return meridian_http::text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "a value is at most 1 KB",
                    )
                }
            };
            let Ok(value) = String::from_utf8(body.to_vec()) else {
                return meridian_http::text(StatusCode::BAD_REQUEST, "a value is UTF-8 text");
            };
            match store.put(k.clone(), value) {
                Ok(()) => meridian_http::json(
                    StatusCode::OK,
                    json!({ "pop": edge.pop(), "key": k, "stored": true }).to_string(),
                ),
                Err(e) => meridian_http::text(StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
        (Method::DELETE, Some(k)) => {
            let deleted = store.delete(&k);
            meridian_http::json(
                StatusCode::OK,
                json!({ "pop": edge.pop(), "key": k, "deleted": deleted }).to_string(),
            )
        }
        _ => meridian_http::text(
            StatusCode::BAD_REQUEST,
            "PUT and DELETE name a key: /kvs?store=S&key=K",
        ),
    };
    res.extensions_mut().insert(target);
    res
}

/// `POST /invalidate` with `{"paths": [...]}`, as CloudFront's CreateInvalidation.
async fn invalidate(edge: &Edge, req: Request<Incoming>) -> http::Response<meridian_http::Body> {
    let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return meridian_http::text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the invalidation is larger than 1 MiB",
            )
        }
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

/// The origin groups, members in the order the PoP tries them.
fn origins(edge: &Edge) -> http::Response<meridian_http::Body> {
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
                        "prior_rtt_ms": m.prior_us.map(|us| us as f64 / 1e3),
                        // What the PoP ranks by (and the DNS routes by): the measured
                        // round trip, never below the prior's.
                        "ranked_rtt_ms": m.ranked_rtt_us().0 as f64 / 1e3,
                    })
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    meridian_http::json(
        StatusCode::OK,
        json!({ "pop": edge.pop(), "origin_groups": groups }).to_string(),
    )
}

#[derive(serde::Deserialize)]
struct InvalidationRequest {
    paths: Vec<String>,
    #[serde(default)]
    id: Option<String>,
}
