//! Function kinds and the resource limits that go with them.
//!
//! The numbers follow CloudFront: viewer functions (CloudFront Functions) are tiny and must be
//! fast, so they get 10 KB of code, 2 MB of memory and a 1 ms compute budget; origin hooks
//! (Lambda@Edge style) run only on cache misses and get far more room.

use std::time::Duration;

/// Where in the request path a function runs; decides the event shape and the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// CloudFront Functions `viewer-request`: may rewrite the request or answer at the edge.
    ViewerRequest,
    /// CloudFront Functions `viewer-response`: may rewrite the response.
    ViewerResponse,
    /// Lambda@Edge-style `origin-request`: `exports.handler`, runs on cache misses.
    OriginRequest,
    /// Lambda@Edge-style `origin-response`.
    OriginResponse,
}

impl Kind {
    /// True for CloudFront Functions (`cloudfront-js-2.0`), false for Lambda@Edge-style hooks.
    pub fn is_viewer(self) -> bool {
        matches!(self, Kind::ViewerRequest | Kind::ViewerResponse)
    }

    /// The `eventType` string CloudFront puts in the event context.
    pub fn event_type(self) -> &'static str {
        match self {
            Kind::ViewerRequest => "viewer-request",
            Kind::ViewerResponse => "viewer-response",
            Kind::OriginRequest => "origin-request",
            Kind::OriginResponse => "origin-response",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.event_type())
    }
}

/// CloudFront Functions maximum code size.
pub const VIEWER_MAX_CODE_BYTES: usize = 10 * 1024;
/// Origin hooks: generous, like a zipped Lambda@Edge viewer-less function.
pub const ORIGIN_MAX_CODE_BYTES: usize = 1024 * 1024;
/// Lambda@Edge body limit for generated responses and exposed request bodies.
pub const ORIGIN_MAX_BODY_BYTES: usize = 1024 * 1024;
/// CloudFront Functions limit on a generated response body (40 KB).
pub const VIEWER_MAX_BODY_BYTES: usize = 40 * 1024;
/// Cap on captured console output per invocation so a chatty function cannot eat memory.
pub const MAX_LOG_BYTES: usize = 64 * 1024;

/// Resource limits for one engine (memory) and each invocation (CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of JS heap the function may use on top of what the runtime and built-ins need.
    pub memory_bytes: usize,
    /// CPU time (thread CPU clock) one invocation may use before it is interrupted.
    pub cpu_budget: Duration,
    /// Maximum source size accepted by [`crate::FunctionCode::compile`].
    pub max_code_bytes: usize,
    /// Maximum size of a body in a generated response.
    pub max_body_bytes: usize,
}

impl Limits {
    /// CloudFront's defaults for the kind.
    pub fn for_kind(kind: Kind) -> Limits {
        if kind.is_viewer() {
            Limits {
                memory_bytes: 2 * 1024 * 1024,
                cpu_budget: Duration::from_millis(1),
                max_code_bytes: VIEWER_MAX_CODE_BYTES,
                max_body_bytes: VIEWER_MAX_BODY_BYTES,
            }
        } else {
            Limits {
                memory_bytes: 128 * 1024 * 1024,
                cpu_budget: Duration::from_secs(5),
                max_code_bytes: ORIGIN_MAX_CODE_BYTES,
                max_body_bytes: ORIGIN_MAX_BODY_BYTES,
            }
        }
    }

    /// Same limits with another CPU budget (tests and debug builds need more than 1 ms).
    pub fn with_cpu_budget(mut self, budget: Duration) -> Limits {
        self.cpu_budget = budget;
        self
    }

    /// Same limits with another memory allowance.
    pub fn with_memory(mut self, bytes: usize) -> Limits {
        self.memory_bytes = bytes;
        self
    }
}

/// CPU time consumed by the calling thread. CPU, not wall time, so a preempted worker on a
/// busy machine is not charged for time it did not run (CloudFront also meters compute).
/// A real system call (no vDSO for thread clocks; over a microsecond on a loaded VM), so
/// only the interrupt handler reads it, never the invocation's own start and end.
pub(crate) fn thread_cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn cpu_ns() -> u64 {
    thread_cpu_now().as_nanos().min(u128::from(UNSET - 1)) as u64
}

/// Nanoseconds on the monotonic clock (vDSO, cheap) since the first call in the process.
fn mono_ns() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let e = *EPOCH.get_or_init(std::time::Instant::now);
    e.elapsed().as_nanos().min(u128::from(UNSET - 1)) as u64
}

const UNSET: u64 = u64::MAX;

/// The CPU budget of the invocation running now, shared with the runtime's interrupt handler.
///
/// An invocation starts and ends on the cheap monotonic clock. QuickJS calls the handler
/// only every few thousand operations, so a short invocation never reads the thread's CPU
/// clock; a long one reads it at the handler's first call, counts everything before that
/// as CPU (an upper bound), and from then on meters real CPU time. A worker preempted
/// mid-invocation is therefore not charged for time it did not run, past that first look.
#[derive(Debug)]
pub(crate) struct BudgetClock {
    /// Monotonic ns when the invocation started; `UNSET` when none runs.
    start: std::sync::atomic::AtomicU64,
    budget_ns: std::sync::atomic::AtomicU64,
    /// Thread CPU ns at the start, as inferred at the handler's first look; `UNSET` before.
    cpu_start: std::sync::atomic::AtomicU64,
}

impl Default for BudgetClock {
    fn default() -> Self {
        BudgetClock {
            start: std::sync::atomic::AtomicU64::new(UNSET),
            budget_ns: std::sync::atomic::AtomicU64::new(0),
            cpu_start: std::sync::atomic::AtomicU64::new(UNSET),
        }
    }
}

impl BudgetClock {
    /// Starts metering an invocation with `budget`; `sample` reads the CPU clock now, so
    /// that the invocation's CPU time is exact (metrics sample a share of invocations).
    pub(crate) fn start(&self, budget: Duration, sample: bool) {
        self.budget_ns
            .store(budget.as_nanos().min(u128::from(UNSET - 1)) as u64, Relaxed);
        let cpu = if sample { cpu_ns() } else { UNSET };
        self.cpu_start.store(cpu, Relaxed);
        self.start.store(mono_ns(), Relaxed);
    }

    /// Stops metering; returns the time the invocation used and whether it is CPU time
    /// (sampled, or read by the handler); otherwise it is the elapsed monotonic time, which
    /// for a short invocation is its CPU time unless the thread was preempted.
    pub(crate) fn stop(&self) -> (Duration, bool) {
        let start = self.start.swap(UNSET, Relaxed);
        if start == UNSET {
            return (Duration::ZERO, false);
        }
        let cpu_start = self.cpu_start.load(Relaxed);
        if cpu_start != UNSET {
            return (
                Duration::from_nanos(cpu_ns().saturating_sub(cpu_start)),
                true,
            );
        }
        (Duration::from_nanos(mono_ns().saturating_sub(start)), false)
    }

    /// For the interrupt handler: whether the running invocation is over its budget.
    pub(crate) fn over_budget(&self) -> bool {
        let start = self.start.load(Relaxed);
        if start == UNSET {
            return false;
        }
        let budget = self.budget_ns.load(Relaxed);
        let now_cpu = cpu_ns();
        let mut cpu_start = self.cpu_start.load(Relaxed);
        if cpu_start == UNSET {
            let before = mono_ns().saturating_sub(start);
            cpu_start = now_cpu.saturating_sub(before);
            self.cpu_start.store(cpu_start, Relaxed);
        }
        now_cpu.saturating_sub(cpu_start) >= budget
    }
}

/// CloudFront's "compute utilization": time used as a percentage of the budget, 0-100.
pub(crate) fn utilization(used: Duration, budget: Duration) -> u8 {
    if budget.is_zero() {
        return 100;
    }
    let pct = used.as_nanos().saturating_mul(100) / budget.as_nanos();
    pct.min(100) as u8
}

/// Memory accounting shared between an engine and its runtime's allocator.
#[derive(Debug, Default)]
pub(crate) struct MemoryMeter {
    limit: std::sync::atomic::AtomicUsize,
    used: std::sync::atomic::AtomicUsize,
    refused: std::sync::atomic::AtomicBool,
}

impl MemoryMeter {
    pub(crate) fn set_limit(&self, bytes: usize) {
        self.limit.store(bytes, Relaxed);
    }
    pub(crate) fn used(&self) -> usize {
        self.used.load(Relaxed)
    }
    /// Whether an allocation was refused since the flag was last reset.
    pub(crate) fn refused(&self) -> bool {
        self.refused.load(Relaxed)
    }
    /// Whether an allocation was refused since the last call (and reset the flag).
    pub(crate) fn take_refused(&self) -> bool {
        self.refused.swap(false, Relaxed)
    }
    /// The first allocation over the limit is refused; after that a grace reserve lets
    /// QuickJS build its error object and unwind (it crashes on some out-of-memory paths
    /// otherwise) while the interrupt handler stops the script. Past the reserve, refuse.
    fn admit(&self, old: usize, new: usize) -> bool {
        if new <= old {
            return true;
        }
        let after = self
            .used
            .load(Relaxed)
            .saturating_sub(old)
            .saturating_add(new);
        let limit = self.limit.load(Relaxed);
        if after <= limit {
            return true;
        }
        if !self.refused.swap(true, Relaxed) {
            return false;
        }
        after <= limit.saturating_add(MEMORY_GRACE)
    }
    fn account(&self, old: usize, new: usize) {
        let used = self.used.load(Relaxed);
        self.used
            .store(used.saturating_sub(old).saturating_add(new), Relaxed);
    }
}

use std::sync::atomic::Ordering::Relaxed;

/// Extra memory allowed after the limit was hit, only for unwinding.
const MEMORY_GRACE: usize = 1024 * 1024;

/// Allocator that enforces the memory limit itself. QuickJS's own limit cannot tell us it
/// was hit (the "out of memory" error object may itself fail to allocate and surface as a
/// bare `null`), so refusals are recorded here and the engine knows for sure.
///
/// It also keeps freed small blocks for reuse. Every invocation builds and drops the same
/// few dozen small objects (the event's fields), more of one size than the C allocator's
/// per-thread cache holds, so without this each went through the allocator's slow paths.
/// One runtime uses one allocator under its lock: the lists need no synchronisation.
pub(crate) struct MeteredAllocator {
    pub(crate) meter: std::sync::Arc<MemoryMeter>,
    /// Freed blocks by rounded size / `ALIGN` (a block's usable size is its rounded size).
    free: Vec<Vec<*mut u8>>,
}

impl MeteredAllocator {
    pub(crate) fn new(meter: std::sync::Arc<MemoryMeter>) -> MeteredAllocator {
        MeteredAllocator {
            meter,
            free: (0..=CACHED_MAX / ALIGN).map(|_| Vec::new()).collect(),
        }
    }

    /// A kept block of exactly `sz` (rounded) bytes, when there is one.
    fn reuse(&mut self, sz: usize) -> *mut u8 {
        if sz > CACHED_MAX {
            return std::ptr::null_mut();
        }
        self.free[sz / ALIGN].pop().unwrap_or(std::ptr::null_mut())
    }
}

/// Blocks up to this size are kept for reuse, at most `CACHED_PER_SIZE` of each size (so
/// an engine keeps well under a megabyte it is not using).
const CACHED_MAX: usize = 256;
const CACHED_PER_SIZE: usize = 128;

// SAFETY: the raw pointers are blocks this allocator owns exclusively (freed by QuickJS and
// not yet handed out again); the allocator moves with its runtime, which is `Send`.
unsafe impl Send for MeteredAllocator {}

impl Drop for MeteredAllocator {
    fn drop(&mut self) {
        for list in &mut self.free {
            for p in list.drain(..) {
                // SAFETY: every kept block came from RustAllocator and is owned by us.
                unsafe {
                    rquickjs::allocator::Allocator::dealloc(
                        &mut rquickjs::allocator::RustAllocator,
                        p,
                    )
                };
            }
        }
    }
}

const ALIGN: usize = 8;

fn rounded(size: usize) -> Option<usize> {
    size.checked_add(ALIGN - 1).map(|s| s / ALIGN * ALIGN)
}

// SAFETY: every pointer handed out comes from RustAllocator (directly or kept after a free)
// and is returned to it; we only add bookkeeping around the calls and refuse (null) when
// over the limit.
unsafe impl rquickjs::allocator::Allocator for MeteredAllocator {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        let Some(sz) = rounded(size) else {
            return std::ptr::null_mut();
        };
        if !self.meter.admit(0, sz) {
            return std::ptr::null_mut();
        }
        let mut p = self.reuse(sz);
        if p.is_null() {
            p = rquickjs::allocator::RustAllocator.alloc(size);
        }
        if !p.is_null() {
            self.meter.account(0, sz);
        }
        p
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        let Some(sz) = count.checked_mul(size).and_then(rounded) else {
            return std::ptr::null_mut();
        };
        if sz == 0 || !self.meter.admit(0, sz) {
            return std::ptr::null_mut();
        }
        let mut p = self.reuse(sz);
        if p.is_null() {
            p = rquickjs::allocator::RustAllocator.calloc(count, size);
        } else {
            // SAFETY: a kept block has `sz` usable bytes.
            unsafe { std::ptr::write_bytes(p, 0, sz) };
        }
        if !p.is_null() {
            self.meter.account(0, sz);
        }
        p
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        if ptr.is_null() {
            return;
        }
        // SAFETY: ptr came from RustAllocator (contract of this trait).
        let old = unsafe { rquickjs::allocator::RustAllocator::usable_size(ptr) };
        self.meter.account(old, 0);
        if old <= CACHED_MAX {
            let list = &mut self.free[old / ALIGN];
            if list.len() < CACHED_PER_SIZE {
                list.push(ptr);
                return;
            }
        }
        // SAFETY: as above.
        unsafe { rquickjs::allocator::RustAllocator.dealloc(ptr) };
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        if ptr.is_null() {
            return self.alloc(new_size);
        }
        if new_size == 0 {
            // SAFETY: ptr came from this allocator.
            unsafe { self.dealloc(ptr) };
            return std::ptr::null_mut();
        }
        let Some(sz) = rounded(new_size) else {
            return std::ptr::null_mut();
        };
        // SAFETY: ptr came from RustAllocator.
        let old = unsafe { rquickjs::allocator::RustAllocator::usable_size(ptr) };
        if sz == old {
            return ptr;
        }
        if !self.meter.admit(old, sz) {
            return std::ptr::null_mut();
        }
        // SAFETY: ptr came from RustAllocator; on failure the old block stays valid.
        let p = unsafe { rquickjs::allocator::RustAllocator.realloc(ptr, new_size) };
        if !p.is_null() {
            self.meter.account(old, sz);
        }
        p
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        // SAFETY: ptr came from RustAllocator.
        unsafe { rquickjs::allocator::RustAllocator::usable_size(ptr) }
    }
}
