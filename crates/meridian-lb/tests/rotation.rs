//! A running balancer through a rotation of the edge signing key: requests an edge signs
//! with the old key still pass during the grace period, and not after it.

use meridian_http::signing::{Signer, HEADER, KEY_FILE};
use meridian_lb::LbOptions;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The status of one signed (or not) GET, read off the raw response.
async fn status(lb: SocketAddr, signer: &Signer) -> u16 {
    let sig = signer.sign_at(&http::Method::GET, "t", "/api/x", SystemTime::now());
    let req = format!(
        "GET /api/x HTTP/1.1\r\nHost: t\r\n{HEADER}: {}\r\nConnection: close\r\n\r\n",
        sig.to_str().unwrap()
    );
    let mut s = TcpStream::connect(lb).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Polls until `check` holds for `signer`'s requests, for at most `limit`: the balancer
/// re-reads its keys on its own schedule, so the test waits for the effect, not a guess.
async fn until(
    what: &str,
    limit: Duration,
    lb: SocketAddr,
    signer: &Signer,
    check: impl Fn(u16) -> bool,
) {
    let start = Instant::now();
    loop {
        if check(status(lb, signer).await) {
            return;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_running_balancer_accepts_the_old_key_during_the_grace_only() {
    let dir = std::env::temp_dir().join(format!("meridian-lb-rotation-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(KEY_FILE), "old-key\n").unwrap();
    let free = |ip: &str| {
        std::net::TcpListener::bind((ip, 0))
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let mut config = meridian_config::Config::embedded_default().load_balancer;
    // The default deployment's settings, with the one implicit group they describe (not
    // its declared groups and rules: the gRPC group would check these targets too).
    config.target_groups.clear();
    config.rules.clear();
    config.require_edge_signature = true;
    let opts = LbOptions {
        name: "lb-rotation".into(),
        region: "test-1".into(),
        listen: free("127.87.40.1"),
        admin: free("127.87.40.1"),
        targets: Vec::new(),
        config,
        signer: Some(std::sync::Arc::new(Signer::load(&dir).unwrap())),
        tls: None,
        access_log: None,
    };
    let lb = opts.listen;
    let run = tokio::spawn(meridian_lb::run(opts, std::future::pending()));
    let started = Instant::now();
    while TcpStream::connect(lb).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(5), "lb started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // An edge that read the old key before the rotation, and keeps signing with it.
    let old_edge = Signer::from_secrets("old-key", None);
    let stranger = Signer::from_secrets("not-the-key", None);
    // Refused as unsigned (403) vs. let through to the (empty) target group (503).
    assert_ne!(status(lb, &old_edge).await, 403);
    assert_eq!(status(lb, &stranger).await, 403);

    let grace = Duration::from_secs(4);
    let rotated = Instant::now();
    meridian_http::secrets::rotate(&dir.join(KEY_FILE), grace).unwrap();
    let new_edge = Signer::load(&dir).unwrap();
    // The balancer re-reads its keys every RELOAD.
    until(
        "the new key is accepted",
        meridian_http::secrets::RELOAD * 5,
        lb,
        &new_edge,
        |s| s != 403,
    )
    .await;
    // The grace's end is kept in whole seconds, so it may come up to 1 s early.
    let earliest_end = grace - Duration::from_secs(1);
    assert!(
        rotated.elapsed() < earliest_end,
        "the test ran too slowly to check the grace"
    );
    assert_ne!(
        status(lb, &old_edge).await,
        403,
        "the old key during the grace"
    );
    until(
        "the old key is refused after the grace",
        grace * 3,
        lb,
        &old_edge,
        |s| s == 403,
    )
    .await;
    assert!(
        rotated.elapsed() >= earliest_end,
        "the old key was refused before its grace ended"
    );
    assert_ne!(status(lb, &new_edge).await, 403);
    run.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
