//! The console node against a stand-in PoP whose function counters grow on every scrape:
//! `/api/overview` lists the function with its rates, top error kind and p99, and the
//! page carries the panel that shows them.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use meridian_config::Config;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[deployment]
name = "fa"
zone = "fa.example"

[network]
subnet = "127.93.0.0/16"

[[region]]
name = "east"
primary = true
location = { lat = 39.0, lon = -77.5 }
azs = ["east-a"]

[[edge]]
name = "paris"
location = { lat = 48.9, lon = 2.4 }

[[distribution.function]]
name = "pretty"
source = "function handler(event) { return event.request; }"

[distribution.default_behavior]
origin_group = "default"
function_associations = [{ event_type = "viewer-request", function = "pretty" }]
"#;

/// Each scrape, ten more invocations (all between 5 % and 10 % of the budget) and one
/// more timeout.
fn metrics(n: u64) -> String {
    let mut t = format!(
        "meridian_edge_function_invocations_total{{function=\"pretty\",event_type=\"viewer-request\"}} {}\n\
         meridian_edge_function_errors_total{{function=\"pretty\",kind=\"timeout\"}} {n}\n",
        10 * n
    );
    for le in ["5", "10", "20", "30", "50", "70", "90", "100", "+Inf"] {
        let count = if le == "5" { 0 } else { 10 * n };
        t += &format!(
            "meridian_edge_function_compute_utilization_bucket{{function=\"pretty\",le=\"{le}\"}} {count}\n"
        );
    }
    t
}

async fn get_text(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let f = meridian_http::client::call(
        addr,
        http::Method::GET,
        path,
        None,
        Duration::from_secs(2),
        8 << 20,
    )
    .await
    .ok()?;
    Some((f.status, String::from_utf8_lossy(&f.body).into_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_lists_each_function_and_the_page_has_its_panel() {
    let config = Config::parse(CONFIG, "fa.toml").expect("valid config");
    let edge = config.pop_addresses("paris").expect("paris is a PoP").1;
    let console = config.console_address();
    let scrapes = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(n): State<Arc<AtomicU64>>| async move {
                metrics(n.fetch_add(1, Ordering::SeqCst) + 1)
            }),
        )
        .with_state(scrapes);
    let l = tokio::net::TcpListener::bind(edge)
        .await
        .expect("edge address");
    tokio::spawn(async move { axum::serve(l, app).await });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let node = tokio::spawn(meridian_console::run(config, console, async {
        let _ = stop_rx.await;
    }));

    let start = Instant::now();
    let f = loop {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no function rate within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some((200, body)) = get_text(console, "/api/overview").await else {
            continue;
        };
        let o: serde_json::Value = serde_json::from_str(&body).expect("overview is JSON");
        let f = o["functions"][0].clone();
        if f["invocations_rps"].as_f64().is_some_and(|r| r > 0.0) {
            break f;
        }
    };
    assert_eq!(f["name"], "pretty");
    assert_eq!(f["event_types"], serde_json::json!(["viewer-request"]));
    assert!(f["errors_rps"].as_f64().is_some_and(|r| r > 0.0), "{f}");
    assert_eq!(f["top_error_kind"], "timeout");
    assert_eq!(f["errors_by_kind"][0]["kind"], "timeout");
    // Every invocation in the 5–10 bucket, however many scrapes apart: 5 + 5 × 0.99.
    let p99 = f["p99_utilization"].as_f64().expect("a p99");
    assert!((p99 - 9.95).abs() < 1e-9, "{p99}");

    let (_, page) = get_text(console, "/").await.expect("the page");
    assert!(page.contains("Edge functions") && page.contains("id=\"functions\""));
    let (_, script) = get_text(console, "/app.js").await.expect("the script");
    assert!(script.contains("renderFunctions(o)"));

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(5), node)
        .await
        .expect("the console stops on shutdown")
        .expect("the console task")
        .expect("the console ran");
}
