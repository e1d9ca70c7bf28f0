use meridian_config::{CheckProtocol, HealthCheck, StatusMatcher};
use meridian_health::{probe, Health, HealthBoard};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A server whose /health answers with whatever status the test sets.
async fn toggle_server(status: Arc<AtomicU16>) -> SocketAddr {
    let listener = meridian_http::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(meridian_http::serve(
        listener,
        Default::default(),
        move |_| {
            let status = status.clone();
            hyper::service::service_fn(move |_req| {
                let code = status.load(Ordering::Relaxed);
                async move {
                    let code = http::StatusCode::from_u16(code).unwrap();
                    Ok::<_, Infallible>(meridian_http::text(code, "{\"status\":\"healthy\"}"))
                }
            })
        },
        std::future::pending(),
    ));
    addr
}

fn check() -> HealthCheck {
    HealthCheck {
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(40),
        ..HealthCheck::default()
    }
}

#[tokio::test]
async fn http_probe_checks_status_and_body() {
    let status = Arc::new(AtomicU16::new(200));
    let addr = toggle_server(status.clone()).await;
    let out = probe(addr, &check()).await;
    assert!(out.healthy, "{out:?}");

    let mut c = check();
    c.body_contains = Some("healthy".into());
    assert!(probe(addr, &c).await.healthy);
    c.body_contains = Some("nope".into());
    let out = probe(addr, &c).await;
    assert!(!out.healthy);
    assert!(out.detail.contains("body lacks"), "{out:?}");

    status.store(503, Ordering::Relaxed);
    let out = probe(addr, &check()).await;
    assert!(!out.healthy);
    assert!(out.detail.contains("503"), "{out:?}");

    let mut c = check();
    c.matcher = StatusMatcher::parse("200,503").unwrap();
    assert!(probe(addr, &c).await.healthy);
}

#[tokio::test]
async fn tcp_probe_and_refused_connection() {
    let status = Arc::new(AtomicU16::new(200));
    let addr = toggle_server(status).await;
    let mut c = check();
    c.protocol = CheckProtocol::Tcp;
    assert!(probe(addr, &c).await.healthy);
    // A port nobody listens on: bind then drop to find one.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = probe(free, &check()).await;
    assert!(!out.healthy);
    assert_eq!(out.detail, "connection refused");
}

#[tokio::test]
async fn board_publishes_changes_after_thresholds() {
    let status = Arc::new(AtomicU16::new(200));
    let addr = toggle_server(status.clone()).await;
    let board = HealthBoard::new();
    let mut events = board.subscribe();
    let mut c = check();
    c.healthy_threshold = 2;
    c.unhealthy_threshold = 3;
    let task = board.watch("t1", addr, c);

    let ev = tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ev.from, ev.to), (Health::Unknown, Health::Healthy));
    assert_eq!(board.health("t1"), Health::Healthy);

    status.store(500, Ordering::Relaxed);
    let ev = tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ev.from, ev.to), (Health::Healthy, Health::Unhealthy));
    assert!(ev.reason.contains("500"), "{ev:?}");
    let last = board.snapshot()[0].last_probe.clone().unwrap();
    assert!(!last.healthy);

    status.store(200, Ordering::Relaxed);
    let ev = tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ev.from, ev.to), (Health::Unhealthy, Health::Healthy));

    board.report_failure("t1", "connection reset");
    let ev = events.recv().await.unwrap();
    assert_eq!(ev.to, Health::Unhealthy);
    assert!(ev.reason.starts_with("passive"));
    task.abort();
}

#[tokio::test]
async fn observer_sees_every_probe_after_the_board_took_it_in() {
    let status = Arc::new(AtomicU16::new(200));
    let addr = toggle_server(status.clone()).await;
    let board = HealthBoard::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let seen = board.clone();
    let on_probe: meridian_health::ProbeObserver = Arc::new(move |out| {
        let _ = tx.send((out.healthy, out.latency, seen.health("t")));
    });
    let mut c = check();
    c.healthy_threshold = 1;
    let task = board.watch_with(
        "t",
        addr,
        c,
        meridian_health::Watch {
            from: Some("127.0.0.1".parse().unwrap()),
            on_probe: Some(on_probe),
        },
    );
    let (healthy, latency, health) = tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(healthy);
    assert!(latency > Duration::ZERO);
    // The board already counted this probe when the observer heard of it.
    assert_eq!(health, Health::Healthy);
    let (healthy, _, _) = tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(healthy, "the loop keeps probing");
    task.abort();
}
