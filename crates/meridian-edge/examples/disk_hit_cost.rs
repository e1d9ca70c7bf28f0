//! The cost of a disk hit with and without encryption at rest, side by side: the same
//! objects read back through `Store::disk_stream` from a plaintext and from a sealed disk
//! tier (the page cache warm in both, so this is the CPU cost of AES-GCM, not the disk's).
//!
//! `cargo run --release -p meridian-edge --example disk_hit_cost [size_kib] [hits]`

use futures_util::StreamExt;
use meridian_edge::sealed::DiskKey;
use meridian_edge::store::{Object, ObjectBody, Store};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

async fn on_disk(store: &Arc<Store>, key: &str, body: bytes::Bytes) -> Arc<Object> {
    store.put(Arc::new(Object {
        key: key.to_owned(),
        path: format!("/{key}"),
        meta: meridian_cache::Stored::new(
            200,
            http::HeaderMap::new(),
            Duration::ZERO,
            SystemTime::now(),
            Duration::from_secs(600),
        ),
        body: ObjectBody::Memory(body),
        vary: None,
        body_id: 1,
    }));
    for _ in 0..500 {
        if let Some(o) = store.get(key) {
            if matches!(o.body, ObjectBody::Disk { .. }) {
                return o;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the object did not reach the disk tier");
}

async fn hits(store: &Arc<Store>, obj: &Object, n: u32) -> Duration {
    let ObjectBody::Disk { file, len, owner } = &obj.body else {
        unreachable!()
    };
    let start = Instant::now();
    for _ in 0..n {
        let mut s = store.disk_stream(file, owner, 0, *len);
        let mut got = 0u64;
        while let Some(c) = s.next().await {
            got += c.expect("read back").len() as u64;
        }
        assert_eq!(got, *len);
    }
    start.elapsed() / n
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let kib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1024);
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let body = bytes::Bytes::from((0..kib * 1024).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let base = std::env::temp_dir().join(format!("meridian-disk-hit-{}", std::process::id()));
    let key = Arc::new(DiskKey::from_hex(&"5a".repeat(32)).expect("a valid key"));
    // Memory of 8 KiB: every object of this size lives on disk.
    let plain = Store::new(8 * 1024, Some(base.join("plain")), 1 << 30, None).expect("store");
    let sealed =
        Store::new(8 * 1024, Some(base.join("sealed")), 1 << 30, Some(key)).expect("store");
    let po = on_disk(&plain, "o", body.clone()).await;
    let so = on_disk(&sealed, "o", body).await;
    // Warm up both (page cache), then alternate rounds so drift hits both alike.
    hits(&plain, &po, 5).await;
    hits(&sealed, &so, 5).await;
    let (mut tp, mut ts) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..5 {
        tp += hits(&plain, &po, n / 5).await;
        ts += hits(&sealed, &so, n / 5).await;
    }
    let (tp, ts) = (tp / 5, ts / 5);
    let mbps = |t: Duration| kib as f64 / 1024.0 / t.as_secs_f64();
    println!("object {kib} KiB, {n} hits each");
    println!(
        "plaintext: {:>9.1} us per hit  {:>7.0} MiB/s",
        tp.as_secs_f64() * 1e6,
        mbps(tp)
    );
    println!(
        "sealed:    {:>9.1} us per hit  {:>7.0} MiB/s",
        ts.as_secs_f64() * 1e6,
        mbps(ts)
    );
    println!(
        "sealed / plaintext: {:.2}x",
        ts.as_secs_f64() / tp.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(base);
}
