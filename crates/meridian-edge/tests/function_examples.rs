//! The shipped edge-function examples (`crates/meridian-functions/examples/*.js`) through a
//! running PoP: each is configured from its file as an operator would, and the test events
//! its header documents are sent as HTTP requests. What the documented result means is
//! checked where it shows: the request the origin got (path, query string, headers,
//! cookies), or the answer the viewer got (redirects, refusals, security headers).

mod common;

use bytes::Bytes;
use common::*;
use http::{HeaderMap, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::TcpSocket;

const BLOCK: u8 = 51;

/// The example's file, as the config names it.
fn example(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../meridian-functions/examples")
        .join(format!("{name}.js"));
    let p = p
        .canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(p.is_file(), "{}", p.display());
    p.display().to_string()
}

/// A directory of the test's own files (key value store imports, a function variant).
fn scratch(net: u8) -> PathBuf {
    let d = std::env::temp_dir().join(format!("meridian-fn-examples-{}-{net}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

// ---------- an origin that records what it was sent ----------

/// One request as the origin received it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    query: Option<String>,
    headers: HeaderMap,
}

impl Seen {
    fn h(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Answers every path 200 (cacheable for a minute, with a `server` header and a body naming
/// the path and the cookie it got) and records each request.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    fn hits(&self, path: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .count()
    }

    /// The last request for `path`.
    fn last(&self, path: &str) -> Seen {
        self.0
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|s| s.path == path)
            .cloned()
            .unwrap_or_else(|| panic!("the origin never saw {path}"))
    }

    fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let seen = Seen {
            path: req.uri().path().to_owned(),
            query: req.uri().query().map(str::to_owned),
            headers: req.headers().clone(),
        };
        let body = format!(
            "path={} cookie={}",
            seen.path,
            seen.h("cookie").unwrap_or("")
        );
        self.0.lock().unwrap().push(seen);
        Response::builder()
            .header("cache-control", "max-age=60")
            .header("content-type", "text/plain")
            .header("server", "scripted-origin")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    }
}

/// Serves a [`Recorder`] on 127.51.`net`.2:80 until the sender is dropped.
async fn recorder(net: u8) -> (Recorder, SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let addr = SocketAddr::new(ip_in(BLOCK, net, 2), 80);
    let rec = Recorder::default();
    let r = rec.clone();
    let tx = serve_with(addr, move |req| {
        let answer = r.answer(req);
        async move { answer }
    })
    .await;
    (rec, addr, tx)
}

/// A PoP on 127.51.`net`.1 in front of a recorder on 127.51.`net`.2.
async fn setup(net: u8, extra: &str) -> (Recorder, Pop, tokio::sync::oneshot::Sender<()>) {
    let (rec, addr, stop) = recorder(net).await;
    let p = pop_in(BLOCK, net, &[format!("http://{addr}")], extra).await;
    (rec, p, stop)
}

/// [`send`] from the local address `local` (with `host` as the Host header): the PoP knows a
/// viewer's place by the address it comes from.
async fn send_from(
    local: IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> Got {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(local, 0)).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    assert_eq!(stream.local_addr().unwrap().ip(), local);
    send_on(stream, method, path, host, headers).await
}

fn body(g: &Got) -> String {
    String::from_utf8_lossy(&g.body).into_owned()
}

fn generated(g: &Got) {
    assert!(
        g.h("x-cache").starts_with("FunctionGeneratedResponse"),
        "answered by the function at the edge: {}",
        g.h("x-cache")
    );
}

// ---------- the examples ----------

#[tokio::test]
async fn spa_rewrite_gives_pretty_urls_and_serves_the_app_shell() {
    let net = 1;
    // SPA mode is the same file with its switch on, as the header says.
    let dir = scratch(net);
    let src = std::fs::read_to_string(example("spa-rewrite")).unwrap();
    assert!(src.contains("const SPA_MODE = false;"));
    let spa = dir.join("spa-rewrite-spa-mode.js");
    std::fs::write(
        &spa,
        src.replace("const SPA_MODE = false;", "const SPA_MODE = true;"),
    )
    .unwrap();
    let extra = format!(
        r#"
[[distribution.function]]
name = "spa-rewrite"
code = "{pretty}"
cpu_budget = "100ms"

[[distribution.function]]
name = "spa-rewrite-spa"
code = "{spa}"
cpu_budget = "100ms"

[[distribution.behavior]]
path_pattern = "/app/*"
origin_group = "o"
function_associations = [{{ event_type = "viewer-request", function = "spa-rewrite-spa" }}]

[[distribution.behavior]]
path_pattern = "/*"
origin_group = "o"
function_associations = [{{ event_type = "viewer-request", function = "spa-rewrite" }}]
"#,
        pretty = example("spa-rewrite"),
        spa = spa.display()
    );
    let (o, p, _stop) = setup(net, &extra).await;

    for (asked, served) in [
        ("/about", "/about/index.html"),
        ("/docs/", "/docs/index.html"),
        ("/css/site.css", "/css/site.css"),
        ("/app/users/42", "/index.html"),
    ] {
        let r = get(p.http, asked).await;
        assert_eq!(r.status, 200, "{asked}: {}", body(&r));
        assert_eq!(o.hits(served), 1, "{asked} reaches the origin as {served}");
        assert_eq!(body(&r), format!("path={served} cookie="));
    }
    assert_eq!(o.hits("/about"), 0);
    assert_eq!(o.hits("/docs/"), 0);
    assert_eq!(o.hits("/app/users/42"), 0);
    // The rewritten URI is the cache key: another spelling of the page is a hit.
    let r = get(p.http, "/about/").await;
    assert!(r.h("x-cache").starts_with("Hit"), "{}", r.h("x-cache"));
    assert_eq!(o.hits("/about/index.html"), 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn security_headers_are_added_and_server_removed() {
    let extra = format!(
        r#"
[[distribution.function]]
name = "security-headers"
code = "{}"
cpu_budget = "100ms"

[[distribution.behavior]]
path_pattern = "/*"
origin_group = "o"
function_associations = [{{ event_type = "viewer-response", function = "security-headers" }}]
"#,
        example("security-headers")
    );
    let (o, p, _stop) = setup(2, &extra).await;
    // A miss and then a hit: the function runs on both.
    for want_cache in ["Miss", "Hit"] {
        let r = get(p.http, "/index.html").await;
        assert_eq!(r.status, 200, "{}", body(&r));
        assert!(r.h("x-cache").starts_with(want_cache), "{}", r.h("x-cache"));
        assert_eq!(
            r.h("strict-transport-security"),
            "max-age=63072000; includeSubDomains; preload"
        );
        assert_eq!(r.h("x-content-type-options"), "nosniff");
        assert_eq!(r.h("x-frame-options"), "DENY");
        assert_eq!(r.h("referrer-policy"), "strict-origin-when-cross-origin");
        assert_eq!(
            r.h("content-security-policy"),
            "default-src 'self'; frame-ancestors 'none'"
        );
        assert!(
            r.headers.get("server").is_none(),
            "the origin's server header is removed: {:?}",
            r.headers
        );
        assert_eq!(r.h("content-type"), "text/plain", "content-type kept");
        assert_eq!(body(&r), "path=/index.html cookie=");
    }
    assert_eq!(o.hits("/index.html"), 1);
}

#[tokio::test]
async fn cache_key_normalises_the_query_string() {
    let extra = format!(
        r#"
[[distribution.function]]
name = "cache-key"
code = "{}"
cpu_budget = "100ms"

[[distribution.cache_policy]]
name = "canonical"
default_ttl = "60s"
query_strings = "all"
headers = ["x-cache-key-query"]

[[distribution.behavior]]
path_pattern = "/search*"
origin_group = "o"
cache_policy = "canonical"
function_associations = [{{ event_type = "viewer-request", function = "cache-key" }}]
"#,
        example("cache-key")
    );
    let (o, p, _stop) = setup(3, &extra).await;
    let r = get(
        p.http,
        "/search?utm_source=x&Q=shoes&page=2&sort=price&sort=name&fbclid=1",
    )
    .await;
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(o.hits("/search"), 1);
    let seen = o.last("/search");
    assert_eq!(
        seen.query.as_deref(),
        Some("page=2&q=shoes&sort=name&sort=price"),
        "querystring {{page: 2, q: shoes, sort: [name, price]}}"
    );
    assert_eq!(
        seen.h("x-cache-key-query"),
        Some("page=2&q=shoes&sort=name&sort=price")
    );
    // The same search however ordered, cased or tracked is the same cache key.
    let r = get(
        p.http,
        "/search?sort=name&gclid=7&PAGE=2&sort=price&q=shoes&utm_medium=mail",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.h("x-cache").starts_with("Hit"),
        "one key for every spelling: {}",
        r.h("x-cache")
    );
    assert_eq!(o.hits("/search"), 1);
    // A different search is a different key.
    let _ = get(p.http, "/search?q=boots&utm_source=x").await;
    assert_eq!(o.hits("/search"), 2);
    assert_eq!(o.last("/search").query.as_deref(), Some("q=boots"));
    assert_eq!(o.last("/search").h("x-cache-key-query"), Some("q=boots"));
}

#[tokio::test]
async fn ab_testing_keeps_assigns_and_routes_groups() {
    let net = 4;
    let extra = format!(
        r#"
[[distribution.function]]
name = "ab-testing"
code = "{}"
cpu_budget = "100ms"

[[distribution.cache_policy]]
name = "by-group"
default_ttl = "60s"
query_strings = "all"
cookies = "allow_list"
cookie_names = ["ab-group"]

[[distribution.behavior]]
path_pattern = "/pricing*"
origin_group = "o"
cache_policy = "by-group"
function_associations = [{{ event_type = "viewer-request", function = "ab-testing" }}]
"#,
        example("ab-testing")
    );
    let (o, p, _stop) = setup(net, &extra).await;
    let viewer = ip_in(BLOCK, net, 3);
    let from = |path: &'static str, cookie: Option<&'static str>| {
        let headers: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
        async move { send_from(viewer, p.http, "GET", path, "edge.test", &headers).await }
    };

    let r = from("/pricing", Some("ab-group=b")).await;
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(
        o.hits("/experiment-b/pricing"),
        1,
        "group b is served from /experiment-b"
    );
    assert_eq!(o.hits("/pricing"), 0);
    assert_eq!(
        o.last("/experiment-b/pricing").h("cookie"),
        Some("ab-group=b")
    );

    let r = from("/pricing", Some("ab-group=a")).await;
    assert_eq!(r.status, 200);
    assert_eq!(o.hits("/pricing"), 1, "group a keeps its URI");
    assert_eq!(o.last("/pricing").h("cookie"), Some("ab-group=a"));

    // An unknown group is reassigned like a new viewer.
    let r = from("/pricing?unknown=1", Some("ab-group=zzz")).await;
    assert_eq!(r.status, 200);
    let reassigned = body(&r);

    // A new viewer: the origin sees the assigned group as a cookie, and the URI follows it.
    let r = from("/pricing?new=1", None).await;
    assert_eq!(r.status, 200);
    let assigned = body(&r);
    let group = if assigned == "path=/pricing cookie=ab-group=a" {
        "a"
    } else {
        assert_eq!(assigned, "path=/experiment-b/pricing cookie=ab-group=b");
        "b"
    };
    assert_eq!(
        reassigned,
        assigned.clone(),
        "same IP, same group ({group})"
    );
    // Stable per IP, and the assignment is in the cache key: a plain /pricing from this
    // viewer is the cached answer of its group.
    for _ in 0..3 {
        let r = from("/pricing", None).await;
        assert_eq!(r.status, 200);
        assert!(r.h("x-cache").starts_with("Hit"), "{}", r.h("x-cache"));
        assert_eq!(
            body(&r),
            format!(
                "path={} cookie=ab-group={group}",
                if group == "b" {
                    "/experiment-b/pricing"
                } else {
                    "/pricing"
                }
            )
        );
    }
    assert_eq!(o.hits("/pricing") + o.hits("/experiment-b/pricing"), 4);
}

#[tokio::test]
async fn feature_flags_follow_the_key_value_store() {
    let net = 5;
    let dir = scratch(net);
    let store = dir.join("flags.json");
    let flags = serde_json::json!({
        "data": [{ "key": "flags", "value": r#"{"newCheckout": true}"# }]
    });
    std::fs::write(&store, flags.to_string()).unwrap();
    let extra = format!(
        r#"
[[distribution.key_value_store]]
name = "flags"
file = "{}"

[[distribution.function]]
name = "feature-flags"
code = "{}"
cpu_budget = "100ms"
key_value_store = "flags"

[[distribution.cache_policy]]
name = "by-feature"
default_ttl = "60s"
query_strings = "all"
headers = ["x-feature-newcheckout"]

[[distribution.behavior]]
path_pattern = "/checkout*"
origin_group = "o"
cache_policy = "by-feature"
function_associations = [{{ event_type = "viewer-request", function = "feature-flags" }}]
"#,
        store.display(),
        example("feature-flags")
    );
    let (o, p, _stop) = setup(net, &extra).await;
    let admin = |method: &'static str, value: Option<&'static str>| {
        let token = p.token.clone();
        let at = p.admin;
        async move {
            let value = value.unwrap_or("");
            raw(
                at,
                format!(
                    "{method} /kvs?store=flags&key=flags HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{value}",
                    value.len()
                ),
            )
            .await
        }
    };

    // flags {"newCheckout": true} (from the imported file) -> x-feature-newcheckout: on
    let r = get(p.http, "/checkout").await;
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(o.hits("/checkout"), 1);
    assert_eq!(o.last("/checkout").h("x-feature-newcheckout"), Some("on"));

    // flags {"maintenance": true} -> 503 at the edge, on the next request.
    let set = admin("PUT", Some(r#"{"maintenance": true}"#)).await;
    assert!(set.starts_with("HTTP/1.1 200"), "{set}");
    let r = get(p.http, "/checkout").await;
    assert_eq!(r.status, 503, "{}", body(&r));
    generated(&r);
    assert_eq!(r.h("retry-after"), "120");
    assert_eq!(r.h("content-type"), "text/plain");
    assert_eq!(body(&r), "Down for maintenance");
    assert_eq!(o.hits("/checkout"), 1, "the origin is not asked");

    // no "flags" key -> the request goes on unchanged.
    let del = admin("DELETE", None).await;
    assert!(del.starts_with("HTTP/1.1 200"), "{del}");
    let r = get(p.http, "/checkout").await;
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(o.hits("/checkout"), 2);
    let seen = o.last("/checkout");
    assert!(
        !seen
            .headers
            .keys()
            .any(|k| k.as_str().starts_with("x-feature-")),
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.query, None);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn geo_redirect_sends_german_viewers_to_de() {
    let net = 6;
    let extra = format!(
        r#"
[[distribution.function]]
name = "geo-redirect"
code = "{}"
cpu_budget = "100ms"

[[distribution.origin_request_policy]]
name = "with-country"
headers = "all"
header_names = ["cloudfront-viewer-country"]

[[distribution.behavior]]
path_pattern = "/*"
origin_group = "o"
origin_request_policy = "with-country"
function_associations = [{{ event_type = "viewer-request", function = "geo-redirect" }}]

[network]
subnet = "127.51.0.0/16"

[[client_location]]
name = "berlin"
country = "DE"
location = {{ lat = 52.5, lon = 13.4 }}
"#,
        example("geo-redirect")
    );
    // Where the config puts the viewers of `berlin`: the same text as the PoP's config.
    let cfg = meridian_config::Config::parse(
        &format!(
            "{BASE}\n[[distribution.origin_group]]\nname = \"o\"\nmembers = [\"http://{}:80\"]\n[distribution.default_behavior]\norigin_group = \"o\"\n{}",
            ip_in(BLOCK, net, 2),
            extra.split("[network]").nth(1).map(|s| format!("[network]{s}")).unwrap()
        ),
        "geo.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let berlin = cfg.client_source("berlin").expect("berlin has a network");
    let in_berlin = berlin.host(7);
    assert!(berlin.contains(in_berlin));
    assert!(
        matches!(in_berlin, IpAddr::V4(v) if v.octets()[..2] == [127, BLOCK]),
        "{in_berlin} is in this file's block"
    );
    let elsewhere = ip_in(BLOCK, net, 3);
    assert!(!berlin.contains(elsewhere));

    let (o, p, _stop) = setup(net, &extra).await;
    let host = "www.example.com";

    // country DE, uri "/shop?x=1" -> 302 to https://www.example.com/de/shop?x=1
    let r = send_from(in_berlin, p.http, "GET", "/shop?x=1", host, &[]).await;
    assert_eq!(r.status, 302, "{}", body(&r));
    assert_eq!(r.h("location"), "https://www.example.com/de/shop?x=1");
    assert_eq!(r.h("cache-control"), "max-age=3600");
    generated(&r);
    assert_eq!(o.hits("/shop"), 0);
    // A German viewer claiming another country is still German.
    let r = send_from(
        in_berlin,
        p.http,
        "GET",
        "/shop",
        host,
        &[("cloudfront-viewer-country", "US")],
    )
    .await;
    assert_eq!(r.status, 302);
    assert_eq!(r.h("location"), "https://www.example.com/de/shop");

    // country DE, uri "/de/shop" -> request unchanged
    let r = send_from(in_berlin, p.http, "GET", "/de/shop", host, &[]).await;
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(o.hits("/de/shop"), 1);

    // A viewer outside Germany (no country; US behaves the same) -> request unchanged, and
    // a forged country header does not redirect it.
    for forged in [None, Some("DE")] {
        let headers: Vec<(&str, &str)> = forged
            .map(|c| ("cloudfront-viewer-country", c))
            .into_iter()
            .collect();
        let r = send_from(elsewhere, p.http, "GET", "/shop?y=2", host, &headers).await;
        assert_eq!(r.status, 200, "forged {forged:?}: {}", body(&r));
        assert!(r.headers.get("location").is_none());
    }
    assert_eq!(o.hits("/shop"), 1, "the second was a cache hit");
    assert_eq!(o.last("/shop").query.as_deref(), Some("y=2"));
}

#[tokio::test]
async fn jwt_hs256_admits_valid_tokens_only() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine as _;
    fn sign(payload: serde_json::Value, secret: &[u8]) -> String {
        let head = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body = B64.encode(payload.to_string());
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let sig = ring::hmac::sign(&key, format!("{head}.{body}").as_bytes());
        format!("{head}.{body}.{}", B64.encode(sig.as_ref()))
    }
    let secret = b"meridian-demo-secret";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let valid = sign(
        serde_json::json!({"sub": "alice", "exp": now + 3600}),
        secret,
    );
    let carol = sign(
        serde_json::json!({"sub": "carol", "exp": now + 3600}),
        secret,
    );
    let expired = sign(serde_json::json!({"sub": "bob", "exp": now - 10}), secret);
    let wrong_key = sign(
        serde_json::json!({"sub": "mallory", "exp": now + 3600}),
        b"guess",
    );
    let mut tampered = valid.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });

    let extra = format!(
        r#"
[[distribution.function]]
name = "jwt-hs256"
code = "{}"
cpu_budget = "100ms"

[[distribution.origin_request_policy]]
name = "everything"
headers = "all"
query_strings = "all"
cookies = "all"

[[distribution.cache_policy]]
name = "per-user"
default_ttl = "60s"
query_strings = "all"
headers = ["x-user-sub"]

[[distribution.behavior]]
path_pattern = "/account*"
origin_group = "o"
cache_policy = "per-user"
origin_request_policy = "everything"
function_associations = [{{ event_type = "viewer-request", function = "jwt-hs256" }}]
"#,
        example("jwt-hs256")
    );
    let (o, p, _stop) = setup(7, &extra).await;

    // valid token, exp in the future -> request with x-user-sub (and no authorization).
    let bearer = format!("Bearer {valid}");
    let r = send(p.http, "GET", "/account", &[("authorization", &bearer)]).await;
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(o.hits("/account"), 1);
    let seen = o.last("/account");
    assert_eq!(seen.h("x-user-sub"), Some("alice"));
    assert_eq!(seen.h("authorization"), None, "the token stays at the edge");
    // ... also from the "token" cookie.
    let cookie = format!("token={carol}");
    let r = send(p.http, "GET", "/account", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(o.hits("/account"), 2, "another user is another cache key");
    assert_eq!(o.last("/account").h("x-user-sub"), Some("carol"));

    // signature changed / exp in the past / no token -> 401 at the edge.
    let refused = [
        (Some(format!("Bearer {tampered}")), "bad signature"),
        (Some(format!("Bearer {wrong_key}")), "bad signature"),
        (Some(format!("Bearer {expired}")), "expired"),
        (Some("Bearer not-a-jwt".to_owned()), "malformed token"),
        (None, "missing token"),
    ];
    for (auth, why) in refused {
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| ("authorization", a))
            .into_iter()
            .collect();
        let r = send(p.http, "GET", "/account", &headers).await;
        assert_eq!(r.status, 401, "{why}: {}", body(&r));
        generated(&r);
        assert_eq!(
            r.h("www-authenticate"),
            format!("Bearer error=\"invalid_token\", error_description=\"{why}\"")
        );
    }
    // A forged x-user-sub without a token is refused too.
    let r = send(p.http, "GET", "/account", &[("x-user-sub", "alice")]).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        o.hits("/account"),
        2,
        "no refused request reached the origin"
    );
}

/// A function that leaves the query string and cookies alone (it only adds a header) does
/// not rewrite them: the origin gets them in the viewer's order. (A map with a repeated name
/// is read back whole, and then sent grouped by name.)
#[tokio::test]
async fn an_untouched_query_string_and_cookies_reach_the_origin_as_sent() {
    let extra = r#"
[[distribution.function]]
name = "tag"
cpu_budget = "100ms"
source = '''
function handler(event) {
  var h = event.request.headers;
  if (h['x-caps']) h['X-Tagged'] = { value: 'Yes' };
  else h['x-tagged'] = { value: 'yes' };
  return event.request;
}
'''

[[distribution.origin_request_policy]]
name = "everything"
headers = "all"
query_strings = "all"
cookies = "all"

[[distribution.behavior]]
path_pattern = "/keep*"
origin_group = "o"
origin_request_policy = "everything"
function_associations = [{ event_type = "viewer-request", function = "tag" }]
"#;
    let (o, p, _stop) = setup(8, extra).await;
    let r = send(p.http, "GET", "/keep?b=2&a=1", &[("cookie", "z=1; a=2")]).await;
    assert_eq!(r.status, 200, "{}", body(&r));
    let seen = o.last("/keep");
    assert_eq!(seen.h("x-tagged"), Some("yes"));
    assert_eq!(seen.query.as_deref(), Some("b=2&a=1"));
    assert_eq!(seen.h("cookie"), Some("z=1; a=2"));

    // The same when the function also sets a header under a name with capitals (which
    // takes the path that rebuilds the whole request).
    let r = send(
        p.http,
        "GET",
        "/keep-caps?b=2&a=1",
        &[("cookie", "z=1; a=2"), ("x-caps", "1")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", body(&r));
    let seen = o.last("/keep-caps");
    assert_eq!(seen.h("x-tagged"), Some("Yes"));
    assert_eq!(seen.query.as_deref(), Some("b=2&a=1"));
    assert_eq!(seen.h("cookie"), Some("z=1; a=2"));
}
