//! Every file in examples/ run against the test events documented in its header.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::{request_event, response_event};
use hmac::{Hmac, KeyInit, Mac};
use meridian_functions::event::{Field, MultiValue};
use meridian_functions::*;
use std::time::Duration;

fn example(file: &str) -> String {
    let path = format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn opts(kind: Kind) -> EngineOptions {
    // Debug builds of QuickJS are slow: a generous budget keeps these tests about behaviour.
    EngineOptions::for_kind(kind)
        .with_limits(Limits::for_kind(kind).with_cpu_budget(Duration::from_millis(250)))
}

fn engine_for(file: &str, kind: Kind, opts: EngineOptions) -> Engine {
    let code = FunctionCode::compile(file, &example(file), kind).unwrap_or_else(|e| panic!("{e}"));
    Engine::new(&code, opts).unwrap_or_else(|e| panic!("{e}"))
}

fn run(e: &mut Engine, ev: &Event) -> Outcome {
    e.viewer_request(ev)
        .unwrap_or_else(|err| panic!("{err}"))
        .output
}

fn req(o: Outcome) -> Request {
    match o {
        Outcome::Request(r) => r,
        Outcome::Response(r) => panic!("expected request, got {r:?}"),
    }
}

fn resp(o: Outcome) -> Response {
    match o {
        Outcome::Response(r) => r,
        Outcome::Request(r) => panic!("expected response, got {r:?}"),
    }
}

#[test]
fn ab_testing() {
    let mut e = engine_for(
        "ab-testing.js",
        Kind::ViewerRequest,
        opts(Kind::ViewerRequest),
    );
    let mut ev = request_event("/pricing");
    ev.request
        .cookies
        .insert("ab-group".into(), Field::new("b"));
    assert_eq!(req(run(&mut e, &ev)).uri, "/experiment-b/pricing");
    ev.request
        .cookies
        .insert("ab-group".into(), Field::new("a"));
    assert_eq!(req(run(&mut e, &ev)).uri, "/pricing");

    // New viewers: assigned by weight (80/20), stable per IP.
    let mut b = 0;
    for i in 0..200 {
        let mut ev = request_event("/pricing");
        ev.viewer.ip = format!("203.0.{}.{}", i / 250, i % 250);
        let first = req(run(&mut e, &ev));
        let again = req(run(&mut e, &ev));
        assert_eq!(first, again, "stable for {}", ev.viewer.ip);
        let group = first.cookies["ab-group"].value.clone();
        assert_eq!(
            first.uri,
            if group == "b" {
                "/experiment-b/pricing"
            } else {
                "/pricing"
            }
        );
        b += usize::from(group == "b");
    }
    assert!(
        (15..=70).contains(&b),
        "about 20% in group b, got {b} of 200"
    );
}

#[test]
fn feature_flags_from_kvs() {
    let kvs = KeyValueStore::new("flags");
    let mut e = engine_for(
        "feature-flags.js",
        Kind::ViewerRequest,
        opts(Kind::ViewerRequest).with_kvs(kvs.clone()),
    );
    let ev = request_event("/checkout");
    assert_eq!(req(run(&mut e, &ev)), ev.request, "no flags: unchanged");
    kvs.put("flags", r#"{"newCheckout": true, "darkMode": false}"#)
        .expect("put");
    let r = req(run(&mut e, &ev));
    assert_eq!(
        r.headers.get("x-feature-newcheckout"),
        Some(&Field::new("on"))
    );
    assert!(!r.headers.contains_key("x-feature-darkmode"));
    kvs.put("flags", r#"{"maintenance": true}"#).expect("put");
    let r = resp(run(&mut e, &ev));
    assert_eq!(r.status_code, 503);
    assert_eq!(r.headers["retry-after"].value, "120");
}

#[test]
fn geo_redirect() {
    let mut e = engine_for(
        "geo-redirect.js",
        Kind::ViewerRequest,
        opts(Kind::ViewerRequest),
    );
    let mut ev = request_event("/shop");
    ev.request
        .headers
        .insert("cloudfront-viewer-country".into(), Field::new("DE"));
    ev.request.querystring.insert("x".into(), Field::new("1"));
    let r = resp(run(&mut e, &ev));
    assert_eq!(r.status_code, 302);
    assert_eq!(
        r.headers["location"].value,
        "https://www.example.com/de/shop?x=1"
    );
    ev.request.uri = "/de/shop".into();
    assert_eq!(req(run(&mut e, &ev)).uri, "/de/shop");
    ev.request
        .headers
        .insert("cloudfront-viewer-country".into(), Field::new("US"));
    ev.request.uri = "/shop".into();
    assert_eq!(req(run(&mut e, &ev)), ev.request);
}

#[test]
fn security_headers() {
    let mut e = engine_for(
        "security-headers.js",
        Kind::ViewerResponse,
        opts(Kind::ViewerResponse),
    );
    let mut ev = response_event("/");
    if let Some(r) = ev.response.as_mut() {
        r.headers.insert("server".into(), Field::new("nginx"));
    }
    let r = e.viewer_response(&ev).expect("run").output;
    assert_eq!(r.status_code, 200);
    assert_eq!(
        r.headers["strict-transport-security"].value,
        "max-age=63072000; includeSubDomains; preload"
    );
    assert_eq!(r.headers["x-content-type-options"].value, "nosniff");
    assert_eq!(r.headers["x-frame-options"].value, "DENY");
    assert_eq!(
        r.headers["referrer-policy"].value,
        "strict-origin-when-cross-origin"
    );
    assert!(r.headers.contains_key("content-security-policy"));
    assert_eq!(r.headers["content-type"].value, "text/html");
    assert!(!r.headers.contains_key("server"));
}

#[test]
fn spa_and_pretty_urls() {
    let mut e = engine_for(
        "spa-rewrite.js",
        Kind::ViewerRequest,
        opts(Kind::ViewerRequest),
    );
    for (from, to) in [
        ("/about", "/about/index.html"),
        ("/docs/", "/docs/index.html"),
        ("/", "/index.html"),
        ("/css/site.css", "/css/site.css"),
    ] {
        assert_eq!(req(run(&mut e, &request_event(from))).uri, to, "{from}");
    }
    let spa =
        example("spa-rewrite.js").replace("const SPA_MODE = false;", "const SPA_MODE = true;");
    let code = FunctionCode::compile("spa", &spa, Kind::ViewerRequest).expect("compile");
    let mut e = Engine::new(&code, opts(Kind::ViewerRequest)).expect("engine");
    assert_eq!(
        req(run(&mut e, &request_event("/app/users/42"))).uri,
        "/index.html"
    );
    assert_eq!(req(run(&mut e, &request_event("/app.js"))).uri, "/app.js");
}

#[test]
fn cache_key_normalisation() {
    let mut e = engine_for(
        "cache-key.js",
        Kind::ViewerRequest,
        opts(Kind::ViewerRequest),
    );
    let mut ev = request_event("/search");
    let q = &mut ev.request.querystring;
    q.insert("utm_source".into(), Field::new("x"));
    q.insert("Q".into(), Field::new("shoes"));
    q.insert("page".into(), Field::new("2"));
    q.insert(
        "sort".into(),
        Field {
            value: "price".into(),
            multi_value: Some(vec![
                MultiValue {
                    value: "price".into(),
                },
                MultiValue {
                    value: "name".into(),
                },
            ]),
        },
    );
    q.insert("fbclid".into(), Field::new("1"));
    let r = req(run(&mut e, &ev));
    assert_eq!(
        r.querystring.keys().collect::<Vec<_>>(),
        ["page", "q", "sort"]
    );
    assert_eq!(r.querystring["q"].value, "shoes");
    assert_eq!(r.querystring["sort"].value, "name");
    assert_eq!(
        r.headers["x-cache-key-query"].value,
        "page=2&q=shoes&sort=name&sort=price"
    );
}

fn jwt(payload: &str, secret: &str) -> String {
    let head = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(payload);
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{head}.{body}").as_bytes());
    format!(
        "{head}.{body}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

#[test]
fn jwt_hs256() {
    let mut e = engine_for(
        "jwt-hs256.js",
        Kind::ViewerRequest,
        opts(Kind::ViewerRequest),
    );
    let with = |token: &str| {
        let mut ev = request_event("/api/me");
        ev.request.headers.insert(
            "authorization".into(),
            Field::new(format!("Bearer {token}")),
        );
        ev
    };
    let good = jwt(
        r#"{"sub":"user-42","exp":4102444800}"#,
        "meridian-demo-secret",
    );
    let r = req(run(&mut e, &with(&good)));
    assert_eq!(r.headers["x-user-sub"].value, "user-42");
    assert!(!r.headers.contains_key("authorization"));

    let mut cookie_ev = request_event("/api/me");
    cookie_ev
        .request
        .cookies
        .insert("token".into(), Field::new(good.clone()));
    assert_eq!(
        req(run(&mut e, &cookie_ev)).headers["x-user-sub"].value,
        "user-42"
    );

    let wrong_key = jwt(r#"{"sub":"user-42","exp":4102444800}"#, "other-secret");
    let expired = jwt(r#"{"sub":"user-42","exp":1000}"#, "meridian-demo-secret");
    let mut tampered = good.clone();
    tampered.replace_range(good.len() - 2.., "AA");
    for (name, ev) in [
        ("wrong key", with(&wrong_key)),
        ("expired", with(&expired)),
        ("tampered", with(&tampered)),
        ("garbage", with("not-a-jwt")),
        ("missing", request_event("/api/me")),
    ] {
        let r = resp(run(&mut e, &ev));
        assert_eq!(r.status_code, 401, "{name}");
        assert!(
            r.headers["www-authenticate"].value.starts_with("Bearer"),
            "{name}"
        );
    }
}

#[test]
fn examples_fit_cloudfront_limits() {
    for entry in std::fs::read_dir(format!("{}/examples", env!("CARGO_MANIFEST_DIR"))).expect("dir")
    {
        let path = entry.expect("entry").path();
        let size = std::fs::metadata(&path).expect("meta").len();
        assert!(size <= 10 * 1024, "{} is {size} bytes", path.display());
    }
}
