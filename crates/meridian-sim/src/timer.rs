//! A precise sleep for the relays. tokio's timer works in whole milliseconds, which would
//! put up to a millisecond of error on every hop; this one runs a thread that parks until
//! the earliest deadline (the kernel wakes it within tens of microseconds) and wakes the
//! waiting task then.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// How much earlier than its deadline a sleeper is woken, to cover the wake-up latencies.
const EARLY: std::time::Duration = std::time::Duration::from_micros(200);

struct Entry {
    at: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

struct Wheel {
    heap: Mutex<(BinaryHeap<Reverse<Entry>>, u64)>,
    thread: std::thread::Thread,
}

fn wheel() -> &'static Arc<Wheel> {
    static WHEEL: OnceLock<Arc<Wheel>> = OnceLock::new();
    WHEEL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Arc<Wheel>>();
        let handle = std::thread::Builder::new()
            .name("relay-timer".into())
            .spawn(move || {
                let Ok(w) = rx.recv() else { return };
                loop {
                    let next = {
                        let mut g = w.heap.lock().unwrap_or_else(|p| p.into_inner());
                        // Wake a little early: the kernel's wake-up of this thread and the
                        // runtime's of the task each take about a tenth of a millisecond.
                        let now = Instant::now() + EARLY;
                        while g.0.peek().is_some_and(|Reverse(e)| e.at <= now) {
                            if let Some(Reverse(e)) = g.0.pop() {
                                e.waker.wake();
                            }
                        }
                        g.0.peek().map(|Reverse(e)| e.at)
                    };
                    match next {
                        Some(at) => std::thread::park_timeout(
                            at.saturating_duration_since(Instant::now() + EARLY),
                        ),
                        None => std::thread::park(),
                    }
                }
            })
            .expect("the relay timer thread starts");
        let w = Arc::new(Wheel {
            heap: Mutex::new((BinaryHeap::new(), 0)),
            thread: handle.thread().clone(),
        });
        let _ = tx.send(w.clone());
        w
    })
}

/// Resolves at `at`, within tens of microseconds.
pub fn sleep_until(at: Instant) -> Sleep {
    Sleep {
        at,
        registered: false,
    }
}

pub struct Sleep {
    at: Instant,
    registered: bool,
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() + EARLY >= self.at {
            return Poll::Ready(());
        }
        // Register (again) with the current waker; a spurious extra wake is harmless.
        let w = wheel();
        {
            let mut g = w.heap.lock().unwrap_or_else(|p| p.into_inner());
            g.1 += 1;
            let seq = g.1;
            let earliest = g.0.peek().map(|Reverse(e)| e.at);
            g.0.push(Reverse(Entry {
                at: self.at,
                seq,
                waker: cx.waker().clone(),
            }));
            if earliest.is_none_or(|e| self.at < e) || !self.registered {
                w.thread.unpark();
            }
        }
        self.registered = true;
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_close_to_the_deadline() {
        let mut late = Vec::new();
        for i in 0..20 {
            let at = Instant::now() + Duration::from_micros(1500 + i * 137);
            sleep_until(at).await;
            late.push(Instant::now().duration_since(at));
        }
        late.sort();
        assert!(
            late[10] < Duration::from_micros(500),
            "median lateness {:?}",
            late[10]
        );
    }
}
