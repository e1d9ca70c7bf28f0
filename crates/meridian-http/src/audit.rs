//! The audit log, as CloudTrail keeps one: every admin action a node performs (and every
//! attempt it refused) as one JSON line in `<state-dir>/logs/audit-<node>.jsonl`, so an
//! operator can answer who purged the cache, cut the WAN or promoted a Redis replica, from
//! where, and whether it worked. One implementation for every admin server: wrap the route
//! in [`AuditLog::observe`].
//!
//! A line: `{"time":"2026-11-26T04:50:49.123Z","node":"edge-pop","actor":"token:3f1a9c02",
//! "source":"127.0.0.1:50412","action":"POST /invalidate","target":"/static/*","result":200}`.
//! The actor is a token id (the first 4 bytes of the SHA-256 of the bearer token the
//! request presented, as signing key ids are), never the token; `anonymous` without one.

use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// One audited action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// UTC, RFC 3339 with milliseconds: sorts as text.
    pub time: String,
    pub node: String,
    pub actor: String,
    pub source: String,
    pub action: String,
    pub target: String,
    /// The HTTP status the action ended with (401: refused for want of the token).
    pub result: u16,
}

/// What a route names as the object of its action (set as a response extension), when
/// the query string does not say it (an invalidation's paths are in its body).
#[derive(Debug, Clone)]
pub struct Target(pub String);

/// A node's audit file; appends are one `write` each on an `O_APPEND` file, so lines of
/// concurrent requests never interleave.
pub struct AuditLog {
    node: String,
    file: Option<Mutex<std::fs::File>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("node", &self.node)
            .finish()
    }
}

/// The audit file of `node` in a state dir.
pub fn path(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join("logs").join(format!("audit-{node}.jsonl"))
}

impl AuditLog {
    /// Opens (creating, owner-only from the start) `node`'s audit file in `state_dir`.
    pub fn open(state_dir: &Path, node: &str) -> std::io::Result<AuditLog> {
        use std::os::unix::fs::OpenOptionsExt;
        let p = path(state_dir, node);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&p)?;
        Ok(AuditLog {
            node: node.to_owned(),
            file: Some(Mutex::new(file)),
        })
    }

    /// Opens the file, or (when it can't be opened) a log that records nothing, saying so
    /// once: an admin server without an audit file still serves.
    pub fn open_or_warn(state_dir: &Path, node: &str) -> AuditLog {
        AuditLog::open(state_dir, node).unwrap_or_else(|e| {
            tracing::warn!(node, error = %e, "cannot open the audit log; admin actions go unrecorded");
            AuditLog::disabled(node)
        })
    }

    /// A log that records nothing (nodes run without a state dir, unit tests).
    pub fn disabled(node: &str) -> AuditLog {
        AuditLog {
            node: node.to_owned(),
            file: None,
        }
    }

    /// Appends one event.
    pub fn record(&self, event: &AuditEvent) {
        let Some(file) = &self.file else { return };
        let Ok(mut line) = serde_json::to_vec(event) else {
            return;
        };
        line.push(b'\n');
        let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(&line) {
            tracing::warn!(node = %self.node, error = %e, "cannot append to the audit log");
        }
    }

    /// Runs an admin `route` for `req` from `peer` and records it when it is an action:
    /// a method that changes something, or any request refused with 401/403.
    pub async fn observe<B, F, Fut, R>(
        &self,
        peer: SocketAddr,
        req: Request<B>,
        route: F,
    ) -> Response<R>
    where
        F: FnOnce(Request<B>) -> Fut,
        Fut: std::future::Future<Output = Response<R>>,
    {
        let method = req.method().clone();
        let action = format!("{method} {}", req.uri().path());
        let query = req.uri().query().unwrap_or("").to_owned();
        let actor = actor(req.headers());
        let res = route(req).await;
        let status = res.status();
        let mutating = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
        if mutating || status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let target = res
                .extensions()
                .get::<Target>()
                .map(|t| t.0.clone())
                .unwrap_or(query);
            self.record(&AuditEvent {
                time: rfc3339(SystemTime::now()),
                node: self.node.clone(),
                actor,
                source: peer.to_string(),
                action,
                target,
                result: status.as_u16(),
            });
        }
        res
    }
}

/// Who made a request: the id of the bearer token it presented, never the token.
pub fn actor(headers: &HeaderMap) -> String {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    match token {
        Some(t) => format!("token:{}", token_id(t)),
        None => "anonymous".to_owned(),
    }
}

/// A short, stable id of a token (8 hex digits of its SHA-256).
pub fn token_id(token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    d.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// `YYYY-MM-DD` and `HH:MM:SS` in UTC.
pub fn utc_date_time(t: SystemTime) -> (String, String) {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_millis())
        .unwrap_or(0);
    let (date, time) = utc_date_time(t);
    format!("{date}T{time}.{ms:03}Z")
}

/// Every audit event in a state dir's `logs/audit-*.jsonl`, merged in time order (oldest
/// first), those before `since` ago left out. Lines that do not parse are skipped.
pub fn read_all(state_dir: &Path, since: Option<Duration>) -> std::io::Result<Vec<AuditEvent>> {
    let cutoff = since
        .and_then(|s| SystemTime::now().checked_sub(s))
        .map(rfc3339);
    let mut events = Vec::new();
    let dir = state_dir.join("logs");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(events),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("audit-") && name.ends_with(".jsonl")) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())?;
        events.extend(
            text.lines()
                .filter_map(|l| serde_json::from_str::<AuditEvent>(l).ok())
                .filter(|e| cutoff.as_ref().is_none_or(|c| &e.time >= c)),
        );
    }
    events.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.node.cmp(&b.node)));
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40.123Z");
    }

    #[tokio::test]
    async fn refused_and_mutating_requests_are_recorded_without_the_token_reads_are_not() {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("meridian-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let log = AuditLog::open(&d, "n1").unwrap();
        let peer: SocketAddr = "127.86.0.9:4000".parse().unwrap();
        let req = |m: &str, uri: &str, auth: Option<&str>| {
            let mut b = Request::builder().method(m).uri(uri);
            if let Some(a) = auth {
                b = b.header("authorization", a);
            }
            b.body(()).unwrap()
        };
        let answer = |s: u16| {
            move |_r: Request<()>| async move {
                let mut r = Response::new(());
                *r.status_mut() = StatusCode::from_u16(s).unwrap();
                r
            }
        };
        log.observe(
            peer,
            req("GET", "/cache", Some("Bearer sekrit")),
            answer(200),
        )
        .await;
        log.observe(
            peer,
            req("POST", "/partition?from=a&to=b", None),
            answer(401),
        )
        .await;
        log.observe(
            peer,
            req("POST", "/promote", Some("Bearer sekrit")),
            |_r| async {
                let mut r = Response::new(());
                r.extensions_mut().insert(Target("redis-r1-b".into()));
                r
            },
        )
        .await;
        let p = path(&d, "n1");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(!text.contains("sekrit"));
        let ev = read_all(&d, None).unwrap();
        assert_eq!(ev.len(), 2, "{text}");
        assert_eq!(ev[0].action, "POST /partition");
        assert_eq!(ev[0].target, "from=a&to=b");
        assert_eq!((ev[0].result, ev[0].actor.as_str()), (401, "anonymous"));
        assert_eq!(ev[1].target, "redis-r1-b");
        assert_eq!(ev[1].actor, format!("token:{}", token_id("sekrit")));
        assert_eq!(ev[1].source, "127.86.0.9:4000");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn files_of_several_nodes_merge_in_time_order() {
        let d = std::env::temp_dir().join(format!("meridian-audit-merge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let ev = |node: &str, time: &str| AuditEvent {
            time: time.into(),
            node: node.into(),
            actor: "anonymous".into(),
            source: "127.86.0.1:1".into(),
            action: "POST /x".into(),
            target: String::new(),
            result: 200,
        };
        let a = AuditLog::open(&d, "a").unwrap();
        let b = AuditLog::open(&d, "b").unwrap();
        a.record(&ev("a", "2026-01-01T00:00:01.000Z"));
        a.record(&ev("a", "2026-01-01T00:00:03.000Z"));
        b.record(&ev("b", "2026-01-01T00:00:02.000Z"));
        b.record(&ev("b", "2026-01-01T00:00:04.000Z"));
        std::fs::write(d.join("logs/unrelated.log"), "not audit").unwrap();
        let got: Vec<_> = read_all(&d, None)
            .unwrap()
            .into_iter()
            .map(|e| e.node)
            .collect();
        assert_eq!(got, ["a", "b", "a", "b"]);
        assert!(read_all(&d, Some(Duration::from_secs(3600)))
            .unwrap()
            .is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }
}
