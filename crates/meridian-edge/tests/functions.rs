//! Edge functions through a running PoP: a viewer-request function rewrites the URI and
//! adds a header, answers at the edge, reads the key value store (changed through the admin
//! API); a viewer-response function adds headers; a function that throws, loops for ever
//! or allocates without end costs only its own request a 503.

mod common;

use common::*;
use std::time::{Duration, Instant};

const FUNCTIONS: &str = r#"
[[distribution.key_value_store]]
name = "flags"

[[distribution.function]]
name = "pretty-urls"
cpu_budget = "50ms"
source = '''
function handler(event) {
  var r = event.request;
  if (r.uri.endsWith('/')) { r.uri += 'index.html'; }
  else if (!r.uri.includes('.')) { r.uri += '/index.html'; }
  r.headers['x-rewritten-by'] = { value: 'pretty-urls' };
  return r;
}
'''

[[distribution.function]]
name = "moved"
source = '''
function handler(event) {
  return { statusCode: 302, statusDescription: 'Found',
           headers: { location: { value: 'https://new.example' + event.request.uri } } };
}
'''

[[distribution.function]]
name = "flagged"
key_value_store = "flags"
cpu_budget = "50ms"
source = '''
import cf from 'cloudfront';
const kvs = cf.kvs();
async function handler(event) {
  var beta = 'off';
  try { beta = await kvs.get('beta'); } catch (e) {}
  event.request.querystring['beta'] = { value: beta };
  return event.request;
}
'''

[[distribution.function]]
name = "throws"
source = '''
function handler(event) { throw new Error('bad input'); }
'''

[[distribution.function]]
name = "spins"
cpu_budget = "20ms"
source = '''
function handler(event) { while (true) {} }
'''

[[distribution.function]]
name = "hoards"
cpu_budget = "200ms"
source = '''
function handler(event) { var a = []; while (true) { a.push('x'.repeat(1024)); } }
'''

[[distribution.function]]
name = "stamp"
source = '''
function handler(event) {
  var res = event.response;
  res.headers['x-served-by-function'] = { value: 'stamp' };
  res.cookies['seen'] = { value: '1', attributes: 'Path=/' };
  return res;
}
'''

[[distribution.function]]
name = "who"
source = '''
function handler(event) {
  var h = event.request.headers, seen = {};
  for (var n in h) { if (n.startsWith('cloudfront-')) seen[n] = h[n].value; }
  return { statusCode: 200, body: JSON.stringify(seen) };
}
'''

[[distribution.function]]
name = "to-rewritten"
runtime = "lambda-edge"
source = '''
exports.handler = async (event) => {
  const request = event.Records[0].cf.request;
  request.uri = request.uri.replace('/lambda/', '/lambda/rewritten/');
  request.headers['x-from-lambda'] = [{ key: 'X-From-Lambda', value: 'yes' }];
  return request;
};
'''

[[distribution.function]]
name = "made-here"
runtime = "lambda-edge"
source = '''
exports.handler = async (event) => ({
  status: '200',
  headers: { 'cache-control': [{ key: 'Cache-Control', value: 'max-age=60' }],
             'content-type': [{ key: 'Content-Type', value: 'text/plain' }] },
  body: 'made at ' + event.Records[0].cf.config.eventType,
});
'''

[[distribution.function]]
name = "stamp-origin"
runtime = "lambda-edge"
source = '''
exports.handler = async (event) => {
  const response = event.Records[0].cf.response;
  response.headers['x-origin-status-seen'] = [{ key: 'X-Origin-Status-Seen', value: response.status }];
  return response;
};
'''

[[distribution.function]]
name = "lambda-throws"
runtime = "lambda-edge"
source = '''
exports.handler = async () => { throw new Error('nope'); };
'''

[[distribution.behavior]]
path_pattern = "/lambda/*"
origin_group = "o"
function_associations = [
  { event_type = "origin-request", function = "to-rewritten" },
  { event_type = "origin-response", function = "stamp-origin" },
]

[[distribution.behavior]]
path_pattern = "/lambda-gen/*"
origin_group = "o"
function_associations = [{ event_type = "origin-request", function = "made-here" }]

[[distribution.behavior]]
path_pattern = "/lambda-fail/*"
origin_group = "o"
function_associations = [{ event_type = "origin-request", function = "lambda-throws" }]

[[distribution.origin_request_policy]]
name = "viewer-facts"
headers = "allow_list"
header_names = ["CloudFront-Is-Mobile-Viewer", "cloudfront-is-desktop-viewer", "cloudfront-forwarded-proto", "cloudfront-viewer-address", "cloudfront-viewer-country"]

[[distribution.behavior]]
path_pattern = "/who/*"
origin_group = "o"
origin_request_policy = "viewer-facts"
function_associations = [{ event_type = "viewer-request", function = "who" }]

[[distribution.behavior]]
path_pattern = "/who-unnamed/*"
origin_group = "o"
function_associations = [{ event_type = "viewer-request", function = "who" }]

[[distribution.behavior]]
path_pattern = "/pretty/*"
origin_group = "o"
function_associations = [
  { event_type = "viewer-request", function = "pretty-urls" },
  { event_type = "viewer-response", function = "stamp" },
]

[[distribution.behavior]]
path_pattern = "/moved/*"
origin_group = "o"
function_associations = [{ event_type = "viewer-request", function = "moved" }]

[[distribution.behavior]]
path_pattern = "/flagged/*"
origin_group = "o"
function_associations = [{ event_type = "viewer-request", function = "flagged" }]

[[distribution.behavior]]
path_pattern = "/throws/*"
origin_group = "o"
function_associations = [{ event_type = "viewer-request", function = "throws" }]

[[distribution.behavior]]
path_pattern = "/spins/*"
origin_group = "o"
function_associations = [{ event_type = "viewer-request", function = "spins" }]

[[distribution.behavior]]
path_pattern = "/hoards/*"
origin_group = "o"
function_associations = [{ event_type = "viewer-request", function = "hoards" }]
"#;

#[tokio::test]
async fn viewer_functions_rewrite_answer_and_add_headers() {
    let (o, p, _stop) = one_origin_in(49, 1, FUNCTIONS).await;

    let r = get(p.http, "/pretty/about").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        o.hits("/pretty/about/index.html"),
        1,
        "the origin got the rewritten URI"
    );
    assert_eq!(o.hits("/pretty/about"), 0);
    assert_eq!(r.h("x-served-by-function"), "stamp", "viewer-response ran");
    assert!(
        r.headers
            .get_all("set-cookie")
            .iter()
            .any(|v| v == "seen=1; Path=/"),
        "{:?}",
        r.headers
    );
    // The rewritten URI is the cache key: a second viewer hits it, and the viewer-response
    // function runs on hits too.
    let r = get(p.http, "/pretty/about/").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        o.hits("/pretty/about/index.html"),
        1,
        "served from the cache"
    );
    assert_eq!(r.h("x-served-by-function"), "stamp");

    let r = get(p.http, "/moved/page?x=1").await;
    assert_eq!(r.status, 302);
    assert_eq!(r.h("location"), "https://new.example/moved/page");
    assert!(
        r.h("x-cache").starts_with("FunctionGeneratedResponse"),
        "{}",
        r.h("x-cache")
    );
    assert_eq!(o.hits("/moved/page"), 0, "answered at the edge");

    let metrics = String::from_utf8_lossy(&get(p.admin, "/metrics").await.body).into_owned();
    assert!(
        metrics.contains("meridian_edge_function_invocations_total{function=\"pretty-urls\",event_type=\"viewer-request\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn functions_see_cloudfronts_viewer_headers_and_never_forged_ones() {
    let (_o, p, _stop) = one_origin_in(49, 4, FUNCTIONS).await;
    let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148";
    let r = send(
        p.http,
        "GET",
        "/who/am-i",
        &[
            ("user-agent", iphone),
            ("cloudfront-viewer-country", "XX"),
            ("cloudfront-is-desktop-viewer", "true"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(seen["cloudfront-is-mobile-viewer"], "true", "{seen}");
    assert_eq!(
        seen["cloudfront-is-desktop-viewer"], "false",
        "the viewer's own value is dropped: {seen}"
    );
    assert_eq!(seen["cloudfront-forwarded-proto"], "http");
    assert!(
        seen["cloudfront-viewer-address"]
            .as_str()
            .unwrap()
            .starts_with("127."),
        "{seen}"
    );
    assert!(
        seen.get("cloudfront-viewer-country").is_none(),
        "a forged country never arrives: {seen}"
    );
    assert!(
        seen.get("cloudfront-is-tablet-viewer").is_none(),
        "only the named headers are added: {seen}"
    );

    // As at CloudFront, a behavior whose policies name none of them gets none, forged or not.
    let r = send(
        p.http,
        "GET",
        "/who-unnamed/am-i",
        &[
            ("user-agent", iphone),
            ("cloudfront-is-desktop-viewer", "true"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(String::from_utf8_lossy(&r.body), "{}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_functions_run_on_misses_only_and_their_results_are_cached() {
    let (o, p, _stop) = one_origin_in(49, 5, FUNCTIONS).await;
    let r = get(p.http, "/lambda/a").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        o.hits("/lambda/rewritten/a"),
        1,
        "the origin got the rewritten URI"
    );
    assert_eq!(r.h("x-origin-status-seen"), "200", "origin-response ran");
    let r = get(p.http, "/lambda/a").await;
    assert_eq!(r.status, 200);
    assert!(r.h("x-cache").starts_with("Hit"), "{}", r.h("x-cache"));
    assert_eq!(r.h("x-origin-status-seen"), "200", "stored with the object");
    assert_eq!(o.hits("/lambda/rewritten/a"), 1);

    let r = get(p.http, "/lambda-gen/b").await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"made at origin-request");
    let r = get(p.http, "/lambda-gen/b").await;
    assert!(
        r.h("x-cache").starts_with("Hit"),
        "a generated answer is cached: {}",
        r.h("x-cache")
    );
    assert_eq!(o.hits("/lambda-gen/b"), 0, "the origin never saw it");

    let r = get(p.http, "/lambda-fail/c").await;
    assert_eq!(r.status, 503);
    assert!(String::from_utf8_lossy(&r.body).contains("LambdaExecutionError"));
    assert_eq!(o.hits("/lambda-fail/c"), 0);

    let metrics = String::from_utf8_lossy(&get(p.admin, "/metrics").await.body).into_owned();
    for line in [
        "meridian_edge_function_invocations_total{function=\"to-rewritten\",event_type=\"origin-request\"} 1",
        "meridian_edge_function_invocations_total{function=\"stamp-origin\",event_type=\"origin-response\"} 1",
        "meridian_edge_function_invocations_total{function=\"made-here\",event_type=\"origin-request\"} 1",
    ] {
        assert!(metrics.contains(line), "once each, on the miss only: {line}\n{metrics}");
    }
}

#[tokio::test]
async fn a_key_value_store_change_is_seen_by_the_next_request() {
    let (o, p, _stop) = one_origin_in(49, 2, FUNCTIONS).await;
    let _ = get(p.http, "/flagged/a").await;
    assert_eq!(o.hits("/flagged/a"), 1);
    let put = send(
        p.admin,
        "PUT",
        "/kvs?store=flags&key=beta",
        &[("authorization", &format!("Bearer {}", p.token))],
    )
    .await;
    // An empty body is an empty value; set it for real below with a body.
    assert_eq!(put.status, 200, "{:?}", put.body);
    let set = raw(
        p.admin,
        format!(
            "PUT /kvs?store=flags&key=beta HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: 2\r\nconnection: close\r\n\r\non",
            p.token
        ),
    )
    .await;
    assert!(set.starts_with("HTTP/1.1 200"), "{set}");
    let listed = send(
        p.admin,
        "GET",
        "/kvs?store=flags&key=beta",
        &[("authorization", &format!("Bearer {}", p.token))],
    )
    .await;
    assert!(String::from_utf8_lossy(&listed.body).contains("\"value\":\"on\""));
    // The function put the flag in the query string, which is part of the cache key.
    let r = get(p.http, "/flagged/a").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        o.hits("/flagged/a"),
        2,
        "beta=on is a new cache key, so the origin saw it"
    );
    let unauthorized = send(p.admin, "PUT", "/kvs?store=flags&key=beta", &[]).await;
    assert_eq!(unauthorized.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_function_costs_only_its_own_request() {
    let (o, p, _stop) = one_origin_in(49, 3, FUNCTIONS).await;
    let r = get(p.http, "/throws/x").await;
    assert_eq!(r.status, 503);
    assert!(String::from_utf8_lossy(&r.body).contains("could not be satisfied"));
    assert!(
        r.h("x-cache").starts_with("FunctionExecutionError"),
        "{}",
        r.h("x-cache")
    );
    assert_eq!(o.hits("/throws/x"), 0);

    // An endless loop is interrupted at its budget; meanwhile another connection is served.
    let http = p.http;
    let spin = tokio::spawn(async move {
        let started = Instant::now();
        (get(p.http, "/spins/x").await, started.elapsed(), p)
    });
    let other = get(http, "/pretty/ok/").await;
    let (r, took, p) = spin.await.unwrap();
    assert_eq!(other.status, 200, "served while a function spun");
    assert_eq!(r.status, 503);
    assert!(
        r.h("x-cache").starts_with("FunctionThrottledError"),
        "{}",
        r.h("x-cache")
    );
    assert!(
        took < Duration::from_secs(5),
        "interrupted, not left to run: {took:?}"
    );

    let r = get(p.http, "/hoards/x").await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    // The same engines serve the next requests.
    for path in ["/throws/y", "/spins/y"] {
        assert_eq!(get(p.http, path).await.status, 503);
    }
    let r = get(p.http, "/pretty/after/").await;
    assert_eq!(r.status, 200);
    assert_eq!(o.hits("/pretty/after/index.html"), 1);
    let metrics = String::from_utf8_lossy(&get(p.admin, "/metrics").await.body).into_owned();
    for kind in ["exception", "timeout", "memory"] {
        assert!(
            metrics.contains(&format!("kind=\"{kind}\"")),
            "errors counted by kind ({kind}): {metrics}"
        );
    }
}

#[test]
fn the_default_deployment_drops_tracking_parameters_from_quotes() {
    use meridian_functions::event::{Field, Request};
    use meridian_functions::{Engine, EngineOptions, Event, Kind, Outcome};
    let cfg = meridian_config::Config::embedded_default();
    let behavior = cfg.distribution.behavior_for("/api/quotes/AAPL");
    let association = behavior
        .function_associations
        .iter()
        .find(|a| a.event_type == meridian_config::FunctionEvent::ViewerRequest)
        .expect("quotes run a viewer-request function");
    let f = cfg
        .distribution
        .functions
        .iter()
        .find(|f| f.name == association.function)
        .unwrap();
    let code = meridian_edge::functions::compile(f, meridian_config::FunctionEvent::ViewerRequest)
        .unwrap();
    let mut engine = Engine::new(&code, EngineOptions::for_kind(Kind::ViewerRequest)).unwrap();
    let mut request = Request {
        method: "GET".into(),
        uri: "/api/quotes/AAPL".into(),
        ..Request::default()
    };
    for (k, v) in [
        ("utm_source", "mail"),
        ("n", "7"),
        ("fbclid", "x"),
        ("gclid", "y"),
    ] {
        request.querystring.insert(k.into(), Field::new(v));
    }
    let event = Event::viewer_request(Default::default(), "192.0.2.1", request);
    let out = engine
        .viewer_request(&event)
        .expect("runs within CloudFront's limits");
    let Outcome::Request(r) = out.output else {
        panic!("the function forwards the request")
    };
    let kept: Vec<&str> = r.querystring.keys().map(String::as_str).collect();
    assert_eq!(kept, ["n"], "tracking parameters are dropped, others kept");
    assert_eq!(r.uri, "/api/quotes/AAPL");
}

#[tokio::test]
async fn a_viewer_request_function_picks_among_the_distributions_origins() {
    let (a, b) = (
        Origin {
            name: "a",
            ..Default::default()
        },
        Origin {
            name: "b",
            ..Default::default()
        },
    );
    let (aa, ba) = (
        std::net::SocketAddr::new(ip_in(49, 6, 2), 80),
        std::net::SocketAddr::new(ip_in(49, 6, 3), 80),
    );
    let _sa = serve_origin(aa, a.clone()).await;
    let _sb = serve_origin(ba, b.clone()).await;
    let extra = format!(
        r#"
[[distribution.function]]
name = "pick"
cpu_budget = "50ms"
source = '''
import cf from 'cloudfront';
function handler(event) {{
  var uri = event.request.uri;
  if (uri.startsWith('/pick/b')) cf.selectRequestOriginById('http://{ba}');
  if (uri.startsWith('/pick/group')) cf.createRequestOriginGroup({{ originIds: ['http://{ba}', 'http://{aa}'] }});
  if (uri.startsWith('/pick/anywhere')) cf.updateRequestOrigin({{ domainName: 'internal.example' }});
  return event.request;
}}
'''

[[distribution.behavior]]
path_pattern = "/pick/*"
origin_group = "o"
function_associations = [{{ event_type = "viewer-request", function = "pick" }}]
"#
    );
    let p = pop_in(
        49,
        6,
        &[format!("http://{aa}"), format!("http://{ba}")],
        &extra,
    )
    .await;
    assert_eq!(get(p.http, "/pick/a").await.status, 200);
    assert_eq!(
        (a.hits("/pick/a"), b.hits("/pick/a")),
        (1, 0),
        "the group's own order"
    );
    assert_eq!(get(p.http, "/pick/b").await.status, 200);
    assert_eq!(
        (a.hits("/pick/b"), b.hits("/pick/b")),
        (0, 1),
        "selectRequestOriginById"
    );
    assert_eq!(get(p.http, "/pick/group").await.status, 200);
    assert_eq!(
        (a.hits("/pick/group"), b.hits("/pick/group")),
        (0, 1),
        "the function's group, b first"
    );
    let r = get(p.http, "/pick/anywhere").await;
    assert_eq!(
        r.status, 503,
        "no function sends a PoP to an address the config does not name"
    );
    assert_eq!((a.hits("/pick/anywhere"), b.hits("/pick/anywhere")), (0, 0));
}
