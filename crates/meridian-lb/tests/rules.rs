//! Listener rules, weighted forwards, stickiness and slow start against origins on
//! loopback (127.58.x.y, one /24 per test) that name themselves.

mod common;

use common::start;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use meridian_config::{Config, NodeSpec, Role};
use meridian_lb::LbOptions;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// An origin that answers every request with its name (body and `x-origin`), sets a
/// `SESSION` cookie when the request has none, and passes health checks while `healthy`.
struct Origin {
    node: NodeSpec,
    healthy: Arc<AtomicBool>,
}

async fn origin(net: u8, n: u8, name: &str, az: &str) -> Origin {
    let listener = TcpListener::bind(format!("127.58.{net}.{n}:0"))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let healthy = Arc::new(AtomicBool::new(true));
    let state = (name.to_owned(), healthy.clone());
    let app = axum::Router::new()
        .route(
            "/health",
            axum::routing::get(
                |State((_, h)): State<(String, Arc<AtomicBool>)>| async move {
                    if h.load(Ordering::Relaxed) {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                },
            ),
        )
        .fallback(
            |State((name, _)): State<(String, Arc<AtomicBool>)>,
             uri: axum::http::Uri,
             headers: HeaderMap| async move {
                // Who answered, and the path and query they were asked.
                let seen = [("x-origin", name.clone()), ("x-path", uri.to_string())];
                let mut res = (StatusCode::OK, seen, name).into_response();
                let has_session = headers
                    .get("cookie")
                    .and_then(|c| c.to_str().ok())
                    .is_some_and(|c| c.contains("SESSION="));
                if !has_session {
                    let v = format!("SESSION={:x}; Path=/", rand_id());
                    res.headers_mut().insert("set-cookie", v.parse().unwrap());
                }
                res
            },
        )
        .with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Origin {
        node: NodeSpec {
            name: name.into(),
            role: Role::Service,
            region: Some("test-1".into()),
            az: Some(az.into()),
            address: addr,
            admin: addr,
        },
        healthy,
    }
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish()
}

/// The balancer's config: the default deployment's `[load_balancer]` plus `extra`
/// (target groups and rules), with fast health checks.
fn options(net: u8, targets: &[&Origin], extra: &str) -> LbOptions {
    let cfg = Config::parse(
        &format!("{}\n{extra}", common::default_config_without_groups()),
        "rules.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut config = cfg.load_balancer;
    let fast = |hc: &mut meridian_config::HealthCheck| {
        hc.interval = Duration::from_millis(100);
        hc.timeout = Duration::from_millis(80);
    };
    fast(&mut config.health_check);
    for g in &mut config.target_groups {
        fast(&mut g.health_check);
        g.deregistration_delay = Duration::from_millis(100);
    }
    LbOptions {
        tls: None,
        name: "lb-rules".into(),
        region: "test-1".into(),
        listen: format!("127.58.{net}.250:0").parse().unwrap(),
        admin: format!("127.58.{net}.251:0").parse().unwrap(),
        targets: targets.iter().map(|o| o.node.clone()).collect(),
        config,
        signer: None,
        access_log: None,
    }
}

/// A keep-alive client (the balancer's own pool type), so requests are cheap.
type Client = meridian_http::UpstreamClient;

fn client() -> Client {
    meridian_http::upstream_client(Duration::from_secs(2), Duration::from_secs(30))
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn origin(&self) -> &str {
        self.headers
            .get("x-origin")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
    }
    /// The value this answer sets for cookie `name`.
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next()?.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    }
}

async fn get(c: &Client, addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    use http_body_util::BodyExt;
    let mut req = http::Request::get(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(meridian_http::full("")).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), c.request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn admin_json(admin: SocketAddr, path: &str) -> serde_json::Value {
    let a = get(&client(), admin, path, &[]).await;
    serde_json::from_str(&a.body).unwrap_or_default()
}

async fn metrics(admin: SocketAddr) -> String {
    get(&client(), admin, "/metrics", &[]).await.body
}

/// Waits (bounded) until every group has `n` healthy targets.
async fn wait_healthy(admin: SocketAddr, groups: &[(&str, u64)]) {
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        let v = admin_json(admin, "/health").await;
        if groups
            .iter()
            .all(|(g, n)| v["target_groups"][g]["healthy_targets"].as_u64() == Some(*n))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("targets did not become healthy: {groups:?}");
}

/// Waits (bounded) until `target` has health `state` in `/targets`.
async fn wait_target(admin: SocketAddr, target: &str, state: &str) {
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        let v = admin_json(admin, "/targets").await;
        let found = v["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["target"] == target && t["health"] == state);
        if found {
            return;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("{target} did not become {state}");
}

/// A sample value from the metrics text: the first line with all `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name))
        .find(|l| labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

const THREE_GROUPS: &str = r#"
[[load_balancer.target_group]]
name = "web"
azs = ["test-1a"]

[[load_balancer.target_group]]
name = "api"
azs = ["test-1b"]

[[load_balancer.target_group]]
name = "canary"
azs = ["test-1c"]

[[load_balancer.rule]]
name = "canary-header"
header = { name = "X-Canary", values = ["yes", "on*"] }
forward = "canary"

[[load_balancer.rule]]
name = "api-host"
host = "api.*.example"
forward = "api"

[[load_balancer.rule]]
name = "api-path"
path = ["/api/*", "/v?/*"]
method = ["GET", "POST"]
forward = "api"

[[load_balancer.rule]]
name = "moved"
host = "old.shop.example"
redirect = { status = 301, protocol = "https", host = "new.shop.example", port = "443", path = "/moved/#{path}" }

[[load_balancer.rule]]
name = "maintenance"
path = "/maint*"
query = { mode = "on" }
fixed_response = { status = 503, content_type = "application/json", body = "{\"down\":true}" }

[[load_balancer.rule]]
name = "nobody"
source_ip = ["10.0.0.0/8"]
fixed_response = { status = 403, body = "no" }
"#;

type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

#[tokio::test]
async fn rules_route_by_host_path_and_header() {
    let (a, b, c) = (
        origin(1, 1, "web-1", "test-1a").await,
        origin(1, 2, "api-1", "test-1b").await,
        origin(1, 3, "canary-1", "test-1c").await,
    );
    let (lb, admin) = start(options(1, &[&a, &b, &c], THREE_GROUPS)).await;
    wait_healthy(admin, &[("web", 1), ("api", 1), ("canary", 1)]).await;
    let cl = client();
    // (path, request headers, origin that must answer)
    let cases: &[Case] = &[
        ("/", &[], "web-1"),
        ("/index.html", &[("host", "www.shop.example")], "web-1"),
        ("/", &[("host", "API.eu.example:8080")], "api-1"),
        ("/api/quotes", &[], "api-1"),
        ("/v2/x", &[], "api-1"),
        ("/v22/x", &[], "web-1"),
        ("/api/quotes", &[("x-canary", "ON-please")], "canary-1"),
        ("/", &[("x-canary", "no")], "web-1"),
        ("/maint", &[("host", "t")], "web-1"),
    ];
    for (path, headers, want) in cases {
        let a = get(&cl, lb, path, headers).await;
        assert_eq!(a.status, 200, "{path} {headers:?}");
        assert_eq!(a.origin(), *want, "{path} {headers:?}");
    }
    let m = metrics(admin).await;
    assert_eq!(
        sample(&m, "meridian_lb_rule_matches", &["rule=\"api-path\""]),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "meridian_lb_rule_matches", &["rule=\"canary-header\""]),
        Some(1.0)
    );
    assert!(
        sample(
            &m,
            "meridian_lb_requests",
            &["target_group=\"api\"", "status=\"200\""]
        ) == Some(3.0),
        "{m}"
    );
}

#[tokio::test]
async fn redirect_and_fixed_response_are_answered_by_the_balancer() {
    let a = origin(2, 1, "web-1", "test-1a").await;
    let (b, c) = (
        origin(2, 2, "api-1", "test-1b").await,
        origin(2, 3, "canary-1", "test-1c").await,
    );
    let (lb, admin) = start(options(2, &[&a, &b, &c], THREE_GROUPS)).await;
    wait_healthy(admin, &[("web", 1)]).await;
    let cl = client();
    let r = get(
        &cl,
        lb,
        "/a/b?x=1&y=2",
        &[("host", "old.shop.example:8080")],
    )
    .await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.headers["location"].to_str().unwrap(),
        "https://new.shop.example/moved/a/b?x=1&y=2"
    );
    let f = get(&cl, lb, "/maintenance?mode=on", &[]).await;
    assert_eq!(f.status, 503);
    assert_eq!(f.headers["content-type"], "application/json");
    assert_eq!(f.body, "{\"down\":true}");
    // The query condition must hold as well: without it the default action forwards.
    let d = get(&cl, lb, "/maintenance?mode=off", &[]).await;
    assert_eq!((d.status, d.origin()), (200, "web-1"));
    // Other spellings of the path meet the rule too; one with no single form is refused
    // rather than forwarded to a target that might decode it into the rule's path.
    for path in [
        "/%6Daintenance?mode=on",
        "/x/../maintenance?mode=on",
        "//maintenance?mode=on",
    ] {
        let f = get(&cl, lb, path, &[]).await;
        assert_eq!(f.status, 503, "{path}");
    }
    let bad = get(&cl, lb, "/x%2F..%2Fmaintenance?mode=on", &[]).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    // The target reads the path the rules routed, as the PoP forwards it.
    let routed = get(&cl, lb, "/x/../%7Eweb//page?mode=off", &[]).await;
    assert_eq!((routed.status, routed.origin()), (200, "web-1"));
    assert_eq!(routed.headers["x-path"], "/~web/page?mode=off");
}

#[tokio::test]
async fn weighted_forward_splits_95_5() {
    let blue = origin(3, 1, "blue-1", "test-1a").await;
    let green = origin(3, 2, "green-1", "test-1b").await;
    let extra = r#"
[[load_balancer.target_group]]
name = "blue"
azs = ["test-1a"]
[[load_balancer.target_group]]
name = "green"
azs = ["test-1b"]
[[load_balancer.rule]]
path = "/*"
forward = [{ target_group = "blue", weight = 95 }, { target_group = "green", weight = 5 }]
"#;
    let (lb, admin) = start(options(3, &[&blue, &green], extra)).await;
    wait_healthy(admin, &[("blue", 1), ("green", 1)]).await;
    let started = Instant::now();
    let cl = client();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let cl = cl.clone();
        tasks.push(tokio::spawn(async move {
            let mut green = 0u32;
            for _ in 0..625 {
                let a = get(&cl, lb, "/q", &[]).await;
                assert_eq!(a.status, 200);
                green += u32::from(a.origin() == "green-1");
            }
            green
        }));
    }
    let mut green = 0;
    for t in tasks {
        green += t.await.unwrap();
    }
    let share = f64::from(green) / 10_000.0;
    assert!((0.03..=0.07).contains(&share), "green took {share}");
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "{:?}",
        started.elapsed()
    );
}

const STICKY: &str = r#"
[[load_balancer.target_group]]
name = "app"
stickiness = { type = "lb_cookie", duration = "1h" }
"#;

#[tokio::test]
async fn lb_cookie_keeps_a_client_on_its_target_until_it_fails() {
    let os = [
        origin(4, 1, "s-1", "test-1a").await,
        origin(4, 2, "s-2", "test-1a").await,
        origin(4, 3, "s-3", "test-1a").await,
    ];
    let (lb, admin) = start(options(4, &[&os[0], &os[1], &os[2]], STICKY)).await;
    wait_healthy(admin, &[("app", 3)]).await;
    let cl = client();
    let first = get(&cl, lb, "/", &[]).await;
    let target = first.origin().to_owned();
    let cookie = first.cookie("AWSALB").expect("AWSALB set");
    let header = format!("AWSALB={cookie}");
    for _ in 0..100 {
        let a = get(&cl, lb, "/", &[("cookie", &header)]).await;
        assert_eq!(a.origin(), target);
    }
    // A tampered cookie is ignored (round robin spreads), never an error.
    let forged = header.replacen(&target, if target == "s-1" { "s-2" } else { "s-1" }, 1);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        let a = get(&cl, lb, "/", &[("cookie", &forged)]).await;
        assert_eq!(a.status, 200);
        assert!(a.cookie("AWSALB").is_some());
        seen.insert(a.origin().to_owned());
    }
    assert!(
        seen.len() > 1,
        "a forged cookie pinned the client: {seen:?}"
    );
    let garbage = get(&cl, lb, "/", &[("cookie", "AWSALB=~~zz; other=1")]).await;
    assert_eq!(garbage.status, 200);
    // The target fails its health checks: the client moves, with a new cookie.
    let i = os.iter().position(|o| o.node.name == target).unwrap();
    os[i].healthy.store(false, Ordering::Relaxed);
    wait_target(admin, &target, "unhealthy").await;
    let moved = get(&cl, lb, "/", &[("cookie", &header)]).await;
    assert_eq!(moved.status, 200);
    assert_ne!(moved.origin(), target);
    let new_cookie = moved.cookie("AWSALB").expect("cookie re-issued");
    assert!(new_cookie.starts_with(moved.origin()), "{new_cookie}");
    let new_header = format!("AWSALB={new_cookie}");
    for _ in 0..20 {
        let a = get(&cl, lb, "/", &[("cookie", &new_header)]).await;
        assert_eq!(a.origin(), moved.origin());
    }
}

#[tokio::test]
async fn app_cookie_sticks_while_the_application_cookie_is_present() {
    let os = [
        origin(5, 1, "s-1", "test-1a").await,
        origin(5, 2, "s-2", "test-1a").await,
        origin(5, 3, "s-3", "test-1a").await,
    ];
    let extra = r#"
[[load_balancer.target_group]]
name = "app"
stickiness = { type = "app_cookie", cookie_name = "SESSION", duration = "1h" }
"#;
    let (lb, admin) = start(options(5, &[&os[0], &os[1], &os[2]], extra)).await;
    wait_healthy(admin, &[("app", 3)]).await;
    let cl = client();
    let first = get(&cl, lb, "/", &[]).await;
    let session = first.cookie("SESSION").expect("the app sets SESSION");
    let albapp = first.cookie("AWSALBAPP").expect("AWSALBAPP issued with it");
    let cookies = format!("SESSION={session}; AWSALBAPP={albapp}");
    for _ in 0..30 {
        let a = get(&cl, lb, "/", &[("cookie", &cookies)]).await;
        assert_eq!(a.origin(), first.origin());
    }
    // Bound to the session: another session's AWSALBAPP does not pin this one.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        let other = format!("SESSION=other; AWSALBAPP={albapp}");
        seen.insert(
            get(&cl, lb, "/", &[("cookie", &other)])
                .await
                .origin()
                .to_owned(),
        );
    }
    assert!(seen.len() > 1, "{seen:?}");
}

#[tokio::test]
async fn slow_start_raises_a_returning_targets_weight_and_share() {
    let old = origin(6, 1, "old-1", "test-1a").await;
    let new = origin(6, 2, "new-1", "test-1a").await;
    new.healthy.store(false, Ordering::Relaxed);
    let extra = r#"
[[load_balancer.target_group]]
name = "app"
slow_start = "30s"
"#;
    let (lb, admin) = start(options(6, &[&old, &new], extra)).await;
    wait_target(admin, "new-1", "unhealthy").await;
    wait_healthy(admin, &[("app", 1)]).await;
    new.healthy.store(true, Ordering::Relaxed);
    wait_target(admin, "new-1", "healthy").await;
    let cl = client();
    let weight = |m: &str| {
        sample(
            m,
            "meridian_lb_target_weight",
            &["target=\"new-1\"", "target_group=\"app\""],
        )
        .unwrap_or(-1.0)
    };
    let share = |cl: Client| async move {
        let mut n = 0;
        for _ in 0..400 {
            n += u32::from(get(&cl, lb, "/", &[]).await.origin() == "new-1");
        }
        f64::from(n) / 400.0
    };
    let w1 = weight(&metrics(admin).await);
    let s1 = share(cl.clone()).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let w2 = weight(&metrics(admin).await);
    let s2 = share(cl.clone()).await;
    let old_w = sample(
        &metrics(admin).await,
        "meridian_lb_target_weight",
        &["target=\"old-1\""],
    );
    assert!((0.0..0.1).contains(&w1), "weight at the start {w1}");
    assert!(w2 > w1 + 0.1 && w2 < 0.5, "weight rose from {w1} to {w2}");
    assert_eq!(old_w, Some(1.0));
    // Shares: about w / (1 + w), so ~0-5% at first and ~17% after 6 s.
    assert!(s1 < 0.1, "share at first {s1}");
    assert!(s2 > s1 + 0.04, "share rose from {s1} to {s2}");
    let counts: HashMap<&str, f64> = [("w1", w1), ("w2", w2), ("s1", s1), ("s2", s2)].into();
    eprintln!("slow start: {counts:?}");
}
