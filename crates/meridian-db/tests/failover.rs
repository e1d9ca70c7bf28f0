//! Losing the primary: the synchronous standby wins the lease from a majority of the
//! keepers and promotes itself, no acknowledged write is lost, the replica follows the
//! new primary, and the old primary comes back as a standby (pg_rewind), never a writer.

mod common;
use common::*;

use meridian_db::{DbRole, Peer, Status};
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
    }
    // Every node leaves from its own address, the primary too: after a failover it
    // streams from the new one.
    for n in [&mut a, &mut b, &mut c] {
        n.source = Some(n.listen.ip());
    }
    // a and b share the writer region; c is a replica in another.
    c.region = "r2".into();
    // The replica's region has a writer endpoint: whoever is primary, writes go there.
    let writer = addr("127.78.5.3:5434");
    c.writer = Some(writer);
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
    let (a_opts, b_opts, b_listen, c_listen) = (a.clone(), b.clone(), b.listen, c.listen);
    let (a_admin, b_admin, c_admin) = (a.admin, b.admin, c.admin);
    let needles = vec![base.display().to_string()];

    let node_a = start(a);
    let node_b = start(b);
    let node_c = start(c);
    for (n, admin) in [(&node_a, a_admin), (&node_b, b_admin), (&node_c, c_admin)] {
        wait_healthy(n, admin, Duration::from_secs(60)).await;
    }
    // b takes over on its own only once it knows it is the synchronous standby.
    wait_for(
        "b knows it is synchronous",
        Duration::from_secs(20),
        || async {
            let (_, body) = get(b_admin, "/status").await?;
            let s: Status = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            if s.synchronous {
                Ok(())
            } else {
                Err(body)
            }
        },
    )
    .await;
    let primary = sql(a_opts.listen).await.unwrap();
    primary
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders VALUES (1)")
        .await
        .unwrap();
    // A write load through the writer endpoint, remembering every acknowledged commit.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(i32, Instant)>::new()));
    let (load_stop, load_stopped) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(write_load(writer, acked.clone(), load_stopped));
    wait_for(
        "writes through the writer endpoint",
        Duration::from_secs(20),
        || async {
            if acked.lock().unwrap().len() >= 5 {
                Ok(())
            } else {
                Err("fewer than 5 commits".into())
            }
        },
    )
    .await;

    // As root (the test command installs nftables), the writer endpoint is forwarded in
    // the kernel: the keeper's rules lead to the primary.
    writer_rules_lead_to(writer, "127.78.5.1:5432").await;

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
    let change = status.changes.last().expect("the promotion is recorded");
    assert_eq!(change.role, DbRole::Primary);
    assert!(change.cause.contains("synchronous standby"), "{change:?}");
    let took = lost_at.elapsed();
    // The acknowledged write is there, and the new primary takes writes.
    let new_primary = sql(b_listen).await.unwrap();
    let rows: i64 = new_primary
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert!(rows >= 1, "the first write is there");
    new_primary
        .execute("INSERT INTO orders VALUES (2)", &[])
        .await
        .unwrap();

    writer_rules_lead_to(writer, "127.78.5.2:5432").await;

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
    // Writes work again through the same endpoint, and none that was acknowledged is lost.
    let rto = wait_for(
        "a write after the loss",
        Duration::from_secs(20),
        || async {
            let first_after = acked
                .lock()
                .unwrap()
                .iter()
                .find(|(_, at)| *at > lost_at)
                .map(|(_, at)| at.duration_since(lost_at));
            first_after.ok_or_else(|| "no commit acknowledged since the loss".to_string())
        },
    )
    .await;
    let _ = load_stop.send(true);
    let _ = load.await;
    let ids: Vec<i32> = acked.lock().unwrap().iter().map(|(id, _)| *id).collect();
    let kept: i64 = new_primary
        .query_one("SELECT count(*) FROM orders WHERE id = ANY($1)", &[&ids])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        kept,
        ids.len() as i64,
        "acknowledged writes lost: {}",
        ids.len() as i64 - kept
    );
    assert!(
        rto < Duration::from_secs(10),
        "writes came back after {rto:?}"
    );
    eprintln!(
        "{} writes acknowledged, none lost; writes worked again {:.1}s after the primary was lost",
        ids.len(),
        rto.as_secs_f64()
    );
    wait_healthy(&node_b, b_admin, Duration::from_secs(10)).await;
    wait_healthy(&node_c, c_admin, Duration::from_secs(20)).await;

    // The old primary, started again on its data, does not lead: it is rewound and
    // rejoins as the new primary's standby, takes no write, and replays the new ones.
    let a_listen = a_opts.listen;
    let node_a = start(a_opts);
    let s: Status = wait_for(
        "a rejoins as a standby",
        Duration::from_secs(60),
        || async {
            let (code, body) = get(a_admin, "/status").await?;
            let s: Status =
                serde_json::from_str(&body).map_err(|e| format!("{code} {body}: {e}"))?;
            if s.in_recovery {
                Ok(s)
            } else {
                Err(format!("{:?}, in recovery {}", s.role, s.in_recovery))
            }
        },
    )
    .await;
    assert_eq!(
        s.role,
        DbRole::SyncStandby,
        "it shares the new primary's region"
    );
    let old = sql(a_listen).await.unwrap();
    let refused = old.execute("INSERT INTO orders VALUES (4)", &[]).await;
    assert!(refused.is_err(), "the old primary took a write");
    wait_for(
        "a replays the new primary's writes",
        Duration::from_secs(20),
        || async {
            let n: i64 = old
                .query_one("SELECT count(*) FROM orders WHERE id = 2", &[])
                .await
                .map_err(|e| e.to_string())?
                .get(0);
            if n == 1 {
                Ok(())
            } else {
                Err("row 2 not replayed".into())
            }
        },
    )
    .await;
    eprintln!(
        "promotion took {:.1}s after the primary was lost",
        took.as_secs_f64()
    );
    stop(node_a).await;

    // The new primary's node restarts: its data directory says primary (whatever the
    // config says), so it takes the lease before PostgreSQL takes a write, and leads on.
    stop(node_b).await;
    let node_b = start(b_opts);
    wait_healthy(&node_b, b_admin, Duration::from_secs(30)).await;
    let (_, body) = get(b_admin, "/status").await.unwrap();
    let s: Status = serde_json::from_str(&body).unwrap();
    assert_eq!((s.role, s.in_recovery), (DbRole::Primary, false), "{body}");
    sql(b_listen)
        .await
        .unwrap()
        .execute("INSERT INTO orders VALUES (3)", &[])
        .await
        .unwrap();

    stop(node_b).await;
    stop(node_c).await;
    let left = processes_mentioning(&needles);
    assert!(left.is_empty(), "processes left: {left:?}");
}

/// As root, waits (10 s at most) until the kernel rules of the writer endpoint at
/// `writer` rewrite to `to`; as anyone else there are none to wait for.
async fn writer_rules_lead_to(writer: std::net::SocketAddr, to: &str) {
    if meridian_os::is_root() {
        let what = format!("the writer rules lead to {to}");
        wait_for(&what, Duration::from_secs(10), || async {
            writer_rules(writer, to)
        })
        .await;
    }
}

/// The kernel rules of the writer endpoint at `writer`, when they rewrite to `to`.
fn writer_rules(writer: std::net::SocketAddr, to: &str) -> Result<(), String> {
    let nft = meridian_os::find_program("nft").ok_or("nft is not installed")?;
    let table = format!("meridian_writer_{}_{}", writer.ip(), writer.port()).replace('.', "_");
    let out = std::process::Command::new(nft)
        .args(["list", "table", "ip", &table])
        .output()
        .map_err(|e| e.to_string())?;
    let rules = String::from_utf8_lossy(&out.stdout).into_owned();
    if rules.contains(&format!("dnat to {to}")) {
        Ok(())
    } else {
        Err(format!("{rules}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// Inserts rows 1000, 1001, ... through `writer` until told to stop, reconnecting after
/// any error; records each commit the server acknowledged, and when.
async fn write_load(
    writer: std::net::SocketAddr,
    acked: std::sync::Arc<std::sync::Mutex<Vec<(i32, Instant)>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut next = 1000;
    let deadline = Instant::now() + Duration::from_secs(90);
    while !*stop.borrow() && Instant::now() < deadline {
        let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(2), sql(writer)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        loop {
            if *stop.borrow_and_update() {
                return;
            }
            let id = next;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&id];
            let insert = client.execute("INSERT INTO orders VALUES ($1)", &params);
            match tokio::time::timeout(Duration::from_secs(3), insert).await {
                Ok(Ok(_)) => {
                    acked.lock().unwrap().push((next, Instant::now()));
                    next += 1;
                }
                // Not acknowledged: it may or may not have committed; try the next id.
                _ => {
                    next += 1;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
