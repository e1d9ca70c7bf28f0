//! The manual promotion policy: when the writer region is lost, no replica elsewhere takes
//! over by itself; `POST /promote` (what `meridian db promote` sends) makes one take over.

mod common;
use common::*;

use meridian_db::{DbRole, Peer, Promotion, Status};
use std::time::{Duration, Instant};

/// `POST /promote` to a keeper, as `meridian db promote` sends it.
async fn promote(
    admin: std::net::SocketAddr,
    token: Option<&str>,
) -> meridian_http::client::Fetched {
    meridian_http::client::call(
        admin,
        http::Method::POST,
        "/promote",
        token,
        Duration::from_secs(2),
        4096,
    )
    .await
    .unwrap()
}

async fn status(admin: std::net::SocketAddr) -> Option<Status> {
    let (_, body) = get(admin, "/status").await.ok()?;
    serde_json::from_str(&body).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_manual_promotion_a_replica_takes_over_only_when_asked() {
    meridian_telemetry::init_logs("info");
    let base = base_dir("manual");
    let tag = std::process::id();
    let name = |s: &str| format!("db-mp{tag}-{s}");
    let mut a = options(&name("a"), DbRole::Primary, "127.78.9.1", &base);
    let mut c = options(&name("c"), DbRole::Replica, "127.78.9.3", &base);
    let mut d = options(&name("d"), DbRole::Replica, "127.78.9.4", &base);
    let token =
        meridian_http::secrets::AdminToken::load(&meridian_config::SecretSource::StateDir, &base)
            .unwrap();
    for n in [&mut a, &mut c, &mut d] {
        n.admin_token = token.clone();
    }
    a.replicas = vec![c.name.clone(), d.name.clone()];
    c.region = "r2".into();
    d.region = "r3".into();
    for n in [&mut c, &mut d] {
        n.upstream = Some(a.listen);
        n.promotion = Promotion::Manual;
    }
    for n in [&mut a, &mut c, &mut d] {
        n.source = Some(n.listen.ip());
        n.lease = Duration::from_secs(2);
    }
    let all: Vec<Peer> = [&a, &c, &d]
        .iter()
        .map(|o| Peer {
            name: o.name.clone(),
            region: o.region.clone(),
            admin: o.admin,
            address: o.listen,
        })
        .collect();
    for n in [&mut a, &mut c, &mut d] {
        n.peers = all.iter().filter(|p| p.name != n.name).cloned().collect();
    }
    let (a_admin, c_admin, d_admin, c_listen) = (a.admin, c.admin, d.admin, c.listen);
    let (node_a, node_c, node_d) = (start(a), start(c), start(d));
    for (n, admin) in [(&node_a, a_admin), (&node_c, c_admin), (&node_d, d_admin)] {
        wait_healthy(n, admin, Duration::from_secs(60)).await;
    }
    wait_for(
        "the replicas know their lag",
        Duration::from_secs(20),
        || async {
            let s = status(c_admin).await.ok_or("no status")?;
            if s.received > 0 {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .await;

    // The admin token is rotated with a short grace. Once the grace is over, the keepers
    // ask each other for the lease with the new token (the primary goes on leading) and
    // accept the new token from the CLI, not the old one.
    let old = token.current();
    let before = status(a_admin).await.expect("a answers");
    meridian_http::secrets::rotate(
        &base.join(meridian_http::admin::TOKEN_FILE),
        Duration::from_secs(1),
    )
    .unwrap();
    tokio::time::sleep(meridian_http::secrets::RELOAD + Duration::from_secs(5)).await;
    let after = status(a_admin).await.expect("a answers");
    assert!(
        after.role == DbRole::Primary && after.changes.len() == before.changes.len(),
        "the primary went on leading through the rotation: {after:?}"
    );
    let new = std::fs::read_to_string(base.join(meridian_http::admin::TOKEN_FILE)).unwrap();
    let new = new.trim();
    assert_ne!(new, old);
    let stale = promote(c_admin, Some(&old)).await;
    assert_eq!(stale.status, 401, "the old token after its grace");

    // While the primary leads, a promotion by hand is refused.
    let refused = promote(c_admin, Some(new)).await;
    assert_eq!(
        refused.status,
        409,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );

    // The writer region is lost: with the manual policy, nobody takes over by itself.
    node_a.task.abort();
    let _ = node_a.task.await;
    let lost = Instant::now();
    while lost.elapsed() < Duration::from_secs(8) {
        for admin in [c_admin, d_admin] {
            if let Some(s) = status(admin).await {
                assert!(s.in_recovery, "{} promoted itself: {s:?}", s.name);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // An operator promotes c: it asks for the lease, wins it and takes writes.
    let refused = promote(c_admin, None).await;
    assert_eq!(refused.status, 401, "the admin token is needed");
    let asked = promote(c_admin, Some(new)).await;
    assert_eq!(
        asked.status,
        202,
        "{}",
        String::from_utf8_lossy(&asked.body)
    );
    let s: Status = wait_for("c promoted", Duration::from_secs(20), || async {
        let s = status(c_admin).await.ok_or("no status")?;
        if !s.in_recovery && s.role == DbRole::Primary {
            Ok(s)
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    let change = s.changes.last().expect("recorded");
    assert!(change.cause.contains("by hand"), "{change:?}");
    assert!(!s.promotion_requested);
    sql(c_listen)
        .await
        .unwrap()
        .batch_execute("CREATE TABLE after_manual (id int)")
        .await
        .unwrap();
    // d follows c.
    wait_for("d streams from c", Duration::from_secs(30), || async {
        let s = status(d_admin).await.ok_or("no status")?;
        let (code, _) = get(d_admin, "/health").await?;
        if s.in_recovery && code == 200 {
            Ok(())
        } else {
            Err(format!("{code} {s:?}"))
        }
    })
    .await;
    stop(node_c).await;
    stop(node_d).await;
}
