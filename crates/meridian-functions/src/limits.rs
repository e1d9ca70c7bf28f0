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
pub(crate) struct MeteredAllocator {
    pub(crate) meter: std::sync::Arc<MemoryMeter>,
}

const ALIGN: usize = 8;

fn rounded(size: usize) -> Option<usize> {
    size.checked_add(ALIGN - 1).map(|s| s / ALIGN * ALIGN)
}

// SAFETY: every pointer handed out comes from RustAllocator and is returned to it; we only
// add bookkeeping around the calls and refuse (null) when over the limit.
unsafe impl rquickjs::allocator::Allocator for MeteredAllocator {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        let Some(sz) = rounded(size) else {
            return std::ptr::null_mut();
        };
        if !self.meter.admit(0, sz) {
            return std::ptr::null_mut();
        }
        let p = rquickjs::allocator::RustAllocator.alloc(size);
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
        let p = rquickjs::allocator::RustAllocator.calloc(count, size);
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
        // SAFETY: as above.
        unsafe { rquickjs::allocator::RustAllocator.dealloc(ptr) };
        self.meter.account(old, 0);
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
