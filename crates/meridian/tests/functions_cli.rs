//! `meridian functions test|list` and `meridian kvs` from the outside: every example
//! function on the events its header documents, a syntax error (exit 2, file:line:col), a
//! function that throws (exit 1, error and logs), and a key value store changed on two
//! PoPs started with `meridian run`.

mod common;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn meridian(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .output()
        .expect("run meridian")
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../meridian-functions/examples")
        .join(name)
        .display()
        .to_string()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A viewer-request event as CloudFront's console builds one.
fn viewer_request(uri: &str, querystring: Value, headers: Value, cookies: Value) -> Value {
    json!({
        "version": "1.0",
        "context": { "eventType": "viewer-request", "distributionDomainName": "d111111abcdef8.cloudfront.net" },
        "viewer": { "ip": "198.51.100.7" },
        "request": { "method": "GET", "uri": uri, "querystring": querystring,
                     "headers": headers, "cookies": cookies }
    })
}

fn get(uri: &str) -> Value {
    viewer_request(uri, json!({}), json!({}), json!({}))
}

/// Runs `meridian functions test --json` on `file` and returns the exit code and the
/// JSON it printed. The budget is generous: tests run a debug build on a shared machine.
fn run_test(
    dir: &Path,
    file: &str,
    stage: &str,
    event: &Value,
    kvs: Option<&Value>,
) -> (i32, Value) {
    let ev = write(dir, "event.json", &event.to_string());
    let mut args = vec![
        "functions",
        "test",
        file,
        "--event",
        &ev,
        "--stage",
        stage,
        "--cpu-budget",
        "200ms",
        "--json",
    ];
    let kvs_path;
    if let Some(k) = kvs {
        kvs_path = write(dir, "kvs.json", &k.to_string());
        args.extend(["--kvs", &kvs_path]);
    }
    let o = meridian(&args);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{file}: not JSON ({e}): {}\nstderr: {}",
            stdout(&o),
            stderr(&o)
        )
    });
    (o.status.code().unwrap_or(-1), v)
}

/// The request a viewer-request function returned (fails when it answered instead).
fn request(v: &Value) -> &Value {
    assert!(v["error"].is_null(), "function failed: {v:#}");
    let r = &v["functionOutput"]["request"];
    assert!(r.is_object(), "no request in {v:#}");
    r
}

/// The response a viewer function answered with.
fn response(v: &Value) -> &Value {
    assert!(v["error"].is_null(), "function failed: {v:#}");
    let r = &v["functionOutput"]["response"];
    assert!(r.is_object(), "no response in {v:#}");
    r
}

#[test]
fn ab_testing_keeps_a_group_and_assigns_a_stable_one() {
    let dir = common::tempdir();
    let f = example("ab-testing.js");
    let b = viewer_request(
        "/pricing",
        json!({}),
        json!({}),
        json!({ "ab-group": { "value": "b" } }),
    );
    let (code, v) = run_test(&dir, &f, "viewer-request", &b, None);
    assert_eq!(code, 0);
    assert_eq!(request(&v)["uri"], "/experiment-b/pricing");
    assert_eq!(v["stage"], "viewer-request");
    assert!(v["computeUtilization"].as_u64().is_some());

    let a = viewer_request(
        "/pricing",
        json!({}),
        json!({}),
        json!({ "ab-group": { "value": "a" } }),
    );
    let (_, v) = run_test(&dir, &f, "viewer-request", &a, None);
    assert_eq!(request(&v)["uri"], "/pricing");

    // No cookie: a group is assigned, and the same IP gets the same one again.
    let (_, first) = run_test(&dir, &f, "viewer-request", &get("/pricing"), None);
    let group = request(&first)["cookies"]["ab-group"]["value"].clone();
    assert!(group == "a" || group == "b", "assigned {group}");
    let (_, again) = run_test(&dir, &f, "viewer-request", &get("/pricing"), None);
    assert_eq!(request(&again)["cookies"]["ab-group"]["value"], group);
    let want = if group == "b" {
        "/experiment-b/pricing"
    } else {
        "/pricing"
    };
    assert_eq!(request(&first)["uri"], want);
}

#[test]
fn cache_key_keeps_allowed_parameters_in_canonical_order() {
    let dir = common::tempdir();
    let ev = viewer_request(
        "/search",
        json!({
            "utm_source": { "value": "x" },
            "Q": { "value": "shoes" },
            "page": { "value": "2" },
            "sort": { "value": "price", "multiValue": [{ "value": "price" }, { "value": "name" }] },
            "fbclid": { "value": "1" }
        }),
        json!({}),
        json!({}),
    );
    let (code, v) = run_test(&dir, &example("cache-key.js"), "viewer-request", &ev, None);
    assert_eq!(code, 0);
    let r = request(&v);
    let qs = r["querystring"].as_object().unwrap();
    let names: Vec<&str> = qs.keys().map(String::as_str).collect();
    assert_eq!(names, ["page", "q", "sort"]);
    assert_eq!(qs["q"]["value"], "shoes");
    assert_eq!(
        r["querystring"]["sort"]["multiValue"],
        json!([{ "value": "name" }, { "value": "price" }])
    );
    assert_eq!(
        r["headers"]["x-cache-key-query"]["value"],
        "page=2&q=shoes&sort=name&sort=price"
    );
}

#[test]
fn feature_flags_follow_the_key_value_store() {
    let dir = common::tempdir();
    let f = example("feature-flags.js");
    let store = |flags: &str| json!({ "data": [{ "key": "flags", "value": flags }] });

    let (code, v) = run_test(
        &dir,
        &f,
        "viewer-request",
        &get("/checkout"),
        Some(&store(r#"{"newCheckout": true}"#)),
    );
    assert_eq!(code, 0);
    assert_eq!(
        request(&v)["headers"]["x-feature-newcheckout"]["value"],
        "on"
    );

    let (code, v) = run_test(
        &dir,
        &f,
        "viewer-request",
        &get("/checkout"),
        Some(&store(r#"{"maintenance": true}"#)),
    );
    assert_eq!(code, 0);
    assert_eq!(response(&v)["statusCode"], 503);

    // No --kvs: an empty store, so no "flags" key and the request is unchanged.
    let (code, v) = run_test(&dir, &f, "viewer-request", &get("/checkout"), None);
    assert_eq!(code, 0);
    assert_eq!(request(&v)["uri"], "/checkout");
    assert_eq!(request(&v)["headers"], json!({}));
}

#[test]
fn geo_redirect_sends_german_viewers_to_de() {
    let dir = common::tempdir();
    let f = example("geo-redirect.js");
    let de = |uri: &str, qs: Value| {
        viewer_request(
            uri,
            qs,
            json!({ "cloudfront-viewer-country": { "value": "DE" },
                    "host": { "value": "www.example.com" } }),
            json!({}),
        )
    };
    let (code, v) = run_test(
        &dir,
        &f,
        "viewer-request",
        &de("/shop", json!({ "x": { "value": "1" } })),
        None,
    );
    assert_eq!(code, 0);
    let r = response(&v);
    assert_eq!(r["statusCode"], 302);
    assert_eq!(
        r["headers"]["location"]["value"],
        "https://www.example.com/de/shop?x=1"
    );

    let (_, v) = run_test(&dir, &f, "viewer-request", &de("/de/shop", json!({})), None);
    assert_eq!(request(&v)["uri"], "/de/shop");

    let us = viewer_request(
        "/shop",
        json!({}),
        json!({ "cloudfront-viewer-country": { "value": "US" } }),
        json!({}),
    );
    let (_, v) = run_test(&dir, &f, "viewer-request", &us, None);
    assert_eq!(request(&v)["uri"], "/shop");
}

/// Signs a token with the runtime's own HMAC, through `functions test`: the test has no
/// crypto of its own, and the example's verification is what is under test.
fn signed_token(dir: &Path, payload: &Value) -> String {
    let signer = write(
        dir,
        "signer.js",
        &format!(
            "import crypto from 'crypto';\n\
             function handler(event) {{\n\
               const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');\n\
               const body = enc({{ alg: 'HS256', typ: 'JWT' }}) + '.' + enc({payload});\n\
               const sig = crypto.createHmac('sha256', 'meridian-demo-secret').update(body).digest('base64url');\n\
               event.request.headers['x-token'] = {{ value: body + '.' + sig }};\n\
               return event.request;\n\
             }}\n"
        ),
    );
    let (code, v) = run_test(dir, &signer, "viewer-request", &get("/"), None);
    assert_eq!(code, 0, "{v:#}");
    request(&v)["headers"]["x-token"]["value"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn jwt_accepts_a_valid_token_and_refuses_the_rest() {
    let dir = common::tempdir();
    let f = example("jwt-hs256.js");
    let bearer = |t: &str| {
        viewer_request(
            "/account",
            json!({}),
            json!({ "authorization": { "value": format!("Bearer {t}") } }),
            json!({}),
        )
    };
    let valid = signed_token(&dir, &json!({ "sub": "user-42", "exp": 4102444800u64 }));
    let (code, v) = run_test(&dir, &f, "viewer-request", &bearer(&valid), None);
    assert_eq!(code, 0);
    let r = request(&v);
    assert_eq!(r["headers"]["x-user-sub"]["value"], "user-42");
    assert!(r["headers"].get("authorization").is_none());

    let mut tampered = valid.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let (_, v) = run_test(&dir, &f, "viewer-request", &bearer(&tampered), None);
    assert_eq!(response(&v)["statusCode"], 401);

    let expired = signed_token(&dir, &json!({ "sub": "user-42", "exp": 1000 }));
    let (_, v) = run_test(&dir, &f, "viewer-request", &bearer(&expired), None);
    let r = response(&v);
    assert_eq!(r["statusCode"], 401);
    assert!(r["headers"]["www-authenticate"]["value"]
        .as_str()
        .unwrap()
        .contains("expired"));

    let (_, v) = run_test(&dir, &f, "viewer-request", &get("/account"), None);
    assert_eq!(response(&v)["statusCode"], 401);
}

#[test]
fn security_headers_are_added_and_server_removed() {
    let dir = common::tempdir();
    let mut ev = get("/");
    ev["context"]["eventType"] = json!("viewer-response");
    ev["response"] = json!({
        "statusCode": 200,
        "statusDescription": "OK",
        "headers": { "server": { "value": "nginx" }, "content-type": { "value": "text/html" } },
        "cookies": {}
    });
    let (code, v) = run_test(
        &dir,
        &example("security-headers.js"),
        "viewer-response",
        &ev,
        None,
    );
    assert_eq!(code, 0);
    let h = &response(&v)["headers"];
    for name in [
        "strict-transport-security",
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
        "content-security-policy",
    ] {
        assert!(h.get(name).is_some(), "{name} missing: {h:#}");
    }
    assert_eq!(h["x-frame-options"]["value"], "DENY");
    assert!(h.get("server").is_none());
    assert_eq!(h["content-type"]["value"], "text/html");
}

#[test]
fn spa_rewrite_gives_pretty_urls() {
    let dir = common::tempdir();
    let f = example("spa-rewrite.js");
    for (uri, want) in [
        ("/about", "/about/index.html"),
        ("/docs/", "/docs/index.html"),
        ("/css/site.css", "/css/site.css"),
    ] {
        let (code, v) = run_test(&dir, &f, "viewer-request", &get(uri), None);
        assert_eq!(code, 0);
        assert_eq!(request(&v)["uri"], want, "for {uri}");
    }
    // SPA mode: the same file with the switch turned on.
    let spa = std::fs::read_to_string(&f)
        .unwrap()
        .replace("const SPA_MODE = false;", "const SPA_MODE = true;");
    let spa = write(&dir, "spa.js", &spa);
    let (_, v) = run_test(&dir, &spa, "viewer-request", &get("/app/users/42"), None);
    assert_eq!(request(&v)["uri"], "/index.html");
}

#[test]
fn human_output_shows_the_object_utilization_and_logs() {
    let dir = common::tempdir();
    let f = write(
        &dir,
        "logs.js",
        "function handler(event) {\n  console.log('saw ' + event.request.uri);\n  return event.request;\n}\n",
    );
    let ev = write(&dir, "ev.json", &get("/x").to_string());
    let o = meridian(&[
        "functions",
        "test",
        &f,
        "--event",
        &ev,
        "--cpu-budget",
        "200ms",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(out.contains("\"uri\": \"/x\""), "{out}");
    assert!(out.contains("compute utilization: "), "{out}");
    assert!(out.contains("saw /x"), "{out}");
}

#[test]
fn a_syntax_error_exits_2_with_file_line_and_column() {
    let dir = common::tempdir();
    let f = write(
        &dir,
        "broken.js",
        "function handler(event) {\n  var x = ;\n  return event.request;\n}\n",
    );
    let ev = write(&dir, "ev.json", &get("/").to_string());
    let o = meridian(&["functions", "test", &f, "--event", &ev]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    let prefix = format!("{f}:2:");
    assert!(err.starts_with(&prefix), "want {prefix}COL: in {err}");
    assert!(err.contains("SyntaxError"), "{err}");

    let o = meridian(&["functions", "test", &f, "--event", &ev, "--json"]);
    assert_eq!(o.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["compileError"]["line"], 2);
    assert_eq!(v["compileError"]["file"], f.as_str());
}

#[test]
fn a_throwing_function_exits_1_with_error_and_logs() {
    let dir = common::tempdir();
    let f = write(
        &dir,
        "throws.js",
        "function handler(event) {\n  console.log('about to fail');\n  throw new Error('bad input');\n}\n",
    );
    let ev = write(&dir, "ev.json", &get("/").to_string());
    let o = meridian(&[
        "functions",
        "test",
        &f,
        "--event",
        &ev,
        "--cpu-budget",
        "200ms",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    assert!(out.contains("about to fail"), "{out}");
    assert!(out.contains("error: exception: "), "{out}");
    assert!(out.contains("bad input"), "{out}");
    assert!(out.contains("compute utilization: "), "{out}");

    let (code, v) = run_test(&dir, &f, "viewer-request", &get("/"), None);
    assert_eq!(code, 1);
    assert_eq!(v["error"]["kind"], "exception");
    assert_eq!(v["logs"], json!(["about to fail"]));
    assert!(v["functionOutput"].is_null());
}

#[test]
fn a_missing_or_malformed_event_file_is_named() {
    let dir = common::tempdir();
    let f = example("spa-rewrite.js");
    let missing = dir.join("nope.json").display().to_string();
    let o = meridian(&["functions", "test", &f, "--event", &missing]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains(&missing) && err.lines().count() == 1, "{err}");

    let bad = write(&dir, "bad.json", "{ \"request\": ");
    let o = meridian(&["functions", "test", &f, "--event", &bad]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains(&bad) && err.contains("not valid JSON"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    // JSON, but not a viewer-request event (no request).
    let wrong = write(&dir, "wrong.json", "{\"foo\": 1}");
    let o = meridian(&["functions", "test", &f, "--event", &wrong]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains(&wrong) && err.contains("viewer-request"),
        "{err}"
    );
}

/// Two PoPs and one region in 127.50.0.0/16, no WAN: only the PoPs run.
const CONFIG: &str = r#"
[deployment]
name = "kvs"
zone = "kvs.example"

[network]
subnet = "127.50.0.0/16"

[[region]]
name = "us-east-1"
primary = true
location = { lat = 38.95, lon = -77.45 }
azs = ["us-east-1a"]

[[edge]]
name = "london"
location = { lat = 51.51, lon = -0.13 }
memory_cache = "16MiB"
disk_cache = "0B"

[[edge]]
name = "tokyo"
location = { lat = 35.68, lon = 139.69 }
memory_cache = "16MiB"
disk_cache = "0B"

[distribution]
origin_protocol = "http"
access_log = false

[[distribution.key_value_store]]
name = "flags"

[[distribution.function]]
name = "beta-flag"
key_value_store = "flags"
source = '''
import cf from 'cloudfront';
const kvs = cf.kvs();
async function handler(event) { return event.request; }
'''

[[distribution.behavior]]
path_pattern = "/beta/*"
origin_group = "default"
function_associations = [{ event_type = "viewer-request", function = "beta-flag" }]

[simulation]
wan = false
"#;

/// One PoP's value for `key` in `flags`, straight from its admin API: Some(value), None
/// when the key is not set, Err when the PoP does not answer.
async fn pop_value(
    admin: std::net::SocketAddr,
    token: &str,
    key: &str,
) -> Result<Option<String>, String> {
    let f = meridian_http::client::call(
        admin,
        http::Method::GET,
        &format!("/kvs?store=flags&key={key}"),
        Some(token),
        Duration::from_secs(2),
        1 << 16,
    )
    .await?;
    match f.status {
        200 => {
            let v: Value = serde_json::from_slice(&f.body).map_err(|e| e.to_string())?;
            Ok(v["value"].as_str().map(str::to_owned))
        }
        404 => Ok(None),
        s => Err(format!("status {s}")),
    }
}

fn kvs_cli(cfg: &Path, state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("kvs")
        .args(args)
        .arg("--config")
        .arg(cfg)
        .env("MERIDIAN_STATE_DIR", state)
        .output()
        .expect("meridian kvs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kvs_put_get_delete_reach_every_pop() {
    let dir = common::tempdir();
    let cfg_path: PathBuf = dir.join("kvs.toml");
    std::fs::write(&cfg_path, CONFIG).unwrap();
    let cfg = meridian_config::Config::parse(CONFIG, "kvs.toml").expect("config");
    let token = "kvs-test-token";
    let state = common::state_with_token(&dir, token);

    // `functions list` reads the same config.
    let o = meridian(&[
        "functions",
        "list",
        "--config",
        &cfg_path.display().to_string(),
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(out.contains("beta-flag"), "{out}");
    // The inline code starts on the line after `source = '''`.
    let line = CONFIG
        .lines()
        .position(|l| l.starts_with("source = "))
        .unwrap()
        + 2;
    assert!(
        out.contains(&format!("inline in {}:{line}", cfg_path.display())),
        "{out}"
    );
    assert!(out.contains("key value store: flags"), "{out}");
    assert!(
        out.contains("associated:      /beta/* at viewer-request"),
        "{out}"
    );

    let run = |node: &str| common::run_node(&cfg_path, &state, node);
    let _nodes = common::Nodes(vec![run("edge-london"), run("edge-tokyo")]);
    let admins: Vec<std::net::SocketAddr> = cfg
        .nodes()
        .into_iter()
        .filter(|n| n.role == meridian_config::Role::Edge)
        .map(|n| n.admin)
        .collect();
    assert_eq!(admins.len(), 2);

    // Both PoPs up (bounded): their store answers "no such key".
    let start = Instant::now();
    loop {
        let mut up = 0;
        for a in &admins {
            if pop_value(*a, token, "beta").await == Ok(None) {
                up += 1;
            }
        }
        if up == admins.len() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the PoPs did not come up in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let o = kvs_cli(
        &cfg_path,
        &state,
        &["put", "--store", "flags", "beta", "on"],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("2/2 PoPs updated"), "{}", stdout(&o));
    let progress = stderr(&o);
    assert!(
        progress.contains("london") && progress.contains("tokyo"),
        "{progress}"
    );
    for a in &admins {
        assert_eq!(pop_value(*a, token, "beta").await, Ok(Some("on".into())));
    }

    let o = kvs_cli(&cfg_path, &state, &["get", "--store", "flags", "beta"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "on");

    let o = kvs_cli(&cfg_path, &state, &["list", "--store", "flags"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "beta\ton");
    let o = kvs_cli(&cfg_path, &state, &["list"]);
    assert_eq!(stdout(&o).trim(), "flags");

    // Over CloudFront's limits: refused before anything is sent.
    let big = "x".repeat(1025);
    let o = kvs_cli(&cfg_path, &state, &["put", "--store", "flags", "big", &big]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("1 KB"), "{}", stderr(&o));
    assert_eq!(pop_value(admins[0], token, "big").await, Ok(None));

    let o = kvs_cli(&cfg_path, &state, &["delete", "--store", "flags", "beta"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("2/2 PoPs updated"));
    for a in &admins {
        assert_eq!(pop_value(*a, token, "beta").await, Ok(None));
    }
    let o = kvs_cli(&cfg_path, &state, &["get", "--store", "flags", "beta"]);
    assert_eq!(o.status.code(), Some(1));

    // One PoP down: the change reaches the other, and the summary names the failed one.
    drop(_nodes);
    let _one = common::Nodes(vec![run("edge-london")]);
    let start = Instant::now();
    while pop_value(admins[0], token, "beta").await != Ok(None) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "london did not restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let o = kvs_cli(
        &cfg_path,
        &state,
        &["put", "--store", "flags", "beta", "off"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("1/2 PoPs updated; failed: tokyo"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn an_origin_request_hook_runs_on_a_lambda_event() {
    let dir = common::tempdir();
    let f = write(
        &dir,
        "origin.js",
        "export const handler = async (event) => {\n\
           const request = event.Records[0].cf.request;\n\
           request.headers['x-origin-hook'] = [{ key: 'X-Origin-Hook', value: 'yes' }];\n\
           return request;\n\
         };\n",
    );
    let ev = json!({ "Records": [{ "cf": {
        "config": { "eventType": "origin-request" },
        "request": { "clientIp": "198.51.100.7", "method": "GET", "uri": "/api",
                     "querystring": "", "headers": {} }
    } }] });
    let (code, v) = run_test(&dir, &f, "origin-request", &ev, None);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["stage"], "origin-request");
    assert_eq!(
        v["functionOutput"]["headers"]["x-origin-hook"][0]["value"],
        "yes"
    );
    // The same file is not a viewer function: it does not compile for that stage.
    let (code, v) = run_test(&dir, &f, "viewer-request", &get("/"), None);
    assert_eq!(code, 2);
    assert!(v["compileError"]["message"].is_string(), "{v:#}");
}
