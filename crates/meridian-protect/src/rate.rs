//! Rate-based rules as AWS WAF runs them: at most `limit` requests per `window` for one
//! aggregation key, exact within a PoP and approximate across PoPs.
//!
//! # Semantics
//!
//! * **Key**: an opaque string the edge builds (viewer IP, a header value, a JWT claim, or
//!   several joined by a separator). Keys longer than [`MAX_KEY_BYTES`] are replaced by
//!   `sha256:<hex>` of the key, so one hostile header cannot make a table entry large.
//! * **Window and slots**: the window (1 s to 10 min, whole seconds) is divided into
//!   [`SLOTS`] = 10 slots of `window / 10` each. A slot is numbered absolutely, as
//!   milliseconds since the UNIX epoch divided by the slot length, so PoPs whose processes
//!   started at different times agree on which slot a count belongs to. Every time input is
//!   therefore a [`SystemTime`] passed by the caller, which also keeps tests deterministic.
//!   The "window" at time `now` is the current slot and the 9 before it.
//!   Per key, slots never run backwards: a request whose clock reading is older than the
//!   key's newest slot (it lost the race for the lock) counts in that newest slot.
//! * **What is counted**: `check` counts *admitted* requests only, so a client sending at
//!   twice the limit still gets the limit through ("50 requests per second per IP" means 50
//!   get through). `count_only` (a rule whose action is "count") records every request and
//!   reports whether it *would* have been refused.
//! * **Exact per PoP**: the check and the increment happen under one shard lock, so in any
//!   window-long span aligned to slot boundaries at most `limit` requests for one key are
//!   admitted at one PoP, whatever the concurrency.
//! * **Across PoPs**: each PoP sends every other PoP a [`Snapshot`] of its local counts
//!   (the edge does so every 500 ms) and [`RateCounter::merge`]s what it receives; a new
//!   snapshot from a PoP replaces the previous one, and a PoP silent for 3 windows is
//!   forgotten. `check` admits only while `local + remote < limit`.
//!
//! # Error bound across PoPs
//!
//! Remote counts arrive late by at most `d = share interval + transit`. A client spreading
//! its requests over `P` PoPs therefore gets, in one window, at most
//!
//! ```text
//! admitted ≤ limit + Σ_{p ≠ q} A_p(d)      (for the PoP q that refuses last)
//!          ≤ limit + (P − 1) · min(limit, r · d / P)
//! ```
//!
//! where `A_p(d)` is what PoP `p` admitted during the last `d` (not yet seen by `q`) and `r`
//! the client's total request rate. Each PoP on its own never admits more than `limit`, so
//! the worst case is `P · limit`, reached only when `d` is as long as the window.
//!
//! # Bounded memory
//!
//! At most `max_keys` keys, split evenly over up to 64 shards of at least 64 keys (a
//! remainder under the shard count goes unused). When a shard is full, the insert sweeps
//! it: keys with no count in the window go first; if none, the least recently seen eighth
//! of the keys that are not being limited goes. Keys being limited (refused in the window,
//! or at the limit) are kept, since evicting one would hand a limited client a fresh
//! budget. A key arriving when its shard is full of limited keys is **admitted untracked**
//! (counted in [`RateStats::untracked`]): failing open keeps a flood of limited keys from
//! locking out everyone else, and the counter shows it happened. Such a shard is swept at
//! most once per slot, so the flood does not pay for a sweep per request. Snapshots carry at most `snapshot_keys` keys (the busiest) and
//! at most [`MAX_PEERS`] PoPs are remembered.

use std::collections::hash_map::RandomState;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

/// Slots per window: 10 keeps the sliding error at a tenth of the window while a key's
/// ring stays small (10 × 16 bytes).
pub const SLOTS: usize = 10;
/// Longer keys are hashed, so table memory is bounded by `max_keys × MAX_KEY_BYTES`.
pub const MAX_KEY_BYTES: usize = 256;
/// PoPs remembered at once; a mesh larger than this is not a Meridian deployment.
pub const MAX_PEERS: usize = 1024;
/// Default cap on keys in one snapshot (the busiest are kept).
pub const DEFAULT_SNAPSHOT_KEYS: usize = 10_000;
const MAX_SHARDS: usize = 64;
const SLOTS_U64: u64 = SLOTS as u64;

/// Why a counter cannot be built, or a snapshot cannot be merged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RateError {
    #[error("rate window must be whole seconds from 1 s to 600 s, got {0:?}")]
    Window(Duration),
    #[error("rate limit must be from 1 to {max}, got {0}", max = u32::MAX)]
    Limit(u64),
    #[error("max_keys must be at least 1")]
    MaxKeys,
    #[error("snapshot slots are {theirs} ms long, this counter's are {ours} ms")]
    SlotMismatch { ours: u64, theirs: u64 },
    #[error("too many PoPs ({MAX_PEERS}) already share counts with this one")]
    TooManyPeers,
}

/// The outcome of one request against a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request passes (for `count_only`: whether it would have).
    pub admitted: bool,
    pub limit: u64,
    /// Requests still admissible in the current window after this one.
    pub remaining: u64,
    /// Until a slot expires that frees capacity: a refused request's Retry-After.
    pub reset: Duration,
    /// Local plus remote estimate of requests in the window, this one included if counted.
    pub count: u64,
}

/// One of the busiest keys, for a security dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopKey {
    pub key: String,
    pub count: u64,
    pub refused: u64,
}

/// Monotonic totals since the counter was built (except `keys`, `peers`: current sizes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateStats {
    pub admitted: u64,
    pub refused: u64,
    /// Requests a count-only rule would have refused.
    pub counted_over: u64,
    /// Requests admitted without tracking because the table was full of refused keys.
    pub untracked: u64,
    pub keys: usize,
    pub peers: usize,
}

/// A PoP's local counts, sent to the other PoPs. Slots are relative to `base_slot` (the
/// oldest slot of the sender's window) so each count costs two small numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Slot length, so a PoP with another window configuration is detected, not merged.
    pub slot_ms: u64,
    pub base_slot: u64,
    pub keys: Vec<SnapshotKey>,
}

/// One key's nonzero slots in a [`Snapshot`]: `(slot - base_slot, count)` pairs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotKey {
    pub key: String,
    pub slots: Vec<(u8, u32)>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    no: u64,
    local: u32,
    remote: u32,
    refused: u32,
}

#[derive(Debug)]
struct Entry {
    ring: [Slot; SLOTS],
    /// Milliseconds since the epoch, for least-recently-seen eviction.
    last_seen: u64,
}

impl Entry {
    fn new(ms: u64) -> Self {
        Entry {
            ring: [Slot::default(); SLOTS],
            last_seen: ms,
        }
    }

    /// The slot for `no`, cleared first if it still holds a slot that left the window. If
    /// it holds a newer slot (a remote count older than our ring), the count goes there:
    /// it then lives a little longer, which errs towards limiting.
    fn slot_mut(&mut self, no: u64) -> &mut Slot {
        let s = &mut self.ring[(no % SLOTS_U64) as usize];
        if s.no < no {
            *s = Slot {
                no,
                ..Slot::default()
            };
        }
        s
    }

    /// The newest slot counted; callers never look at the ring from before it, so a thread
    /// whose clock reading lost the race for the lock cannot miss a newer slot's counts.
    fn newest(&self) -> u64 {
        self.ring.iter().map(|s| s.no).max().unwrap_or(0)
    }

    fn live(&self, cur: u64) -> impl Iterator<Item = &Slot> {
        let oldest = cur.saturating_sub(SLOTS_U64 - 1);
        self.ring
            .iter()
            .filter(move |s| s.no >= oldest && s.no <= cur)
    }

    fn total(&self, cur: u64) -> u64 {
        self.live(cur)
            .map(|s| u64::from(s.local) + u64::from(s.remote))
            .sum()
    }

    fn refused(&self, cur: u64) -> u64 {
        self.live(cur).map(|s| u64::from(s.refused)).sum()
    }
}

#[derive(Default)]
struct Shard {
    map: HashMap<Box<str>, Entry>,
    /// The slot in which a sweep last found nothing to evict: until the slot changes
    /// nothing can become evictable, so a flood does not pay for a sweep per request.
    full_at: Option<u64>,
}

struct Peer {
    heard: u64,
    /// What this PoP's last snapshot added, to subtract when the next one replaces it.
    applied: Vec<(Box<str>, u64, u32)>,
}

/// Per-PoP counts for one rate-based rule. Cheap to share behind an `Arc`.
pub struct RateCounter {
    limit: u64,
    slot_ms: u64,
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hasher: RandomState,
    peers: Mutex<HashMap<String, Peer>>,
    snapshot_keys: usize,
    admitted: AtomicU64,
    refused: AtomicU64,
    counted_over: AtomicU64,
    untracked: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere leaves counts that are still counts: keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn epoch_ms(now: SystemTime) -> u64 {
    let ms = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX)
}

enum Mode {
    Enforce,
    CountOnly,
}

impl RateCounter {
    /// A counter admitting `limit` requests per `window` per key, tracking `max_keys` keys.
    pub fn new(limit: u64, window: Duration, max_keys: usize) -> Result<Self, RateError> {
        let secs = window.as_secs();
        if window.subsec_nanos() != 0 || !(1..=600).contains(&secs) {
            return Err(RateError::Window(window));
        }
        if limit == 0 || limit > u64::from(u32::MAX) {
            return Err(RateError::Limit(limit));
        }
        if max_keys == 0 {
            return Err(RateError::MaxKeys);
        }
        // Shards of at least 64 keys, so a small table is not a few tiny shards.
        let n = (max_keys / 64).clamp(1, MAX_SHARDS);
        Ok(RateCounter {
            limit,
            slot_ms: secs * 1000 / SLOTS_U64,
            shards: (0..n).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: max_keys / n,
            hasher: RandomState::new(),
            peers: Mutex::new(HashMap::new()),
            snapshot_keys: DEFAULT_SNAPSHOT_KEYS,
            admitted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            counted_over: AtomicU64::new(0),
            untracked: AtomicU64::new(0),
        })
    }

    /// Caps the keys in a snapshot (the busiest are kept), bounding share traffic.
    pub fn with_snapshot_keys(mut self, n: usize) -> Self {
        self.snapshot_keys = n;
        self
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn window(&self) -> Duration {
        Duration::from_millis(self.slot_ms * SLOTS_U64)
    }

    fn slot_of(&self, now: SystemTime) -> (u64, u64) {
        let ms = epoch_ms(now);
        (ms / self.slot_ms, ms)
    }

    fn shard(&self, key: &str) -> &Mutex<Shard> {
        let i = self.hasher.hash_one(key) as usize % self.shards.len();
        &self.shards[i]
    }

    /// Checks one request and counts it if admitted: the rule's "block" action.
    pub fn check(&self, key: &str, now: SystemTime) -> Decision {
        self.decide(key, now, Mode::Enforce)
    }

    /// Counts one request and reports whether it would have been refused: the rule's
    /// "count" action. Never blocks.
    pub fn count_only(&self, key: &str, now: SystemTime) -> Decision {
        self.decide(key, now, Mode::CountOnly)
    }

    fn decide(&self, key: &str, now: SystemTime, mode: Mode) -> Decision {
        let hashed;
        let key = if key.len() > MAX_KEY_BYTES {
            hashed = hash_key(key);
            hashed.as_str()
        } else {
            key
        };
        let (cur, ms) = self.slot_of(now);
        let mut shard = lock(self.shard(key));
        let entry = match shard.map.get_mut(key) {
            Some(e) => e,
            None => match self.insert(&mut shard, key, cur, ms) {
                Some(e) => e,
                None => {
                    self.untracked.fetch_add(1, Ordering::Relaxed);
                    self.admitted.fetch_add(1, Ordering::Relaxed);
                    return Decision {
                        admitted: true,
                        limit: self.limit,
                        remaining: self.limit - 1,
                        reset: self.window(),
                        count: 1,
                    };
                }
            },
        };
        let cur = cur.max(entry.newest());
        let ms = ms.max(cur * self.slot_ms);
        entry.last_seen = entry.last_seen.max(ms);
        let before = entry.total(cur);
        let under = before < self.limit;
        let counted = match mode {
            Mode::Enforce if under => {
                self.admitted.fetch_add(1, Ordering::Relaxed);
                true
            }
            Mode::Enforce => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                let s = entry.slot_mut(cur);
                s.refused = s.refused.saturating_add(1);
                false
            }
            Mode::CountOnly => {
                if !under {
                    self.counted_over.fetch_add(1, Ordering::Relaxed);
                }
                true
            }
        };
        if counted {
            let s = entry.slot_mut(cur);
            s.local = s.local.saturating_add(1);
        }
        let count = before + u64::from(counted);
        Decision {
            admitted: under,
            limit: self.limit,
            remaining: self.limit.saturating_sub(count),
            reset: self.reset(entry, cur, ms, count),
            count,
        }
    }

    /// Time until enough slots expire for `count` to drop below the limit (or, when it is
    /// already below, until the oldest counted slot expires and frees some capacity).
    fn reset(&self, entry: &Entry, cur: u64, ms: u64, count: u64) -> Duration {
        let needed = (count + 1).saturating_sub(self.limit).max(1);
        let mut live: [(u64, u64); SLOTS] = [(0, 0); SLOTS];
        for (i, s) in entry.live(cur).enumerate() {
            live[i] = (s.no, u64::from(s.local) + u64::from(s.remote));
        }
        live.sort_unstable_by_key(|&(no, _)| no);
        let mut freed = 0;
        for &(no, n) in live.iter().filter(|&&(_, n)| n > 0) {
            freed += n;
            if freed >= needed {
                let expires = (no + SLOTS_U64) * self.slot_ms;
                return Duration::from_millis(expires.saturating_sub(ms));
            }
        }
        self.window()
    }

    /// Inserts `key`, sweeping the shard first when it is full. `None` when the shard is
    /// full of keys being refused (see the module doc).
    fn insert<'a>(
        &self,
        shard: &'a mut Shard,
        key: &str,
        cur: u64,
        ms: u64,
    ) -> Option<&'a mut Entry> {
        if shard.map.len() >= self.per_shard {
            if shard.full_at != Some(cur) {
                self.sweep(&mut shard.map, cur);
            }
            if shard.map.len() >= self.per_shard {
                shard.full_at = Some(cur);
                return None;
            }
        }
        Some(
            shard
                .map
                .entry(Box::from(key))
                .or_insert_with(|| Entry::new(ms)),
        )
    }

    /// Keys being limited (refused, or at the limit under a count rule) are never evicted.
    fn protected(&self, e: &Entry, cur: u64) -> bool {
        e.refused(cur) > 0 || e.total(cur) >= self.limit
    }

    /// Drops keys with nothing in the window; if none, the least recently seen eighth of
    /// the unprotected keys (exactly that many, ties broken arbitrarily).
    fn sweep(&self, map: &mut HashMap<Box<str>, Entry>, cur: u64) {
        map.retain(|_, e| e.total(cur) > 0 || e.refused(cur) > 0);
        if map.len() < self.per_shard {
            return;
        }
        let mut seen: Vec<u64> = map
            .values()
            .filter(|e| !self.protected(e, cur))
            .map(|e| e.last_seen)
            .collect();
        if seen.is_empty() {
            return;
        }
        let k = seen.len() / 8;
        let (_, &mut cutoff, _) = seen.select_nth_unstable(k);
        let older = seen.iter().filter(|&&s| s < cutoff).count();
        let mut ties = k + 1 - older;
        map.retain(|_, e| {
            if e.last_seen > cutoff || self.protected(e, cur) {
                return true;
            }
            if e.last_seen == cutoff {
                if ties == 0 {
                    return true;
                }
                ties -= 1;
            }
            false
        });
    }

    /// This PoP's local counts in the current window, busiest keys first up to the cap.
    pub fn snapshot(&self, now: SystemTime) -> Snapshot {
        let (cur, _) = self.slot_of(now);
        let base_slot = cur.saturating_sub(SLOTS_U64 - 1);
        let mut keys: Vec<(u64, SnapshotKey)> = Vec::new();
        for shard in self.shards.iter() {
            for (k, e) in lock(shard).map.iter() {
                let slots: Vec<(u8, u32)> = e
                    .live(cur)
                    .filter(|s| s.local > 0)
                    .map(|s| ((s.no - base_slot) as u8, s.local))
                    .collect();
                if slots.is_empty() {
                    continue;
                }
                let total = slots.iter().map(|&(_, n)| u64::from(n)).sum();
                keys.push((
                    total,
                    SnapshotKey {
                        key: k.to_string(),
                        slots,
                    },
                ));
            }
        }
        if keys.len() > self.snapshot_keys {
            keys.select_nth_unstable_by(self.snapshot_keys, |a, b| b.0.cmp(&a.0));
            keys.truncate(self.snapshot_keys);
        }
        self.forget_stale(cur);
        Snapshot {
            slot_ms: self.slot_ms,
            base_slot,
            keys: keys.into_iter().map(|k| k.1).collect(),
        }
    }

    /// Replaces what PoP `from` said before with `snapshot`. Slots older than the window are
    /// dropped, slots ahead of this PoP's clock count as the current slot.
    pub fn merge(&self, from: &str, snapshot: Snapshot, now: SystemTime) -> Result<(), RateError> {
        if snapshot.slot_ms != self.slot_ms {
            return Err(RateError::SlotMismatch {
                ours: self.slot_ms,
                theirs: snapshot.slot_ms,
            });
        }
        let (cur, _) = self.slot_of(now);
        self.forget_stale(cur);
        let mut peers = lock(&self.peers);
        if !peers.contains_key(from) && peers.len() >= MAX_PEERS {
            return Err(RateError::TooManyPeers);
        }
        if let Some(old) = peers.remove(from) {
            self.unapply(&old.applied);
        }
        let oldest = cur.saturating_sub(SLOTS_U64 - 1);
        let mut applied = Vec::new();
        for sk in snapshot.keys.into_iter().take(self.snapshot_keys) {
            let key: Box<str> = if sk.key.len() > MAX_KEY_BYTES {
                hash_key(&sk.key).into()
            } else {
                sk.key.into()
            };
            let mut shard = lock(self.shard(&key));
            let entry = match shard.map.get_mut(&*key) {
                Some(e) => e,
                None => match self.insert(&mut shard, &key, cur, epoch_ms(now)) {
                    Some(e) => e,
                    None => continue,
                },
            };
            for (off, n) in sk.slots.into_iter().take(SLOTS) {
                if usize::from(off) >= SLOTS || n == 0 {
                    continue;
                }
                let no = snapshot.base_slot.saturating_add(u64::from(off)).min(cur);
                if no < oldest {
                    continue;
                }
                let s = entry.slot_mut(no);
                s.remote = s.remote.saturating_add(n);
                applied.push((key.clone(), s.no, n));
            }
        }
        peers.insert(
            from.to_string(),
            Peer {
                heard: cur,
                applied,
            },
        );
        Ok(())
    }

    fn unapply(&self, applied: &[(Box<str>, u64, u32)]) {
        for (key, no, n) in applied {
            let mut shard = lock(self.shard(key));
            if let Some(e) = shard.map.get_mut(&**key) {
                let s = &mut e.ring[(*no % SLOTS_U64) as usize];
                if s.no == *no {
                    s.remote = s.remote.saturating_sub(*n);
                }
            }
        }
    }

    /// Drops PoPs silent for 3 windows, with whatever of their counts is still applied.
    fn forget_stale(&self, cur: u64) {
        let horizon = cur.saturating_sub(3 * SLOTS_U64);
        let mut peers = lock(&self.peers);
        let stale: Vec<String> = peers
            .iter()
            .filter(|(_, p)| p.heard < horizon)
            .map(|(k, _)| k.clone())
            .collect();
        for name in stale {
            if let Some(p) = peers.remove(&name) {
                self.unapply(&p.applied);
            }
        }
    }

    /// The `n` keys with the most refusals (then the highest counts) in the window.
    pub fn top_keys(&self, n: usize, now: SystemTime) -> Vec<TopKey> {
        let (cur, _) = self.slot_of(now);
        // A min-heap of the best n so far keeps this O(keys · log n) with n entries held.
        let mut heap: BinaryHeap<std::cmp::Reverse<(u64, u64, String)>> = BinaryHeap::new();
        for shard in self.shards.iter() {
            for (k, e) in lock(shard).map.iter() {
                let (refused, count) = (e.refused(cur), e.total(cur));
                if refused == 0 && count == 0 {
                    continue;
                }
                if heap.len() < n {
                    heap.push(std::cmp::Reverse((refused, count, k.to_string())));
                } else if let Some(min) = heap.peek() {
                    if (refused, count) > (min.0 .0, min.0 .1) {
                        heap.pop();
                        heap.push(std::cmp::Reverse((refused, count, k.to_string())));
                    }
                }
            }
        }
        let mut out: Vec<TopKey> = heap
            .into_iter()
            .map(|r| TopKey {
                key: r.0 .2,
                count: r.0 .1,
                refused: r.0 .0,
            })
            .collect();
        out.sort_by_key(|k| std::cmp::Reverse((k.refused, k.count)));
        out
    }

    pub fn stats(&self) -> RateStats {
        RateStats {
            admitted: self.admitted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            counted_over: self.counted_over.load(Ordering::Relaxed),
            untracked: self.untracked.load(Ordering::Relaxed),
            keys: self.shards.iter().map(|s| lock(s).map.len()).sum(),
            peers: lock(&self.peers).len(),
        }
    }
}

fn hash_key(key: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in d.as_ref() {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    s
}

/// The response fields for a decision, in the structured-field forms of
/// draft-ietf-httpapi-ratelimit-headers-10 (September 2025): `RateLimit-Policy:
/// "default";q=<limit>;w=<window s>` and `RateLimit: "default";r=<remaining>;t=<reset s>`,
/// plus `Retry-After: <s>` (at least 1) when refused. Seconds round up, so a client that
/// waits as told finds capacity.
pub fn rate_limit_headers(decision: &Decision, window: Duration) -> Vec<(HeaderName, HeaderValue)> {
    let reset = ceil_secs(decision.reset);
    let mut out = Vec::with_capacity(3);
    let policy = format!("\"default\";q={};w={}", decision.limit, ceil_secs(window));
    let state = format!("\"default\";r={};t={}", decision.remaining, reset);
    // Both are digits and ASCII punctuation only, which HeaderValue always accepts.
    if let Ok(v) = HeaderValue::from_str(&policy) {
        out.push((HeaderName::from_static("ratelimit-policy"), v));
    }
    if let Ok(v) = HeaderValue::from_str(&state) {
        out.push((HeaderName::from_static("ratelimit"), v));
    }
    if !decision.admitted {
        out.push((http::header::RETRY_AFTER, HeaderValue::from(reset.max(1))));
    }
    out
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
    }

    #[test]
    fn rejects_bad_configuration() {
        assert!(RateCounter::new(10, Duration::from_millis(1500), 10).is_err());
        assert!(RateCounter::new(10, Duration::from_secs(601), 10).is_err());
        assert!(RateCounter::new(0, Duration::from_secs(1), 10).is_err());
        assert!(RateCounter::new(10, Duration::from_secs(1), 0).is_err());
    }

    #[test]
    fn long_keys_are_hashed_and_still_limited() {
        let c = RateCounter::new(2, Duration::from_secs(10), 100).unwrap();
        let key = "k".repeat(10_000);
        assert!(c.check(&key, t(0)).admitted);
        assert!(c.check(&key, t(1)).admitted);
        assert!(!c.check(&key, t(2)).admitted);
        let top = c.top_keys(1, t(3));
        assert!(top[0].key.starts_with("sha256:") && top[0].key.len() == 71);
    }

    #[test]
    fn headers_follow_the_draft() {
        let d = Decision {
            admitted: false,
            limit: 50,
            remaining: 0,
            reset: Duration::from_millis(1200),
            count: 50,
        };
        let h = rate_limit_headers(&d, Duration::from_secs(60));
        let get = |n: &str| {
            h.iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.to_str().unwrap())
        };
        assert_eq!(get("ratelimit-policy"), Some("\"default\";q=50;w=60"));
        assert_eq!(get("ratelimit"), Some("\"default\";r=0;t=2"));
        assert_eq!(get("retry-after"), Some("2"));
        let ok = Decision {
            admitted: true,
            remaining: 3,
            reset: Duration::ZERO,
            ..d
        };
        let h = rate_limit_headers(&ok, Duration::from_secs(60));
        assert_eq!(h.len(), 2);
    }
}
