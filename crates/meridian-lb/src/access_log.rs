//! ALB's access log: one line per request, space-separated, in the field order AWS
//! documents for Application Load Balancers ("Access log entries"), so tools that parse
//! ALB logs (Athena tables, GoAccess, log shippers) read Meridian's unchanged.
//!
//! Requests never wait on the disk: a line goes into a bounded channel that a writer
//! thread drains into the file; when the channel is full the line is dropped and counted
//! (`lb_access_log_dropped`). The edge has a writer of its own (`meridian-edge/src/log.rs`),
//! but it lives in the edge crate and writes CloudFront's JSON lines, so it cannot serve
//! here; this one is as small.
//!
//! A line is written when the response body ends (or is dropped), so `sent_bytes` counts
//! what went out. For a WebSocket that is when the 101 has been sent (ALB logs a WebSocket
//! when it closes).

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use meridian_telemetry::prometheus_client::metrics::counter::Counter;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

/// Lines queued at most; beyond it a line is dropped rather than slow a request.
const CAPACITY: usize = 64 * 1024;

/// The number of fields of a line, as ALB's documented format has them.
pub const FIELDS: usize = 30;

/// Where lines go; cheap to clone (one per response in flight).
#[derive(Clone)]
pub(crate) struct AccessLog {
    tx: SyncSender<String>,
    dropped: Counter,
}

impl AccessLog {
    /// Appends lines to `path` from a thread of its own; None when the thread cannot start.
    pub(crate) fn open(path: PathBuf, dropped: Counter) -> Option<AccessLog> {
        let (log, rx) = AccessLog::with_capacity(CAPACITY, dropped);
        let spawned = std::thread::Builder::new()
            .name("lb-access-log".into())
            .spawn(move || write_lines(&path, rx));
        match spawned {
            Ok(_) => Some(log),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the balancer's access log writer");
                None
            }
        }
    }

    /// A log whose lines wait in `rx` (the writer's end): `open` and the tests.
    pub(crate) fn with_capacity(capacity: usize, dropped: Counter) -> (Self, Receiver<String>) {
        let (tx, rx) = sync_channel(capacity);
        (AccessLog { tx, dropped }, rx)
    }

    /// Queues a line without ever waiting: a full queue (or a writer gone) drops it.
    pub(crate) fn write(&self, line: String) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.inc();
            }
        }
    }
}

/// How often the writer wakes to drain the queue. Waking per line (a blocking receive)
/// costs the request path a thread wake-up and a write per request; a batch every 50 ms
/// costs neither, and a line is on disk at most this late.
const BATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// The writer thread: every [`BATCH_EVERY`], appends what the queue holds and flushes.
/// Ends, after a last batch, when every sender is gone.
fn write_lines(path: &std::path::Path, rx: Receiver<String>) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    let mut file = match file {
        Ok(f) => std::io::BufWriter::with_capacity(256 * 1024, f),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "balancer access log unavailable");
            return;
        }
    };
    loop {
        std::thread::sleep(BATCH_EVERY);
        let mut wrote = false;
        let open = loop {
            match rx.try_recv() {
                Ok(line) => {
                    let _ = file.write_all(line.as_bytes());
                    wrote = true;
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => break true,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => break false,
            }
        };
        if wrote && file.flush().is_err() {
            tracing::warn!("balancer access log write failed");
        }
        if !open {
            break;
        }
    }
    let _ = file.flush();
}

/// What one request's line says, filled in as the request goes through the balancer.
pub(crate) struct Record {
    /// `http`, `https`, `ws` or `wss`.
    pub kind: &'static str,
    pub received: SystemTime,
    pub start: Instant,
    pub elb: String,
    pub client: SocketAddr,
    /// `METHOD scheme://host:port/path?query HTTP/version`.
    pub request: String,
    pub user_agent: Option<String>,
    pub ssl_protocol: Option<&'static str>,
    pub trace_id: String,
    /// The trace header for the target (`trace.rs`), put on the request's head where
    /// that is made (`proxy.rs`'s `retries`), so that it is written with the rest once.
    pub trace: Option<http::HeaderValue>,
    /// The request's head and (once read) body, in bytes.
    pub received_bytes: u64,
    pub conn_trace: String,
    /// The target group that took the request. Meridian has no ARNs: the group's name
    /// stands in the `target_group_arn` field.
    pub group: Option<String>,
    /// The matched rule's priority, 0 for the default action, None before the rules ran.
    pub priority: Option<u32>,
    pub action: Option<&'static str>,
    pub redirect_url: Option<String>,
    /// When the balancer answered by itself (redirect, fixed response).
    pub decided: Option<Instant>,
    /// When the request went to a target, and when a target's response head came back.
    pub dispatched: Option<Instant>,
    pub answered: Option<Instant>,
    pub target: Option<SocketAddr>,
    pub target_status: Option<u16>,
}

/// How a request came in, for the start of its record.
pub(crate) struct Arrival<'a> {
    pub elb: &'a str,
    pub client: SocketAddr,
    /// The listener's port, and the TLS version when it is the TLS listener.
    pub port: u16,
    pub tls: Option<Option<&'static str>>,
    pub websocket: bool,
    pub trace_id: String,
    pub conn_trace: String,
    /// When the balancer took the request.
    pub start: Instant,
}

impl Record {
    /// A record that no log line will be made of (the access log is off): what the
    /// request path still sets on it, without formatting the request line or copying
    /// names, which would cost every request for nothing.
    pub(crate) fn unlogged(client: SocketAddr, trace_id: String, start: Instant) -> Record {
        Record {
            kind: "http",
            received: SystemTime::UNIX_EPOCH,
            start,
            trace: None,
            elb: String::new(),
            client,
            request: String::new(),
            user_agent: None,
            ssl_protocol: None,
            trace_id,
            received_bytes: 0,
            conn_trace: String::new(),
            group: None,
            priority: None,
            action: None,
            redirect_url: None,
            decided: None,
            dispatched: None,
            answered: None,
            target: None,
            target_status: None,
        }
    }

    /// A request's record as it arrives, before the rules run.
    pub(crate) fn new(parts: &http::request::Parts, a: Arrival<'_>) -> Record {
        let kind = match (a.websocket, a.tls.is_some()) {
            (false, false) => "http",
            (false, true) => "https",
            (true, false) => "ws",
            (true, true) => "wss",
        };
        let host = meridian_http::request_host(parts).unwrap_or("-");
        // The host without a port the client wrote: the listener's port follows.
        let end = host.rfind(']').unwrap_or(0);
        let host = match host[end..].rfind(':') {
            Some(i) => &host[..end + i],
            None => host,
        };
        let scheme = if a.tls.is_some() { "https" } else { "http" };
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        Record {
            kind,
            received: SystemTime::now(),
            elb: a.elb.to_owned(),
            request: format!(
                "{} {scheme}://{host}:{}{pq} {:?}",
                parts.method, a.port, parts.version
            ),
            user_agent: parts
                .headers
                .get(http::header::USER_AGENT)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            ssl_protocol: a.tls.flatten(),
            received_bytes: head_bytes_request(parts),
            conn_trace: a.conn_trace,
            ..Record::unlogged(a.client, a.trace_id, a.start)
        }
    }
}

/// A rule's redirect or fixed response: the balancer answered at once, with no target.
pub(crate) fn answered_by_rule<B>(
    rec: &mut Record,
    rule: Option<&meridian_config::ListenerRule>,
    res: &http::Response<B>,
) {
    use meridian_config::Action;
    rec.decided = Some(Instant::now());
    rec.action = rule.map(|r| match r.action {
        Action::Forward { .. } => "forward",
        Action::Redirect(_) => "redirect",
        Action::FixedResponse { .. } => "fixed-response",
    });
    if rec.action == Some("redirect") {
        rec.redirect_url = res
            .headers()
            .get(http::header::LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
}

/// A record completed by the response head: what remains is to count the body.
pub(crate) struct Finished {
    record: Record,
    elb_status: u16,
    responded: Instant,
    time: SystemTime,
    sent: u64,
    log: AccessLog,
}

impl Record {
    /// The record's response: its status and head size; the body is counted as it goes.
    pub(crate) fn finish(self, res: &http::Response<impl HttpBody>, log: AccessLog) -> Finished {
        Finished {
            elb_status: res.status().as_u16(),
            responded: Instant::now(),
            time: SystemTime::now(),
            sent: head_bytes_response(res),
            record: self,
            log,
        }
    }
}

impl Finished {
    /// The line, in ALB's field order, newline-terminated.
    pub(crate) fn line(&self) -> String {
        let r = &self.record;
        let secs = |from: Instant, to: Instant| format!("{:.3}", (to - from).as_secs_f64());
        let (req, tgt, res) = match (r.dispatched, r.answered, r.target) {
            (Some(d), Some(a), Some(_)) => (secs(r.start, d), secs(d, a), secs(a, self.responded)),
            _ => match r.decided {
                // The balancer's own answer: no target time, as ALB logs its actions.
                Some(d) => (secs(r.start, d), "0.000".into(), secs(d, self.responded)),
                // Never reached a target (or none answered): ALB's -1.
                None => ("-1".into(), "-1".into(), "-1".into()),
            },
        };
        let target = r
            .target
            .filter(|_| r.target_status.is_some())
            .map(|t| t.to_string());
        let status = r.target_status.map(|s| s.to_string());
        let dash = |o: Option<String>| o.unwrap_or_else(|| "-".into());
        let fields: [String; FIELDS] = [
            r.kind.into(),
            iso8601(self.time),
            r.elb.clone(),
            r.client.to_string(),
            dash(target.clone()),
            req,
            tgt,
            res,
            self.elb_status.to_string(),
            dash(status.clone()),
            r.received_bytes.to_string(),
            self.sent.to_string(),
            quote(&r.request),
            quote(r.user_agent.as_deref().unwrap_or("-")),
            // ssl_cipher: rustls's suite is not known at this layer.
            "-".into(),
            r.ssl_protocol.unwrap_or("-").into(),
            dash(r.group.as_deref().map(token)),
            quote(&r.trace_id),
            // domain_name (SNI) and chosen_cert_arn: not carried to the request path.
            quote("-"),
            quote("-"),
            dash(r.priority.map(|p| p.to_string())),
            iso8601(r.received),
            quote(r.action.unwrap_or("-")),
            quote(r.redirect_url.as_deref().unwrap_or("-")),
            // error_reason: ALB's codes are for authentication, Lambda and WAF.
            quote("-"),
            quote(&dash(target)),
            quote(&dash(status)),
            // classification, classification_reason: no desync mitigation mode.
            quote("-"),
            quote("-"),
            r.conn_trace.clone(),
        ];
        let mut line = fields.join(" ");
        line.push('\n');
        line
    }
}

impl Drop for Finished {
    fn drop(&mut self) {
        let line = self.line();
        self.log.write(line);
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts what it sends and writes the request's line when it
    /// ends or is dropped (a client that goes away still gets its request logged).
    pub(crate) struct Logged<B> {
        #[pin]
        inner: B,
        finished: Finished,
    }
}

impl<B> Logged<B> {
    pub(crate) fn new(inner: B, finished: Finished) -> Self {
        Logged { inner, finished }
    }
}

impl<B: HttpBody<Data = Bytes>> HttpBody for Logged<B> {
    type Data = Bytes;
    type Error = B::Error;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &polled {
            if let Some(d) = f.data_ref() {
                this.finished.sent += d.len() as u64;
            }
        }
        polled
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A quoted field: `"` and `\` escaped, control characters as `\xHH`, so a field never
/// breaks the line or its quoting.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32 & 0xff)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An unquoted field: no spaces (a group name is the config's, but the line must hold).
fn token(s: &str) -> String {
    if s.is_empty() {
        return "-".into();
    }
    s.chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// ISO 8601 UTC with microseconds, as ALB writes `time` and `request_creation_time`.
pub(crate) fn iso8601(t: SystemTime) -> String {
    let micros = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_micros())
        .unwrap_or(0);
    let (date, time) = meridian_http::audit::utc_date_time(t);
    format!("{date}T{time}.{micros:06}Z")
}

/// The size of a request's head on the wire (request line, fields, blank line).
pub(crate) fn head_bytes_request(parts: &http::request::Parts) -> u64 {
    let line = parts.method.as_str().len()
        + parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().len())
            .unwrap_or(1)
        + " HTTP/1.1\r\n".len()
        + 1;
    (line + fields_bytes(&parts.headers)) as u64
}

fn head_bytes_response<B>(res: &http::Response<B>) -> u64 {
    // The fields, then the empty line.
    ("HTTP/1.1 200 OK\r\n".len() + meridian_http::received::head_bytes(res) + 2) as u64
}

fn fields_bytes(h: &http::HeaderMap) -> usize {
    h.iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record() -> Record {
        Record {
            kind: "http",
            received: SystemTime::UNIX_EPOCH + Duration::from_micros(1_530_570_168_364_000),
            start: Instant::now(),
            elb: "lb-test-1".into(),
            client: "192.168.131.39:2817".parse().unwrap(),
            request: "GET http://www.example.com:80/ HTTP/1.1".into(),
            user_agent: Some("curl/8 \"quoted\"".into()),
            ssl_protocol: None,
            trace_id: "Root=1-58337262-36d228ad5d99923122bbe354".into(),
            trace: None,
            received_bytes: 34,
            conn_trace: "TID_1".into(),
            group: Some("blue".into()),
            priority: Some(0),
            action: Some("forward"),
            redirect_url: None,
            decided: None,
            dispatched: None,
            answered: None,
            target: None,
            target_status: None,
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let dropped = Counter::default();
        // Nobody drains `rx`: a stalled disk.
        let (log, rx) = AccessLog::with_capacity(2, dropped.clone());
        let start = Instant::now();
        for i in 0..1000 {
            log.write(format!("line {i}\n"));
        }
        assert!(
            start.elapsed() < Duration::from_millis(200),
            "writes waited"
        );
        assert_eq!(dropped.get(), 998);
        assert_eq!(rx.try_iter().count(), 2);
    }

    #[test]
    fn a_request_no_target_answered_has_minus_one_timings() {
        let (log, rx) = AccessLog::with_capacity(4, Counter::default());
        let res = http::Response::builder()
            .status(502)
            .body(meridian_http::empty())
            .unwrap();
        drop(record().finish(&res, log));
        let line = rx.try_recv().unwrap();
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(&f[4..10], &["-", "-1", "-1", "-1", "502", "-"], "{line}");
        assert!(line.contains(r#""curl/8 \"quoted\"""#), "{line}");
        assert!(line.contains(" 2018-07-02T22:22:48.364000Z "), "{line}");
    }
}
