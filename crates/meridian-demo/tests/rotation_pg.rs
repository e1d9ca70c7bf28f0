//! The demo keeps taking orders across `meridian secrets rotate db-password`: its pools
//! re-read the password file, so sessions opened after the primary's keeper set the new
//! password log in with it. On 127.98.2.0/24.

use meridian_db::DbRole;
use meridian_http::admin::DB_PASSWORD_FILE;
use meridian_http::secrets::{rotate, Secret};
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod common;
use common::*;

async fn login(listen: SocketAddr, password: &str) -> Result<tokio_postgres::Client, String> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(listen.ip().to_string())
        .port(listen.port())
        .user("postgres")
        .password(password)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(2));
    let (client, conn) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(client)
}

async fn buy(app: &axum::Router) -> Answer {
    order(
        app,
        json!({"user": "rota", "symbol": "AAPL", "side": "buy", "quantity": 1}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_go_on_across_a_database_password_rotation() {
    let base = base_dir("rotate");
    std::fs::write(base.join(DB_PASSWORD_FILE), format!("{PASSWORD}\n")).unwrap();
    let file = base.join(DB_PASSWORD_FILE);
    let name = format!("db-demorot{}-p", std::process::id());
    let mut p = db(&name, DbRole::Primary, "127.98.2.1", &base);
    p.password = Secret::load_file(&file).unwrap();
    let listen = p.listen;
    let primary = start(p);
    wait_ready(&primary, listen, false).await;
    let app = meridian_demo::router(meridian_demo::DemoOptions {
        identity: meridian_demo::Identity {
            region: "r1".into(),
            az: "r1a".into(),
            instance: "svc-r1a-1".into(),
        },
        processing_time: Duration::ZERO,
        database: Some(meridian_demo::DatabaseOptions::new(
            vec![listen],
            vec![listen],
            Secret::load_file(&file).unwrap(),
        )),
        quote_cache: None,
    });
    let first = buy(&app).await;
    assert_eq!(first.status, http::StatusCode::CREATED, "{}", first.body);

    rotate(&file, Duration::from_secs(300)).unwrap();
    let new = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    // Orders go on while the keeper applies it (open sessions, or the previous password).
    let during = buy(&app).await;
    assert_eq!(during.status, http::StatusCode::CREATED, "{}", during.body);
    let admin = {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(c) = login(listen, &new).await {
                break c;
            }
            assert!(
                Instant::now() < until,
                "the primary did not take the new password"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    assert!(
        login(listen, PASSWORD).await.is_err(),
        "the old one is refused now"
    );
    // Every session of the demo is cut: the ones it opens now need the new password.
    admin
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'meridian-demo'",
        )
        .await
        .unwrap();
    // A request that meets a session cut under it may fail once; then orders go on.
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let a = buy(&app).await;
        if a.status == http::StatusCode::CREATED {
            break;
        }
        assert!(
            Instant::now() < until,
            "no order after the rotation: {}",
            a.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..3 {
        let a = buy(&app).await;
        assert_eq!(a.status, http::StatusCode::CREATED, "{}", a.body);
    }
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'meridian-demo'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(n >= 1, "the demo logged in again with the new password");
    stop(primary).await;
    let _ = std::fs::remove_dir_all(&base);
}
