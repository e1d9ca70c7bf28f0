//! The console's audit panel: the deployment's recent admin actions, newest first.
//!
//! The console reads the nodes' audit files from the state dir rather than asking each
//! node for them: a node that crashed or was killed (what an operator most wants to
//! explain) can no longer answer, but its file is still there, and a refused attempt
//! stays visible even after the node that refused it is gone. The cost: on a multi-host
//! deployment the console sees the files of its own host only.

use meridian_http::audit::{self, AuditEvent};
use std::path::Path;
use std::time::Duration;

/// How many events the panel shows.
pub const SHOWN: usize = 100;
/// How far back the panel looks.
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The latest `SHOWN` audit events of a state dir, newest first.
pub fn recent(state_dir: &Path) -> Vec<AuditEvent> {
    let mut events = audit::read_all(state_dir, Some(WINDOW)).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read the audit logs");
        Vec::new()
    });
    events.reverse();
    events.truncate(SHOWN);
    events
}
