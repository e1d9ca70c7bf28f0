//! A running balancer takes a new `[load_balancer]` in place: on one kept-alive client
//! connection, a listener rule's weights, a fixed response and a target group's settings
//! change by reload, the next request shows the new behaviour, targets keep their health
//! (no request fails right after), and a change that needs a restart is refused whole.
//! Loopback 127.80.0.0/16, this file's own subnet.

mod common;

use axum::http::StatusCode;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use meridian_config::{Config, NodeSpec, Role};
use meridian_lb::{LbOptions, LoadBalancer, LB_COOKIE};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// An origin that answers every request with its name in `x-origin`.
async fn origin(n: u8, name: &'static str, az: &str) -> NodeSpec {
    let listener = TcpListener::bind(format!("127.80.0.{n}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/health", axum::routing::get(|| async { StatusCode::OK }))
        .fallback(move || async move { (StatusCode::OK, [("x-origin", name)], name) });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    NodeSpec {
        name: name.into(),
        role: Role::Service,
        region: Some("test-1".into()),
        az: Some(az.into()),
        address: addr,
        admin: addr,
    }
}

/// Two groups (blue in test-1a, green in test-1b), a rule that forwards `/q` by weight
/// and one that answers `/maint` itself.
fn groups(blue: u32, green: u32, maint: &str, green_extra: &str) -> String {
    format!(
        r#"
[[load_balancer.target_group]]
name = "blue"
azs = ["test-1a"]
[[load_balancer.target_group]]
name = "green"
azs = ["test-1b"]
{green_extra}
[[load_balancer.rule]]
name = "maint"
path = "/maint"
fixed_response = {{ status = 503, body = "{maint}" }}
[[load_balancer.rule]]
name = "split"
path = "/q"
forward = [{{ target_group = "blue", weight = {blue} }}, {{ target_group = "green", weight = {green} }}]
"#
    )
}

/// The default deployment's `[load_balancer]` plus `extra`, with fast health checks.
fn lb_config(extra: &str) -> meridian_config::LoadBalancer {
    let cfg = Config::parse(
        &format!("{}\n{extra}", common::default_config_without_groups()),
        "reload.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut config = cfg.load_balancer;
    for g in &mut config.target_groups {
        g.health_check.interval = Duration::from_millis(100);
        g.health_check.timeout = Duration::from_millis(80);
    }
    config
}

type Conn = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One client connection to `addr`, kept alive for the whole test.
async fn connect(addr: SocketAddr) -> Conn {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// (status, x-origin, set-cookie, body) of a GET of `path` on `conn`.
async fn get(conn: &mut Conn, path: &str) -> (u16, String, String, String) {
    conn.ready().await.expect("the connection stays open");
    let req = http::Request::get(path)
        .header("host", "lb.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(5), conn.send_request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let header = |n: &str| {
        res.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (origin, cookie) = (header("x-origin"), header("set-cookie"));
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        origin,
        cookie,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn a_reload_changes_rules_and_groups_on_an_open_connection() {
    let targets = vec![
        origin(1, "blue-1", "test-1a").await,
        origin(2, "blue-2", "test-1a").await,
        origin(3, "green-1", "test-1b").await,
    ];
    let opts = LbOptions {
        tls: None,
        name: "lb-reload".into(),
        region: "test-1".into(),
        listen: "127.80.0.250:0".parse().unwrap(),
        admin: "127.80.0.251:0".parse().unwrap(),
        targets,
        config: lb_config(&groups(100, 0, "old", "")),
        signer: None,
        access_log: None,
    };
    let lb = LoadBalancer::new(&opts);
    let _checks = lb.start_health_checks(&opts);
    let listener = meridian_http::bind(opts.listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = lb.clone();
    tokio::spawn(meridian_http::serve(
        listener,
        meridian_http::ServerOptions::default(),
        move |peer| serving.service(peer),
        std::future::pending(),
    ));
    let began = Instant::now();
    while lb.groups().iter().map(|g| g.healthy_count()).sum::<usize>() < 3 {
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "targets never healthy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut conn = connect(addr).await;

    // Before: every `/q` to blue (round robin over both), `/maint` answered "old".
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let (status, origin, cookie, _) = get(&mut conn, "/q").await;
        assert_eq!(status, 200);
        assert!(origin.starts_with("blue-"), "{origin}");
        assert!(cookie.is_empty(), "no stickiness yet: {cookie}");
        seen.insert(origin);
    }
    assert_eq!(seen.len(), 2, "round robin over blue: {seen:?}");
    let (status, _, _, body) = get(&mut conn, "/maint").await;
    assert_eq!((status, body.as_str()), (503, "old"));

    // The reload: the weights flip to green, the fixed response changes, and green gets
    // stickiness, another algorithm and another health check.
    let green_extra = "algorithm = \"least_outstanding_requests\"\nstickiness = { type = \"lb_cookie\", duration = \"1h\" }";
    let mut next = lb_config(&groups(0, 100, "new", green_extra));
    next.max_retries = 0;
    next.target_groups[1].health_check.interval = Duration::from_millis(150);
    lb.reload(&next, "d1").expect("taken in place");
    assert_eq!(lb.config_digest(), "d1");
    assert_eq!(lb.config().max_retries, 0);
    let green = &lb.groups()[1];
    assert_eq!(
        green.config().algorithm,
        meridian_config::Algorithm::LeastOutstandingRequests
    );
    // Health is kept: no target is back to unknown, so the next requests are served.
    assert_eq!(green.healthy_count(), 1, "green stays healthy");
    assert_eq!(lb.groups()[0].healthy_count(), 2, "blue stays healthy");
    for _ in 0..5 {
        let (status, origin, cookie, _) = get(&mut conn, "/q").await;
        assert_eq!((status, origin.as_str()), (200, "green-1"));
        assert!(
            cookie.starts_with(&format!("{LB_COOKIE}=")),
            "stickiness now: {cookie}"
        );
    }
    let (status, _, _, body) = get(&mut conn, "/maint").await;
    assert_eq!((status, body.as_str()), (503, "new"));

    // The new health check runs, from the state the targets were in.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(green.healthy_count(), 1);

    // A change that needs a restart (a third group) is refused whole: nothing changes.
    let refused = lb_config(&format!(
        "{}\n[[load_balancer.target_group]]\nname = \"extra\"\nazs = [\"test-1a\"]",
        groups(100, 0, "refused", "")
    ));
    let e = lb.reload(&refused, "d2").unwrap_err();
    assert!(e.to_string().contains("target groups"), "{e}");
    // Anomaly mitigation, built with the group, is a restart too.
    let mut toggled = next.clone();
    toggled.target_groups[0].anomaly_mitigation = true;
    let e = lb.reload(&toggled, "d3").unwrap_err();
    assert!(e.to_string().contains("anomaly_mitigation"), "{e}");
    assert_eq!(lb.config_digest(), "d1");
    let (status, origin, _, _) = get(&mut conn, "/q").await;
    assert_eq!((status, origin.as_str()), (200, "green-1"));
    let (status, _, _, body) = get(&mut conn, "/maint").await;
    assert_eq!((status, body.as_str()), (503, "new"));
}
