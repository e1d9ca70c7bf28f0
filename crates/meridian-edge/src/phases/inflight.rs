//! The table of fills in flight, one per cache key: what lets concurrent misses share
//! one origin fetch (collapsing), and what each of them gets back. It knows nothing of
//! how a fill is made; `collapse.rs` decides when to join and when to lead.

use super::error::ErrorAnswer;
use crate::origin::{OriginName, OriginResponse};
use crate::store::Object;
use http::Response;
use meridian_http::Body;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{oneshot, watch, Semaphore};

/// How long a collapsed miss waits for another request's fetch before asking the origin
/// itself.
const COLLAPSE_DEADLINE: Duration = Duration::from_secs(30);
/// Origin fetches for the cache in flight at once; past it, misses pass (they stream from
/// the origin without being buffered or stored).
const MAX_FILLS: usize = 1024;

/// The result of one shared origin fetch, handed to every collapsed waiter.
#[derive(Clone)]
pub(crate) enum FillResult {
    Stored {
        object: Arc<Object>,
        /// A stale copy revalidated (304), not a new body.
        refreshed: bool,
        origin: OriginName,
    },
    /// Not for sharing: the leader got the response itself; the others ask on their own.
    Pass,
    /// The origin group failed: what to tell viewers (unless stale may be served).
    Failed(Arc<ErrorAnswer>),
}

/// What the leader of a fill hears privately, beside the shared result.
pub(crate) enum LeaderResponse {
    /// The origin's answer, not for sharing.
    Unshared(OriginResponse),
    /// The answer streaming to the leader while the fill stores it.
    Streaming {
        response: Response<Body>,
        origin: OriginName,
    },
}

/// What a cache miss got: the shared fill result, or, as leader, its own response.
pub(crate) enum MissResult {
    Shared(FillResult),
    Leader(LeaderResponse),
    /// A fill that ended between the cache lookup and the collapse had stored it already.
    Cached(Arc<Object>),
}

type FillWatch = watch::Receiver<Option<FillResult>>;

/// The viewers still waiting on a fill, so a fill no one wants any more can stop.
pub(crate) struct Waiters(Arc<watch::Sender<Option<FillResult>>>);

impl Waiters {
    /// The table of fills in flight holds one receiver; any other is a viewer waiting.
    pub fn none_left(&self) -> bool {
        self.0.receiver_count() <= 1
    }
}

pub(crate) struct Inflight {
    fills: Mutex<HashMap<String, FillWatch>>,
    /// Permits for fills in flight ([`MAX_FILLS`]).
    permits: Arc<Semaphore>,
}

impl Inflight {
    pub fn new() -> Arc<Inflight> {
        Arc::new(Inflight {
            fills: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(MAX_FILLS)),
        })
    }

    fn table(&self) -> MutexGuard<'_, HashMap<String, FillWatch>> {
        self.fills.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a fill for `key` is running.
    pub fn contains(&self, key: &str) -> bool {
        self.table().contains_key(key)
    }

    /// A place among the waiters of `key`'s fill, when one is running.
    pub fn join(&self, key: &str) -> Option<Joined> {
        self.table().get(key).cloned().map(Joined)
    }

    /// Runs `fill` as the leader for `key` in its own task, so a viewer that goes away
    /// does not cancel the fetch others wait for. None when another leader got there
    /// first; a pass when too many fills run already.
    pub async fn lead<F, Fut>(self: &Arc<Self>, key: String, fill: F) -> Option<MissResult>
    where
        F: FnOnce(oneshot::Sender<LeaderResponse>, Waiters) -> Fut,
        Fut: Future<Output = FillResult> + Send + 'static,
    {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            // Too many fills already: this one passes, unbuffered.
            return Some(MissResult::Shared(FillResult::Pass));
        };
        let (tx, rx) = watch::channel(None);
        {
            let mut table = self.table();
            if table.contains_key(&key) {
                return None;
            }
            table.insert(key.clone(), rx.clone());
        }
        let (leader_tx, mut leader_rx) = oneshot::channel();
        let tx = Arc::new(tx);
        let fill = fill(leader_tx, Waiters(tx.clone()));
        let me = self.clone();
        tokio::spawn(async move {
            let result = fill.await;
            let _ = tx.send(Some(result));
            me.table().remove(&key);
            drop(permit);
        });
        let mut leader_closed = false;
        let mut shared = Box::pin(wait(rx));
        loop {
            tokio::select! {
                biased;
                own = &mut leader_rx, if !leader_closed => match own {
                    Ok(own) => return Some(MissResult::Leader(own)),
                    // The fill kept nothing for the leader alone: the shared result it is.
                    Err(_) => leader_closed = true,
                },
                result = &mut shared => {
                    // A private answer is always sent before the fill ends.
                    if !leader_closed {
                        if let Ok(own) = leader_rx.try_recv() {
                            return Some(MissResult::Leader(own));
                        }
                    }
                    return Some(MissResult::Shared(result));
                }
            }
        }
    }
}

/// A miss waiting for another request's fill.
pub(crate) struct Joined(FillWatch);

impl Joined {
    /// The fill's result, or a pass after [`COLLAPSE_DEADLINE`]: the waiter then asks the
    /// origin itself.
    pub async fn result(self) -> FillResult {
        tokio::time::timeout(COLLAPSE_DEADLINE, wait(self.0))
            .await
            .unwrap_or(FillResult::Pass)
    }
}

async fn wait(mut rx: FillWatch) -> FillResult {
    loop {
        if let Some(f) = rx.borrow_and_update().clone() {
            return f;
        }
        if rx.changed().await.is_err() {
            // The leader's task ended without an answer (it panicked): ask again.
            return FillResult::Pass;
        }
    }
}
