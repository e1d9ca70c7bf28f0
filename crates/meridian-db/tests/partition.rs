//! A partition that cuts the primary off from the other regions, but not from its standby:
//! while its lease holds nobody else is promoted; then it stops taking writes (it cannot
//! renew without the other regions), and its own standby, which still reaches them, takes
//! over. No replica of another region is ever promoted.

mod common;
use common::*;

use meridian_db::{DbRole, Peer, Status};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP relay to `target` that can be cut: when cut, open connections close and new
/// ones are closed at once, as a network partition would leave them unanswered.
fn relay(listener: TcpListener, target: SocketAddr, cut: watch::Receiver<bool>) {
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let mut cut = cut.clone();
            tokio::spawn(async move {
                if *cut.borrow_and_update() {
                    return;
                }
                let Ok(mut outbound) = TcpStream::connect(target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = cut.wait_for(|c| *c) => {}
                }
            });
        }
    });
}

async fn cuttable(at: &str, target: SocketAddr, cut: &watch::Receiver<bool>) -> SocketAddr {
    let l = TcpListener::bind(at).await.unwrap();
    let addr = l.local_addr().unwrap();
    relay(l, target, cut.clone());
    addr
}

async fn status(admin: SocketAddr) -> Option<Status> {
    let (_, body) = get(admin, "/status").await.ok()?;
    serde_json::from_str(&body).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_cut_off_from_the_other_regions_hands_over_to_its_own_standby() {
    meridian_telemetry::init_logs("info");
    let base = base_dir("partition");
    let tag = std::process::id();
    let name = |s: &str| format!("db-pt{tag}-{s}");
    let mut a = options(&name("a"), DbRole::Primary, "127.78.7.1", &base);
    let mut b = options(&name("b"), DbRole::SyncStandby, "127.78.7.2", &base);
    let mut c = options(&name("c"), DbRole::Replica, "127.78.7.3", &base);
    let mut d = options(&name("d"), DbRole::Replica, "127.78.7.4", &base);
    a.sync_standbys = vec![b.name.clone()];
    a.replicas = vec![b.name.clone(), c.name.clone(), d.name.clone()];
    c.region = "r2".into();
    d.region = "r3".into();
    for n in [&mut a, &mut b, &mut c, &mut d] {
        n.source = Some(n.listen.ip());
        n.lease = Duration::from_secs(2);
    }

    // Everything between a and the other regions (witness questions both ways, and the
    // replicas' streams) goes through relays that the cut closes.
    let (cut_tx, cut) = watch::channel(false);
    let a_seen_from_c = cuttable("127.78.8.3:0", a.admin, &cut).await;
    let a_seen_from_d = cuttable("127.78.8.4:0", a.admin, &cut).await;
    let a_pg_from_c = cuttable("127.78.8.3:0", a.listen, &cut).await;
    let a_pg_from_d = cuttable("127.78.8.4:0", a.listen, &cut).await;
    let c_seen_from_a = cuttable("127.78.8.1:0", c.admin, &cut).await;
    let d_seen_from_a = cuttable("127.78.8.1:0", d.admin, &cut).await;
    let c_pg_from_a = cuttable("127.78.8.1:0", c.listen, &cut).await;
    let d_pg_from_a = cuttable("127.78.8.1:0", d.listen, &cut).await;
    let peer = |o: &meridian_db::PgOptions, admin: SocketAddr, address: SocketAddr| Peer {
        name: o.name.clone(),
        region: o.region.clone(),
        admin,
        address,
    };
    a.peers = vec![
        peer(&b, b.admin, b.listen),
        peer(&c, c_seen_from_a, c_pg_from_a),
        peer(&d, d_seen_from_a, d_pg_from_a),
    ];
    b.peers = vec![
        peer(&a, a.admin, a.listen),
        peer(&c, c.admin, c.listen),
        peer(&d, d.admin, d.listen),
    ];
    c.peers = vec![
        peer(&a, a_seen_from_c, a_pg_from_c),
        peer(&b, b.admin, b.listen),
        peer(&d, d.admin, d.listen),
    ];
    d.peers = vec![
        peer(&a, a_seen_from_d, a_pg_from_d),
        peer(&b, b.admin, b.listen),
        peer(&c, c.admin, c.listen),
    ];
    b.upstream = Some(a.listen);
    c.upstream = Some(a_pg_from_c);
    d.upstream = Some(a_pg_from_d);
    let admins = [a.admin, b.admin, c.admin, d.admin];
    let (a_listen, lease) = (a.listen, a.lease);
    let nodes = vec![start(a), start(b), start(c), start(d)];
    for (n, admin) in nodes.iter().zip(admins) {
        wait_healthy(n, admin, Duration::from_secs(60)).await;
    }
    // b takes over on its own only once it knows it is the synchronous standby.
    wait_for(
        "b knows it is synchronous",
        Duration::from_secs(20),
        || async {
            let s = status(admins[1]).await.ok_or("no status")?;
            if s.synchronous {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .await;
    let primary = sql(a_listen).await.unwrap();
    primary
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();

    let _ = cut_tx.send(true);
    let cut_at = Instant::now();
    // While a's lease holds, a leads and nobody else claims to; afterwards a stops; never
    // does c or d lead.
    let mut b_led_at = None;
    while cut_at.elapsed() < lease * 6 {
        let s: Vec<Option<Status>> = futures_util::future::join_all(admins.map(status)).await;
        let leads = |i: usize| {
            s[i].as_ref()
                .is_some_and(|s| s.role == DbRole::Primary && !s.in_recovery)
        };
        assert!(
            !leads(2) && !leads(3),
            "a replica of another region leads: {s:?}"
        );
        // a renews every quarter lease and holds a lease for four fifths of one after it
        // asked: at least 0.55 lease after any cut. A margin for the poll below.
        if cut_at.elapsed() < lease.mul_f64(0.4) {
            assert!(leads(0), "a leads while its lease holds: {s:?}");
            assert!(!leads(1), "b leads while a's lease holds: {s:?}");
        }
        if leads(1) && b_led_at.is_none() {
            b_led_at = Some(cut_at.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let b_led_at = b_led_at.expect("a's own standby takes over once a's lease ran out");
    assert!(b_led_at >= lease.mul_f64(0.8), "b led after {b_led_at:?}");
    // a takes no write any more: it fenced itself (or rejoined as b's standby).
    let refused = match sql(a_listen).await {
        Ok(c) => c.execute("INSERT INTO t VALUES (2)", &[]).await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "the cut-off primary still took a write");
    eprintln!("b led {:.1}s after the cut", b_led_at.as_secs_f64());
    let mut nodes = nodes.into_iter();
    let a = nodes.next().unwrap();
    // a fenced itself: its keeper ended with the reason (no supervisor restarts it here).
    assert!(a.task.is_finished(), "a still runs as it was");
    let ended = a.task.await.unwrap();
    let why = format!("{ended:?}");
    assert!(
        why.contains("LeaseLost") || why.contains("signal 9"),
        "a ended for another reason: {why}"
    );
    for n in nodes {
        stop(n).await;
    }
}
