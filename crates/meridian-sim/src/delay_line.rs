//! The delay line: one thread that sends every relayed chunk at its moment.
//!
//! A relay that wakes an async task when a chunk is due pays two wake-ups per hop (the
//! timer's, then the runtime worker's), and on an otherwise idle machine each can cost a
//! few hundred microseconds. Here the thread that wakes at the deadline writes the chunk
//! itself, with a non-blocking write on the connection, so a hop costs one wake-up. Only
//! when the write cannot finish (the receiver is slow, or a partition holds the link) does
//! the chunk go to its connection's backlog, which the relay's task drains.

use bytes::Bytes;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How much earlier than its deadline a chunk may go: the thread is woken this much early
/// to absorb the kernel's wake-up latency (its timer slack is set to 1 µs).
const EARLY: Duration = Duration::from_micros(30);

/// What a written chunk reports: its size, and how late it went beyond its modelled
/// moment (None when it waited in a backlog, behind a slow receiver or a partition, which
/// is the link's doing, not the relay's).
pub type Report = dyn Fn(u64, Option<Duration>) + Send + Sync;

/// One direction of one relayed connection, as the delay line sees it.
pub struct Outbox {
    /// The connection's socket (a duplicate descriptor, non-blocking like the original),
    /// owned here so it stays open while chunks for it are still queued.
    sock: std::net::TcpStream,
    state: Mutex<State>,
    /// Set while a partition holds the link: chunks wait in the backlog.
    pub(crate) held: AtomicBool,
    /// Chunks accepted and not yet written, for backpressure.
    pub(crate) queued: AtomicUsize,
    /// Set once the reader has seen the end: the task then waits for `queued` to drain.
    pub(crate) ended: AtomicBool,
    /// Wakes the relay's task: a backlog to drain, a failure, the end, or room to read.
    pub(crate) wake: tokio::sync::Notify,
    report: Box<Report>,
}

#[derive(Default)]
pub(crate) struct State {
    /// Chunks (None: the end of the stream) that must go before anything newer, oldest
    /// first. The front stays in place while the task writes it.
    pub backlog: VecDeque<Option<Bytes>>,
    /// The connection failed for writing: drop what comes.
    pub failed: bool,
}

/// Queued chunks past which a relay stops reading, as a full link would.
pub const LIMIT: usize = 1024;

impl Outbox {
    pub fn new(sock: std::net::TcpStream, report: Box<Report>) -> Arc<Outbox> {
        Arc::new(Outbox {
            sock,
            state: Mutex::new(State::default()),
            held: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
            ended: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
            report,
        })
    }

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn report(&self, bytes: u64, late: Option<Duration>) {
        (self.report)(bytes, late);
    }

    /// One chunk has left for good (written, or dropped after a failure).
    pub(crate) fn done(&self) {
        let before = self.queued.fetch_sub(1, Ordering::AcqRel);
        if before == LIMIT || (before == 1 && self.ended.load(Ordering::Acquire)) {
            self.wake.notify_one();
        }
    }

    /// Called by the delay line at the chunk's moment.
    fn deliver(&self, due: Instant, chunk: Option<Bytes>) {
        let mut st = self.state();
        if st.failed {
            drop(st);
            self.done();
            return;
        }
        if !st.backlog.is_empty() || self.held.load(Ordering::Acquire) {
            st.backlog.push_back(chunk);
            drop(st);
            self.wake.notify_one();
            return;
        }
        let Some(bytes) = chunk else {
            let _ = self.sock.shutdown(std::net::Shutdown::Write);
            drop(st);
            self.done();
            return;
        };
        match (&self.sock).write(&bytes) {
            Ok(n) if n == bytes.len() => {
                drop(st);
                self.report(
                    n as u64,
                    Some(Instant::now().saturating_duration_since(due)),
                );
                self.done();
            }
            Ok(n) => {
                st.backlog.push_back(Some(bytes.slice(n..)));
                drop(st);
                self.report(n as u64, None);
                self.wake.notify_one();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                st.backlog.push_back(Some(bytes));
                drop(st);
                self.wake.notify_one();
            }
            Err(_) => {
                st.failed = true;
                drop(st);
                self.done();
                self.wake.notify_one();
            }
        }
    }
}

struct Due {
    at: Instant,
    seq: u64,
    out: Arc<Outbox>,
    chunk: Option<Bytes>,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

struct Line {
    /// Chunks by moment; the sequence number keeps a connection's chunks in order when
    /// their moments are equal.
    heap: Mutex<(BinaryHeap<Reverse<Due>>, u64)>,
    thread: std::thread::Thread,
}

fn line() -> &'static Line {
    static LINE: OnceLock<Arc<Line>> = OnceLock::new();
    LINE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Arc<Line>>();
        let handle = std::thread::Builder::new()
            .name("wan-delay-line".into())
            .spawn(move || {
                be_punctual();
                if let Ok(line) = rx.recv() {
                    run(&line);
                }
            })
            .expect("the delay line thread starts");
        let line = Arc::new(Line {
            heap: Mutex::new((BinaryHeap::new(), 0)),
            thread: handle.thread().clone(),
        });
        let _ = tx.send(line.clone());
        line
    })
}

/// Asks the kernel to run this thread promptly when it wakes, since being on time is its
/// whole job: a 1 µs timer slack; a short scheduler slice (Linux 6.6+ gives a thread with
/// a shorter slice an earlier deadline, so its wake-up preempts sooner; no privilege
/// needed); and a higher priority where allowed (ignored without CAP_SYS_NICE).
fn be_punctual() {
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: libc::SCHED_OTHER as u32,
        flags: 0,
        nice: -10,
        priority: 0,
        runtime: 100_000, // ns: the shortest slice the kernel accepts
        deadline: 0,
        period: 0,
    };
    let unprivileged = SchedAttr { nice: 0, ..attr };
    // SAFETY: prctl and sched_setattr on this thread (pid 0) with live arguments; both
    // only change this thread's scheduling, and failures are ignored.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
        if libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) != 0 {
            libc::syscall(
                libc::SYS_sched_setattr,
                0,
                &unprivileged as *const SchedAttr,
                0,
            );
        }
    }
}

fn run(line: &Line) {
    let mut ready = Vec::new();
    loop {
        let next = {
            let mut g = line.heap.lock().unwrap_or_else(|p| p.into_inner());
            let horizon = Instant::now() + EARLY;
            while g.0.peek().is_some_and(|Reverse(d)| d.at <= horizon) {
                if let Some(Reverse(d)) = g.0.pop() {
                    ready.push(d);
                }
            }
            g.0.peek().map(|Reverse(d)| d.at)
        };
        // Written outside the heap's lock, so relays can keep queueing meanwhile.
        for d in ready.drain(..) {
            d.out.deliver(d.at, d.chunk);
        }
        match next {
            Some(at) => {
                let wait = at.saturating_duration_since(Instant::now() + EARLY);
                if !wait.is_zero() {
                    std::thread::park_timeout(wait);
                }
            }
            None => std::thread::park(),
        }
    }
}

/// Queues `chunk` (None: the end of the stream) to go out on `out` at `at`.
pub fn send_at(at: Instant, out: &Arc<Outbox>, chunk: Option<Bytes>) {
    out.queued.fetch_add(1, Ordering::AcqRel);
    let line = line();
    let earliest = {
        let mut g = line.heap.lock().unwrap_or_else(|p| p.into_inner());
        g.1 += 1;
        let seq = g.1;
        let before = g.0.peek().map(|Reverse(d)| d.at);
        g.0.push(Reverse(Due {
            at,
            seq,
            out: out.clone(),
            chunk,
        }));
        before.is_none_or(|b| at < b)
    };
    if earliest {
        line.thread.unpark();
    }
}
