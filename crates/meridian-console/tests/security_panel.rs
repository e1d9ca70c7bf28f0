//! The security panel from fake PoP metrics and `/protection` reports: per-rule and
//! per-PoP sums, top keys merged over PoPs, authentication failures by reason, idempotent
//! requests, the "started blocking" / "stopped blocking" events, an empty deployment's
//! empty panel, and the console node asking stand-in PoPs with the admin token.

use meridian_config::Config;
use meridian_console::model::{State, STOP_AFTER};
use std::collections::HashMap;

/// One region and two PoPs on 127.55/16; `protection` is added to `[distribution]`.
fn deployment(protection: &str) -> Config {
    let text = format!(
        r#"
[deployment]
name = "sec"
zone = "sec.example"
[network]
subnet = "127.55.0.0/16"
[[region]]
name = "east"
primary = true
location = {{ lat = 39.0, lon = -77.5 }}
azs = ["east-a"]
[[edge]]
name = "ashburn"
location = {{ lat = 39.0, lon = -77.5 }}
[[edge]]
name = "paris"
location = {{ lat = 48.9, lon = 2.4 }}
[distribution]
{protection}"#
    );
    Config::parse(&text, "sec.toml").expect("valid config")
}

const PROTECTION: &str = r#"
[[distribution.rule]]
name = "no-admin"
action = "block"
[[distribution.rule.match]]
field = "path"
operator = "prefix"
values = ["/admin"]

[[distribution.rate_based_rule]]
name = "api-per-ip"
limit = 50
window = "1s"
action = "block"

[distribution.geo_restriction]
restriction_type = "blacklist"
locations = ["KP"]
"#;

/// What one PoP reports in one scrape.
#[derive(Clone, Default)]
struct Pop {
    /// (rule, kind, action, value)
    protection: Vec<(&'static str, &'static str, &'static str, u64)>,
    /// (method, name, reason, value)
    auth: Vec<(&'static str, &'static str, &'static str, u64)>,
    /// (result, value)
    idempotent: Vec<(&'static str, u64)>,
}

impl Pop {
    fn metrics(&self, pop: &str) -> String {
        let mut t = format!(
            "meridian_edge_requests_total{{pop=\"{pop}\",cache_status=\"blocked\",status_class=\"4xx\"}} 1\n"
        );
        for (rule, kind, action, v) in &self.protection {
            t += &format!("meridian_edge_protection_requests_total{{pop=\"{pop}\",rule=\"{rule}\",kind=\"{kind}\",action=\"{action}\"}} {v}\n");
        }
        for (method, name, reason, v) in &self.auth {
            t += &format!("meridian_edge_auth_failures_total{{pop=\"{pop}\",method=\"{method}\",name=\"{name}\",reason=\"{reason}\"}} {v}\n");
        }
        for (result, v) in &self.idempotent {
            t += &format!(
                "meridian_edge_idempotent_requests_total{{pop=\"{pop}\",result=\"{result}\"}} {v}\n"
            );
        }
        t
    }
}

fn report(pop: &str, blocked_admin: u64, keys: &str) -> String {
    format!(
        r#"{{"pop":"{pop}",
 "rules":[{{"name":"no-admin","kind":"rule","action":"block","allowed":0,"blocked":{blocked_admin},"counted":0}}],
 "rate_based_rules":[{{"name":"api-per-ip","kind":"rate","action":"block","limit":50,"window_seconds":1,"allowed":1200,"blocked":40,"counted":0,
    "top_keys":[{keys}]}}],
 "geo_restriction":{{"type":"blacklist","blocked":0}}}}"#
    )
}

/// One tick of `state` at `at`: each PoP's metrics and report (None: it does not answer).
fn tick(state: &mut State, at: f64, pops: &HashMap<&str, (Pop, Option<String>)>) {
    let mut replies = Vec::new();
    let scrapes = state
        .targets()
        .iter()
        .map(|t| {
            let pop = t.name.strip_prefix("edge-").unwrap_or_default();
            match pops.get(pop) {
                Some((p, rep)) => {
                    if let Some(rep) = rep {
                        replies.push((t.name.clone(), Ok(rep.clone())));
                    }
                    Ok(p.metrics(pop))
                }
                None => Err("not running".to_owned()),
            }
        })
        .collect();
    state.set_protection(replies);
    state.tick(at, scrapes);
}

fn security_events(state: &State) -> Vec<String> {
    state
        .overview()
        .events
        .iter()
        .filter(|e| serde_json::to_value(e.kind).unwrap() == "security")
        .map(|e| e.message.clone())
        .collect()
}

fn traffic(admin_blocked: u64, rate_blocked: u64, geo_blocked: u64) -> Pop {
    Pop {
        protection: vec![
            ("no-admin", "rule", "blocked", admin_blocked),
            ("no-admin", "rule", "allowed", 100),
            ("api-per-ip", "rate", "allowed", 1000),
            ("api-per-ip", "rate", "blocked", rate_blocked),
            ("api-per-ip", "rate", "counted", 2),
            ("geo_restriction", "geo", "blocked", geo_blocked),
        ],
        auth: vec![
            ("jwt", "users", "expired", 7),
            ("jwt", "users", "signature", 2),
            ("signed_url", "media", "expired", 1),
        ],
        idempotent: vec![("replay", 3), ("leader", 10)],
    }
}

#[test]
fn rules_are_summed_per_pop_and_in_all_and_keys_merge_over_pops() {
    let mut state = State::new(deployment(PROTECTION), 1_000);
    let keys_a = r#"{"key":"203.0.113.9","count":50,"refused":40},{"key":"tenant-1\u001fsub-9","count":5,"refused":0}"#;
    let keys_p = r#"{"key":"203.0.113.9","count":30,"refused":20,"first_seen":3},{"key":"198.51.100.1","count":45,"refused":0}"#;
    let mut pops = HashMap::new();
    pops.insert(
        "ashburn",
        (traffic(3, 40, 0), Some(report("ashburn", 3, keys_a))),
    );
    pops.insert(
        "paris",
        (traffic(5, 10, 4), Some(report("paris", 5, keys_p))),
    );
    tick(&mut state, 1_000.0, &pops);
    let s = state.security().clone();
    assert!(s.configured);
    let names: Vec<&str> = s.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["no-admin", "api-per-ip", "geo_restriction"],
        "config order"
    );
    let admin = &s.rules[0];
    assert_eq!(
        (admin.kind.as_str(), admin.action.as_str()),
        ("rule", "block")
    );
    assert_eq!(
        (admin.allowed, admin.blocked, admin.counted),
        (200.0, 8.0, 0.0)
    );
    let rate = &s.rules[1];
    assert_eq!(
        (rate.allowed, rate.blocked, rate.counted),
        (2000.0, 50.0, 4.0)
    );
    assert_eq!((rate.limit, rate.window_seconds), (Some(50), Some(1.0)));
    let by_pop: Vec<(&str, f64)> = rate
        .pops
        .iter()
        .map(|p| (p.pop.as_str(), p.blocked))
        .collect();
    assert_eq!(by_pop, [("ashburn", 40.0), ("paris", 10.0)]);
    assert_eq!(s.rules[2].kind, "geo");
    assert_eq!(s.rules[2].blocked, 4.0);
    // First scrape: no rate yet, nothing blocking, no event.
    assert_eq!(rate.blocked_rps, None);
    assert!(!rate.blocking && security_events(&state).is_empty());

    let keys: Vec<(&str, &str, f64, f64, usize)> = s
        .top_keys
        .iter()
        .map(|k| {
            (
                k.rule.as_str(),
                k.key.as_str(),
                k.count,
                k.refused,
                k.pops.len(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("api-per-ip", "203.0.113.9", 80.0, 60.0, 2),
            ("api-per-ip", "198.51.100.1", 45.0, 0.0, 1),
            ("api-per-ip", "tenant-1 + sub-9", 5.0, 0.0, 1),
        ]
    );

    let expired: Vec<_> = s
        .auth_failures
        .iter()
        .filter(|a| a.reason == "expired")
        .collect();
    assert_eq!(expired.len(), 2, "jwt users and signed_url media apart");
    let jwt = expired.iter().find(|a| a.method == "jwt").unwrap();
    assert_eq!((jwt.name.as_str(), jwt.total), ("users", 14.0));
    assert_eq!(jwt.pops.get("paris"), Some(&7.0));
    let reasons: Vec<(&str, f64)> = s
        .auth_failures_by_reason
        .iter()
        .map(|r| (r.reason.as_str(), r.total))
        .collect();
    assert_eq!(reasons, [("expired", 16.0), ("signature", 4.0)]);
    let idem: Vec<(&str, f64)> = s
        .idempotency
        .iter()
        .map(|i| (i.result.as_str(), i.total))
        .collect();
    assert_eq!(idem, [("leader", 20.0), ("replay", 6.0)]);
}

#[test]
fn a_rule_whose_blocked_count_starts_rising_is_an_event_and_a_flat_one_is_not() {
    let mut state = State::new(deployment(PROTECTION), 1_000);
    let mut pops = HashMap::new();
    let at = |pops: &mut HashMap<&str, (Pop, Option<String>)>, a: u64, r: u64| {
        pops.insert("ashburn", (traffic(3, r, 0), None));
        pops.insert("paris", (traffic(a, 10, 0), None));
    };
    // Three flat scrapes: counts are high, but nothing rises.
    for t in 0..3 {
        at(&mut pops, 5, 40);
        tick(&mut state, 1_000.0 + t as f64, &pops);
    }
    assert!(
        security_events(&state).is_empty(),
        "{:?}",
        security_events(&state)
    );
    let rate = state.security().rules[1].clone();
    assert_eq!(rate.blocked_rps, Some(0.0));
    assert!(!rate.blocking);

    // api-per-ip blocks 12 more at ashburn in one second.
    at(&mut pops, 5, 52);
    tick(&mut state, 1_003.0, &pops);
    let events = security_events(&state);
    assert_eq!(
        events,
        ["rule `api-per-ip` started blocking at PoP ashburn (12 blocked in the last 1 s)"]
    );
    let s = state.security().clone();
    let rate = &s.rules[1];
    assert!(rate.blocking);
    assert_eq!(rate.blocked_rps, Some(12.0));
    assert!(rate.pops.iter().any(|p| p.pop == "ashburn" && p.blocking));
    assert!(rate.pops.iter().any(|p| p.pop == "paris" && !p.blocking));
    assert_eq!(s.blocked_rps, Some(12.0));
    // 0, 0, 12 over the series' three answered seconds (the first scrape has no rate).
    let recent = rate.recent_blocked_rps.unwrap();
    assert!((recent - 4.0).abs() < 1e-9, "{recent}");

    // Still rising: no second event. Then flat, but not for long enough to be news.
    at(&mut pops, 5, 60);
    tick(&mut state, 1_004.0, &pops);
    for t in 1..STOP_AFTER {
        tick(&mut state, 1_004.0 + t as f64, &pops);
    }
    assert_eq!(
        security_events(&state).len(),
        1,
        "{:?}",
        security_events(&state)
    );
    assert!(state.security().rules[1].blocking);
    tick(&mut state, 1_004.0 + STOP_AFTER as f64, &pops);
    let events = security_events(&state);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        events[0],
        format!("rule `api-per-ip` stopped blocking at PoP ashburn (nothing blocked for {STOP_AFTER} s)")
    );
    assert!(!state.security().rules[1].blocking);

    // A PoP that stops answering is not a rule that stopped: no event while it is away.
    at(&mut pops, 9, 60);
    tick(&mut state, 1_020.0, &pops);
    assert_eq!(security_events(&state).len(), 3, "paris's no-admin started");
    pops.remove("paris");
    for t in 1..=STOP_AFTER + 2 {
        tick(&mut state, 1_020.0 + t as f64, &pops);
    }
    assert_eq!(
        security_events(&state).len(),
        3,
        "{:?}",
        security_events(&state)
    );
    let overview = serde_json::to_value(state.overview()).unwrap();
    let started = overview["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "security")
        .unwrap();
    assert_eq!(started["subject"], "paris");
    assert_eq!(started["severity"], "warning");
    assert!(started["message"]
        .as_str()
        .unwrap()
        .contains("`no-admin` started"));
}

#[test]
fn a_deployment_without_protection_has_an_empty_valid_panel() {
    let mut state = State::new(deployment(""), 1_000);
    let mut pops = HashMap::new();
    pops.insert(
        "ashburn",
        (
            Pop::default(),
            Some(r#"{"pop":"ashburn","rules":[],"rate_based_rules":[],"geo_restriction":{"type":"none","blocked":0}}"#.to_owned()),
        ),
    );
    for t in 0..2 {
        tick(&mut state, 1_000.0 + t as f64, &pops);
    }
    let s = state.security();
    assert!(!s.configured);
    assert!(s.rules.is_empty() && s.top_keys.is_empty() && s.auth_failures.is_empty());
    assert!(s.idempotency.is_empty() && security_events(&state).is_empty());
    assert_eq!(s.pops.len(), 2, "both PoPs are listed");
    let ashburn = s.pops.iter().find(|p| p.pop == "ashburn").unwrap();
    assert!(ashburn.up && ashburn.report && ashburn.report_error.is_none());
    let json = serde_json::to_value(s).unwrap();
    assert_eq!(json["rules"], serde_json::json!([]));
    assert_eq!(json["top_keys"], serde_json::json!([]));
    assert_eq!(json["configured"], false);
}

#[test]
fn a_rule_only_a_pop_knows_shows_after_the_configured_ones_and_a_bad_report_is_said() {
    let mut state = State::new(deployment(PROTECTION), 1_000);
    let mut newer = traffic(0, 0, 0);
    newer.protection.push(("new-rule", "rule", "counted", 9));
    let mut pops = HashMap::new();
    pops.insert("ashburn", (newer, Some("<html>oops</html>".to_owned())));
    tick(&mut state, 1_000.0, &pops);
    let s = state.security();
    let last = s.rules.last().unwrap();
    assert_eq!(
        (last.name.as_str(), last.counted, last.configured),
        ("new-rule", 9.0, false)
    );
    assert!(s.rules[0].configured);
    let ashburn = s.pops.iter().find(|p| p.pop == "ashburn").unwrap();
    assert!(!ashburn.report && ashburn.report_error.as_deref().unwrap().contains("JSON"));
    let paris = s.pops.iter().find(|p| p.pop == "paris").unwrap();
    assert!(!paris.up && paris.report_error.is_none());
    assert!(s.top_keys.is_empty());
}

async fn get_text(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    let f = meridian_http::client::call(
        addr,
        http::Method::GET,
        path,
        None,
        std::time::Duration::from_secs(2),
        8 << 20,
    )
    .await
    .ok()?;
    Some((f.status, String::from_utf8_lossy(&f.body).into_owned()))
}

/// A stand-in PoP: its blocked count grows by 12 on every scrape after the first, and
/// it answers `/protection` only to `Bearer <token>`.
async fn fake_pop(addr: std::net::SocketAddr, pop: &'static str, token: &'static str) {
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let n = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let n = n.fetch_add(1, Ordering::SeqCst);
                async move { traffic(0, 40 + 12 * n, 0).metrics(pop) }
            }),
        )
        .route(
            "/protection",
            get(move |h: HeaderMap| async move {
                let auth = h.get("authorization").and_then(|v| v.to_str().ok());
                if auth != Some(&format!("Bearer {token}")) {
                    return (StatusCode::UNAUTHORIZED, String::new());
                }
                let keys = r#"{"key":"203.0.113.9","count":50,"refused":40}"#;
                (StatusCode::OK, report(pop, 0, keys))
            }),
        );
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .expect("PoP address");
    tokio::spawn(async move { axum::serve(l, app).await });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_asks_pops_with_the_admin_token_and_serves_the_panel() {
    use std::time::{Duration, Instant};
    let config = deployment(PROTECTION);
    let dir = std::env::temp_dir().join(format!("meridian-console-sec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("admin-token"), "s3cret\n").unwrap();
    fake_pop(
        config.pop_addresses("ashburn").unwrap().1,
        "ashburn",
        "s3cret",
    )
    .await;
    // paris expects another token: its report is refused, its metrics still count.
    fake_pop(config.pop_addresses("paris").unwrap().1, "paris", "other").await;
    let console = config.console_address();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let node = tokio::spawn(meridian_console::run_in(
        config,
        console,
        Some(dir.clone()),
        meridian_http::ServerOptions::default(),
        async {
            let _ = stop_rx.await;
        },
    ));

    let start = Instant::now();
    let s = loop {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no blocking rule within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some((200, body)) = get_text(console, "/api/security").await else {
            continue;
        };
        let s: serde_json::Value = serde_json::from_str(&body).expect("the panel is JSON");
        if s["rules"][1]["blocking"] == true {
            break s;
        }
    };
    assert_eq!(s["configured"], true);
    assert_eq!(s["rules"][1]["name"], "api-per-ip");
    assert!(
        s["rules"][1]["blocked_rps"]
            .as_f64()
            .is_some_and(|r| r > 0.0),
        "{s}"
    );
    // Only ashburn's report was read: its key alone, and paris says why.
    assert_eq!(s["top_keys"][0]["key"], "203.0.113.9");
    assert_eq!(s["top_keys"][0]["count"], 50.0);
    assert_eq!(s["top_keys"][0]["pops"], serde_json::json!(["ashburn"]));
    let pops = s["pops"].as_array().unwrap();
    let paris = pops.iter().find(|p| p["pop"] == "paris").unwrap();
    assert_eq!(paris["report"], false);
    assert!(
        paris["report_error"]
            .as_str()
            .unwrap()
            .contains("admin token"),
        "{paris}"
    );
    assert_eq!(
        pops.iter().find(|p| p["pop"] == "ashburn").unwrap()["report"],
        true
    );
    assert_eq!(s["auth_failures_by_reason"][0]["reason"], "expired");

    let (_, overview) = get_text(console, "/api/overview").await.expect("overview");
    assert!(
        overview
            .contains("rule `api-per-ip` started blocking at PoP ashburn (12 blocked in the last"),
        "{overview}"
    );
    let (_, page) = get_text(console, "/").await.expect("the page");
    assert!(page.contains("id=\"security-panel\"") && page.contains("Top rate-limited keys"));
    let (_, script) = get_text(console, "/app.js").await.expect("the script");
    assert!(script.contains("renderSecurity(sec)") && script.contains("/api/security"));

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(5), node)
        .await
        .expect("the console stops on shutdown")
        .expect("the console task")
        .expect("the console ran");
    let _ = std::fs::remove_dir_all(&dir);
}
