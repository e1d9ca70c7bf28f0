//! A DNS node's admin endpoints: metrics, health, targets, explanations, and measured
//! latencies (set with the admin token).

use crate::server::Dns;
use serde_json::json;
use std::net::IpAddr;

/// The admin endpoints. Reading is open to monitoring; changing what the DNS answers
/// (`POST /latency`) needs the admin token (an empty one matches nothing).
pub(crate) fn admin_route<B>(
    dns: &Dns,
    token: &Option<meridian_http::secrets::AdminToken>,
    req: &http::Request<B>,
) -> http::Response<meridian_http::Body> {
    use http::StatusCode;
    let (method, uri) = (req.method(), req.uri());
    if method != http::Method::GET
        && method != http::Method::HEAD
        && !token.as_ref().is_some_and(|t| t.accepts(req.headers()))
    {
        return meridian_http::admin::unauthorized();
    }
    match uri.path() {
        "/metrics" => meridian_http::metrics(dns.metrics().encode()),
        "/health" => meridian_http::json(
            StatusCode::OK,
            json!({ "status": "healthy", "role": "dns", "name": dns.name() }).to_string(),
        ),
        "/targets" => meridian_http::json(
            StatusCode::OK,
            serde_json::to_string(&dns.board().snapshot()).unwrap_or_default(),
        ),
        "/latency" => {
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
        "/explain" => {
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
        _ => meridian_http::text(
            StatusCode::NOT_FOUND,
            "dns admin endpoints: /metrics, /health, /targets, /explain, /latency (POST with the admin token)",
        ),
    }
}

fn query_pairs(uri: &http::Uri) -> std::collections::HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
