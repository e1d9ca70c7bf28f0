//! gRPC through `meridian up` in the default deployment's layout: the default config's
//! gRPC target group, listener rule and `grpc = true` behavior (taken from the embedded
//! default, so this test follows it), a viewer speaking h2 over TLS to the PoP, the PoP
//! reaching the balancer over TLS with ALPN h2 through the WAN relay, signed, and a demo
//! instance answering a unary call with its trailers.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meridian_demo::grpc::{Quote, QuoteRequest};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{get, start_up, state};

const CONFIG: &str = r#"
[deployment]
name = "grpc-e2e"
zone = "grpc.example"

[network]
subnet = "127.91.0.0/16"

[[region]]
name = "us-east-1"
primary = true
location = { lat = 38.95, lon = -77.45 }
azs = ["us-east-1a"]

[service]
runtime = "demo"
instances_per_az = 1

[load_balancer]
deregistration_delay = "300ms"
require_edge_signature = true

[load_balancer.health_check]
interval = "1s"
timeout = "300ms"

[supervisor]
restart_backoff = "200ms"
stop_timeout = "5s"

[[edge]]
name = "london"
location = { lat = 51.51, lon = -0.13 }

[distribution]
origin_protocol = "https"
[[distribution.origin_group]]
name = "regions"
members = ["lb:us-east-1"]
response_timeout = "2s"

[[distribution.cache_policy]]
name = "disabled"
default_ttl = "0s"
max_ttl = "0s"

[distribution.default_behavior]
origin_group = "regions"

[dns]
servers = 0

[simulation]
wan = true
"#;

/// The embedded default's target groups, listener rules and gRPC behavior, as written.
fn default_grpc_tables() -> String {
    let mut out = String::new();
    let mut table = String::new();
    let flush = |table: &mut String, out: &mut String| {
        let head = table.lines().next().unwrap_or("");
        let keep = head.starts_with("[[load_balancer.target_group]]")
            || head.starts_with("[[load_balancer.rule]]")
            || (head.starts_with("[[distribution.behavior]]")
                && table.lines().any(|l| l.trim() == "grpc = true"));
        if keep {
            out.push_str(table);
        }
        table.clear();
    };
    for line in meridian_config::DEFAULT_CONFIG.lines() {
        // A table header starts at the line's first column.
        if line.starts_with('[') {
            flush(&mut table, &mut out);
        }
        table.push_str(line);
        table.push('\n');
    }
    flush(&mut table, &mut out);
    out
}

/// h2 over TLS to the PoP, verified against the development certificate `up` made.
async fn h2_to_pop(
    state_dir: &std::path::Path,
    pop: std::net::SocketAddr,
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    use rustls::pki_types::pem::PemObject;
    let (cert, _) = meridian_http::tls::dev_cert_paths(state_dir);
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(pop).await.unwrap();
    let name = rustls::pki_types::ServerName::from(pop.ip());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// A unary `GetQuote`: the response status, `grpc-status` (trailers, or a trailers-only
/// head) and the messages.
async fn get_quote(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    symbol: &str,
) -> (u16, Option<String>, Vec<Quote>) {
    let msg = QuoteRequest {
        symbol: symbol.into(),
        count: 0,
    }
    .encode();
    let req = http::Request::post("https://grpc.example/richesreach.v1.Quotes/GetQuote")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(meridian_http::grpc::frame(&msg)))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
        .await
        .expect("a response head within 5 s")
        .unwrap();
    let (head, body) = res.into_parts();
    let collected = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .expect("the body ends within 5 s")
        .unwrap();
    let trailers = collected.trailers().cloned();
    let data = collected.to_bytes();
    let status = trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| head.headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let quotes = meridian_http::grpc::messages(&data)
        .unwrap_or_default()
        .iter()
        .filter_map(|m| Quote::decode(m))
        .collect();
    (head.status.as_u16(), status, quotes)
}

fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_call_through_a_pop_of_the_default_layout_reaches_an_instance() {
    let dir = common::tempdir();
    let cfg = dir.join("grpc.toml");
    std::fs::write(&cfg, format!("{CONFIG}\n{}", default_grpc_tables())).unwrap();
    let state_dir = dir.join("state");
    let (mut up, _) = start_up(&cfg, &state_dir).await;
    let nodes = state(&state_dir)["nodes"].as_array().unwrap().clone();
    let edge = nodes.iter().find(|n| n["role"] == "edge").unwrap();
    let pop: std::net::SocketAddr = edge["address"].as_str().unwrap().parse().unwrap();
    let pop_tls = std::net::SocketAddr::new(pop.ip(), 8443);
    let lb = nodes.iter().find(|n| n["role"] == "lb").unwrap();
    let lb_admin = lb["admin"].as_str().unwrap().to_owned();
    let mut h2 = h2_to_pop(&state_dir, pop_tls).await;

    // `up` waits for the default group; the gRPC group's first checks may still be due.
    let until = Instant::now() + Duration::from_secs(20);
    let (status, grpc_status, quotes) = loop {
        let answer = get_quote(&mut h2, "AAPL").await;
        if answer.1.as_deref() == Some("0") || Instant::now() > until {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 200);
    assert_eq!(grpc_status.as_deref(), Some("0"), "the call succeeded");
    assert_eq!(quotes.len(), 1, "{quotes:?}");
    assert_eq!(quotes[0].symbol, "AAPL");
    assert_eq!(quotes[0].region, "us-east-1");
    assert!(
        quotes[0].instance.starts_with("svc-us-east-1a"),
        "{quotes:?}"
    );

    // The balancer took it over TLS, by the default's rule, into its gRPC group.
    let client = meridian_http::upstream_client(Duration::from_secs(2), Duration::from_secs(30));
    let (_, _, m) = get(&client, &format!("http://{lb_admin}/metrics"))
        .await
        .unwrap();
    let m = String::from_utf8_lossy(&m).into_owned();
    assert!(
        metric(&m, "meridian_lb_tls_requests_total", &[]) >= 1.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "meridian_lb_requests_total",
            &["target_group=\"quotes-grpc\"", "status=\"200\""]
        ) >= 1.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "meridian_lb_rule_matches_total",
            &["rule=\"grpc-quotes\""]
        ) >= 1.0
    );
    assert_eq!(
        metric(&m, "meridian_lb_signature_rejections_total", &[]),
        0.0
    );

    let status = tokio::task::spawn_blocking(move || up.stop())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}
