//! Orders and portfolios against real PostgreSQL (a primary and a streaming replica run by
//! `meridian_db::run`, on 127.82.0.0/16): stored in one transaction, read back from the
//! replica once it has the reader's write, and written again after the server restarts.
//! Every wait is bounded.

use axum::body::Body;
use http::{Request, StatusCode};
use meridian_db::DbRole;
use meridian_demo::Lsn;
use serde_json::json;
use std::time::{Duration, Instant};

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_stored_and_read_back_from_the_replica_with_read_your_writes() {
    let base = base_dir("ryw");
    let tag = std::process::id();
    let (p_name, r_name) = (format!("db-demo{tag}-p"), format!("db-demo{tag}-r"));
    let mut p = db(&p_name, DbRole::Primary, "127.82.201.1", &base);
    p.replicas = vec![r_name.clone()];
    let mut r = db(&r_name, DbRole::Replica, "127.82.201.2", &base);
    r.upstream = Some(p.listen);
    let (p_listen, r_listen) = (p.listen, r.listen);
    let (primary, replica) = (start(p), start(r));
    wait_ready(&primary, p_listen, false).await;
    wait_ready(&replica, r_listen, true).await;

    // The first writer host has nothing behind it: the multi-host list moves on.
    let writers = vec![addr("127.82.201.9:5434"), p_listen];
    // Instances starting together each make the schema, under one advisory lock.
    let apps: Vec<axum::Router> = (0..3)
        .map(|_| app("eu-west-1", writers.clone(), vec![r_listen]))
        .collect();
    let first = futures_join(&apps).await;
    for a in &first {
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    }
    let app = &apps[0];

    let placed = order(
        app,
        json!({"user": "alice", "symbol": "aapl", "side": "buy", "quantity": 10}),
    )
    .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    let b = &placed.body;
    assert_eq!(b["region"], "eu-west-1");
    assert_eq!(b["order"]["symbol"], "AAPL");
    assert_eq!(b["order"]["side"], "buy");
    assert_eq!(b["order"]["quantity"], 10);
    assert_eq!(b["position"]["quantity"], 10);
    assert!(b["write_ms"].as_f64().unwrap() > 0.0, "{b}");
    let lsn = b["commit_lsn"].as_str().unwrap().to_owned();
    lsn.parse::<Lsn>().unwrap();
    assert_eq!(placed.headers["meridian-commit-lsn"], lsn.as_str());
    assert_eq!(placed.headers["cache-control"], "private, no-store");
    let cookie = placed.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with(&format!("meridian-min-lsn={lsn};")),
        "{cookie}"
    );

    // Every read right after a write sees it, though the replica streams asynchronously.
    let mut from_replica = 0;
    for i in 0..15 {
        let placed = order(
            app,
            json!({"user": "bob", "symbol": "MSFT", "side": "buy", "quantity": 1}),
        )
        .await;
        assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
        let id = placed.body["order"]["id"].clone();
        let lsn = placed.body["commit_lsn"].as_str().unwrap().to_owned();
        let read = portfolio(app, "bob", Some(&lsn)).await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.body);
        assert_eq!(position(&read.body, "MSFT"), Some(i + 1), "{}", read.body);
        assert_eq!(read.body["orders"][0]["id"], id, "the newest order first");
        let source = read.headers["meridian-read-from"].to_str().unwrap();
        assert_eq!(read.body["read_from"], source);
        if source == "replica" {
            from_replica += 1;
        }
    }
    eprintln!("{from_replica} of 15 reads after a write were served by the replica");
    assert!(from_replica > 0, "the replica served none of the reads");

    // The cookie the order answer set works as well as the header.
    let req = Request::get("/api/portfolio/alice")
        .header("cookie", format!("theme=dark; meridian-min-lsn={lsn}"))
        .body(Body::empty())
        .unwrap();
    let read = send(app, req).await;
    assert_eq!(position(&read.body, "AAPL"), Some(10), "{}", read.body);
    assert_eq!(read.headers["cache-control"], "private, no-store");

    // Signed in at the edge (the verified user in its header), a user reads only their own.
    let as_user = |who: &str, whose: &str| {
        Request::get(format!("/api/portfolio/{whose}"))
            .header(meridian_demo::VERIFIED_USER, who)
            .body(Body::empty())
            .unwrap()
    };
    let theirs = send(app, as_user("bob", "alice")).await;
    assert_eq!(theirs.status, StatusCode::FORBIDDEN, "{}", theirs.body);
    assert_eq!(theirs.body["error"], "not_your_portfolio");
    let own = send(app, as_user("alice", "alice")).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    // An empty portfolio is worth 0, not -0.
    let empty = send(app, as_user("nobody", "nobody")).await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.body);
    assert_eq!(
        empty.body["total_value"].to_string(),
        "0.0",
        "{}",
        empty.body
    );

    // Sells reduce a position and cannot take it below zero.
    let sold = order(
        app,
        json!({"user": "alice", "symbol": "AAPL", "side": "sell", "quantity": 4}),
    )
    .await;
    assert_eq!(sold.status, StatusCode::CREATED, "{}", sold.body);
    assert_eq!(sold.body["position"]["quantity"], 6);
    let oversold = order(
        app,
        json!({"user": "alice", "symbol": "AAPL", "side": "sell", "quantity": 7}),
    )
    .await;
    assert_eq!(oversold.status, StatusCode::CONFLICT, "{}", oversold.body);
    assert_eq!(oversold.body["error"], "insufficient_shares");
    let never = order(
        app,
        json!({"user": "carol", "symbol": "TSLA", "side": "sell", "quantity": 1}),
    )
    .await;
    assert_eq!(never.status, StatusCode::CONFLICT, "{}", never.body);
    let lsn = sold.body["commit_lsn"].as_str().unwrap();
    let read = portfolio(app, "alice", Some(lsn)).await;
    assert_eq!(position(&read.body, "AAPL"), Some(6), "{}", read.body);
    assert_eq!(
        read.body["orders"].as_array().unwrap().len(),
        2,
        "{}",
        read.body
    );

    // Bad input is refused before the database is asked.
    let bad = order(
        app,
        json!({"user": "alice", "symbol": "AAPL", "side": "buy"}),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body["message"].as_str().unwrap().contains("quantity"));
    let bad = portfolio(app, "alice", Some("yesterday")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    let bad = portfolio(app, "no%20such", None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);

    // A position the replica will not reach soon: the read waits its bounded second,
    // then goes to the writer.
    let started = Instant::now();
    let read = portfolio(app, "alice", Some("FFFFFFFF/0")).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.headers["meridian-read-from"], "writer");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(started.elapsed() < Duration::from_secs(5));

    // The metrics count orders by outcome and reads by where they were served.
    let metrics = send(app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    for line in [
        "orders_total{outcome=\"created\"}",
        "orders_total{outcome=\"conflict\"} 2",
        "portfolio_reads_total{from=\"replica\"}",
        "portfolio_reads_total{from=\"writer\"} 1",
        "order_write_duration_seconds_count",
    ] {
        assert!(metrics.text.contains(line), "{line} in:\n{}", metrics.text);
    }

    // /health/detailed goes to both; /health only says what happened last.
    let detailed = send(
        app,
        Request::get("/health/detailed")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        detailed.body["components"]["database"]["status"], "healthy",
        "{}",
        detailed.body
    );

    // Without its replica the region reads from the writer; /health stays 200.
    stop(replica).await;
    let read = portfolio(app, "alice", None).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.headers["meridian-read-from"], "writer");
    assert_eq!(position(&read.body, "AAPL"), Some(6));
    let health = send(app, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["database"]["schema_ready"], true);

    stop(primary).await;
    let _ = std::fs::remove_dir_all(&base);
}

/// One order per instance, all at once (each instance's first, so each makes the schema).
async fn futures_join(apps: &[axum::Router]) -> Vec<Answer> {
    let tasks: Vec<_> = apps
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let a = a.clone();
            tokio::spawn(async move {
                order(
                    &a,
                    json!({"user": format!("starter{i}"), "symbol": "NVDA", "side": "buy", "quantity": 1}),
                )
                .await
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_server_restarts_the_next_order_reconnects() {
    let base = base_dir("restart");
    let name = format!("db-demo{}-solo", std::process::id());
    let opts = db(&name, DbRole::Primary, "127.82.202.1", &base);
    let listen = opts.listen;
    let node = start(opts.clone());
    wait_ready(&node, listen, false).await;
    let app = app("us-east-1", vec![listen], vec![listen]);
    let buy = || json!({"user": "dora", "symbol": "V", "side": "buy", "quantity": 2});
    let placed = order(&app, buy()).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);

    // Restarted while idle: the pooled session is dead, and the next order notices and
    // connects again instead of failing.
    stop(node).await;
    let node = start(opts.clone());
    wait_ready(&node, listen, false).await;
    let placed = order(&app, buy()).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    assert_eq!(
        placed.body["position"]["quantity"], 4,
        "the first order survived"
    );

    // The server is gone: a clear 503 to retry, and /health stays 200 and says why.
    stop(node).await;
    let down = order(&app, buy()).await;
    assert_eq!(
        down.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        down.body
    );
    assert_eq!(down.body["error"], "database_unavailable");
    assert_eq!(down.headers["retry-after"], "1");
    let health = send(&app, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_ne!(health.body["database"]["writer"], "ok", "{}", health.body);

    // Back on its data: the next order and read work again.
    let node = start(opts);
    wait_ready(&node, listen, false).await;
    let placed = order(&app, buy()).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    assert_eq!(placed.body["position"]["quantity"], 6);
    let read = portfolio(&app, "dora", placed.body["commit_lsn"].as_str()).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(position(&read.body, "V"), Some(6));
    assert_eq!(read.body["orders"].as_array().unwrap().len(), 3);
    let health = send(&app, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(health.body["database"]["writer"], "ok", "{}", health.body);

    stop(node).await;
    let _ = std::fs::remove_dir_all(&base);
}
