//! The console node against stand-in nodes whose /metrics text the test controls: it
//! shows what they report, raises an alarm to the webhook when a region loses its
//! instances, clears it when they come back, and serves its page and API.

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use meridian_config::Config;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[deployment]
name = "t"
zone = "t.example"

[network]
subnet = "127.89.0.0/16"

[[region]]
name = "east"
primary = true
location = { lat = 39.0, lon = -77.5 }
azs = ["east-a"]

[[edge]]
name = "paris"
location = { lat = 48.9, lon = 2.4 }

[console]
webhook = "http://127.89.0.50:9000/hook"

[[console.alarm]]
name = "region-down"
kind = "region_unhealthy"
for = "0s"
"#;

type Text = Arc<Mutex<String>>;

async fn serve_metrics(addr: SocketAddr, text: Text) {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(t): State<Text>| async move { t.lock().unwrap().clone() }),
        )
        .with_state(text);
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
}

fn lb_metrics(healthy: u8) -> String {
    format!(
        "meridian_lb_target_healthy{{target=\"svc-east-a-1\",az=\"east-a\"}} {healthy}\n\
         meridian_lb_requests_total{{target=\"svc-east-a-1\",status=\"200\"}} 10\n"
    )
}

async fn try_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let f = meridian_http::client::call(
        addr,
        http::Method::GET,
        path,
        None,
        Duration::from_secs(2),
        8 << 20,
    )
    .await?;
    Ok((f.status, String::from_utf8_lossy(&f.body).into_owned()))
}

async fn get_text(addr: SocketAddr, path: &str) -> (u16, String) {
    try_get(addr, path).await.unwrap()
}

async fn overview(addr: SocketAddr) -> serde_json::Value {
    let (status, body) = get_text(addr, "/api/overview").await;
    assert_eq!(status, 200);
    serde_json::from_str(&body).unwrap()
}

async fn wait_for(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within {limit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_reach_the_webhook_and_the_page_shows_the_nodes() {
    let config = Config::parse(CONFIG, "console-test.toml").expect("valid config");
    let lb = config.lb_admin("east").unwrap();
    let svc = config.targets_of("east")[0].admin;
    let edge = config.pop_addresses("paris").unwrap().1;
    let console = config.console_address();
    let lb_text: Text = Arc::new(Mutex::new(lb_metrics(1)));
    serve_metrics(lb, lb_text.clone()).await;
    serve_metrics(svc, Arc::new(Mutex::new(String::new()))).await;
    serve_metrics(
        edge,
        Arc::new(Mutex::new(
            "meridian_edge_origin_healthy{origin=\"lb:east\",group=\"g\"} 1\n".into(),
        )),
    )
    .await;
    // The webhook receiver keeps every notification.
    let hooks: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let hook_app = Router::new()
        .route(
            "/hook",
            post(
                |State(h): State<Arc<Mutex<Vec<serde_json::Value>>>>, body: String| async move {
                    h.lock().unwrap().push(serde_json::from_str(&body).unwrap());
                    "ok"
                },
            ),
        )
        .with_state(hooks.clone());
    let l = tokio::net::TcpListener::bind("127.89.0.50:9000")
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(l, hook_app).await });

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let node = tokio::spawn(meridian_console::run(config, console, async {
        let _ = stop_rx.await;
    }));

    wait_for("east shown healthy", Duration::from_secs(10), async || {
        try_get(console, "/health").await.is_ok_and(|r| r.0 == 200)
            && overview(console).await["regions"][0]["status"] == "healthy"
    })
    .await;
    let o = overview(console).await;
    assert_eq!(o["pops"][0]["name"], "paris");
    assert_eq!(o["pops"][0]["status"], "healthy");
    // The DNS nodes of the config do not run here: shown down, with why, not dropped.
    let dns: Vec<&serde_json::Value> = o["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["role"] == "dns")
        .collect();
    assert_eq!(dns.len(), 2);
    assert!(
        dns.iter()
            .all(|n| n["up"] == false && n["error"].is_string()),
        "{dns:?}"
    );

    // The region loses its instance: alarm on the page and at the webhook.
    *lb_text.lock().unwrap() = lb_metrics(0);
    let took = wait_for("ALARM at the webhook", Duration::from_secs(5), async || {
        hooks
            .lock()
            .unwrap()
            .iter()
            .any(|h| h["alarm"]["state"] == "ALARM")
    })
    .await;
    eprintln!("alarm reached the webhook {took:?} after the region lost its instance");
    let h = hooks.lock().unwrap()[0].clone();
    assert_eq!(h["deployment"], "t");
    assert_eq!(h["alarm"]["alarm"], "region-down");
    assert_eq!(h["alarm"]["subject"], "east");
    let o = overview(console).await;
    assert_eq!(o["regions"][0]["status"], "unhealthy");
    assert!(o["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["rule"] == "region-down" && a["state"] == "alarm"));
    assert!(o["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["message"] == "lb-east: svc-east-a-1 is unhealthy"));

    // It recovers: OK at the webhook.
    *lb_text.lock().unwrap() = lb_metrics(1);
    wait_for("OK at the webhook", Duration::from_secs(5), async || {
        hooks
            .lock()
            .unwrap()
            .iter()
            .any(|h| h["alarm"]["state"] == "OK")
    })
    .await;

    // The page and its assets come from the binary; the series API answers and refuses.
    let (s, page) = get_text(console, "/").await;
    assert_eq!(s, 200);
    assert!(page.contains("Meridian") && page.contains("/app.js"));
    assert_eq!(get_text(console, "/app.js").await.0, 200);
    assert_eq!(get_text(console, "/app.css").await.0, 200);
    let (s, body) = get_text(console, "/api/series?names=node.lb-east.up,nope&secs=5").await;
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["series"]["node.lb-east.up"].as_array().unwrap().len(), 5);
    assert!(v["series"]["nope"].is_null());
    assert_eq!(get_text(console, "/api/series").await.0, 400);
    assert_eq!(get_text(console, "/nothing-here").await.0, 404);
    let (_, metrics) = get_text(console, "/metrics").await;
    assert!(
        metrics.contains("meridian_console_scrapes_total"),
        "{metrics}"
    );

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(5), node)
        .await
        .expect("the console stops on shutdown")
        .unwrap()
        .unwrap();
}
