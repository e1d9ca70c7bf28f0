use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use meridian_demo::{router, DemoOptions, Identity};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::Duration;
use tower::ServiceExt;

fn opts() -> DemoOptions {
    DemoOptions {
        identity: Identity {
            region: "eu-west-1".into(),
            az: "eu-west-1b".into(),
            instance: "svc-eu-west-1b-1".into(),
        },
        processing_time: Duration::ZERO,
        database: None,
        quote_cache: None,
    }
}

fn app() -> axum::Router {
    router(opts())
}

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    let res = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes().to_vec(),
    )
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn every_response_names_region_az_and_instance() {
    let app = app();
    for uri in ["/health", "/api/quotes/AAPL", "/static/app.js", "/nope"] {
        let (_, h, _) = send(&app, get(uri)).await;
        assert_eq!(h["x-meridian-region"], "eu-west-1", "{uri}");
        assert_eq!(h["x-meridian-az"], "eu-west-1b", "{uri}");
        assert_eq!(h["x-meridian-instance"], "svc-eu-west-1b-1", "{uri}");
    }
}

#[tokio::test]
async fn health_endpoints_are_json() {
    let app = app();
    let (s, _, b) = send(&app, get("/health")).await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["status"], "healthy");
    let (s, _, b) = send(&app, get("/health/detailed")).await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["components"]["database"]["status"], "healthy");
}

#[tokio::test]
async fn quotes_are_public_and_cacheable_portfolio_is_private() {
    let app = app();
    let (s, h, b) = send(&app, get("/api/quotes/AAPL")).await;
    assert_eq!(s, 200);
    assert_eq!(h["cache-control"], "public, max-age=5");
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["symbol"], "AAPL");
    let (s, _, _) = send(&app, get("/api/quotes/BAD%2FSYM")).await;
    assert_eq!(s, 400);

    let (s, h, _) = send(&app, get("/api/portfolio")).await;
    assert_eq!(s, 401);
    assert!(h.contains_key("www-authenticate"));
    let req = Request::get("/api/portfolio")
        .header("authorization", "Bearer alice")
        .body(Body::empty())
        .unwrap();
    let (s, h, b) = send(&app, req).await;
    assert_eq!(s, 200);
    assert_eq!(h["cache-control"], "private");
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert!(v["holdings"].as_array().unwrap().len() >= 3);
}

#[tokio::test]
async fn static_assets_have_strong_etags_and_revalidate() {
    let app = app();
    let (s, h, b) = send(&app, get("/static/app.js")).await;
    assert_eq!(s, 200);
    assert!(b.len() > 100_000, "realistic size");
    assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
    let etag = h["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"));
    let req = Request::get("/static/app.js")
        .header("if-none-match", &etag)
        .body(Body::empty())
        .unwrap();
    let (s, h, b) = send(&app, req).await;
    assert_eq!(s, 304);
    assert!(b.is_empty());
    assert_eq!(h["etag"], etag.as_str());
    let req = Request::get("/static/app.js")
        .header("if-none-match", "\"other\"")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, req).await.0, 200);
    let (s, h, b) = send(&app, get("/static/img/logo.png")).await;
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(&b[..4], b"\x89PNG");
    assert_eq!(send(&app, get("/static/missing.js")).await.0, 404);
}

fn hash(q: &str) -> String {
    hex::encode(Sha256::digest(q.as_bytes()))
}

fn gql_get(hash: &str, vars: &str) -> Request<Body> {
    let ext = format!("{{\"persistedQuery\":{{\"version\":1,\"sha256Hash\":\"{hash}\"}}}}");
    let uri = format!(
        "/graphql?operationName=Q&variables={}&extensions={}",
        meridian_http::percent::encode(vars),
        meridian_http::percent::encode(&ext)
    );
    get(&uri)
}

#[tokio::test]
async fn automatic_persisted_queries_follow_apollo() {
    let app = app();
    let q = "query Q($s: String!) { quote(symbol: $s) { symbol price } }";
    let h = hash(q);
    // Unknown hash: PersistedQueryNotFound, not cacheable.
    let (s, hd, b) = send(&app, gql_get(&h, "{\"s\":\"MSFT\"}")).await;
    assert_eq!(s, 200);
    assert!(hd["cache-control"].to_str().unwrap().contains("no-cache"));
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["errors"][0]["message"], "PersistedQueryNotFound");
    assert_eq!(
        v["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_FOUND"
    );

    // Register with POST (query + hash), then the GET hits.
    let body = serde_json::json!({
        "query": q, "variables": {"s": "MSFT"},
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": h}}
    });
    let req = Request::post("/graphql")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (s, _, b) = send(&app, req).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let (s, hd, b) = send(&app, gql_get(&h, "{\"s\":\"MSFT\"}")).await;
    assert_eq!(s, 200);
    assert_eq!(hd["cache-control"], "public, max-age=5");
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["data"]["quote"]["symbol"], "MSFT");
    assert_eq!(v["data"]["quote"].as_object().unwrap().len(), 2);

    // A hash that does not match its query is refused.
    let body = serde_json::json!({"query": q, "extensions": {"persistedQuery": {"version": 1, "sha256Hash": "00"}}});
    let req = Request::post("/graphql")
        .body(Body::from(body.to_string()))
        .unwrap();
    assert_eq!(send(&app, req).await.0, 400);

    // Built-in operations are known on every instance without registration.
    let (_, _, b) = send(
        &app,
        gql_get(
            &hash(meridian_demo::BUILTIN_OPERATIONS[0]),
            "{\"symbol\":\"AAPL\"}",
        ),
    )
    .await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["data"]["quote"]["symbol"], "AAPL", "{v}");
}

#[tokio::test]
async fn graphql_introspection_and_errors() {
    let app = app();
    let req = Request::post("/graphql")
        .body(Body::from(
            r#"{"query":"{ __schema { queryType { name } } }"}"#,
        ))
        .unwrap();
    let (s, _, b) = send(&app, req).await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["data"]["__schema"]["queryType"]["name"], "Query");
    let req = Request::post("/graphql")
        .body(Body::from(r#"{"query":"{ nope }"}"#))
        .unwrap();
    assert_eq!(send(&app, req).await.0, 400);
    let req = Request::post("/graphql")
        .body(Body::from("not json"))
        .unwrap();
    assert_eq!(send(&app, req).await.0, 400);
    let req = Request::post("/graphql")
        .body(Body::from(r#"{"query":"{ portfolio { account } }"}"#))
        .unwrap();
    let (s, _, b) = send(&app, req).await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
}

#[tokio::test]
async fn metrics_count_requests_by_route() {
    let app = app();
    send(&app, get("/api/quotes/AAPL")).await;
    let (s, _, b) = send(&app, get("/metrics")).await;
    assert_eq!(s, 200);
    let text = String::from_utf8(b).unwrap();
    assert!(text.contains("meridian_http_requests_total{route=\"/api/quotes/{symbol}\",method=\"GET\",status=\"200\"} 1"), "{text}");
    assert!(text.contains("meridian_http_request_duration_seconds_bucket"));
}

#[tokio::test]
async fn without_a_database_orders_and_portfolios_say_so_and_the_rest_works() {
    let app = app();
    let req = Request::post("/api/orders")
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"user":"alice","symbol":"AAPL","side":"buy","quantity":1}"#,
        ))
        .unwrap();
    let (s, h, b) = send(&app, req).await;
    assert_eq!(s, 503);
    assert_eq!(h["cache-control"], "private, no-store");
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["error"], "no_database");
    assert!(v["message"].as_str().unwrap().contains("[database]"));
    let (s, _, b) = send(&app, get("/api/portfolio/alice")).await;
    assert_eq!(s, 503);
    assert_eq!(
        serde_json::from_slice::<Value>(&b).unwrap()["error"],
        "no_database"
    );
    let (s, _, b) = send(&app, get("/health")).await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["database"], "not configured");
    let (s, _, _) = send(&app, get("/api/quotes/AAPL")).await;
    assert_eq!(s, 200);
}

/// The page's first assets are announced with 103 Early Hints before the page itself
/// (over HTTP/1.1 here; the PoP relays them to HTTP/2 and HTTP/3 viewers).
#[tokio::test]
async fn the_page_sends_early_hints_for_its_style_and_script() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr: std::net::SocketAddr = "127.106.9.2:8000".parse().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(meridian_demo::serve(addr, opts(), async move {
        let _ = stopped.await;
    }));
    let mut s = None;
    for _ in 0..100 {
        if let Ok(c) = tokio::net::TcpStream::connect(addr).await {
            s = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut s = s.expect("the demo origin listens");
    let mut got = Vec::new();
    for (path, accept) in [
        ("/static/index.html", "text/html"),
        ("/static/app.css", "text/html"),
        ("/static/index.html", "*/*"),
    ] {
        let req = format!(
            "GET {path} HTTP/1.1\r\nhost: demo\r\naccept: {accept}\r\nconnection: close\r\n\r\n"
        );
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        got.push(String::from_utf8_lossy(&out).into_owned());
    }
    s.shutdown().await.unwrap();
    let page = &got[0];
    assert!(
        page.starts_with("HTTP/1.1 103 Early Hints\r\n"),
        "{page:.200}"
    );
    let hint = page.split("\r\n\r\n").next().unwrap_or("");
    assert!(
        hint.contains("</static/app.css>; rel=preload; as=style"),
        "{hint}"
    );
    assert!(page.contains("\r\n\r\nHTTP/1.1 200 OK\r\n"), "{page:.300}");
    // Other assets have none, nor the page for a request that is no navigation.
    for other in &got[1..] {
        assert!(other.starts_with("HTTP/1.1 200 OK\r\n"), "{other:.200}");
    }
    let _ = stop.send(());
}
