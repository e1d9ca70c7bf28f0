//! ALB's access log and trace header, against real targets on loopback (127.60.x.y, one
//! /24 per test).

mod common;

use common::start;
use common::targets::node;
use meridian_config::{Config, NodeSpec};
use meridian_demo::{DemoOptions, Identity};
use meridian_lb::LbOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// A demo origin on `127.60.<net>.1`.
async fn demo(net: u8) -> NodeSpec {
    let listener = TcpListener::bind(format!("127.60.{net}.1:0"))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = meridian_demo::router(DemoOptions {
        identity: Identity {
            region: "test-1".into(),
            az: "test-1a".into(),
            instance: "i-1".into(),
        },
        processing_time: Duration::ZERO,
        database: None,
        quote_cache: None,
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    node("i-1", addr)
}

/// An origin that answers every request with the trace header it got.
async fn echo(net: u8) -> NodeSpec {
    let listener = TcpListener::bind(format!("127.60.{net}.2:0"))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|h: http::HeaderMap| async move {
        // Every field of that name, so that one sent twice shows.
        let all: Vec<&str> = h
            .get_all("x-amzn-trace-id")
            .iter()
            .map(|v| v.to_str().unwrap_or("?"))
            .collect();
        match all.is_empty() {
            true => "none".to_owned(),
            false => all.join(" | "),
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    node("echo", addr)
}

/// A target nobody listens on: every connection is refused.
async fn refusing(net: u8) -> NodeSpec {
    let addr = TcpListener::bind(format!("127.60.{net}.3:0"))
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    node("gone", addr)
}

fn log_path(test: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "meridian-lb-alog-{test}-{}-{}.log",
        std::process::id(),
        rand_id()
    ))
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(1);
    h.finish()
}

fn options(net: u8, targets: Vec<NodeSpec>, extra: &str, log: &Path) -> LbOptions {
    let cfg = Config::parse(
        &format!("{}\n{extra}", common::default_config_without_groups()),
        "alog.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut config = cfg.load_balancer;
    config.health_check.interval = Duration::from_millis(100);
    config.health_check.timeout = Duration::from_millis(80);
    for g in &mut config.target_groups {
        g.health_check.interval = Duration::from_millis(100);
        g.health_check.timeout = Duration::from_millis(80);
    }
    assert!(!config.access_log, "off by default, as ALB's");
    LbOptions {
        tls: None,
        name: "lb-alog".into(),
        region: "test-1".into(),
        listen: format!("127.60.{net}.250:0").parse().unwrap(),
        admin: format!("127.60.{net}.251:0").parse().unwrap(),
        targets,
        config,
        signer: None,
        access_log: Some(log.to_path_buf()),
    }
}

/// A GET through the balancer; the status and body.
async fn get(lb: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use http_body_util::BodyExt;
    let client = meridian_http::upstream_client(Duration::from_secs(2), Duration::from_secs(30));
    let mut req = http::Request::get(format!("http://{lb}{path}"))
        .header("user-agent", "alog-test/1.0 (loopback)");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(req.body(meridian_http::full("")).unwrap()),
    )
    .await
    .expect("request timed out")
    .expect("request failed");
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Waits (bounded) for the log to hold `n` lines; returns them.
async fn lines(path: &Path, n: usize) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n || Instant::now() > until {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Splits a line into fields: spaces separate, double quotes group (with `\"` escapes).
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
            continue;
        }
        let mut f = String::new();
        if c == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => f.extend(chars.next()),
                    '"' => break,
                    c => f.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                f.push(c);
                chars.next();
            }
        }
        out.push(f);
    }
    out
}

/// ALB's fields, in its documented order.
const NAMES: [&str; 30] = [
    "type",
    "time",
    "elb",
    "client:port",
    "target:port",
    "request_processing_time",
    "target_processing_time",
    "response_processing_time",
    "elb_status_code",
    "target_status_code",
    "received_bytes",
    "sent_bytes",
    "request",
    "user_agent",
    "ssl_cipher",
    "ssl_protocol",
    "target_group_arn",
    "trace_id",
    "domain_name",
    "chosen_cert_arn",
    "matched_rule_priority",
    "request_creation_time",
    "actions_executed",
    "redirect_url",
    "error_reason",
    "target:port_list",
    "target_status_code_list",
    "classification",
    "classification_reason",
    "conn_trace_id",
];

fn parse(line: &str) -> std::collections::HashMap<&'static str, String> {
    let f = fields(line);
    assert_eq!(f.len(), NAMES.len(), "field count of {line}");
    NAMES.iter().copied().zip(f).collect()
}

fn is_time(s: &str) -> bool {
    // 2018-07-02T22:23:00.186641Z
    s.len() == 27 && s.ends_with('Z') && s.as_bytes()[10] == b'T' && s.as_bytes()[19] == b'.'
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_logs_one_line_in_albs_field_order() {
    let target = demo(1).await;
    let log = log_path("one");
    let (lb, _) = start(options(1, vec![target.clone()], "", &log)).await;
    let (status, _) = get(lb, "/?q=a%20b", &[]).await;
    assert_eq!(status, 200);
    let got = lines(&log, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let f = parse(&got[0]);
    assert_eq!(f["type"], "http");
    assert!(is_time(&f["time"]), "{}", f["time"]);
    assert!(is_time(&f["request_creation_time"]));
    assert_eq!(f["elb"], "lb-alog");
    assert!(f["client:port"].starts_with("127.0.0.1:") || f["client:port"].starts_with("127."));
    assert_eq!(f["target:port"], target.address.to_string());
    for t in [
        "request_processing_time",
        "target_processing_time",
        "response_processing_time",
    ] {
        let v: f64 = f[t].parse().unwrap_or_else(|_| panic!("{t} = {}", f[t]));
        assert!(v >= 0.0, "{t} = {v}");
        assert_eq!(
            f[t].split('.').nth(1).map(str::len),
            Some(3),
            "ms: {}",
            f[t]
        );
    }
    assert_eq!(f["elb_status_code"], "200");
    assert_eq!(f["target_status_code"], "200");
    assert!(f["received_bytes"].parse::<u64>().unwrap() > 0);
    assert!(f["sent_bytes"].parse::<u64>().unwrap() > 0);
    assert_eq!(f["request"], format!("GET http://{lb}/?q=a%20b HTTP/1.1"));
    assert_eq!(f["user_agent"], "alog-test/1.0 (loopback)");
    assert_eq!(f["target_group_arn"], "default");
    assert!(f["trace_id"].starts_with("Root=1-"), "{}", f["trace_id"]);
    assert_eq!(f["matched_rule_priority"], "0");
    assert_eq!(f["actions_executed"], "forward");
    assert_eq!(f["redirect_url"], "-");
    assert_eq!(f["target:port_list"], target.address.to_string());
    assert_eq!(f["target_status_code_list"], "200");
    assert!(f["conn_trace_id"].starts_with("TID_"));
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_no_target_answers_logs_minus_one_timings() {
    let target = refusing(2).await;
    let log = log_path("none");
    let (lb, _) = start(options(2, vec![target], "", &log)).await;
    let (status, _) = get(lb, "/", &[]).await;
    assert!(status == 502 || status == 503, "{status}");
    let got = lines(&log, 1).await;
    let f = parse(&got[0]);
    assert_eq!(f["target:port"], "-");
    assert_eq!(f["request_processing_time"], "-1");
    assert_eq!(f["target_processing_time"], "-1");
    assert_eq!(f["response_processing_time"], "-1");
    assert_eq!(f["elb_status_code"], status.to_string());
    assert_eq!(f["target_status_code"], "-");
    assert_eq!(f["target:port_list"], "-");
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_response_rule_logs_its_action_and_priority() {
    let target = demo(3).await;
    let log = log_path("fixed");
    let rules = r#"
[[load_balancer.rule]]
priority = 7
path = "/maintenance/*"
fixed_response = { status = 503, content_type = "text/plain", body = "down" }
"#;
    let (lb, _) = start(options(3, vec![target], rules, &log)).await;
    let (status, body) = get(lb, "/maintenance/x", &[]).await;
    assert_eq!((status, body.as_str()), (503, "down"));
    let got = lines(&log, 1).await;
    let f = parse(&got[0]);
    assert_eq!(f["actions_executed"], "fixed-response");
    assert_eq!(f["matched_rule_priority"], "7");
    assert_eq!(f["elb_status_code"], "503");
    assert_eq!(f["target_status_code"], "-");
    assert_eq!(f["target:port"], "-");
    assert_eq!(f["target_group_arn"], "-");
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_header_is_added_and_reaches_the_target() {
    let target = echo(4).await;
    let log = log_path("trace");
    let (lb, _) = start(options(4, vec![target], "", &log)).await;
    let (status, seen) = get(lb, "/", &[]).await;
    assert_eq!(status, 200);
    let id = seen
        .strip_prefix("Root=1-")
        .unwrap_or_else(|| panic!("{seen}"));
    let parts: Vec<&str> = id.split('-').collect();
    assert_eq!((parts[0].len(), parts[1].len()), (8, 24), "{seen}");
    assert!(id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    let got = lines(&log, 1).await;
    assert_eq!(
        parse(&got[0])["trace_id"],
        seen,
        "the log has what the target got"
    );
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_trace_header_is_kept_with_a_self_field() {
    let target = echo(5).await;
    let log = log_path("kept");
    let (lb, _) = start(options(5, vec![target], "", &log)).await;
    let root = "Root=1-67891233-abcdef012345678912345678;CalledFrom=app";
    let (status, seen) = get(lb, "/", &[("X-Amzn-Trace-Id", root)]).await;
    assert_eq!(status, 200);
    let (self_field, rest) = seen.split_once(';').unwrap();
    assert!(self_field.starts_with("Self=1-"), "{seen}");
    assert_eq!(rest, root, "the client's Root and fields are kept");
    let got = lines(&log, 1).await;
    assert_eq!(parse(&got[0])["trace_id"], seen);
    let _ = std::fs::remove_file(&log);
}
