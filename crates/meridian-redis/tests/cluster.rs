//! A cache cluster of two real redis-servers and their keepers, in this process: replication,
//! the primary endpoint, failover when the primary is killed or frozen, and the old
//! primary's return as a replica. Every test has its own 127.81.<n>.0/24.

use meridian_redis::resp::{Client, RespError};
use meridian_redis::CacheRole;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod common;
use common::*;

async fn client(addr: SocketAddr) -> Result<Client, RespError> {
    Client::connect(addr, Some(PASSWORD), Duration::from_secs(2)).await
}

/// Redis's own word for a server's role, or None when it does not answer.
async fn redis_role(addr: SocketAddr) -> Option<String> {
    let mut c = Client::connect(addr, Some(PASSWORD), Duration::from_millis(500))
        .await
        .ok()?;
    c.info("replication")
        .await
        .ok()?
        .get("role")
        .map(str::to_owned)
}

async fn get(addr: SocketAddr, key: &str) -> Option<Vec<u8>> {
    client(addr).await.ok()?.get(key).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replica_copies_the_primary_and_the_endpoint_leads_to_the_primary() {
    let c = cluster(11).await;
    let mut p = client(c.primary.redis).await.unwrap();
    p.set("quote:AAPL", b"189.95").await.unwrap();
    wait_for(
        Duration::from_secs(5),
        "the replica has the key",
        || async { get(c.replica.redis, "quote:AAPL").await.as_deref() == Some(&b"189.95"[..]) },
    )
    .await;
    // A replica takes no write.
    let mut r = client(c.replica.redis).await.unwrap();
    let refused = r.set("quote:MSFT", b"1").await.unwrap_err();
    assert!(refused.to_string().contains("READONLY"), "{refused}");
    // The endpoint leads to the primary: a write through it is on both.
    let mut e = client(c.endpoint).await.unwrap();
    e.set("quote:MSFT", b"411.22").await.unwrap();
    assert_eq!(
        get(c.primary.redis, "quote:MSFT").await.as_deref(),
        Some(&b"411.22"[..])
    );
    // Wrong or no password: refused.
    let err = Client::connect(c.primary.redis, Some("wrong"), Duration::from_secs(2))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("AUTH"), "{err}");
    let mut anon = Client::connect(c.primary.redis, None, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(anon
        .get("quote:AAPL")
        .await
        .unwrap_err()
        .to_string()
        .contains("NOAUTH"));

    // Status and metrics say what a console needs.
    let _ = p.get("quote:AAPL").await.unwrap();
    let _ = p.get("quote:none").await.unwrap();
    let s = status(&c.primary).await;
    assert_eq!(s["role"], "primary", "{s}");
    assert_eq!(s["redis_role"], "primary");
    assert_eq!(s["maxmemory"], 16 << 20);
    assert!(s["keyspace_hits"].as_i64().unwrap() >= 1, "{s}");
    assert!(s["hit_rate"].as_f64().unwrap() > 0.0, "{s}");
    assert_eq!(s["replicas"].as_array().unwrap().len(), 1, "{s}");
    let s = status(&c.replica).await;
    assert_eq!(s["role"], "replica", "{s}");
    assert_eq!(s["link"], "up");
    assert!(s["lag_bytes"].as_i64().is_some(), "{s}");
    let (code, metrics) = http(c.replica.admin, "GET", "/metrics", None).await;
    assert_eq!(code, 200);
    for series in [
        "cache_up 1",
        "cache_primary 0",
        "cache_replication_link_up 1",
        "cache_maxmemory_bytes 16777216",
        "cache_keyspace_hits_total",
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }
    // The peer calls need the admin token.
    assert_eq!(http(c.replica.admin, "GET", "/role", None).await.0, 401);
    assert_eq!(
        http(c.replica.admin, "POST", "/promote?term=0", Some("wrong"))
            .await
            .0,
        401
    );
    let (code, role) = http(c.replica.admin, "GET", "/role", Some(TOKEN)).await;
    assert_eq!(code, 200);
    assert!(role.contains("\"role\":\"replica\""), "{role}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_is_replaced_by_its_replica_and_rejoins_as_a_replica() {
    let c = cluster(12).await;
    let mut p = client(c.primary.redis).await.unwrap();
    p.set("order:1", b"AAPL x10").await.unwrap();
    wait_for(
        Duration::from_secs(5),
        "the replica has the key",
        || async { get(c.replica.redis, "order:1").await.is_some() },
    )
    .await;
    let pid = status(&c.primary).await["pid"]
        .as_i64()
        .expect("the primary's pid");
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    let took = wait_for(FAILOVER + MARGIN, "the replica is promoted", || async {
        redis_role(c.replica.redis).await.as_deref() == Some("master")
    })
    .await;
    eprintln!("promoted {took:?} after kill -9");
    // The data survived: the new primary held a copy, and the old node copies it back.
    assert_eq!(
        get(c.replica.redis, "order:1").await.as_deref(),
        Some(&b"AAPL x10"[..])
    );
    wait_for(
        Duration::from_secs(10),
        "the old primary rejoins as a replica",
        || async {
            redis_role(c.primary.redis).await.as_deref() == Some("slave")
                && get(c.primary.redis, "order:1").await.is_some()
        },
    )
    .await;
    // The endpoint leads to the new primary.
    wait_for(
        Duration::from_secs(5),
        "a write through the endpoint",
        || async {
            match client(c.endpoint).await {
                Ok(mut e) => e.set("order:2", b"MSFT x1").await.is_ok(),
                Err(_) => false,
            }
        },
    )
    .await;
    assert!(get(c.replica.redis, "order:2").await.is_some());
    let s = status(&c.replica).await;
    assert_eq!(s["role"], "primary", "{s}");
    assert!(s["term"].as_u64().unwrap() >= 1, "{s}");
    assert!(!s["events"].as_array().unwrap().is_empty(), "{s}");
    wait_for(
        Duration::from_secs(10),
        "both nodes healthy again",
        || async {
            http(c.primary.admin, "GET", "/health", None).await.0 == 200
                && http(c.replica.admin, "GET", "/health", None).await.0 == 200
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_primary_is_replaced_and_steps_down_when_it_wakes() {
    let c = cluster(13).await;
    let mut p = client(c.primary.redis).await.unwrap();
    p.set("user:1", b"alice").await.unwrap();
    wait_for(
        Duration::from_secs(5),
        "the replica has the key",
        || async { get(c.replica.redis, "user:1").await.is_some() },
    )
    .await;
    let pid = status(&c.primary).await["pid"]
        .as_i64()
        .expect("the primary's pid") as i32;
    unsafe {
        libc::kill(pid, libc::SIGSTOP);
    }
    let frozen_at = Instant::now();
    wait_for(FAILOVER + MARGIN, "the replica is promoted", || async {
        redis_role(c.replica.redis).await.as_deref() == Some("master")
    })
    .await;
    // Measured from the last answer, which came up to a check before the freeze.
    assert!(
        frozen_at.elapsed() >= FAILOVER / 2,
        "promoted after {:?}, before the failover time",
        frozen_at.elapsed()
    );
    // The endpoint leads to the new primary while the old one is still frozen.
    wait_for(
        Duration::from_secs(5),
        "a write through the endpoint",
        || async {
            match client(c.endpoint).await {
                Ok(mut e) => e.set("user:2", b"bob").await.is_ok(),
                Err(_) => false,
            }
        },
    )
    .await;
    assert!(get(c.replica.redis, "user:2").await.is_some());
    unsafe {
        libc::kill(pid, libc::SIGCONT);
    }
    // Two primaries for at most about one check: the old one steps down at once.
    let stepped = wait_for(
        Duration::from_secs(3),
        "the old primary steps down",
        || async { redis_role(c.primary.redis).await.as_deref() == Some("slave") },
    )
    .await;
    eprintln!("stepped down {stepped:?} after waking");
    let mut old = client(c.primary.redis).await.unwrap();
    assert!(old
        .set("user:3", b"x")
        .await
        .unwrap_err()
        .to_string()
        .contains("READONLY"));
    wait_for(
        Duration::from_secs(10),
        "the old primary copies the new one",
        || async { get(c.primary.redis, "user:2").await.is_some() },
    )
    .await;
    assert_eq!(status(&c.primary).await["role"], "replica");
}

#[tokio::test]
async fn a_keeper_stops_its_redis_when_told_to() {
    let mut c = cluster(14).await;
    let pids = c.pids.clone();
    assert!(pids.iter().all(|p| alive(*p)), "{pids:?}");
    for n in [&mut c.primary, &mut c.replica] {
        n.stop.take().unwrap().send(()).unwrap();
    }
    for n in [&mut c.primary, &mut c.replica] {
        let r = tokio::time::timeout(Duration::from_secs(10), &mut n.task).await;
        assert!(matches!(r, Ok(Ok(Ok(())))), "{}: {r:?}", n.name);
    }
    wait_for(Duration::from_secs(5), "no redis-server left", || async {
        !pids.iter().any(|p| alive(*p))
    })
    .await;
}

#[tokio::test]
async fn bad_options_stop_the_node_with_the_reason() {
    let dir = std::env::temp_dir().join(format!("meridian-redis-bad-{}", std::process::id()));
    let mut o = options(15, 0, CacheRole::Primary, &dir);
    o.password = "two words".into();
    let err = meridian_redis::run(o, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.needs_a_person());
    assert!(err.to_string().contains("redis-t15-0"), "{err}");
}
