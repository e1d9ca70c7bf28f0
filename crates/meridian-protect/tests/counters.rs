//! Rate-based rules and Idempotency-Key deduplication, driven with explicit clocks (wall
//! time passed in, or tokio's paused clock) so every outcome is deterministic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use meridian_protect::idempotency::{Begin, IdempotencyStore, StoredResponse};
use meridian_protect::rate::{RateCounter, Snapshot};

/// A wall-clock time `ms` after a whole-second instant, so slots start at `t(0)`.
fn t(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
}

fn counter(limit: u64, window_secs: u64, max_keys: usize) -> RateCounter {
    RateCounter::new(limit, Duration::from_secs(window_secs), max_keys).unwrap()
}

#[test]
fn exactly_limit_requests_pass_in_one_window() {
    let c = counter(50, 10, 1000);
    let mut admitted = 0;
    for i in 0..200 {
        let d = c.check("10.0.0.1", t(i * 50));
        assert_eq!(d.limit, 50);
        if d.admitted {
            admitted += 1;
            assert_eq!(d.remaining, 50 - admitted);
            assert_eq!(d.count, admitted);
        } else {
            assert_eq!(d.remaining, 0);
            assert_eq!(d.count, 50);
        }
    }
    assert_eq!(admitted, 50);
    let s = c.stats();
    assert_eq!((s.admitted, s.refused, s.keys), (50, 150, 1));
    // Another key has its own budget.
    assert!(c.check("10.0.0.2", t(9_999)).admitted);
    assert_eq!(c.check("10.0.0.2", t(9_999)).remaining, 48);
}

#[test]
fn capacity_returns_as_slots_expire_and_reset_says_when() {
    // 10 s window: 1 s slots starting at t(0).
    let c = counter(10, 10, 100);
    for _ in 0..4 {
        assert!(c.check("k", t(100)).admitted);
    }
    for _ in 0..6 {
        assert!(c.check("k", t(3_500)).admitted);
    }
    let refused = c.check("k", t(5_200));
    assert!(!refused.admitted);
    // Slot 0 leaves the window at 10.0 s.
    assert_eq!(refused.reset, Duration::from_millis(4_800));
    let at = 5_200 + refused.reset.as_millis() as u64;
    assert!(!c.check("k", t(at - 1)).admitted);
    for _ in 0..4 {
        assert!(c.check("k", t(at)).admitted);
    }
    let again = c.check("k", t(at));
    assert!(!again.admitted);
    // Now slot 3 (6 requests) is the oldest: it leaves at 13.0 s.
    assert_eq!(again.reset, Duration::from_millis(3_000));
    // An admitted request's reset is when its oldest counted slot frees capacity.
    let fresh = c.check("other", t(2_250));
    assert!(fresh.admitted);
    assert_eq!(fresh.reset, Duration::from_millis(9_750));
}

#[test]
fn count_only_never_blocks_but_reports_would_block() {
    let c = counter(5, 1, 100);
    let would: Vec<bool> = (0..10).map(|i| c.count_only("k", t(i)).admitted).collect();
    assert_eq!(
        would,
        [true, true, true, true, true, false, false, false, false, false]
    );
    assert_eq!(c.stats().counted_over, 5);
    assert_eq!(c.stats().refused, 0);
    // Count rules record every request.
    assert_eq!(c.count_only("k", t(20)).count, 11);
}

#[test]
fn concurrent_checks_admit_exactly_the_limit() {
    let c = Arc::new(counter(100, 60, 1000));
    let admitted = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (c, admitted) = (c.clone(), admitted.clone());
            std::thread::spawn(move || {
                for j in 0..1000 {
                    if c.check("one-key", t(i * 1000 + j)).admitted {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    assert_eq!(admitted.load(Ordering::Relaxed), 100);
    assert_eq!(c.stats().admitted + c.stats().refused, 8000);
}

#[test]
fn two_pops_sharing_snapshots_stay_within_the_documented_bound() {
    // A client sends one request to each of two PoPs every 50 ms; they share every 500 ms.
    let limit = 100;
    let (a, b) = (counter(limit, 10, 1000), counter(limit, 10, 1000));
    let (mut at_a, mut at_b) = (0u64, 0u64);
    let mut since_share = 0u64;
    let mut sent_per_interval = 0u64;
    for tick in 0..200u64 {
        let now = t(tick * 50);
        at_a += u64::from(a.check("client", now).admitted);
        at_b += u64::from(b.check("client", now).admitted);
        since_share += 1;
        if tick % 10 == 9 {
            let (sa, sb) = (a.snapshot(now), b.snapshot(now));
            a.merge("pop-b", sb, now).unwrap();
            b.merge("pop-a", sa, now).unwrap();
            sent_per_interval = sent_per_interval.max(since_share);
            since_share = 0;
        }
    }
    // Per PoP exact; together at most limit + (P − 1) × one share interval's requests.
    assert!(at_a <= limit && at_b <= limit);
    let bound = limit + sent_per_interval;
    assert!(
        at_a + at_b <= bound,
        "{} admitted, bound {bound}",
        at_a + at_b
    );
    assert!(at_a + at_b >= limit);
    // Without sharing the two would have let 2 × limit through.
    assert!(at_a + at_b < 2 * limit);
}

#[test]
fn merge_replaces_and_stale_pops_are_forgotten() {
    let (a, b) = (counter(100, 10, 1000), counter(100, 10, 1000));
    for _ in 0..60 {
        b.check("client", t(0));
    }
    a.merge("pop-b", b.snapshot(t(0)), t(0)).unwrap();
    assert_eq!(a.check("client", t(100)).count, 61);
    // A second snapshot replaces the first rather than adding to it.
    let c = counter(100, 10, 1000);
    for _ in 0..10 {
        c.check("client", t(0));
    }
    a.merge("pop-b", c.snapshot(t(200)), t(200)).unwrap();
    assert_eq!(a.check("client", t(300)).count, 12);
    assert_eq!(a.stats().peers, 1);
    // Remote counts alone refuse a key never seen locally.
    for _ in 0..100 {
        b.check("heavy", t(400));
    }
    a.merge("pop-b", b.snapshot(t(400)), t(400)).unwrap();
    let d = a.check("heavy", t(500));
    assert!(!d.admitted);
    assert_eq!(d.count, 100);
    // Silent for 3 windows: forgotten at the next share.
    let later = t(400 + 30_000 + 1_000);
    let _ = a.snapshot(later);
    assert_eq!(a.stats().peers, 0);
    assert!(a.check("heavy", later).admitted);
    // A PoP with another window is refused, not merged.
    let other = counter(100, 20, 10);
    assert!(a.merge("pop-c", other.snapshot(t(0)), t(0)).is_err());
}

#[test]
fn snapshots_round_trip_through_json_and_keep_the_busiest() {
    let c = counter(1000, 60, 1000).with_snapshot_keys(2);
    for (key, n) in [("a", 3), ("b", 9), ("c", 5)] {
        for i in 0..n {
            c.check(key, t(i * 7_000));
        }
    }
    let snap = c.snapshot(t(60_000));
    let mut keys: Vec<&str> = snap.keys.iter().map(|k| k.key.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["b", "c"]);
    let json = serde_json::to_string(&snap).unwrap();
    let back: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snap);
    // b's first count (t = 0) left the window at 60 s: 8 of its 9 are in this snapshot.
    let b = snap.keys.iter().find(|k| k.key == "b").unwrap();
    assert_eq!(b.slots.iter().map(|&(_, n)| n).sum::<u32>(), 8);
}

#[test]
fn a_flood_of_unique_keys_stays_within_max_keys_and_keeps_refused_keys() {
    let c = counter(3, 60, 1000);
    for _ in 0..5 {
        c.check("attacker", t(0));
    }
    for i in 0..100_000u64 {
        c.check(&format!("spoofed-{i}"), t(i / 10));
        assert!(c.stats().keys <= 1000 || i % 1000 != 0);
    }
    assert!(c.stats().keys <= 1000);
    // The limited key was not evicted, so the flood did not reset its budget.
    assert!(!c.check("attacker", t(10_000)).admitted);
    let top = c.top_keys(3, t(10_000));
    assert_eq!(top[0].key, "attacker");
    assert_eq!((top[0].count, top[0].refused), (3, 3));
}

#[test]
fn a_table_full_of_refused_keys_admits_newcomers_untracked() {
    let c = counter(1, 10, 1);
    assert!(c.check("a", t(0)).admitted);
    assert!(!c.check("a", t(1)).admitted);
    assert!(c.check("b", t(2)).admitted);
    assert!(c.check("b", t(3)).admitted);
    let s = c.stats();
    assert_eq!((s.untracked, s.keys), (2, 1));
    // Once a's counts leave the window, b is tracked (and limited) again.
    assert!(c.check("b", t(10_000)).admitted);
    assert!(!c.check("b", t(10_001)).admitted);
    assert_eq!(c.stats().untracked, 2);
}

#[test]
fn a_full_table_evicts_the_least_recently_seen_eighth() {
    // 64 keys: one shard of 64.
    let c = counter(5, 60, 64);
    for i in 0..64 {
        c.check(&format!("k{i}"), t(i));
    }
    c.check("k0", t(1_000));
    // Five count-only requests put k1 at the limit: it is kept although it is old.
    for _ in 0..4 {
        c.count_only("k1", t(2));
    }
    c.check("new", t(2_000));
    let keys: Vec<String> = c
        .top_keys(100, t(2_000))
        .into_iter()
        .map(|k| k.key)
        .collect();
    assert_eq!(keys.len(), 64 - 8 + 1);
    for gone in 2..10 {
        assert!(!keys.contains(&format!("k{gone}")), "k{gone} kept");
    }
    for kept in ["k0", "k1", "k10", "k63", "new"] {
        assert!(keys.iter().any(|k| k == kept), "{kept} evicted");
    }
}

fn response(status: u16, body: &'static str) -> StoredResponse {
    StoredResponse::new(status, vec![], Bytes::from_static(body.as_bytes()))
}

fn store() -> Arc<IdempotencyStore> {
    Arc::new(IdempotencyStore::new(Duration::from_secs(60), 100, 1024))
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn one_leader_and_nine_replays_of_its_response() {
    let s = store();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                match s.begin("k".into(), [1; 32]).await {
                    Begin::Leader(lease) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        (true, lease.complete(response(201, "created")))
                    }
                    Begin::Replay(r) => (false, r),
                    other => panic!("{other:?}"),
                }
            })
        })
        .collect();
    let mut leaders = 0;
    let mut first = None;
    for task in tasks {
        let (leader, r) = task.await.unwrap();
        leaders += usize::from(leader);
        let first = first.get_or_insert_with(|| r.clone());
        assert!(Arc::ptr_eq(first, &r));
    }
    assert_eq!(leaders, 1);
    let st = s.stats();
    assert_eq!((st.leaders, st.replays, st.waited), (1, 9, 9));
    // Later, within the window: replayed without a leader.
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(matches!(s.begin("k".into(), [1; 32]).await, Begin::Replay(r) if r.status == 201));
    assert_eq!(s.stats().leaders, 1);
    // After the window: a new leader.
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(matches!(
        s.begin("k".into(), [1; 32]).await,
        Begin::Leader(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn another_fingerprint_is_a_mismatch_stored_or_in_flight() {
    let s = store();
    let Begin::Leader(lease) = s.begin("k".into(), [1; 32]).await else {
        panic!()
    };
    assert!(matches!(
        s.begin("k".into(), [2; 32]).await,
        Begin::Mismatch
    ));
    lease.complete(response(200, "ok"));
    assert!(matches!(
        s.begin("k".into(), [2; 32]).await,
        Begin::Mismatch
    ));
    assert_eq!(s.stats().mismatches, 2);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_leader_hands_over_to_exactly_one_waiter() {
    let s = store();
    let Begin::Leader(first) = s.begin("k".into(), [1; 32]).await else {
        panic!()
    };
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                match s.begin("k".into(), [1; 32]).await {
                    Begin::Leader(lease) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        lease.complete(response(200, "second try"));
                        "leader"
                    }
                    Begin::Replay(r) if r.body == "second try" => "replay",
                    other => panic!("{other:?}"),
                }
            })
        })
        .collect();
    settle().await;
    assert_eq!(s.stats().waited, 3);
    drop(first);
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes.sort();
    assert_eq!(outcomes, ["leader", "replay", "replay"]);
    assert_eq!(s.stats().leaders, 2);
}

#[tokio::test(start_paused = true)]
async fn a_server_error_reaches_waiters_but_is_not_kept() {
    let s = store();
    let Begin::Leader(lease) = s.begin("k".into(), [1; 32]).await else {
        panic!()
    };
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move { s.begin("k".into(), [1; 32]).await })
    };
    settle().await;
    lease.complete(response(503, "down"));
    assert!(matches!(waiter.await.unwrap(), Begin::Replay(r) if r.status == 503));
    assert!(matches!(
        s.begin("k".into(), [1; 32]).await,
        Begin::Leader(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_gives_up_with_in_flight_after_the_bound() {
    let s = IdempotencyStore::new(Duration::from_secs(60), 10, 1024)
        .with_wait_timeout(Duration::from_secs(5));
    let Begin::Leader(_lease) = s.begin("k".into(), [1; 32]).await else {
        panic!()
    };
    let started = tokio::time::Instant::now();
    assert!(matches!(
        s.begin("k".into(), [1; 32]).await,
        Begin::InFlight
    ));
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(s.stats().timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn cancelled_waiters_and_leaders_leave_nothing_behind() {
    let s = store();
    let Begin::Leader(lease) = s.begin("k".into(), [1; 32]).await else {
        panic!()
    };
    let cancelled = tokio::time::timeout(Duration::from_millis(10), s.begin("k".into(), [1; 32]));
    assert!(cancelled.await.is_err());
    // The only waiter is gone: dropping the leader frees the key outright.
    drop(lease);
    assert!(matches!(
        s.begin("k".into(), [1; 32]).await,
        Begin::Leader(_)
    ));
    // That leader's future was dropped too (the Lease went with the match arm).
    assert!(matches!(
        s.begin("k".into(), [1; 32]).await,
        Begin::Leader(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn stored_responses_stay_within_entry_byte_and_body_bounds() {
    let s = IdempotencyStore::new(Duration::from_secs(60), 3, 64).with_max_bytes(100);
    for i in 0..5 {
        let Begin::Leader(l) = s.begin(format!("k{i}"), [1; 32]).await else {
            panic!()
        };
        l.complete(response(200, "0123456789"));
    }
    assert_eq!(s.stats().stored, 3);
    assert!(matches!(
        s.begin("k4".into(), [1; 32]).await,
        Begin::Replay(_)
    ));
    assert!(matches!(
        s.begin("k0".into(), [1; 32]).await,
        Begin::Leader(_)
    ));
    // 40-byte bodies: only two fit in 100 bytes with their keys.
    let s = IdempotencyStore::new(Duration::from_secs(60), 10, 64).with_max_bytes(100);
    for i in 0..4 {
        let Begin::Leader(l) = s.begin(format!("b{i}"), [1; 32]).await else {
            panic!()
        };
        l.complete(response(200, "0123456789012345678901234567890123456789"));
    }
    let st = s.stats();
    assert!(st.stored_bytes <= 100 && st.stored == 2, "{st:?}");
    // A body over max_body is delivered but not kept.
    let Begin::Leader(l) = s.begin("big".into(), [1; 32]).await else {
        panic!()
    };
    l.complete(StoredResponse::new(200, vec![], Bytes::from(vec![0u8; 65])));
    assert!(matches!(
        s.begin("big".into(), [1; 32]).await,
        Begin::Leader(_)
    ));
    // Purge drops what expired.
    tokio::time::advance(Duration::from_secs(61)).await;
    s.purge(tokio::time::Instant::now());
    assert_eq!(s.stats().stored, 0);
}

#[tokio::test(start_paused = true)]
async fn keys_in_flight_are_bounded() {
    let s = IdempotencyStore::new(Duration::from_secs(60), 1, 64);
    let Begin::Leader(_held) = s.begin("a".into(), [1; 32]).await else {
        panic!()
    };
    assert!(matches!(s.begin("b".into(), [1; 32]).await, Begin::Busy));
    assert_eq!(s.stats().busy, 1);
}
