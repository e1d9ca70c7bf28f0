//! A DNS node's admin endpoints: metrics, health, targets, explanations, and measured
//! latencies (set with the admin token).

use crate::server::Dns;
use http::StatusCode;
use meridian_http::admin::{Router, ANY};
use serde_json::json;
use std::net::IpAddr;

/// The admin endpoints. Reading is open to monitoring; changing what the DNS answers
/// (`POST /latency`, or any other write) needs the admin token (an empty one matches
/// nothing).
pub(crate) fn router(
    dns: Dns,
    token: Option<meridian_http::secrets::AdminToken>,
    audit: std::sync::Arc<meridian_http::audit::AuditLog>,
) -> Router<Dns> {
    Router::new(
        dns,
        "dns admin endpoints: /metrics, /health, /targets, /explain, /latency (POST with the admin token)",
    )
    .token(token)
    .audit(audit)
    .writes_need_token()
    .metrics(|dns| dns.metrics().encode())
    .health(|dns| json!({ "status": "healthy", "role": "dns", "name": dns.name(), "config": dns.config_digest() }))
    .open(ANY, "/targets", |dns, _| async move {
        meridian_http::json(
            StatusCode::OK,
            serde_json::to_string(&dns.board().snapshot()).unwrap_or_default(),
        )
    })
    .open(ANY, "/latency", |dns, req| async move { latency(&dns, &req) })
    .open(ANY, "/explain", |dns, req| async move { explain(&dns, req.uri()) })
}

/// `GET /latency` lists the measured latencies; `POST /latency?client=&region=&rtt_ms=`
/// sets one.
fn latency<B>(dns: &Dns, req: &http::Request<B>) -> http::Response<meridian_http::Body> {
    let (method, uri) = (req.method(), req.uri());
    let q = query_pairs(uri);
    let (true, Some(client), Some(region), Some(rtt)) = (
        method == http::Method::POST,
        q.get("client"),
        q.get("region"),
        q.get("rtt_ms"),
    ) else {
        let m = dns
            .measured()
            .read()
            .map(|m| {
                m.iter()
                    .map(|((c, r), v)| json!({ "client": c, "region": r, "rtt_ms": v }))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        return meridian_http::json(StatusCode::OK, json!({ "measured": m, "set": "POST /latency?client=london&region=eu-west-1&rtt_ms=12.5" }).to_string());
    };
    match rtt
        .parse::<f64>()
        .map_err(|_| format!("`{rtt}` is not a number"))
        .and_then(|v| dns.set_measured_latency(client, region, v))
    {
        Ok(()) => meridian_http::json(
            StatusCode::OK,
            json!({ "client": client, "region": region, "rtt_ms": rtt }).to_string(),
        ),
        Err(e) => meridian_http::text(StatusCode::BAD_REQUEST, e),
    }
}

/// `GET /explain?name=&type=&client=`: why the node answers what it does.
fn explain(dns: &Dns, uri: &http::Uri) -> http::Response<meridian_http::Body> {
    let q = query_pairs(uri);
    let (Some(name), Some(client)) = (q.get("name"), q.get("client")) else {
        return meridian_http::text(
            StatusCode::BAD_REQUEST,
            "use /explain?name=api.example.com&type=A&client=127.10.203.1",
        );
    };
    let Ok(ip) = client.parse::<IpAddr>() else {
        return meridian_http::text(
            StatusCode::BAD_REQUEST,
            format!("`{client}` is not an IP address"),
        );
    };
    match dns.explain(name, q.get("type").map(String::as_str).unwrap_or("A"), ip) {
        Ok(v) => meridian_http::json(StatusCode::OK, v.to_string()),
        Err(e) => meridian_http::text(StatusCode::BAD_REQUEST, e),
    }
}

fn query_pairs(uri: &http::Uri) -> std::collections::HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), meridian_http::percent::decode(v)))
        .collect()
}
