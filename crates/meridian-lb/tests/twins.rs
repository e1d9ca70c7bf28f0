//! Green twins of target groups (what `meridian rollout --strategy canary` drives): a twin
//! made at run time takes its own targets, a weight keyed by the group's name sends that
//! share of what the rules forward to the group to the twin, and a weight change applies
//! in place, on a connection that stays open. Addresses 127.74.200.x.

use meridian_demo::{DemoOptions, Identity};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

mod common;

const TOKEN: &str = "twins-test-token";

fn at(host: u8, port: u16) -> SocketAddr {
    SocketAddr::new(std::net::Ipv4Addr::new(127, 74, 200, host).into(), port)
}

async fn up(addr: SocketAddr) {
    let until = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < until, "{addr} did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn instance(addr: SocketAddr, name: &str, az: &str) {
    let opts = DemoOptions {
        identity: Identity {
            region: "test-1".into(),
            az: az.into(),
            instance: name.into(),
        },
        processing_time: Duration::ZERO,
        database: None,
        quote_cache: None,
    };
    tokio::spawn(meridian_demo::serve(addr, opts, std::future::pending()));
    up(addr).await;
}

/// One admin call with the token: (status, body).
async fn admin(addr: SocketAddr, method: http::Method, path: &str) -> (u16, serde_json::Value) {
    let a = meridian_http::client::call(
        addr,
        method,
        path,
        Some(TOKEN),
        Duration::from_secs(5),
        1 << 20,
    )
    .await
    .unwrap();
    (
        a.status,
        serde_json::from_slice(&a.body).unwrap_or_default(),
    )
}

/// One HTTP/1.1 connection kept open for every request: a weight change must not cut it.
struct Conn(hyper::client::conn::http1::SendRequest<meridian_http::Body>);

impl Conn {
    async fn open(lb: SocketAddr) -> Conn {
        let tcp = TcpStream::connect(lb).await.unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        Conn(send)
    }

    /// The instance that answered.
    async fn get(&mut self) -> String {
        use http_body_util::BodyExt;
        self.0.ready().await.expect("the connection stays open");
        let req = http::Request::get("/api/quotes/AAPL")
            .header("host", "x")
            .body(meridian_http::full(""))
            .unwrap();
        let res = self
            .0
            .send_request(req)
            .await
            .expect("the connection stays open");
        assert_eq!(res.status(), 200);
        let who = res.headers()["x-meridian-instance"]
            .to_str()
            .unwrap()
            .to_owned();
        res.into_body().collect().await.unwrap();
        who
    }

    async fn counts(&mut self, n: usize) -> std::collections::BTreeMap<String, usize> {
        let mut out = std::collections::BTreeMap::new();
        for _ in 0..n {
            *out.entry(self.get().await).or_default() += 1;
        }
        out
    }
}

/// Waits (bounded) until `name` in group `group` is in `state` and `health`.
async fn wait_target(addr: SocketAddr, group: &str, name: &str, state: &str, health: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = admin(addr, http::Method::GET, "/targets").await;
        let ok = v["targets"].as_array().unwrap().iter().any(|t| {
            t["target_group"] == group
                && t["target"] == name
                && t["state"] == state
                && (health.is_empty() || t["health"] == health)
        });
        if ok {
            return;
        }
        assert!(Instant::now() < until, "{name} in {group}: {v}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twin_takes_its_weighted_share_of_its_group_in_place() {
    let extra = r#"
[[load_balancer.target_group]]
name = "a"
azs = ["test-1a"]
[[load_balancer.target_group]]
name = "b"
azs = ["test-1b"]
[[load_balancer.rule]]
path = "/*"
forward = [{ target_group = "a", weight = 50 }, { target_group = "b", weight = 50 }]
"#;
    let cfg = meridian_config::Config::parse(
        &format!("{}\n{extra}", common::default_config_without_groups()),
        "twins.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut config = cfg.load_balancer;
    for g in &mut config.target_groups {
        g.health_check.interval = Duration::from_millis(100);
        g.health_check.timeout = Duration::from_millis(80);
        g.deregistration_delay = Duration::from_millis(300);
    }
    let (a1, b1, a2) = (at(11, 8000), at(12, 8000), at(13, 8000));
    instance(a1, "a-1", "test-1a").await;
    instance(b1, "b-1", "test-1b").await;
    instance(a2, "a-2", "test-1a").await;
    let mut opts = common::lb_options("lb-twins", at(1, 80), at(1, 9900), &[], config);
    for (addr, name, az) in [(a1, "a-1", "test-1a"), (b1, "b-1", "test-1b")] {
        opts.targets.push(meridian_config::NodeSpec {
            name: name.into(),
            role: meridian_config::Role::Service,
            region: Some("test-1".into()),
            az: Some(az.into()),
            address: addr,
            admin: addr,
        });
    }
    let (lb, adm) = (opts.listen, opts.admin);
    tokio::spawn(meridian_lb::run_with_token(
        opts,
        Some(meridian_http::secrets::AdminToken::from(TOKEN)),
        std::future::pending(),
    ));
    up(lb).await;
    up(adm).await;
    wait_target(adm, "a", "a-1", "registered", "healthy").await;
    wait_target(adm, "b", "b-1", "registered", "healthy").await;
    let post = http::Method::POST;

    // No twin yet: no weight for it; a group that does not exist has none to make.
    let (s, v) = admin(
        adm,
        post.clone(),
        "/target-groups/weights?group=a&percent=50",
    )
    .await;
    assert_eq!(s, 409, "{v}");
    let (s, _) = admin(adm, post.clone(), "/target-groups/twin?group=zzz").await;
    assert_eq!(s, 404);
    let (s, v) = admin(adm, post.clone(), "/target-groups/twin?group=a").await;
    assert_eq!((s, v["twin"].as_str()), (200, Some("a-green")), "{v}");

    // The green instance joins the twin of the groups that take its AZ only.
    let reg = format!("/targets/register?target={a2}&az=test-1a&name=a-2&twin=true");
    let (s, v) = admin(adm, post.clone(), &reg).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["target_groups"], serde_json::json!(["a-green"]));
    wait_target(adm, "a-green", "a-2", "registered", "healthy").await;

    // At 0% the twin takes nothing; at 50% half of group a's requests, on the same
    // connection.
    let mut conn = Conn::open(lb).await;
    let before = conn.counts(100).await;
    assert!(!before.contains_key("a-2"), "{before:?}");
    let (s, v) = admin(
        adm,
        post.clone(),
        "/target-groups/weights?group=a&percent=50",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let c = conn.counts(400).await;
    let (x1, x2, y) = (c["a-1"], c["a-2"], c["b-1"]);
    assert!(
        x1.abs_diff(x2) <= 1,
        "the twin takes exactly half of a: {c:?}"
    );
    assert!((140..=260).contains(&y), "b keeps its rule weight: {c:?}");
    let (_, v) = admin(adm, http::Method::GET, "/target-groups").await;
    assert_eq!(v["target_groups"][0]["twin_percent"], 50, "{v}");
    assert_eq!(
        v["target_groups"][1]["twin"],
        serde_json::Value::Null,
        "{v}"
    );

    // Out-of-range weights are refused; back to 0, the twin empties, by name and scope.
    let (s, _) = admin(adm, post.clone(), "/target-groups/weights?percent=101").await;
    assert_eq!(s, 400);
    let (s, _) = admin(adm, post.clone(), "/target-groups/weights?percent=0").await;
    assert_eq!(s, 200);
    let after = conn.counts(100).await;
    assert!(!after.contains_key("a-2"), "{after:?}");
    let dereg = "/targets/deregister?target=a-2&scope=groups";
    assert_eq!(
        admin(adm, post.clone(), dereg).await.0,
        404,
        "a-2 is only in green"
    );
    let dereg = "/targets/deregister?target=a-2&scope=twins";
    assert_eq!(admin(adm, post.clone(), dereg).await.0, 202);
    wait_target(adm, "a-green", "a-2", "unused", "").await;
    // A twin with no healthy target takes nothing, whatever its weight: its group serves.
    let (s, _) = admin(
        adm,
        post.clone(),
        "/target-groups/weights?group=a&percent=100",
    )
    .await;
    assert_eq!(s, 200);
    let c = conn.counts(100).await;
    assert!(!c.contains_key("a-2") && c["a-1"] > 20, "{c:?}");
    // The per-group latency the console compares blue and green with.
    let m = common::http_get(adm, "/metrics").await;
    assert!(
        m.contains(
            "meridian_lb_target_group_request_duration_seconds_count{target_group=\"a-green\"}"
        ),
        "{m}"
    );
}
