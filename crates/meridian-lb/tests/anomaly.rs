//! Anomaly mitigation (ALB's automatic target weights) against origins on loopback
//! (127.70.x.y, one /24 per test): one target answers 500 to a share of requests, or
//! answers slowly, while passing its health checks.

mod common;

use common::start;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use meridian_config::{Config, NodeSpec, Role};
use meridian_lb::LbOptions;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// An origin that names itself (`x-origin`), answers 500 to `fail_percent` of requests
/// (spread evenly: request k fails when 37k mod 100 is below it), and passes its health check while
/// `healthy`.
struct Origin {
    node: NodeSpec,
    fail_percent: Arc<AtomicU32>,
    /// Milliseconds every answer (but the health check's) waits.
    delay_ms: Arc<AtomicU32>,
    healthy: Arc<AtomicBool>,
}

#[derive(Clone)]
struct OriginState {
    name: String,
    fail_percent: Arc<AtomicU32>,
    delay_ms: Arc<AtomicU32>,
    healthy: Arc<AtomicBool>,
    count: Arc<AtomicU32>,
}

async fn origin(net: u8, n: u8, name: &str) -> Origin {
    let listener = TcpListener::bind(format!("127.70.{net}.{n}:0"))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let state = OriginState {
        name: name.to_owned(),
        fail_percent: Arc::new(AtomicU32::new(0)),
        delay_ms: Arc::new(AtomicU32::new(0)),
        healthy: Arc::new(AtomicBool::new(true)),
        count: Arc::new(AtomicU32::new(0)),
    };
    let (fail_percent, healthy) = (state.fail_percent.clone(), state.healthy.clone());
    let delay_ms = state.delay_ms.clone();
    let app = axum::Router::new()
        .route(
            "/health",
            axum::routing::get(|State(s): State<OriginState>| async move {
                match s.healthy.load(Ordering::Relaxed) {
                    true => StatusCode::OK,
                    false => StatusCode::SERVICE_UNAVAILABLE,
                }
            }),
        )
        .fallback(|State(s): State<OriginState>| async move {
            let delay = s.delay_ms.load(Ordering::Relaxed);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(u64::from(delay))).await;
            }
            let k = s.count.fetch_add(1, Ordering::Relaxed).wrapping_mul(37) % 100;
            let status = match k < s.fail_percent.load(Ordering::Relaxed) {
                true => StatusCode::INTERNAL_SERVER_ERROR,
                false => StatusCode::OK,
            };
            (status, [("x-origin", s.name.clone())], s.name.clone()).into_response()
        })
        .with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Origin {
        node: NodeSpec {
            name: name.into(),
            role: Role::Service,
            region: Some("test-1".into()),
            az: Some("test-1a".into()),
            address: addr,
            admin: addr,
        },
        fail_percent,
        delay_ms,
        healthy,
    }
}

/// One `weighted_random` group `app` over `targets`, anomaly mitigation on or off, with
/// fast health checks.
fn options(net: u8, targets: &[&Origin], mitigation: bool) -> LbOptions {
    let extra = format!(
        "[[load_balancer.target_group]]\nname = \"app\"\nalgorithm = \"weighted_random\"\nanomaly_mitigation = {mitigation}\n"
    );
    let cfg = Config::parse(
        &format!("{}\n{extra}", common::default_config_without_groups()),
        "anomaly.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut config = cfg.load_balancer;
    for g in &mut config.target_groups {
        g.health_check.interval = Duration::from_millis(100);
        g.health_check.timeout = Duration::from_millis(80);
        g.deregistration_delay = Duration::from_millis(100);
    }
    LbOptions {
        tls: None,
        name: "lb-anomaly".into(),
        region: "test-1".into(),
        listen: format!("127.70.{net}.250:0").parse().unwrap(),
        admin: format!("127.70.{net}.251:0").parse().unwrap(),
        targets: targets.iter().map(|o| o.node.clone()).collect(),
        config,
        signer: None,
        access_log: None,
    }
}

type Client = meridian_http::UpstreamClient;

fn client() -> Client {
    meridian_http::upstream_client(Duration::from_secs(2), Duration::from_secs(30))
}

/// GET `path`; the answering origin's name (`-` for none) and the body.
async fn get(c: &Client, addr: SocketAddr, path: &str) -> (String, String) {
    use http_body_util::BodyExt;
    let req = http::Request::get(format!("http://{addr}{path}"))
        .body(meridian_http::full(""))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), c.request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let origin = res
        .headers()
        .get("x-origin")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (origin, String::from_utf8_lossy(&body).into_owned())
}

/// The share of `n` requests that `target` answered.
async fn share(c: &Client, lb: SocketAddr, target: &str, n: u32) -> f64 {
    let mut hits = 0;
    for _ in 0..n {
        hits += u32::from(get(c, lb, "/").await.0 == target);
    }
    f64::from(hits) / f64::from(n)
}

async fn admin_json(admin: SocketAddr, path: &str) -> serde_json::Value {
    serde_json::from_str(&get(&client(), admin, path).await.1).unwrap_or_default()
}

/// Waits (bounded) until group `app` has `n` healthy targets.
async fn wait_healthy(admin: SocketAddr, n: u64) {
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        let v = admin_json(admin, "/health").await;
        if v["target_groups"]["app"]["healthy_targets"].as_u64() == Some(n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("group app did not reach {n} healthy targets");
}

/// `target`'s entry in `/targets`.
async fn target_view(admin: SocketAddr, target: &str) -> serde_json::Value {
    let v = admin_json(admin, "/targets").await;
    v["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["target"] == target)
        .cloned()
        .unwrap_or_default()
}

/// A sample from the metrics text: the first line of `name` with all `labels`.
async fn sample(admin: SocketAddr, name: &str, labels: &[&str]) -> Option<f64> {
    let text = get(&client(), admin, "/metrics").await.1;
    text.lines()
        .filter(|l| l.starts_with(name))
        .find(|l| labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

const BAD: [&str; 2] = ["target=\"bad\"", "target_group=\"app\""];

#[tokio::test]
async fn a_target_failing_live_requests_loses_its_share_and_wins_it_back() {
    let bad = origin(1, 1, "bad").await;
    let good1 = origin(1, 2, "good-1").await;
    let good2 = origin(1, 3, "good-2").await;
    let (lb, admin) = start(options(1, &[&bad, &good1, &good2], true)).await;
    wait_healthy(admin, 3).await;
    let cl = client();
    let before = share(&cl, lb, "bad", 300).await;
    bad.fail_percent.store(50, Ordering::Relaxed);
    // Detection and the halving steps take a few windows of 50 answers.
    let _ = share(&cl, lb, "bad", 600).await;
    let during = share(&cl, lb, "bad", 600).await;
    let view = target_view(admin, "bad").await;
    let flagged = sample(admin, "meridian_lb_target_anomalous", &BAD).await;
    let weight = sample(admin, "meridian_lb_target_weight", &BAD).await;
    let good_flag = sample(
        admin,
        "meridian_lb_target_anomalous",
        &["target=\"good-1\""],
    )
    .await;
    // The health check never failed it: mitigation, not health, moved its traffic.
    assert_eq!(view["health"], "healthy", "{view}");
    assert!((0.2..0.47).contains(&before), "share before {before}");
    assert!(
        during < 0.12,
        "share while failing {during} (a third unmitigated)"
    );
    assert_eq!(flagged, Some(1.0));
    assert_eq!(good_flag, Some(0.0));
    assert!(weight.is_some_and(|w| w < 0.3), "weight {weight:?}");
    assert_eq!(view["anomaly_detection"]["result"], "anomalous", "{view}");
    assert_eq!(view["anomaly_detection"]["mitigation_in_effect"], "yes");

    // It stops failing: its weight comes back (bounded: 60 rounds of 100 requests).
    bad.fail_percent.store(0, Ordering::Relaxed);
    let mut rounds = 0;
    while sample(admin, "meridian_lb_target_weight", &BAD).await != Some(1.0) {
        rounds += 1;
        assert!(rounds <= 60, "the weight did not come back to 1");
        let _ = share(&cl, lb, "bad", 100).await;
    }
    let after = share(&cl, lb, "bad", 600).await;
    let view = target_view(admin, "bad").await;
    assert!((0.2..0.47).contains(&after), "share after recovery {after}");
    assert_eq!(view["anomaly_detection"]["result"], "normal", "{view}");
    assert_eq!(
        sample(admin, "meridian_lb_target_anomalous", &BAD).await,
        Some(0.0)
    );
    eprintln!(
        "anomaly: share before {before:.3}, while failing {during:.3}, after {after:.3} ({rounds} rounds to recover)"
    );
}

#[tokio::test]
async fn a_slow_target_loses_its_share_before_any_check_fails() {
    let slow = origin(4, 1, "bad").await;
    let good1 = origin(4, 2, "good-1").await;
    let good2 = origin(4, 3, "good-2").await;
    let (lb, admin) = start(options(4, &[&slow, &good1, &good2], true)).await;
    wait_healthy(admin, 3).await;
    let cl = client();
    slow.delay_ms.store(40, Ordering::Relaxed);
    // Detection and the halving steps take a few windows of 50 answers.
    let _ = share(&cl, lb, "bad", 300).await;
    let during = share(&cl, lb, "bad", 300).await;
    let view = target_view(admin, "bad").await;
    eprintln!("a target 40 ms slower: share {during:.3}, {view}");
    assert_eq!(view["health"], "healthy", "{view}");
    assert!(
        during < 0.12,
        "share while slow {during} (a third unmitigated)"
    );
    assert_eq!(view["anomaly_detection"]["result"], "anomalous", "{view}");
    assert_eq!(
        view["anomaly_detection"]["causes"],
        serde_json::json!(["latency"]),
        "{view}"
    );
    assert!(
        view["anomaly_detection"]["latency_ms"].as_f64() > Some(30.0),
        "{view}"
    );
}

#[tokio::test]
async fn without_mitigation_the_share_stays() {
    let bad = origin(2, 1, "bad").await;
    let good1 = origin(2, 2, "good-1").await;
    let good2 = origin(2, 3, "good-2").await;
    let (lb, admin) = start(options(2, &[&bad, &good1, &good2], false)).await;
    wait_healthy(admin, 3).await;
    bad.fail_percent.store(50, Ordering::Relaxed);
    let cl = client();
    let _ = share(&cl, lb, "bad", 600).await;
    let during = share(&cl, lb, "bad", 600).await;
    assert!((0.2..0.47).contains(&during), "share {during}");
    assert_eq!(
        sample(admin, "meridian_lb_target_anomalous", &BAD).await,
        Some(0.0)
    );
    assert!(target_view(admin, "bad").await["anomaly_detection"].is_null());
}

#[tokio::test]
async fn two_healthy_targets_are_too_few_to_mitigate() {
    let bad = origin(3, 1, "bad").await;
    let good = origin(3, 2, "good-1").await;
    let down = origin(3, 3, "down").await;
    down.healthy.store(false, Ordering::Relaxed);
    let (lb, admin) = start(options(3, &[&bad, &good, &down], true)).await;
    wait_healthy(admin, 2).await;
    bad.fail_percent.store(50, Ordering::Relaxed);
    let cl = client();
    let _ = share(&cl, lb, "bad", 600).await;
    let during = share(&cl, lb, "bad", 600).await;
    let view = target_view(admin, "bad").await;
    // Two serving targets: the other would carry everything, so neither is mitigated.
    assert!((0.35..0.65).contains(&during), "share {during}");
    assert_eq!(view["anomaly_detection"]["result"], "normal", "{view}");
    assert_eq!(
        sample(admin, "meridian_lb_target_weight", &BAD).await,
        Some(1.0)
    );
}
