//! TLS end to end through `meridian up`: the PoP reaches its balancer over TLS verified
//! against the deployment CA (signed requests still pass), the balancer refuses TLS 1.1,
//! and a balancer whose certificate another CA signed is never served from. With the WAN
//! relays on, as in the default deployment: TLS passes through the relay of the TLS port.

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{get, start_up, state};

const CONFIG: &str = r#"
[deployment]
name = "tls-e2e"
zone = "tls.example"

[network]
subnet = "127.87.0.0/16"

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
name = "default"
default_ttl = "300s"
query_strings = "all"

[distribution.default_behavior]
origin_group = "regions"

[dns]
servers = 0

[simulation]
wan = true
"#;

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A TLS 1.1 ClientHello (no supported_versions extension), offering CBC suites only.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend([7u8; 32]); // random
    body.push(0); // no session id
    body.extend([0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // ECDHE-RSA-AES128-SHA, AES128-SHA
    body.extend([0x01, 0x00]); // null compression
    let mut hs = vec![0x01, 0, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend(body);
    let mut rec = vec![0x16, 0x03, 0x02, (hs.len() >> 8) as u8, hs.len() as u8];
    rec.extend(hs);
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_reaches_its_balancer_over_verified_tls_only() {
    let dir = common::tempdir();
    let cfg = dir.join("tls.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let state_dir = dir.join("state");
    let (mut up, _) = start_up(&cfg, &state_dir).await;
    let st = state(&state_dir);
    let nodes = st["nodes"].as_array().unwrap().clone();
    let edge = nodes.iter().find(|n| n["role"] == "edge").unwrap();
    let pop = edge["address"].as_str().unwrap().to_owned();
    let lb = nodes.iter().find(|n| n["role"] == "lb").unwrap();
    let lb_admin = lb["admin"].as_str().unwrap().to_owned();
    let lb_ip = lb["address"]
        .as_str()
        .unwrap()
        .parse::<std::net::SocketAddr>()
        .unwrap()
        .ip();
    let lb_tls = std::net::SocketAddr::new(lb_ip, 8080 + 363);
    let client = meridian_http::upstream_client(Duration::from_secs(2), Duration::from_secs(30));

    // Through the PoP: signed, over TLS, and the balancer counts it as TLS.
    let (s, _, body) = get(&client, &format!("http://{pop}/api/quotes/AAPL?n=1"))
        .await
        .unwrap();
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let (_, _, m) = get(&client, &format!("http://{lb_admin}/metrics"))
        .await
        .unwrap();
    let m = String::from_utf8_lossy(&m).into_owned();
    assert!(metric(&m, "meridian_lb_tls_requests_total") >= 1.0, "{m}");
    assert_eq!(metric(&m, "meridian_lb_signature_rejections_total"), 0.0);

    // A TLS 1.1 client gets no ServerHello.
    let mut tcp = tokio::net::TcpStream::connect(lb_tls).await.unwrap();
    tcp.write_all(&tls11_client_hello()).await.unwrap();
    let mut answer = [0u8; 5];
    let read = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut answer))
        .await
        .expect("the balancer answers or closes");
    match read {
        Ok(0) | Err(_) => {}
        Ok(_) => assert_eq!(answer[0], 0x15, "an alert, not a handshake: {answer:?}"),
    }

    // A TLS 1.2 client that trusts the deployment CA is served, under the balancer's name.
    let roots = {
        let mut r = rustls::RootCertStore::empty();
        let ca = meridian_http::pki::ca_cert_path(&state_dir);
        use rustls::pki_types::pem::PemObject;
        for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
            r.add(c.unwrap()).unwrap();
        }
        r
    };
    let tls12 = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        meridian_http::tls::provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls12));
    let tcp = tokio::net::TcpStream::connect(lb_tls).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("lb-us-east-1.tls.example").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut res = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), tls.read_to_end(&mut res)).await;
    assert!(
        res.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&res)
    );

    // The balancer comes back with a certificate from another CA: the PoP refuses it.
    let other = dir.join("other");
    let (cert, key) = meridian_http::pki::ensure_lb_cert(
        &other,
        "us-east-1",
        &[lb_ip.to_string(), "lb-us-east-1.tls.example".into()],
    )
    .unwrap();
    let (own_cert, own_key) = meridian_http::pki::lb_cert_paths(&state_dir, "us-east-1");
    std::fs::copy(cert, own_cert).unwrap();
    std::fs::copy(key, own_key).unwrap();
    let pid = lb["pid"].as_i64().unwrap();
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    // Wait (bounded) for the restarted balancer to answer its health check again.
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(20), "lb restarted");
        let fresh = state(&state_dir);
        let restarted = fresh["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["role"] == "lb" && n["pid"].as_i64().is_some_and(|p| p != pid));
        if restarted {
            if let Ok((200, _, _)) = get(&client, &format!("http://{lb_admin}/health")).await {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..5 {
        let (s, _, body) = get(&client, &format!("http://{pop}/api/quotes/AAPL?other={i}"))
            .await
            .unwrap();
        assert!(
            s == 502 || s == 504,
            "a balancer the CA did not sign is never served from: {s} {}",
            String::from_utf8_lossy(&body)
        );
    }
    let (_, _, m) = get(&client, &format!("http://{lb_admin}/metrics"))
        .await
        .unwrap();
    let m = String::from_utf8_lossy(&m).into_owned();
    assert_eq!(
        metric(&m, "meridian_lb_tls_requests_total"),
        0.0,
        "no request reached the impostor"
    );
    up.stop();
}
