//! Alarm rules evaluated every tick, per subject, with CloudWatch's OK / pending / ALARM
//! states: a condition must hold for the rule's `for` before the alarm fires, and the alarm
//! clears as soon as the condition stops holding.

use meridian_config::{AlarmKind, AlarmRule};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Ok,
    Pending,
    Alarm,
}

/// What one rule saw for one subject this tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub subject: String,
    /// The watched value (a fraction for rates, 1/0 for conditions), None when not measured.
    pub value: Option<f64>,
    pub breached: bool,
    /// Why, in words, for the page, the log and the webhook.
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlarmStatus {
    pub rule: String,
    pub kind: AlarmKind,
    pub subject: String,
    pub state: State,
    /// Unix seconds the current state began.
    pub since: u64,
    pub value: Option<f64>,
    pub threshold: f64,
    pub detail: String,
}

/// A change the caller reports: to the timeline, the log and the webhook.
#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    pub alarm: String,
    pub kind: AlarmKind,
    pub subject: String,
    /// "ALARM" or "OK", as CloudWatch names them.
    pub state: &'static str,
    pub at: u64,
    pub value: Option<f64>,
    pub threshold: f64,
    pub detail: String,
}

struct Tracked {
    state: State,
    since: u64,
    breach_since: Option<u64>,
    value: Option<f64>,
    detail: String,
}

pub struct Alarms {
    rules: Vec<AlarmRule>,
    /// By (rule index, subject).
    tracked: BTreeMap<(usize, String), Tracked>,
}

impl Alarms {
    pub fn new(rules: Vec<AlarmRule>) -> Self {
        Alarms {
            rules,
            tracked: BTreeMap::new(),
        }
    }

    pub fn rules(&self) -> &[AlarmRule] {
        &self.rules
    }

    /// Feeds one tick's observations of rule `i`; returns the alarms that fired or cleared.
    pub fn observe(&mut self, i: usize, now: u64, seen: Vec<Observation>) -> Vec<Transition> {
        let Some(rule) = self.rules.get(i) else {
            return Vec::new();
        };
        let hold = rule.for_.as_secs();
        let mut out = Vec::new();
        for o in seen {
            let t = self
                .tracked
                .entry((i, o.subject.clone()))
                .or_insert(Tracked {
                    state: State::Ok,
                    since: now,
                    breach_since: None,
                    value: None,
                    detail: String::new(),
                });
            t.value = o.value;
            t.detail = o.detail.clone();
            let next = if o.breached {
                let start = *t.breach_since.get_or_insert(now);
                if now.saturating_sub(start) >= hold {
                    State::Alarm
                } else {
                    State::Pending
                }
            } else {
                t.breach_since = None;
                State::Ok
            };
            if next != t.state {
                let was_alarm = t.state == State::Alarm;
                t.state = next;
                t.since = now;
                if next == State::Alarm || was_alarm {
                    out.push(Transition {
                        alarm: rule.name.clone(),
                        kind: rule.kind,
                        subject: o.subject,
                        state: if next == State::Alarm { "ALARM" } else { "OK" },
                        at: now,
                        value: o.value,
                        threshold: rule.threshold,
                        detail: o.detail,
                    });
                }
            }
        }
        out
    }

    /// Every tracked alarm, firing ones first.
    pub fn statuses(&self) -> Vec<AlarmStatus> {
        let mut out: Vec<AlarmStatus> = self
            .tracked
            .iter()
            .filter_map(|((i, subject), t)| {
                let rule = self.rules.get(*i)?;
                Some(AlarmStatus {
                    rule: rule.name.clone(),
                    kind: rule.kind,
                    subject: subject.clone(),
                    state: t.state,
                    since: t.since,
                    value: t.value,
                    threshold: rule.threshold,
                    detail: t.detail.clone(),
                })
            })
            .collect();
        out.sort_by_key(|a| match a.state {
            State::Alarm => 0,
            State::Pending => 1,
            State::Ok => 2,
        });
        out
    }
}

/// Sends alarm changes to the configured webhook as JSON, one POST each, never blocking the
/// console's tick: a slow or dead receiver loses its notifications, not the console's clock.
pub fn notify(webhook: &str, deployment: &str, t: &Transition) {
    // Only the scheme and host are ever logged: the rest may carry the receiver's token.
    let shown = redacted(webhook);
    let Some((addr, path)) = split_url(webhook) else {
        tracing::warn!(webhook = %shown, "alarm webhook is not an http://host:port/path URL");
        return;
    };
    let body = serde_json::json!({
        "deployment": deployment,
        "alarm": t,
    })
    .to_string();
    tokio::spawn(async move {
        let addrs = match tokio::net::lookup_host(&addr).await {
            Ok(a) => a.collect::<Vec<_>>(),
            Err(e) => {
                tracing::warn!(webhook = %shown, "alarm webhook host does not resolve: {e}");
                return;
            }
        };
        let Some(sock) = addrs.first().copied() else {
            return;
        };
        let req = http::Request::post(path)
            .header(http::header::HOST, addr)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)));
        let Ok(req) = req else { return };
        match meridian_http::client::fetch(sock, req, std::time::Duration::from_secs(3), 64 << 10)
            .await
        {
            Ok(f) if f.status < 300 => {}
            Ok(f) => {
                tracing::warn!(webhook = %shown, status = f.status, "alarm webhook refused the notification")
            }
            Err(e) => tracing::warn!(webhook = %shown, "alarm webhook failed: {e}"),
        }
    });
}

/// A webhook URL as it may be logged: scheme and host (and port) only. Its path, query and
/// user info are where receivers (Slack, PagerDuty, a chat bot) put their secret token.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".to_owned();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    format!("{scheme}://{host}")
}

/// `http://host:port/path` into (`host:port`, `/path`).
fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if host.is_empty() {
        return None;
    }
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:80")
    };
    Some((host, path.to_owned()))
}

/// What a rule watches, in words, for the page.
pub fn describe(rule: &AlarmRule) -> String {
    let pct = rule.threshold * 100.0;
    let hold = rule.for_.as_secs();
    match rule.kind {
        AlarmKind::ErrorRate => format!(
            "5xx above {pct:.1}% of requests over {}s, for {hold}s",
            rule.window.as_secs()
        ),
        AlarmKind::HitRate => format!(
            "cache hit rate below {pct:.0}% over {}s, for {hold}s",
            rule.window.as_secs()
        ),
        AlarmKind::RegionUnhealthy => {
            format!("a region's load balancer is down or has no healthy instance, for {hold}s")
        }
        AlarmKind::PopUnreachable => format!("a PoP does not answer, for {hold}s"),
        AlarmKind::ReplicationLag => format!(
            "a database standby or replica more than {}s behind its primary, for {hold}s",
            rule.threshold
        ),
        AlarmKind::NoSyncStandby => format!(
            "a database primary without a synchronous standby while its region has another node, for {hold}s"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rule(hold: u64) -> AlarmRule {
        AlarmRule {
            name: "r".into(),
            kind: AlarmKind::RegionUnhealthy,
            threshold: 0.0,
            for_: Duration::from_secs(hold),
            window: Duration::from_secs(10),
            min_requests: 0,
        }
    }

    fn obs(breached: bool) -> Vec<Observation> {
        vec![Observation {
            subject: "eu-west-1".into(),
            value: Some(breached as u8 as f64),
            breached,
            detail: String::new(),
        }]
    }

    #[test]
    fn fires_after_the_hold_and_clears_at_once() {
        let mut a = Alarms::new(vec![rule(2)]);
        assert!(a.observe(0, 100, obs(false)).is_empty());
        assert!(a.observe(0, 101, obs(true)).is_empty());
        assert_eq!(a.statuses()[0].state, State::Pending);
        assert!(a.observe(0, 102, obs(true)).is_empty());
        let t = a.observe(0, 103, obs(true));
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].state, "ALARM");
        assert_eq!(a.statuses()[0].state, State::Alarm);
        assert!(a.observe(0, 104, obs(true)).is_empty(), "fires once");
        let t = a.observe(0, 105, obs(false));
        assert_eq!(t[0].state, "OK");
        // A breach shorter than the hold never fires.
        a.observe(0, 106, obs(true));
        assert!(a.observe(0, 107, obs(false)).is_empty());
    }

    #[test]
    fn a_logged_webhook_keeps_only_scheme_and_host() {
        assert_eq!(
            redacted("http://alerts.internal:9000/hooks/T0K3N?key=s3cret#x"),
            "http://alerts.internal:9000"
        );
        assert_eq!(
            redacted("https://bot:s3cret@chat.example/x"),
            "https://chat.example"
        );
        assert_eq!(redacted("http://h?token=s3cret"), "http://h");
        assert_eq!(redacted("s3cret"), "(not a URL)");
    }

    /// Captures what the console logs, for the thread that installs it.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_failing_webhook_is_logged_without_its_token() {
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        // The test runtime has one thread, so the notification's task logs here too.
        let _guard = tracing::subscriber::set_default(subscriber);
        let t = Transition {
            alarm: "region-down".into(),
            kind: AlarmKind::RegionUnhealthy,
            subject: "east".into(),
            state: "ALARM",
            at: 0,
            value: Some(1.0),
            threshold: 0.0,
            detail: String::new(),
        };
        // Nothing listens on port 1: the POST fails and the failure is logged.
        notify("http://127.0.0.1:1/hooks/T0K3N?key=s3cret", "t", &t);
        notify("https://127.0.0.1:1/hooks/T0K3N", "t", &t);
        let text = || String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
        for _ in 0..200 {
            if text().contains("alarm webhook failed") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let text = text();
        assert!(text.contains("alarm webhook failed"), "{text}");
        assert!(text.contains("alarm webhook is not an http"), "{text}");
        assert!(text.contains("http://127.0.0.1:1"), "{text}");
        assert!(
            !text.contains("T0K3N") && !text.contains("s3cret"),
            "{text}"
        );
    }

    #[test]
    fn webhook_urls() {
        assert_eq!(
            split_url("http://127.0.0.1:9000/hook"),
            Some(("127.0.0.1:9000".into(), "/hook".into()))
        );
        assert_eq!(
            split_url("http://alerts.internal"),
            Some(("alerts.internal:80".into(), "/".into()))
        );
        assert_eq!(split_url("https://x/"), None);
    }
}
