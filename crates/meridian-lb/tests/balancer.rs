//! The load balancer against real targets on loopback.

mod common;

use common::targets::*;
use common::{start, wait_healthy};

use meridian_config::{Algorithm, NodeSpec};
use meridian_lb::LoadBalancer;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn round_robin_spreads_evenly() {
    let targets = vec![
        demo("a", Duration::ZERO).await,
        demo("b", Duration::ZERO).await,
        demo("c", Duration::ZERO).await,
    ];
    let (lb, admin) = start(options(targets, Algorithm::RoundRobin)).await;
    wait_healthy(admin, 3).await;
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..30 {
        let (s, head, _) = raw(
            lb,
            "GET /api/quotes/AAPL HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        assert_eq!(s, 200);
        *counts
            .entry(header(&head, "x-meridian-instance").unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&c| c == 10), "{counts:?}");
}

#[tokio::test]
async fn least_outstanding_avoids_the_busy_target() {
    // "slow" holds each request 400 ms; with concurrent load the fast one takes most.
    let targets = vec![
        demo("slow", Duration::from_millis(400)).await,
        demo("fast", Duration::ZERO).await,
    ];
    let (lb, admin) = start(options(targets, Algorithm::LeastOutstandingRequests)).await;
    wait_healthy(admin, 2).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i * 10)).await;
            let (_, head, _) = raw(
                lb,
                "GET /api/quotes/MSFT HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            )
            .await
            .unwrap();
            header(&head, "x-meridian-instance").unwrap().to_owned()
        }));
    }
    let mut slow = 0;
    for t in tasks {
        if t.await.unwrap() == "slow" {
            slow += 1;
        }
    }
    assert!(slow <= 2, "the busy target got {slow} of 20 requests");
}

#[tokio::test]
async fn target_loss_is_retried_on_a_healthy_target() {
    // One live target, one that resets mid-request, one that goes away.
    let (gone, stop) = stoppable_demo("gone", Duration::ZERO).await;
    let gone_at = gone.address;
    let targets = vec![
        demo("live", Duration::ZERO).await,
        resetting("crashing").await,
        gone,
    ];
    let mut opts = options(targets, Algorithm::RoundRobin);
    opts.config.health_check.interval = Duration::from_secs(60); // one probe now, then passive only
    let (lb, admin) = start(opts).await;
    wait_healthy(admin, 3).await;
    stop.send(()).unwrap();
    // Wait until it is really gone (refusing connections), however slow the machine.
    let until = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(gone_at).await.is_ok() {
        assert!(Instant::now() < until, "the stopped target still accepts");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..30 {
        let (s, head, _) = raw(
            lb,
            "GET /api/quotes/AAPL HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        assert_eq!(s, 200, "{head}");
        assert_eq!(header(&head, "x-meridian-instance"), Some("live"));
    }
    // The refusing target was marked unhealthy by live traffic.
    let (_, body) = reqwest_like().get(admin, "/targets").await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let gone = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "gone")
        .unwrap();
    assert_eq!(gone["health"], "unhealthy", "{v}");
    let (_, metrics) = reqwest_like().get(admin, "/metrics").await.unwrap();
    assert!(
        metrics.contains("meridian_lb_retries_total{reason=\"io\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("meridian_lb_retries_total{reason=\"connect\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_body_cut_short_is_retried_for_idempotent_requests() {
    let targets = vec![cut_short("cut").await, demo("live", Duration::ZERO).await];
    let mut opts = options(targets, Algorithm::RoundRobin);
    opts.config.health_check.interval = Duration::from_secs(60);
    let (lb, admin) = start(opts).await;
    wait_healthy(admin, 2).await;
    for _ in 0..6 {
        let (s, head, body) = raw(
            lb,
            "GET /api/quotes/AAPL HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        assert_eq!(s, 200, "{head}");
        assert_eq!(header(&head, "x-meridian-instance"), Some("live"));
        assert!(body.contains("AAPL"), "{body}");
    }
}

#[tokio::test]
async fn post_is_not_replayed_after_a_mid_request_failure() {
    let targets = vec![
        resetting("crashing").await,
        demo("live", Duration::ZERO).await,
    ];
    let mut opts = options(targets, Algorithm::RoundRobin);
    opts.config.health_check.interval = Duration::from_secs(60);
    let (lb, admin) = start(opts).await;
    wait_healthy(admin, 2).await;
    let mut refused = 0;
    for _ in 0..4 {
        let (s, _, body) = raw(
            lb,
            "POST /graphql HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        )
        .await
        .unwrap();
        if s == 502 {
            assert!(body.contains("not safe to retry"), "{body}");
            refused += 1;
        }
    }
    assert_eq!(
        refused, 2,
        "round robin sends every other POST to the crashing target"
    );
}

#[tokio::test]
async fn post_goes_elsewhere_when_connect_fails() {
    let targets = vec![dead("gone").await, demo("live", Duration::ZERO).await];
    let mut opts = options(targets, Algorithm::RoundRobin);
    opts.config.health_check.interval = Duration::from_secs(60);
    let (lb, _) = start(opts).await;
    let body = r#"{"query":"{ __typename }"}"#;
    for _ in 0..4 {
        let req = format!("POST /graphql HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        let (s, _, b) = raw(lb, &req).await.unwrap();
        assert_eq!(s, 200, "{b}");
        assert!(b.contains("Query"));
    }
}

#[tokio::test]
async fn no_target_answers_gives_502_or_503_with_a_reason() {
    let (lb, _) = start(options(
        vec![dead("gone-1").await, dead("gone-2").await],
        Algorithm::RoundRobin,
    ))
    .await;
    let (s, _, body) = raw(lb, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(s, 502);
    assert!(body.contains("gone-1") && body.contains("gone-2"), "{body}");
    let (lb, _) = start(options(vec![], Algorithm::RoundRobin)).await;
    let (s, _, body) = raw(lb, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(s, 503);
    assert!(body.contains("no registered targets"), "{body}");
}

#[tokio::test]
async fn slow_target_gives_504() {
    let mut opts = options(
        vec![demo("slow", Duration::from_millis(1500)).await],
        Algorithm::RoundRobin,
    );
    opts.config.target_timeout = Duration::from_millis(300);
    let (lb, _) = start(opts).await;
    let (s, _, body) = raw(
        lb,
        "GET /api/quotes/AAPL HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(s, 504);
    assert!(body.contains("300ms"), "{body}");
}

#[tokio::test]
async fn malformed_and_oversized_requests_are_refused_and_serving_goes_on() {
    let mut opts = options(vec![demo("a", Duration::ZERO).await], Algorithm::RoundRobin);
    opts.config.max_request_body = meridian_config::ByteSize(1024);
    let (lb, admin) = start(opts).await;
    wait_healthy(admin, 1).await;
    let (s, _, _) = raw(lb, "GARBAGE\r\n\r\n").await.unwrap();
    assert_eq!(s, 400);
    let big = "x".repeat(100_000);
    let (s, _, _) = raw(
        lb,
        &format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n\r\n"),
    )
    .await
    .unwrap();
    assert_eq!(s, 431);
    let body = "y".repeat(2000);
    let (s, _, _) = raw(lb, &format!("POST /graphql HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n{body}")).await.unwrap();
    assert_eq!(s, 413);
    let (s, _, _) = raw(
        lb,
        "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(s, 200);
}

#[tokio::test]
async fn direct_handle_api_is_usable() {
    // LoadBalancer can be built without a listener (for embedding).
    let lb = LoadBalancer::new(&options(vec![], Algorithm::RoundRobin));
    assert_eq!(lb.group().targets.len(), 0);
    assert_eq!(lb.name(), "lb-test");
}

/// Resets every request with a TCP reset (SO_LINGER 0): a process killed mid-request.
async fn hard_resetting(name: &str) -> NodeSpec {
    scripted(name, Then::Reset).await
}

#[tokio::test]
async fn a_reset_marks_the_target_unhealthy_at_once() {
    let targets = vec![
        hard_resetting("reset").await,
        demo("live", Duration::ZERO).await,
    ];
    let mut opts = options(targets, Algorithm::RoundRobin);
    opts.config.health_check.interval = Duration::from_secs(60); // one probe now, then passive only
    let (lb, admin) = start(opts).await;
    wait_healthy(admin, 2).await;
    for _ in 0..4 {
        let (s, head, _) = raw(
            lb,
            "GET /api/quotes/AAPL HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        assert_eq!(s, 200, "{head}");
    }
    let (_, body) = reqwest_like().get(admin, "/targets").await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let reset = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "reset")
        .unwrap();
    assert_eq!(reset["health"], "unhealthy", "{v}");
}

#[tokio::test]
async fn a_stalled_request_body_gets_408_and_a_stalled_target_body_is_cut() {
    let stalling = scripted(
        "stall",
        Then::Stall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nthe start"),
    )
    .await;
    let mut opts = options(vec![stalling], Algorithm::RoundRobin);
    opts.config.idle_timeout = Duration::from_millis(300);
    let (lb, admin) = start(opts).await;
    wait_healthy(admin, 1).await;
    // A client that promises 100 bytes and sends 3.
    let (s, _, _) = raw(
        lb,
        "POST /api/orders HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\nConnection: close\r\n\r\nabc",
    )
    .await
    .unwrap();
    assert_eq!(s, 408);
    // A target that sends a head and a little body, then nothing: the client's response
    // ends (cut short) instead of hanging.
    let mut c = TcpStream::connect(lb).await.unwrap();
    c.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out)).await;
    assert!(ended.is_ok(), "the relayed body never ended");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(out.len() < 1000, "the body was cut short, not completed");
}

/// A target that answers every request with the head it received, lowercased.
async fn echoing_head(name: &str) -> NodeSpec {
    answering(name, |head| echo_of(&head.to_ascii_lowercase())).await
}

/// Origin access control: with `require_edge_signature`, only requests the edge signed
/// (and recently) reach a target, health checks excepted; the signature never reaches it.
#[tokio::test]
async fn a_balancer_that_requires_edge_signatures_refuses_the_rest() {
    use meridian_http::signing::{Signer, HEADER};
    let mut opts = options(vec![echoing_head("t1").await], Algorithm::RoundRobin);
    opts.config.require_edge_signature = true;
    let signer = std::sync::Arc::new(Signer::from_secrets("deployment-key", None));
    opts.signer = Some(signer.clone());
    let (lb, admin) = start(opts).await;
    wait_healthy(admin, 1).await;
    let host = "t";
    let request = |path: &str, sig: Option<String>| {
        let sig = sig
            .map(|s| format!("{HEADER}: {s}\r\n"))
            .unwrap_or_default();
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{sig}Connection: close\r\n\r\n")
    };
    let sign = |path: &str, at: std::time::SystemTime| {
        signer
            .sign_at(&http::Method::GET, host, path, at)
            .to_str()
            .unwrap()
            .to_owned()
    };
    let now = std::time::SystemTime::now();

    let (status, _, body) = raw(lb, &request("/api/x?a=1", None)).await.unwrap();
    assert_eq!(status, 403, "unsigned: {body}");
    assert!(body.contains("not signed"), "{body}");

    let (status, _, body) = raw(lb, &request("/api/x?a=1", Some(sign("/api/x?a=1", now))))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("get /api/x?a=1 "), "{body}");
    assert!(
        !body.contains(HEADER),
        "the signature reached the target: {body}"
    );

    // A signature for another path, or from long ago, is refused.
    let (status, _, _) = raw(lb, &request("/api/y", Some(sign("/api/x?a=1", now))))
        .await
        .unwrap();
    assert_eq!(status, 403);
    let old = now - Duration::from_secs(600);
    let (status, _, body) = raw(lb, &request("/api/x", Some(sign("/api/x", old))))
        .await
        .unwrap();
    assert_eq!(status, 403);
    assert!(body.contains("away from this balancer's clock"), "{body}");

    // Health checks (Route 53's, the PoPs') sign nothing and still get through.
    let (status, _, _) = raw(lb, &request("/health", None)).await.unwrap();
    assert_eq!(status, 200);
    let (status, _, _) = raw(lb, &request("/health/../api/x", None)).await.unwrap();
    assert_eq!(status, 403, "only the exact unsigned path");
    // Nor does an unsigned path carry a claim past the edge.
    let claimed =
        "GET /health HTTP/1.1\r\nHost: t\r\nX-RichesReach-User: mei\r\nConnection: close\r\n\r\n";
    let (status, _, body) = raw(lb, claimed).await.unwrap();
    assert_eq!(status, 200);
    assert!(!body.contains("x-richesreach-user"), "{body}");
}

/// Without `require_edge_signature` a request no edge signed still reaches a target, but
/// without the fields the edge forwards verified claims in (`claim_headers`, from the
/// distribution's JWT authorizers): a client that goes around the CDN cannot claim a user.
#[tokio::test]
async fn claim_fields_pass_only_with_an_edge_signature() {
    use meridian_http::signing::{Signer, HEADER};
    let target = echoing_head("t1").await;
    let signer = std::sync::Arc::new(Signer::from_secrets("deployment-key", None));
    let mut opts = options(vec![target.clone()], Algorithm::RoundRobin);
    opts.config.claim_headers = vec!["x-richesreach-user".into()];
    opts.signer = Some(signer.clone());
    let (lb, admin) = start(opts.clone()).await;
    wait_healthy(admin, 1).await;
    let request = |path: &str, signed_for: Option<&str>| {
        let sig = signed_for
            .map(|p| {
                let s = signer.sign_at(&http::Method::GET, "t", p, std::time::SystemTime::now());
                format!("{HEADER}: {}\r\n", s.to_str().unwrap())
            })
            .unwrap_or_default();
        format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\n{sig}X-RichesReach-User: mei\r\n\
             X-RichesReach-User: ann\r\nX-Other: kept\r\nConnection: close\r\n\r\n"
        )
    };
    let seen = |body: &str| body.matches("x-richesreach-user:").count();

    let (status, _, body) = raw(lb, &request("/api/portfolio/mei", None)).await.unwrap();
    assert_eq!(status, 200, "unsigned requests still pass: {body}");
    assert_eq!(
        seen(&body),
        0,
        "an unsigned claim reached the target: {body}"
    );
    assert!(body.contains("x-other: kept"), "{body}");

    let path = "/api/portfolio/mei";
    let (status, _, body) = raw(lb, &request(path, Some(path))).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        seen(&body),
        2,
        "an edge's signed claims were removed: {body}"
    );

    // A signature for another request line is no signature for this one.
    let (_, _, body) = raw(lb, &request(path, Some("/api/quotes/AAPL")))
        .await
        .unwrap();
    assert_eq!(seen(&body), 0, "{body}");

    // A balancer with no signing key cannot tell: it passes no claim on.
    opts.signer = None;
    let (bare, admin) = start(opts).await;
    wait_healthy(admin, 1).await;
    let (_, _, body) = raw(bare, &request(path, Some(path))).await.unwrap();
    assert_eq!(seen(&body), 0, "{body}");
}
