//! Orders through writer endpoints while the primary is lost: the synchronous standby is
//! promoted, the demo's cut sessions are replaced by the next orders, and every order
//! answered 201 is in the portfolio the surviving replica serves.

use axum::body::Body;
use http::{Request, StatusCode};
use meridian_db::{DbRole, Peer};
use serde_json::json;
use std::time::{Duration, Instant};

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_resume_through_the_writer_endpoints_after_the_primary_is_lost() {
    let base = base_dir("failover");
    let tag = std::process::id();
    let names = [
        format!("db-demofo{tag}-a"),
        format!("db-demofo{tag}-b"),
        format!("db-demofo{tag}-c"),
    ];
    let mut a = db(&names[0], DbRole::Primary, "127.82.203.1", &base);
    let mut b = db(&names[1], DbRole::SyncStandby, "127.82.203.2", &base);
    let mut c = db(&names[2], DbRole::Replica, "127.82.203.3", &base);
    a.sync_standbys = vec![names[1].clone()];
    a.replicas = vec![names[1].clone(), names[2].clone()];
    for n in [&mut b, &mut c] {
        n.upstream = Some(a.listen);
        n.source = Some(n.listen.ip());
    }
    // The demo's region holds b and c: their writer endpoints lead to whoever is primary.
    let writers = vec![addr("127.82.203.2:5434"), addr("127.82.203.3:5434")];
    b.writer = Some(writers[0]);
    c.writer = Some(writers[1]);
    let all: Vec<Peer> = [&a, &b, &c]
        .iter()
        .map(|o| Peer {
            name: o.name.clone(),
            region: o.region.clone(),
            admin: o.admin,
            address: o.listen,
        })
        .collect();
    for n in [&mut a, &mut b, &mut c] {
        n.lease = Duration::from_secs(2);
        n.peers = all.iter().filter(|p| p.name != n.name).cloned().collect();
    }
    let (a_listen, b_listen, c_listen) = (a.listen, b.listen, c.listen);
    let (node_a, node_b, node_c) = (start(a), start(b), start(c));
    wait_ready(&node_a, a_listen, false).await;
    wait_ready(&node_b, b_listen, true).await;
    wait_ready(&node_c, c_listen, true).await;

    // b takes over on its own only once it knows it is the synchronous standby.
    let b_admin = addr("127.82.203.2:9650");
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let status = meridian_http::client::call(
            b_admin,
            http::Method::GET,
            "/status",
            None,
            Duration::from_secs(2),
            64 * 1024,
        )
        .await
        .ok()
        .and_then(|f| serde_json::from_slice::<meridian_db::Status>(&f.body).ok());
        if status.is_some_and(|s| s.synchronous) {
            break;
        }
        assert!(Instant::now() < until, "b never knew it was synchronous");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let app = app("eu-west-1", writers, vec![c_listen]);
    let buy = || json!({"user": "ines", "symbol": "JPM", "side": "buy", "quantity": 1});
    // The endpoints lead somewhere once the lease is held: bounded retries for the first.
    let until = Instant::now() + Duration::from_secs(30);
    let mut acked = 0;
    while acked == 0 {
        let placed = order(&app, buy()).await;
        if placed.status == StatusCode::CREATED {
            acked += 1;
        } else {
            assert!(
                Instant::now() < until,
                "no order within 30s: {}",
                placed.body
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for _ in 0..3 {
        let placed = order(&app, buy()).await;
        assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
        acked += 1;
    }

    // The primary's machine dies: keeper and PostgreSQL at once.
    node_a.task.abort();
    let _ = node_a.task.await;
    let lost_at = Instant::now();
    // The server goes with its keeper, but not in the same instant: an order placed in
    // between would still commit there and hide the failover this test is about.
    while tokio::net::TcpStream::connect(a_listen).await.is_ok() {
        assert!(
            lost_at.elapsed() < Duration::from_secs(10),
            "the lost primary's PostgreSQL still accepts connections"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut refused, mut unknown) = (0, 0);
    let mut resumed = None;
    while resumed.is_none() {
        let placed = order(&app, buy()).await;
        match (placed.status, placed.body["error"].as_str()) {
            (StatusCode::CREATED, _) => {
                acked += 1;
                resumed = Some(lost_at.elapsed());
            }
            (StatusCode::SERVICE_UNAVAILABLE, Some("commit_outcome_unknown")) => unknown += 1,
            (StatusCode::SERVICE_UNAVAILABLE, Some("database_unavailable")) => refused += 1,
            (status, _) => panic!("unexpected answer {status}: {}", placed.body),
        }
        assert!(
            lost_at.elapsed() < Duration::from_secs(30),
            "no order taken within 30s of the loss ({refused} refused, {unknown} unknown)"
        );
        if resumed.is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let resumed = resumed.unwrap_or_default();
    eprintln!(
        "orders resumed {:.1}s after the primary was lost ({refused} refused, {unknown} with an unknown outcome meanwhile)",
        resumed.as_secs_f64()
    );
    // Not one failure per pooled session for ever: the orders after that all go through.
    let mut last = None;
    for _ in 0..5 {
        let placed = order(&app, buy()).await;
        assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
        acked += 1;
        last = placed.body["commit_lsn"].as_str().map(str::to_owned);
    }

    // The replica follows the new primary; read-your-writes holds across the failover, and
    // no acknowledged order is lost (synchronous standby).
    let read = portfolio(&app, "ines", last.as_deref()).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    let held = position(&read.body, "JPM").unwrap_or(0);
    assert!(
        (acked..=acked + unknown).contains(&held),
        "{acked} orders acknowledged, {unknown} unknown, {held} held: {}",
        read.body
    );
    let health = send(&app, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(health.status, StatusCode::OK);

    stop(node_b).await;
    stop(node_c).await;
    let _ = std::fs::remove_dir_all(&base);
}
