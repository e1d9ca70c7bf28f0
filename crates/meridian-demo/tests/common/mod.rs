//! Real PostgreSQL nodes (run by `meridian_db::run`) and a demo router in front of them,
//! for the demo's database tests. Every wait is bounded.
#![allow(dead_code)]

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use meridian_db::{DbRole, PgOptions};
use meridian_demo::{router, DatabaseOptions, DemoOptions, Identity};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tower::ServiceExt;

pub const PASSWORD: &str = "demo-orders-test";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a test address")
}

pub fn base_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meridian-demo-pg-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn db(name: &str, role: DbRole, ip: &str, dir: &Path) -> PgOptions {
    PgOptions {
        name: name.into(),
        role,
        listen: addr(&format!("{ip}:5432")),
        admin: addr(&format!("{ip}:9650")),
        upstream: None,
        source: None,
        sync_standbys: vec![],
        replicas: vec![],
        data_dir: dir.join(name),
        password: PASSWORD.into(),
        peers: vec![],
        lease: Duration::from_secs(3),
        admin_token: "demo-test-token".into(),
        public: addr(&format!("{ip}:5432")),
        writer: None,
        region: "r1".into(),
        home_region: "r1".into(),
        promotion: meridian_db::Promotion::Automatic,
        max_promotion_lag: 16 << 20,
    }
}

pub struct Node {
    pub name: String,
    pub stop: oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<Result<(), meridian_db::DbError>>,
}

pub fn start(opts: PgOptions) -> Node {
    let (stop, stopped) = oneshot::channel();
    Node {
        name: opts.name.clone(),
        stop,
        task: tokio::spawn(meridian_db::run(opts, async move {
            let _ = stopped.await;
        })),
    }
}

pub async fn stop(node: Node) {
    let _ = node.stop.send(());
    let ended = tokio::time::timeout(Duration::from_secs(20), node.task)
        .await
        .unwrap_or_else(|_| panic!("{} did not stop within 20s", node.name));
    ended
        .expect("the node task panicked")
        .expect("the node ended cleanly");
}

/// Waits until `listen` takes SQL and is in (or out of) recovery as asked.
pub async fn wait_ready(node: &Node, listen: SocketAddr, in_recovery: bool) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            !node.task.is_finished(),
            "{} ended before it was ready",
            node.name
        );
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(listen.ip().to_string())
            .port(listen.port())
            .user("postgres")
            .password(PASSWORD)
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(2));
        if let Ok((client, conn)) = cfg.connect(tokio_postgres::NoTls).await {
            tokio::spawn(conn);
            if let Ok(row) = client.query_one("SELECT pg_is_in_recovery()", &[]).await {
                if row.get::<_, bool>(0) == in_recovery {
                    return;
                }
            }
        }
        assert!(Instant::now() < until, "{} not ready within 60s", node.name);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn app(region: &str, writers: Vec<SocketAddr>, readers: Vec<SocketAddr>) -> axum::Router {
    router(DemoOptions {
        identity: Identity {
            region: region.into(),
            az: format!("{region}a"),
            instance: format!("svc-{region}a-1"),
        },
        processing_time: Duration::ZERO,
        database: Some(DatabaseOptions::new(writers, readers, PASSWORD.into())),
        quote_cache: None,
    })
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Value,
    pub text: String,
}

pub async fn send(app: &axum::Router, req: Request<Body>) -> Answer {
    let res = tokio::time::timeout(Duration::from_secs(20), app.clone().oneshot(req))
        .await
        .expect("the demo answers within 20s")
        .unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub async fn order(app: &axum::Router, body: Value) -> Answer {
    let req = Request::post("/api/orders")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    send(app, req).await
}

pub async fn portfolio(app: &axum::Router, user: &str, lsn: Option<&str>) -> Answer {
    let mut req = Request::get(format!("/api/portfolio/{user}"));
    if let Some(lsn) = lsn {
        req = req.header("meridian-min-lsn", lsn);
    }
    send(app, req.body(Body::empty()).unwrap()).await
}

pub fn position(p: &Value, symbol: &str) -> Option<i64> {
    p["positions"]
        .as_array()?
        .iter()
        .find(|x| x["symbol"] == symbol)?["quantity"]
        .as_i64()
}
