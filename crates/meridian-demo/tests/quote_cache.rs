//! Quotes read through a real redis-server (on 127.83.0.0/16): a miss stores the quote, the
//! next request hits it, the TTL expires it, and a Redis that is frozen, killed or never
//! there makes quotes bypass the cache quickly, never fail. Every wait is bounded.

use axum::body::Body;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use meridian_demo::{router, DemoOptions, Identity, QuoteCacheOptions, QUOTE_CACHE_HEADER};
use meridian_resp::Client;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tower::ServiceExt;

const PASSWORD: &str = "quotecachetest0123";
/// The cooldown the tests give the circuit, shorter than the default to keep them quick.
const COOLDOWN: Duration = Duration::from_millis(300);

/// One redis-server, frozen or killed by the test; never left behind (or left frozen).
struct Redis {
    child: Child,
    addr: SocketAddr,
    dir: std::path::PathBuf,
}

impl Redis {
    async fn start(ip: &str) -> Redis {
        let program = meridian_redis::redis_server().expect("redis-server is installed");
        let addr: SocketAddr = format!("{ip}:6379").parse().unwrap();
        let dir =
            std::env::temp_dir().join(format!("meridian-demo-redis-{}-{ip}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(program)
            .args(["--bind", ip, "--port", "6379", "--requirepass", PASSWORD])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let redis = Redis { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = redis.client().await {
                if c.ping().await.is_ok() {
                    return redis;
                }
            }
            assert!(Instant::now() < deadline, "redis at {addr} never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn client(&self) -> Result<Client, meridian_resp::RespError> {
        Client::connect(self.addr, Some(PASSWORD), Duration::from_secs(1)).await
    }

    fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("a pid");
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn app(endpoint: SocketAddr) -> axum::Router {
    let mut cache = QuoteCacheOptions::new(endpoint, Some(PASSWORD.into()));
    cache.cooldown = COOLDOWN;
    router(DemoOptions {
        identity: Identity {
            region: "eu-west-1".into(),
            az: "eu-west-1a".into(),
            instance: "svc-test".into(),
        },
        // The work a hit saves.
        processing_time: Duration::from_millis(20),
        database: None,
        quote_cache: Some(cache),
    })
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: serde_json::Value,
    took: Duration,
}

impl Answer {
    fn cache(&self) -> &str {
        self.headers
            .get(QUOTE_CACHE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("(none)")
    }
}

async fn get(app: &axum::Router, path: &str) -> Answer {
    let started = Instant::now();
    let res = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let took = started.elapsed();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Answer {
        status,
        headers,
        body,
        took,
    }
}

async fn metrics(app: &axum::Router) -> String {
    let res = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A miss then a hit within one price window (tried again if a window boundary fell
/// between them).
async fn miss_then_hit(app: &axum::Router, symbol: &str) -> (Answer, Answer) {
    for _ in 0..3 {
        let first = get(app, &format!("/api/quotes/{symbol}")).await;
        let second = get(app, &format!("/api/quotes/{symbol}")).await;
        if first.body["as_of"] == second.body["as_of"] {
            return (first, second);
        }
    }
    panic!("three window boundaries in a row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_miss_then_hit_and_expire_with_the_ttl() {
    let redis = Redis::start("127.83.1.1").await;
    let app = app(redis.addr);

    let (miss, hit) = miss_then_hit(&app, "aapl").await;
    assert_eq!(miss.status, StatusCode::OK);
    assert_eq!(miss.cache(), "miss");
    assert_eq!(hit.status, StatusCode::OK);
    assert_eq!(hit.cache(), "hit");
    // The same quote, as JSON, with the headers the edge caches by.
    assert_eq!(miss.body, hit.body);
    assert_eq!(hit.body["symbol"], "AAPL");
    assert!(hit.body["price"].as_f64().unwrap() > 0.0);
    assert_eq!(hit.headers["content-type"], "application/json");
    assert_eq!(hit.headers["cache-control"], "public, max-age=5");
    assert_eq!(hit.headers["x-meridian-region"], "eu-west-1");

    // Redis holds it under the symbol and its price window, for at most the TTL.
    let key = format!("quote:AAPL:{}", hit.body["as_of"]);
    let mut c = redis.client().await.unwrap();
    let stored = c.get(&key).await.unwrap().expect("the quote is in Redis");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&stored).unwrap(),
        hit.body
    );
    let ttl = c.call(&["PTTL", &key]).await.unwrap();
    assert!(
        matches!(ttl, meridian_resp::Reply::Int(ms) if ms > 0 && ms <= 1000),
        "{ttl:?}"
    );

    // After the TTL the key is gone and the next quote is made (and stored) again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(c.get(&key).await.unwrap(), None, "expired after the TTL");
    let again = get(&app, "/api/quotes/AAPL").await;
    assert_eq!(again.cache(), "miss");

    // A bad symbol is a 400 that never reaches the cache.
    let bad = get(&app, "/api/quotes/A%2FB").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.cache(), "(none)");

    let text = metrics(&app).await;
    assert!(
        text.contains("meridian_quote_cache_lookups_total{outcome=\"hit\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("meridian_quote_cache_lookups_total{outcome=\"miss\"} 2"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_or_killed_redis_is_bypassed_quickly_and_used_again_when_back() {
    let redis = Redis::start("127.83.2.1").await;
    let app = app(redis.addr);
    let (_, hit) = miss_then_hit(&app, "MSFT").await;
    assert_eq!(hit.cache(), "hit");

    // Frozen (SIGSTOP): the first quote waits out the deadline, the rest do not wait.
    redis.signal(libc::SIGSTOP);
    let first = get(&app, "/api/quotes/MSFT").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.cache(), "bypass");
    assert_eq!(first.body["symbol"], "MSFT");
    assert!(first.took < Duration::from_millis(600), "{:?}", first.took);
    for _ in 0..20 {
        let a = get(&app, "/api/quotes/NVDA").await;
        assert_eq!((a.status, a.cache()), (StatusCode::OK, "bypass"));
        // The modelled work (20 ms) and nothing for the cache.
        assert!(a.took < Duration::from_millis(150), "{:?}", a.took);
    }
    let detailed = get(&app, "/health/detailed").await;
    assert_eq!(detailed.body["components"]["cache"]["status"], "unhealthy");

    // Back: after the cooldown one request probes, and the cache is used again.
    redis.signal(libc::SIGCONT);
    tokio::time::sleep(COOLDOWN + Duration::from_millis(100)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let a = get(&app, "/api/quotes/MSFT").await;
        assert_eq!(a.status, StatusCode::OK);
        if a.cache() != "bypass" {
            break;
        }
        assert!(Instant::now() < deadline, "the cache was never used again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let detailed = get(&app, "/health/detailed").await;
    assert_eq!(detailed.body["components"]["cache"]["status"], "healthy");

    // Killed: connections are refused, and every quote is still served.
    drop(redis);
    let started = Instant::now();
    for _ in 0..50 {
        let a = get(&app, "/api/quotes/TSLA").await;
        assert_eq!((a.status, a.cache()), (StatusCode::OK, "bypass"));
        assert!(a.took < Duration::from_millis(300), "{:?}", a.took);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let text = metrics(&app).await;
    assert!(
        text.contains("meridian_quote_cache_lookups_total{outcome=\"bypass\"}"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_redis_at_all_or_a_wrong_password_is_a_bypass_never_an_error() {
    // Nothing listens on this address.
    let app_without = app("127.83.3.1:6379".parse().unwrap());
    for _ in 0..5 {
        let a = get(&app_without, "/api/quotes/V").await;
        assert_eq!((a.status, a.cache()), (StatusCode::OK, "bypass"));
        assert!(a.took < Duration::from_millis(300), "{:?}", a.took);
    }

    let redis = Redis::start("127.83.4.1").await;
    let mut opts = QuoteCacheOptions::new(redis.addr, Some("not-the-password".into()));
    opts.cooldown = COOLDOWN;
    let wrong = router(DemoOptions {
        identity: Identity {
            region: "eu-west-1".into(),
            az: "eu-west-1b".into(),
            instance: "svc-wrong".into(),
        },
        processing_time: Duration::ZERO,
        database: None,
        quote_cache: Some(opts),
    });
    let a = get(&wrong, "/api/quotes/JPM").await;
    assert_eq!((a.status, a.cache()), (StatusCode::OK, "bypass"));
    assert_eq!(a.body["symbol"], "JPM");
}
