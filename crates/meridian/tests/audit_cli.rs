//! `meridian audit` merges the audit files of several nodes in time order.

use meridian_http::audit::{AuditEvent, AuditLog};

fn event(node: &str, time: &str, action: &str) -> AuditEvent {
    AuditEvent {
        time: time.into(),
        node: node.into(),
        actor: "token:0a1b2c3d".into(),
        source: "127.86.0.5:40000".into(),
        action: action.into(),
        target: "/x".into(),
        result: 200,
    }
}

#[test]
fn audit_merges_two_nodes_in_time_order() {
    let dir = std::env::temp_dir().join(format!("meridian-audit-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let edge = AuditLog::open(&dir, "edge-a").unwrap();
    let wan = AuditLog::open(&dir, "wan").unwrap();
    edge.record(&event(
        "edge-a",
        "2026-03-01T10:00:00.000Z",
        "POST /invalidate",
    ));
    wan.record(&event("wan", "2026-03-01T10:00:01.500Z", "POST /partition"));
    edge.record(&event(
        "edge-a",
        "2026-03-01T10:00:02.000Z",
        "POST /invalidate",
    ));
    wan.record(&event(
        "wan",
        "2026-03-01T10:00:03.000Z",
        "DELETE /partition",
    ));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["audit", "--json", "--state-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<AuditEvent> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let order: Vec<(&str, &str)> = lines
        .iter()
        .map(|e| (e.node.as_str(), e.action.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            ("edge-a", "POST /invalidate"),
            ("wan", "POST /partition"),
            ("edge-a", "POST /invalidate"),
            ("wan", "DELETE /partition"),
        ]
    );

    // Columns by default; --since leaves out what is older.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["audit", "--since", "1h", "--state-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stdout.is_empty(),
        "events of March are older than an hour"
    );
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["audit", "--since", "soon", "--state-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let _ = std::fs::remove_dir_all(&dir);
}
