//! Losing the primary: the synchronous standby wins the lease from a majority of the
//! keepers and promotes itself, no acknowledged write is lost, the replica follows the
//! new primary, and the old primary cannot come back as a second writer.

mod common;
use common::*;

use meridian_db::{run, DbError, DbRole, Peer, Status};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_synchronous_standby_takes_over_and_the_replica_follows() {
    meridian_telemetry::init_logs("info");
    let base = base_dir("failover");
    let tag = std::process::id();
    let names = [
        format!("db-fo{tag}-a"),
        format!("db-fo{tag}-b"),
        format!("db-fo{tag}-c"),
    ];
    let mut a = options(&names[0], DbRole::Primary, "127.78.5.1", &base);
    let mut b = options(&names[1], DbRole::SyncStandby, "127.78.5.2", &base);
    let mut c = options(&names[2], DbRole::Replica, "127.78.5.3", &base);
    a.sync_standbys = vec![names[1].clone()];
    a.replicas = vec![names[1].clone(), names[2].clone()];
    for n in [&mut b, &mut c] {
        n.upstream = Some(a.listen);
        n.source = Some(n.listen.ip());
    }
    let all: Vec<Peer> = [&a, &b, &c]
        .iter()
        .map(|o| Peer {
            name: o.name.clone(),
            admin: o.admin,
            address: o.listen,
        })
        .collect();
    for n in [&mut a, &mut b, &mut c] {
        n.lease = Duration::from_secs(2);
        n.peers = all.iter().filter(|p| p.name != n.name).cloned().collect();
    }
    let (a_opts, b_listen, c_listen) = (a.clone(), b.listen, c.listen);
    let (a_admin, b_admin, c_admin) = (a.admin, b.admin, c.admin);
    let needles = vec![base.display().to_string()];

    let node_a = start(a);
    let node_b = start(b);
    let node_c = start(c);
    for (n, admin) in [(&node_a, a_admin), (&node_b, b_admin), (&node_c, c_admin)] {
        wait_healthy(n, admin, Duration::from_secs(60)).await;
    }
    let primary = sql(a_opts.listen).await.unwrap();
    primary
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders VALUES (1)")
        .await
        .unwrap();

    // The primary's machine dies: keeper, witness and PostgreSQL at once.
    node_a.task.abort();
    let _ = node_a.task.await;
    let lost_at = Instant::now();

    let status: Status = wait_for("b promoted", Duration::from_secs(20), || async {
        let (code, body) = get(b_admin, "/status").await?;
        let s: Status = serde_json::from_str(&body).map_err(|e| format!("{code} {body}: {e}"))?;
        if s.role == DbRole::Primary && !s.in_recovery {
            Ok(s)
        } else {
            Err(format!("{:?}, in recovery {}", s.role, s.in_recovery))
        }
    })
    .await;
    assert_eq!(status.name, names[1]);
    let took = lost_at.elapsed();
    // The acknowledged write is there, and the new primary takes writes.
    let new_primary = sql(b_listen).await.unwrap();
    let rows: i64 = new_primary
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "no acknowledged write lost");
    new_primary
        .execute("INSERT INTO orders VALUES (2)", &[])
        .await
        .unwrap();

    // The replica streams from the new primary: it sees the write made after the failover.
    let replica = sql(c_listen).await.unwrap();
    wait_for("the replica follows", Duration::from_secs(20), || async {
        let n: i64 = replica
            .query_one("SELECT count(*) FROM orders WHERE id = 2", &[])
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        if n == 1 {
            Ok(())
        } else {
            Err("row 2 not replayed yet".into())
        }
    })
    .await;
    wait_healthy(&node_b, b_admin, Duration::from_secs(10)).await;
    wait_healthy(&node_c, c_admin, Duration::from_secs(20)).await;

    // The old primary, started again on its data, refuses to be a second writer.
    let back = tokio::time::timeout(Duration::from_secs(20), run(a_opts, std::future::pending()))
        .await
        .expect("the old primary decides quickly");
    match back {
        Err(DbError::LeaseHeld { holder, .. }) => assert_eq!(holder, names[1]),
        other => panic!("the old primary must not start as a writer: {other:?}"),
    }
    eprintln!(
        "promotion took {:.1}s after the primary was lost",
        took.as_secs_f64()
    );

    stop(node_b).await;
    stop(node_c).await;
    let left = processes_mentioning(&needles);
    assert!(left.is_empty(), "processes left: {left:?}");
}
