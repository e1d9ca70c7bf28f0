//! Expiry times as the secrets messages print them: apart from `secrets/mod.rs` so the
//! TLS rotation in `tls` can use it without depending back on its parent.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch; 0 for a time before it.
pub(crate) fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
