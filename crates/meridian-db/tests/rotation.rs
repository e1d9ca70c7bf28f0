//! `meridian secrets rotate db-password` under a primary and its synchronous standby: the
//! primary's keeper sets the new password on the role, new sessions need it (PostgreSQL
//! holds one password per role), sessions opened before stay open, a standby whose keeper
//! restarted mid-rotation comes back and streams with the new password, and the keepers'
//! own connections go on. On 127.98.1.0/24.

use meridian_db::DbRole;
use meridian_http::admin::DB_PASSWORD_FILE;
use meridian_http::secrets::{rotate, Secret};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_postgres::NoTls;

mod common;
use common::*;

async fn login(listen: SocketAddr, password: &str) -> Result<tokio_postgres::Client, String> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(listen.ip().to_string())
        .port(listen.port())
        .user("postgres")
        .password(password)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(3));
    let (client, conn) = cfg
        .connect(NoTls)
        .await
        .map_err(|e| match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => e.to_string(),
        })?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

async fn has_row(listen: SocketAddr, password: &str, id: i32) -> Result<(), String> {
    let c = login(listen, password).await?;
    let n: i64 = c
        .query_one("SELECT count(*) FROM rotation WHERE id = $1", &[&id])
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    if n == 1 {
        Ok(())
    } else {
        Err(format!("row {id} not there"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_db_password_is_set_on_the_role_and_replication_goes_on() {
    meridian_telemetry::init_logs("info");
    let base = base_dir("rotate");
    let old = meridian_http::admin::secret(&base, DB_PASSWORD_FILE).unwrap();
    let file = base.join(DB_PASSWORD_FILE);
    let tag = std::process::id();
    let (p_name, s_name) = (format!("db-rot{tag}-p"), format!("db-rot{tag}-s"));
    let mut p = options(&p_name, DbRole::Primary, "127.98.1.1", &base);
    p.password = Secret::load_file(&file).unwrap();
    p.sync_standbys = vec![s_name.clone()];
    p.replicas = vec![s_name.clone()];
    let mut s = options(&s_name, DbRole::SyncStandby, "127.98.1.2", &base);
    s.password = Secret::load_file(&file).unwrap();
    s.upstream = Some(p.listen);
    let (p_listen, s_listen, p_admin, s_admin) = (p.listen, s.listen, p.admin, s.admin);
    let s_opts = s.clone();
    let primary = start(p);
    let standby = start(s);
    wait_healthy(&primary, p_admin, Duration::from_secs(45)).await;
    wait_healthy(&standby, s_admin, Duration::from_secs(45)).await;

    let held = login(p_listen, &old).await.unwrap();
    held.batch_execute(
        "CREATE TABLE rotation (id int PRIMARY KEY); INSERT INTO rotation VALUES (1)",
    )
    .await
    .unwrap();
    wait_for("row 1 on the standby", Duration::from_secs(15), || {
        has_row(s_listen, &old, 1)
    })
    .await;

    // The standby's keeper is down while the password rotates.
    stop(standby).await;
    rotate(&file, Duration::from_secs(300)).unwrap();
    let new = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_ne!(new, old);
    wait_for(
        "the primary takes the new password",
        Duration::from_secs(30),
        || async { login(p_listen, &new).await.map(|_| ()) },
    )
    .await;
    // One password per role: new sessions need the new one; the one opened before stays.
    let refused = login(p_listen, &old).await.err().unwrap_or_default();
    assert!(
        refused.contains("password"),
        "the old one is refused: {refused:?}"
    );
    held.batch_execute("INSERT INTO rotation VALUES (2)")
        .await
        .expect("a session opened before the rotation stays open");

    // Restarted mid-rotation: its primary_conninfo holds the old password, which the
    // primary no longer takes; its keeper moves the stream to the new one.
    let standby = start(s_opts);
    wait_healthy(&standby, s_admin, Duration::from_secs(45)).await;
    wait_for(
        "the standby's primary_conninfo has the new password",
        Duration::from_secs(20),
        || async {
            let c = login(s_listen, &new).await?;
            let ci: String = c
                .query_one("SHOW primary_conninfo", &[])
                .await
                .map_err(|e| e.to_string())?
                .get(0);
            if ci.contains(new.as_str()) {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        },
    )
    .await;
    let writer = login(p_listen, &new).await.unwrap();
    writer
        .batch_execute("INSERT INTO rotation VALUES (3)")
        .await
        .unwrap();
    for id in [2, 3] {
        wait_for(
            &format!("row {id} on the standby"),
            Duration::from_secs(15),
            || has_row(s_listen, &new, id),
        )
        .await;
    }
    // The stream made again (its walsender ended) logs in with the new password.
    writer
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = '{s_name}'"
        ))
        .await
        .unwrap();
    writer
        .batch_execute("INSERT INTO rotation VALUES (4)")
        .await
        .unwrap();
    wait_for("row 4 on the standby", Duration::from_secs(20), || {
        has_row(s_listen, &new, 4)
    })
    .await;

    // The keepers' status connections, cut, come back with the new password.
    writer
        .batch_execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE '% keeper' AND pid <> pg_backend_pid()")
        .await
        .unwrap();
    for admin in [p_admin, s_admin] {
        wait_for(
            "/status after the rotation",
            Duration::from_secs(15),
            || async move {
                match get(admin, "/status").await? {
                    (200, _) => Ok(()),
                    (code, body) => Err(format!("{code} {body}")),
                }
            },
        )
        .await;
        wait_for(
            "/health after the rotation",
            Duration::from_secs(15),
            || async move {
                match get(admin, "/health").await? {
                    (200, _) => Ok(()),
                    (code, body) => Err(format!("{code} {body}")),
                }
            },
        )
        .await;
    }
    stop(standby).await;
    stop(primary).await;
}
