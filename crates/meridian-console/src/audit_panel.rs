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

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_http::audit::{rfc3339, AuditLog};
    use std::time::SystemTime;

    #[test]
    fn the_panel_shows_the_latest_events_newest_first() {
        let d = std::env::temp_dir().join(format!("meridian-console-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let now = SystemTime::now();
        for (node, secs_ago) in [("edge-a", 30u64), ("dns-1", 20), ("edge-a", 10)] {
            AuditLog::open(&d, node).unwrap().record(&AuditEvent {
                time: rfc3339(now - Duration::from_secs(secs_ago)),
                node: node.into(),
                actor: "anonymous".into(),
                source: "127.86.0.2:1".into(),
                action: "POST /x".into(),
                target: secs_ago.to_string(),
                result: 401,
            });
        }
        let shown: Vec<String> = recent(&d).into_iter().map(|e| e.target).collect();
        assert_eq!(shown, ["10", "20", "30"]);
        assert!(recent(&d.join("none")).is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }
}
