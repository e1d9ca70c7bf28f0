//! Request deduplication for unsafe requests carrying an `Idempotency-Key`, as the IETF
//! draft "The Idempotency-Key HTTP Header Field" (draft-ietf-httpapi-idempotency-key-header)
//! and Stripe's API behave, with one difference the issue asks for: a duplicate that arrives
//! while the first request is still at the origin *waits* for its response instead of being
//! refused at once.
//!
//! * The first request for a key becomes the [`Begin::Leader`]: it goes to the origin and
//!   hands the response to [`Lease::complete`]. Responses below 500 with a body of at most
//!   `max_body` are kept for `window` and replayed ([`Begin::Replay`]) to later requests with
//!   the same fingerprint. A 5xx is delivered to the waiters but not kept, so a retry after
//!   a server error reaches the origin again.
//! * A request whose fingerprint (the edge's sha256 of method, path and body) differs from
//!   the one stored or in flight for its key gets [`Begin::Mismatch`] (the edge answers 422).
//! * Waiters wait at most `wait_timeout` (30 s by default), then get [`Begin::InFlight`]
//!   (the edge answers 409, the draft's answer for a concurrent duplicate).
//! * A leader that drops its [`Lease`] without completing (the origin failed, or the viewer
//!   went away) wakes the waiters; exactly one of them becomes the new leader and the rest
//!   wait for it.
//!
//! Memory is bounded: at most `max_entries` stored responses (oldest evicted first) holding
//! at most `max_bytes` of bodies and keys, and at most `max_entries` keys in flight (past
//! that, [`Begin::Busy`]). Expired responses go lazily and on [`IdempotencyStore::purge`].
//! Times are [`tokio::time::Instant`]s so tests can run on tokio's paused clock.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use tokio::sync::watch;
use tokio::time::Instant;

/// Default bound on waiting for an in-flight duplicate.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on stored bytes (bodies plus keys), when `max_entries × max_body` is larger.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

/// A response as the origin gave it, kept for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// When the origin's response was completed; the edge may report it (e.g. in `Age`).
    pub stored_at: SystemTime,
}

impl StoredResponse {
    pub fn new(status: u16, headers: Vec<(HeaderName, HeaderValue)>, body: Bytes) -> Self {
        StoredResponse {
            status,
            headers,
            body,
            stored_at: SystemTime::now(),
        }
    }
}

/// What the edge does with a request.
#[derive(Debug)]
pub enum Begin {
    /// Go to the origin, then complete the lease (or drop it if there is no response).
    Leader(Lease),
    /// Answer with this response without going to the origin.
    Replay(Arc<StoredResponse>),
    /// The key is used with another request: 422.
    Mismatch,
    /// A duplicate is in flight and did not finish within the wait bound: 409.
    InFlight,
    /// The store already tracks `max_entries` keys in flight: 503 with Retry-After.
    Busy,
}

/// Totals since the store was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdempotencyStats {
    pub leaders: u64,
    pub replays: u64,
    pub mismatches: u64,
    /// Requests that waited for an in-flight duplicate (whatever the outcome).
    pub waited: u64,
    pub timeouts: u64,
    pub busy: u64,
    /// Current number of stored responses.
    pub stored: usize,
    /// Current bytes those hold (bodies and keys).
    pub stored_bytes: usize,
}

#[derive(Debug, Clone)]
enum Outcome {
    Pending,
    Done(Arc<StoredResponse>),
    Abandoned,
}

enum Slot {
    InFlight {
        fingerprint: [u8; 32],
        /// Zero while the leader is gone and no waiter has taken over yet.
        lease: u64,
        tx: watch::Sender<Outcome>,
    },
    Stored {
        fingerprint: [u8; 32],
        response: Arc<StoredResponse>,
        expires: Instant,
        seq: u64,
        bytes: usize,
    },
}

struct Inner {
    map: HashMap<String, Slot>,
    /// Stored keys oldest first, with the `seq` that says the entry is still that one.
    order: VecDeque<(String, u64, Instant)>,
    in_flight: usize,
    stored: usize,
    bytes: usize,
    next: u64,
}

struct Shared {
    inner: Mutex<Inner>,
    window: Duration,
    max_entries: usize,
    max_body: usize,
    max_bytes: usize,
    wait_timeout: Duration,
    leaders: AtomicU64,
    replays: AtomicU64,
    mismatches: AtomicU64,
    waited: AtomicU64,
    timeouts: AtomicU64,
    busy: AtomicU64,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // Every mutation leaves the maps consistent before it could panic; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Responses by idempotency key, shared by every connection of a PoP.
pub struct IdempotencyStore {
    shared: Arc<Shared>,
}

/// The right and duty to produce the response for a key. Dropping it without
/// [`Lease::complete`] hands the key to one of the waiters.
#[derive(Debug)]
pub struct Lease {
    shared: Arc<Shared>,
    key: String,
    id: u64,
    done: bool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyStore")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl IdempotencyStore {
    /// Keeps responses for `window`, at most `max_entries` of them, none with a body over
    /// `max_body` bytes, all of them within [`DEFAULT_MAX_BYTES`] unless set otherwise.
    /// `max_entries` also bounds the keys in flight, so 0 answers every request `Busy`.
    pub fn new(window: Duration, max_entries: usize, max_body: usize) -> Self {
        let max_bytes = max_entries.saturating_mul(max_body).min(DEFAULT_MAX_BYTES);
        IdempotencyStore {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    map: HashMap::new(),
                    order: VecDeque::new(),
                    in_flight: 0,
                    stored: 0,
                    bytes: 0,
                    next: 1,
                }),
                window,
                max_entries,
                max_body,
                max_bytes,
                wait_timeout: DEFAULT_WAIT_TIMEOUT,
                leaders: AtomicU64::new(0),
                replays: AtomicU64::new(0),
                mismatches: AtomicU64::new(0),
                waited: AtomicU64::new(0),
                timeouts: AtomicU64::new(0),
                busy: AtomicU64::new(0),
            }),
        }
    }

    fn configure(mut self, f: impl FnOnce(&mut Shared)) -> Self {
        // Only before the store is shared: builders run on a fresh store.
        if let Some(s) = Arc::get_mut(&mut self.shared) {
            f(s);
        }
        self
    }

    /// Bounds the bytes (bodies plus keys) of all stored responses together.
    pub fn with_max_bytes(self, max_bytes: usize) -> Self {
        self.configure(|s| s.max_bytes = max_bytes)
    }

    /// Bounds how long a duplicate waits for the request in flight.
    pub fn with_wait_timeout(self, wait_timeout: Duration) -> Self {
        self.configure(|s| s.wait_timeout = wait_timeout)
    }

    /// Decides what a request with `key` and `fingerprint` does, waiting (bounded) while a
    /// duplicate is in flight. Cancel-safe: dropping the future leaves nothing behind.
    pub async fn begin(&self, key: String, fingerprint: [u8; 32]) -> Begin {
        let s = &self.shared;
        let deadline = Instant::now() + s.wait_timeout;
        let mut waited = false;
        loop {
            let mut rx = {
                let mut inner = lock(&s.inner);
                let now = Instant::now();
                match inner.map.get_mut(&key) {
                    Some(Slot::Stored {
                        fingerprint: f,
                        response,
                        expires,
                        ..
                    }) if *expires > now => {
                        return if *f == fingerprint {
                            s.replays.fetch_add(1, Ordering::Relaxed);
                            Begin::Replay(response.clone())
                        } else {
                            s.mismatches.fetch_add(1, Ordering::Relaxed);
                            Begin::Mismatch
                        };
                    }
                    Some(Slot::InFlight { fingerprint: f, .. }) if *f != fingerprint => {
                        s.mismatches.fetch_add(1, Ordering::Relaxed);
                        return Begin::Mismatch;
                    }
                    Some(Slot::InFlight { lease, .. }) if *lease == 0 => {
                        let id = inner.next;
                        inner.next += 1;
                        if let Some(Slot::InFlight { lease, .. }) = inner.map.get_mut(&key) {
                            *lease = id;
                        }
                        return self.lead(key, id);
                    }
                    Some(Slot::InFlight { tx, .. }) => tx.subscribe(),
                    expired_or_none => {
                        if expired_or_none.is_some() {
                            inner.remove_stored(&key);
                        }
                        if inner.in_flight >= s.max_entries {
                            s.busy.fetch_add(1, Ordering::Relaxed);
                            return Begin::Busy;
                        }
                        let id = inner.next;
                        inner.next += 1;
                        inner.in_flight += 1;
                        let (tx, _) = watch::channel(Outcome::Pending);
                        let slot = Slot::InFlight {
                            fingerprint,
                            lease: id,
                            tx,
                        };
                        inner.map.insert(key.clone(), slot);
                        return self.lead(key, id);
                    }
                }
            };
            if !waited {
                waited = true;
                s.waited.fetch_add(1, Ordering::Relaxed);
            }
            match tokio::time::timeout_at(deadline, outcome(&mut rx)).await {
                Err(_) => {
                    s.timeouts.fetch_add(1, Ordering::Relaxed);
                    return Begin::InFlight;
                }
                Ok(Outcome::Done(response)) => {
                    s.replays.fetch_add(1, Ordering::Relaxed);
                    return Begin::Replay(response);
                }
                // The leader is gone: look again, and take over if nobody has yet.
                Ok(Outcome::Pending | Outcome::Abandoned) => continue,
            }
        }
    }

    fn lead(&self, key: String, id: u64) -> Begin {
        self.shared.leaders.fetch_add(1, Ordering::Relaxed);
        Begin::Leader(Lease {
            shared: self.shared.clone(),
            key,
            id,
            done: false,
        })
    }

    /// Removes expired responses, and keys in flight that lost their leader and every
    /// waiter; the edge calls it periodically so idle keys do not wait for a lookup.
    pub fn purge(&self, now: Instant) {
        let mut inner = lock(&self.shared.inner);
        inner.trim(now);
        let before = inner.map.len();
        inner.map.retain(|_, slot| match slot {
            Slot::InFlight { lease, tx, .. } => *lease != 0 || tx.receiver_count() > 0,
            Slot::Stored { .. } => true,
        });
        let gone = before - inner.map.len();
        inner.in_flight -= gone;
    }

    pub fn stats(&self) -> IdempotencyStats {
        let s = &self.shared;
        let inner = lock(&s.inner);
        IdempotencyStats {
            leaders: s.leaders.load(Ordering::Relaxed),
            replays: s.replays.load(Ordering::Relaxed),
            mismatches: s.mismatches.load(Ordering::Relaxed),
            waited: s.waited.load(Ordering::Relaxed),
            timeouts: s.timeouts.load(Ordering::Relaxed),
            busy: s.busy.load(Ordering::Relaxed),
            stored: inner.stored,
            stored_bytes: inner.bytes,
        }
    }
}

/// The next outcome other than `Pending`; `Abandoned` when the sender went away unsaid.
async fn outcome(rx: &mut watch::Receiver<Outcome>) -> Outcome {
    loop {
        let now = rx.borrow_and_update().clone();
        if !matches!(now, Outcome::Pending) {
            return now;
        }
        if rx.changed().await.is_err() {
            return Outcome::Abandoned;
        }
    }
}

impl Inner {
    fn remove_stored(&mut self, key: &str) {
        if let Some(Slot::Stored { bytes, .. }) = self.map.get(key) {
            let bytes = *bytes;
            self.map.remove(key);
            self.stored -= 1;
            self.bytes -= bytes;
        }
    }

    /// Drops expired entries from the front of the (time-ordered) queue, and queue items
    /// whose entry was replaced, so the queue never outgrows the entries by much.
    fn trim(&mut self, now: Instant) {
        while let Some((key, seq, expires)) = self.order.front() {
            let current =
                matches!(self.map.get(key), Some(Slot::Stored { seq: s, .. }) if s == seq);
            if current && *expires > now {
                break;
            }
            if let Some((key, _, _)) = self.order.pop_front() {
                if current {
                    self.remove_stored(&key);
                }
            }
        }
    }

    /// Removes the oldest stored entry; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((key, seq, _)) = self.order.pop_front() {
            if matches!(self.map.get(&key), Some(Slot::Stored { seq: s, .. }) if *s == seq) {
                self.remove_stored(&key);
                return true;
            }
        }
        false
    }
}

impl Lease {
    /// Delivers the origin's response to every waiter, and keeps it for later duplicates
    /// when it is not a 5xx and fits the body and byte bounds.
    pub fn complete(mut self, response: StoredResponse) -> Arc<StoredResponse> {
        self.done = true;
        let s = &*self.shared;
        let response = Arc::new(response);
        let mut inner = lock(&s.inner);
        let fingerprint = match inner.map.get(&self.key) {
            Some(Slot::InFlight {
                lease, fingerprint, ..
            }) if *lease == self.id => *fingerprint,
            // Purged or replaced meanwhile: nobody waits on this lease any more.
            _ => return response,
        };
        if let Some(Slot::InFlight { tx, .. }) = inner.map.remove(&self.key) {
            tx.send_replace(Outcome::Done(response.clone()));
        }
        inner.in_flight -= 1;
        let bytes = response.body.len() + 2 * self.key.len();
        let keep = response.status < 500
            && response.body.len() <= s.max_body
            && bytes <= s.max_bytes
            && s.max_entries > 0;
        if keep {
            let now = Instant::now();
            inner.trim(now);
            while inner.stored >= s.max_entries || inner.bytes + bytes > s.max_bytes {
                if !inner.evict_oldest() {
                    break;
                }
            }
            let seq = inner.next;
            inner.next += 1;
            let expires = now + s.window;
            inner.order.push_back((self.key.clone(), seq, expires));
            let slot = Slot::Stored {
                fingerprint,
                response: response.clone(),
                expires,
                seq,
                bytes,
            };
            inner.map.insert(self.key.clone(), slot);
            inner.stored += 1;
            inner.bytes += bytes;
        }
        response
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut inner = lock(&self.shared.inner);
        let Some(Slot::InFlight { lease, tx, .. }) = inner.map.get_mut(&self.key) else {
            return;
        };
        if *lease != self.id {
            return;
        }
        if tx.receiver_count() == 0 {
            inner.map.remove(&self.key);
            inner.in_flight -= 1;
            return;
        }
        // Waiters on the old channel wake and look again; the first to lock takes over,
        // the rest subscribe to the fresh channel and wait for the new leader.
        *lease = 0;
        let old = std::mem::replace(tx, watch::channel(Outcome::Pending).0);
        old.send_replace(Outcome::Abandoned);
    }
}
