//! `meridian secrets rotate cache-password` under a running cache cluster: both keepers
//! give their Redis the new password beside the old one, so both authenticate during the
//! grace; after it only the new one does; replication goes on throughout, including a
//! replica that connects again (with the new `masterauth`). On 127.97.1.0/24.

use meridian_http::secrets::{rotate, Secret};
use meridian_redis::resp::Client;
use meridian_redis::PASSWORD_FILE;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod common;
use common::*;

async fn auth_ok(addr: SocketAddr, password: &str) -> bool {
    match Client::connect(addr, Some(password), Duration::from_secs(1)).await {
        Ok(mut c) => c.ping().await.is_ok(),
        Err(_) => false,
    }
}

async fn get_with(addr: SocketAddr, password: &str, key: &str) -> Option<Vec<u8>> {
    let mut c = Client::connect(addr, Some(password), Duration::from_secs(1))
        .await
        .ok()?;
    c.get(key).await.ok().flatten()
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_cache_password_takes_both_during_the_grace_then_only_the_new_one() {
    let dir = std::env::temp_dir().join(format!("meridian-redis-rot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let old = meridian_http::admin::secret(&dir, PASSWORD_FILE).unwrap();
    let file = dir.join(PASSWORD_FILE);
    let c = cluster_in("127.97.1", dir.clone(), |d| {
        Secret::load_file(&d.join(PASSWORD_FILE)).unwrap()
    })
    .await;
    let (p, r) = (c.primary.redis, c.replica.redis);
    let mut w = Client::connect(p, Some(&old), Duration::from_secs(2))
        .await
        .unwrap();
    w.set("before", b"1").await.unwrap();
    wait_for(
        Duration::from_secs(10),
        "the replica has `before`",
        || async { get_with(r, &old, "before").await.as_deref() == Some(&b"1"[..]) },
    )
    .await;

    let grace = Duration::from_secs(20);
    let rotated = rotate(&file, grace).unwrap();
    // The file keeps whole seconds: the grace ends at the second it names.
    let unix = rotated.previous_until.duration_since(UNIX_EPOCH).unwrap();
    let grace_ends = UNIX_EPOCH + Duration::from_secs(unix.as_secs());
    let new = read(&file);
    assert_ne!(new, old);
    wait_for(
        Duration::from_secs(10),
        "both nodes take the new password",
        || async { auth_ok(p, &new).await && auth_ok(r, &new).await },
    )
    .await;
    assert!(
        SystemTime::now() < grace_ends,
        "the machine is too slow to test within the grace"
    );
    for (node, addr) in [("primary", p), ("replica", r)] {
        assert!(
            auth_ok(addr, &old).await,
            "the old password on the {node} in grace"
        );
        assert!(auth_ok(addr, &new).await, "the new password on the {node}");
        assert!(!auth_ok(addr, "guess").await);
    }
    // A connection opened with the old password before the rotation still works.
    w.set("during", b"2").await.unwrap();
    wait_for(
        Duration::from_secs(10),
        "the replica has `during`",
        || async { get_with(r, &new, "during").await.as_deref() == Some(&b"2"[..]) },
    )
    .await;
    // The replica's link, made again, authenticates with the new masterauth.
    let mut pc = Client::connect(p, Some(&new), Duration::from_secs(2))
        .await
        .unwrap();
    pc.call(&["CLIENT", "KILL", "TYPE", "replica"])
        .await
        .unwrap();
    let conf = std::fs::read_to_string(dir.join("node1/redis.conf")).unwrap();
    assert!(
        conf.contains(&format!("masterauth {new}")),
        "redis.conf keeps it"
    );
    assert!(
        conf.contains(&format!(">{new} >{old}")),
        "both, for a restart"
    );

    // After the grace: only the new one.
    let left = grace_ends
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    wait_for(
        left + Duration::from_secs(10),
        "the old password refused on both nodes",
        || async { !auth_ok(p, &old).await && !auth_ok(r, &old).await },
    )
    .await;
    assert!(
        SystemTime::now() >= grace_ends,
        "the old password was refused before its grace ended"
    );
    assert!(auth_ok(p, &new).await && auth_ok(r, &new).await);
    let mut w = Client::connect(p, Some(&new), Duration::from_secs(2))
        .await
        .unwrap();
    w.set("after", b"3").await.unwrap();
    wait_for(
        Duration::from_secs(10),
        "the replica has `after`",
        || async { get_with(r, &new, "after").await.as_deref() == Some(&b"3"[..]) },
    )
    .await;
    let info = Client::connect(r, Some(&new), Duration::from_secs(2))
        .await
        .unwrap()
        .info("replication")
        .await
        .unwrap();
    assert_eq!(info.get("master_link_status"), Some("up"));
    let conf = std::fs::read_to_string(dir.join("node0/redis.conf")).unwrap();
    assert!(conf.contains(&format!(">{new}")) && !conf.contains(&old));
}
