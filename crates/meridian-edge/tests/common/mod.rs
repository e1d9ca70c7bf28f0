//! The scripted origins and the PoP under test, shared by the edge's test files.
#![allow(dead_code)]

pub mod protect;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use meridian_edge::clock::{Clock, ManualClock};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

// ---------- a scripted origin ----------

/// Counts requests per path and answers by path:
/// `/cc/<any>?cc=<cache-control>` 200 with that Cache-Control and an ETag (304 on match),
/// `/slow/<any>` like /cc but after 300 ms, `/slowfail/<any>` a 503 with Set-Cookie after
/// 300 ms, `/private/<any>` slow and private, echoing
/// `x-user`, `/vary/<any>` varies on Accept-Language, `/fail/<any>` 503, `/text/<any>` 20 KiB
/// of JSON, `/small` 10 bytes, `/error404` a 404 without freshness.
#[derive(Clone, Default)]
pub struct Origin {
    pub hits: Arc<Mutex<HashMap<String, u32>>>,
    /// Paths of body-less requests (GET, HEAD) that arrived with framing headers.
    pub framed: Arc<Mutex<Vec<String>>>,
    pub not_modified: Arc<Mutex<u32>>,
    pub name: &'static str,
    /// Stamps Date from this clock (the PoP's) instead of the system's, so a test that
    /// moves the PoP's time sees origin answers of the same time.
    pub clock: Option<Arc<ManualClock>>,
}

impl Origin {
    pub fn hits(&self, path: &str) -> u32 {
        *self.hits.lock().unwrap().get(path).unwrap_or(&0)
    }

    pub async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        *self.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
        let bodyless = req.method() == http::Method::GET || req.method() == http::Method::HEAD;
        if bodyless
            && (req.headers().contains_key("content-length")
                || req.headers().contains_key("transfer-encoding"))
        {
            self.framed.lock().unwrap().push(path.clone());
        }
        let query: HashMap<String, String> = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.replace("%20", " ").replace("%2C", ",")))
            .collect();
        let cc = query
            .get("cc")
            .cloned()
            .unwrap_or_else(|| "max-age=60".into());
        let mut b = Response::builder().header("x-origin", self.name);
        if let Some(c) = &self.clock {
            b = b.header("date", httpdate::fmt_http_date(c.now()));
        }
        if path.starts_with("/slow/")
            || path.starts_with("/private/")
            || path.starts_with("/slowfail/")
        {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        if path.starts_with("/private/") {
            let user = req
                .headers()
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            return b
                .header("cache-control", "private, max-age=60")
                .body(Full::new(Bytes::from(format!("for {user}"))))
                .unwrap();
        }
        if path.starts_with("/fail/") || path.starts_with("/slowfail/") {
            return b
                .status(503)
                .header("set-cookie", "session=for-one-viewer")
                .body(Full::new(Bytes::from_static(b"origin down")))
                .unwrap();
        }
        if path == "/error404" {
            return b
                .status(404)
                .body(Full::new(Bytes::from_static(b"nope")))
                .unwrap();
        }
        if path.starts_with("/vary/") {
            let lang = req
                .headers()
                .get("accept-language")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_owned();
            return b
                .header("cache-control", "max-age=60")
                .header("vary", "Accept-Language")
                .body(Full::new(Bytes::from(format!("lang={lang}"))))
                .unwrap();
        }
        if path.starts_with("/text/") {
            let body =
                "{\"symbol\":\"AAPL\",\"price\":189.12,\"note\":\"compress me\"}\n".repeat(400);
            return b
                .header("cache-control", "max-age=60")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap();
        }
        if path.starts_with("/cdn/") {
            // For viewers no-store; for the CDN ten minutes (RFC 9213).
            return b
                .header("cache-control", "no-store")
                .header("cdn-cache-control", "max-age=600")
                .body(Full::new(Bytes::from(format!("body of {path}"))))
                .unwrap();
        }
        if path == "/small" {
            return b
                .header("cache-control", "max-age=60")
                .header("content-type", "text/plain")
                .body(Full::new(Bytes::from_static(b"0123456789")))
                .unwrap();
        }
        let etag = "\"v1\"";
        if req
            .headers()
            .get("if-none-match")
            .map(|v| v == etag)
            .unwrap_or(false)
        {
            *self.not_modified.lock().unwrap() += 1;
            return b
                .status(304)
                .header("etag", etag)
                .header("cache-control", cc)
                .header("x-refreshed", "yes")
                .body(Full::new(Bytes::new()))
                .unwrap();
        }
        b.header("cache-control", cc)
            .header("etag", etag)
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(format!(
                "body of {path} from {}",
                self.name
            ))))
            .unwrap()
    }
}

/// Serves `origin` on `addr` until the returned sender is dropped or fired.
pub async fn serve_origin(addr: SocketAddr, origin: Origin) -> tokio::sync::oneshot::Sender<()> {
    serve_with(addr, move |req| {
        let o = origin.clone();
        async move { o.answer(req).await }
    })
    .await
}

/// Serves HTTP/1.1 on `addr`, each request answered by `handler`, until the returned
/// sender is dropped or fired (then open connections are cut: the origin is gone).
pub async fn serve_with<F, Fut>(addr: SocketAddr, handler: F) -> tokio::sync::oneshot::Sender<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind(addr).await.unwrap();
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut rx => break,
                a = listener.accept() => {
                    let Ok((s, _)) = a else { continue };
                    let h = handler.clone();
                    conns.spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let h = h.clone();
                            async move { Ok::<_, Infallible>(h(req).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(s), svc)
                            .await;
                    });
                }
            }
        }
        conns.abort_all();
    });
    tx
}

/// Accepts connections and never answers: a frozen origin.
pub async fn frozen_origin(addr: SocketAddr) {
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
}

// ---------- the PoP under test ----------

pub struct Pop {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    pub token: String,
    pub state: std::path::PathBuf,
    pub _stop: tokio::sync::oneshot::Sender<()>,
}

impl Drop for Pop {
    /// The PoP's state dir (token, certificate, disk cache) goes with it when its test
    /// ends well; after a failure it is kept to look at.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.state);
        }
    }
}

pub fn ip(net: u8, host: u8) -> std::net::IpAddr {
    ip_in(77, net, host)
}

/// 127.`block`.`net`.`host`: newer test files use their own /16.
pub fn ip_in(block: u8, net: u8, host: u8) -> std::net::IpAddr {
    std::net::Ipv4Addr::new(127, block, net, host).into()
}

pub const BASE: &str = r#"
[deployment]
name = "edge-test"
zone = "edge.test"

[[region]]
name = "r1"
primary = true
location = { lat = 0, lon = 0 }
azs = ["r1a"]

[[edge]]
name = "pop"
location = { lat = 0, lon = 0 }
memory_cache = "32MiB"
disk_cache = "64MiB"

[dns]
servers = 0
"#;

/// A PoP on 127.77.`net`.1 whose single origin group has `members` in order. Lines of
/// `distribution_extra` before its first table go into `[distribution]` itself.
pub async fn pop(net: u8, members: &[String], distribution_extra: &str) -> Pop {
    pop_in(77, net, members, distribution_extra).await
}

/// [`pop`] on 127.`block`.`net`.1.
pub async fn pop_in(block: u8, net: u8, members: &[String], distribution_extra: &str) -> Pop {
    pop_timed(block, net, members, distribution_extra, None).await
}

/// A manual clock reading a whole second (so Date headers stamped from it are exact)
/// near the real time.
pub fn manual_clock() -> Arc<ManualClock> {
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Arc::new(ManualClock::new(
        std::time::UNIX_EPOCH + Duration::from_secs(real.as_secs()),
    ))
}

/// [`pop_in`] reading "now" from `clock` when one is given (else the system clock).
pub async fn pop_timed(
    block: u8,
    net: u8,
    members: &[String],
    distribution_extra: &str,
    clock: Option<Arc<dyn Clock>>,
) -> Pop {
    let split = distribution_extra
        .lines()
        .take_while(|l| !l.trim_start().starts_with('['))
        .map(|l| l.len() + 1)
        .sum::<usize>()
        .min(distribution_extra.len());
    let (top, distribution_extra) = distribution_extra.split_at(split);
    let list = members
        .iter()
        .map(|m| format!("\"{m}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        r#"{BASE}
[distribution]
{top}
[[distribution.origin_group]]
name = "o"
members = [{list}]
selection = "ordered"
connect_timeout = "300ms"
response_timeout = "700ms"

[[distribution.cache_policy]]
name = "default"
default_ttl = "60s"
query_strings = "all"
stale_if_error = "1h"

[[distribution.response_headers_policy]]
name = "sec"
strict_transport_security = "max-age=600"
content_type_options = true
frame_options = "DENY"
[distribution.response_headers_policy.cors]
allow_origins = ["https://app.example"]
allow_methods = ["GET", "POST"]

[[distribution.behavior]]
path_pattern = "/secure/*"
origin_group = "o"
viewer_protocol_policy = "redirect-to-https"

[[distribution.behavior]]
path_pattern = "/readonly/*"
origin_group = "o"
allowed_methods = ["GET", "HEAD"]

[distribution.default_behavior]
origin_group = "o"
response_headers_policy = "sec"
{distribution_extra}
"#
    );
    let cfg = meridian_config::Config::parse(&text, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    let state = std::env::temp_dir().join(format!(
        "meridian-edge-test-{}-{block}-{net}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&state);
    let node = meridian_config::NodeSpec {
        name: "edge-pop".into(),
        role: meridian_config::Role::Edge,
        region: None,
        az: None,
        address: SocketAddr::new(ip_in(block, net, 1), 8080),
        admin: SocketAddr::new(ip_in(block, net, 1), 9900),
    };
    let mut opts = meridian_edge::EdgeOptions::from_config(&cfg, &node, &state).unwrap();
    if let Some((a, tls)) = opts.https.take() {
        opts.https = Some((SocketAddr::new(a.ip(), 8443), tls));
    }
    if let Some(c) = clock {
        opts.clock = c;
    }
    let token = opts.admin_token.current();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(meridian_edge::run(opts, async {
        let _ = rx.await;
    }));
    let p = Pop {
        http: node.address,
        https: SocketAddr::new(ip_in(block, net, 1), 8443),
        admin: node.admin,
        token,
        state,
        _stop: tx,
    };
    eventually("the PoP starts", Duration::from_secs(20), || async {
        TcpStream::connect(p.admin).await.is_ok()
    })
    .await;
    p
}

/// A PoP on 127.77.`net`.1 in front of one scripted origin on 127.77.`net`.2; the sender
/// keeps the origin up.
pub async fn one_origin(net: u8, extra: &str) -> (Origin, Pop, tokio::sync::oneshot::Sender<()>) {
    one_origin_in(77, net, extra).await
}

/// [`one_origin`] on 127.`block`.`net`.
pub async fn one_origin_in(
    block: u8,
    net: u8,
    extra: &str,
) -> (Origin, Pop, tokio::sync::oneshot::Sender<()>) {
    let o = Origin {
        name: "a",
        ..Default::default()
    };
    let oa = SocketAddr::new(ip_in(block, net, 2), 80);
    let stop = serve_origin(oa, o.clone()).await;
    let p = pop_in(block, net, &[format!("http://{oa}")], extra).await;
    (o, p, stop)
}

/// [`one_origin`] with a PoP and origin that share a manual clock: the test moves time
/// with it instead of sleeping.
pub async fn clocked_origin(
    net: u8,
    extra: &str,
) -> (
    Origin,
    Pop,
    tokio::sync::oneshot::Sender<()>,
    Arc<ManualClock>,
) {
    let clock = manual_clock();
    let o = Origin {
        name: "a",
        clock: Some(clock.clone()),
        ..Default::default()
    };
    let oa = SocketAddr::new(ip(net, 2), 80);
    let stop = serve_origin(oa, o.clone()).await;
    let p = pop_timed(
        77,
        net,
        &[format!("http://{oa}")],
        extra,
        Some(clock.clone()),
    )
    .await;
    (o, p, stop, clock)
}

/// Polls `check` every 10 ms until it holds, for at most `limit`: a wait for a condition
/// rather than a sleep that hopes it is long enough.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < until,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A behavior for `pattern` whose origin request policy forwards `header`.
pub fn forwarding(pattern: &str, header: &str) -> String {
    format!(
        r#"
[[distribution.origin_request_policy]]
name = "fwd"
headers = "allow_list"
header_names = ["{header}"]
query_strings = "all"
cookies = "none"
[[distribution.behavior]]
path_pattern = "{pattern}"
origin_group = "o"
origin_request_policy = "fwd"
"#
    )
}

pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn h(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

pub async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Got {
    let stream = TcpStream::connect(addr).await.unwrap();
    send_on(stream, method, path, "edge.test", headers).await
}

/// One request on a connection the caller opened (from a chosen address, say).
pub async fn send_on(
    stream: TcpStream,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> Got {
    send_body_on(stream, method, path, host, headers, "").await
}

/// [`send_on`] with a request body.
pub async fn send_body_on(
    stream: TcpStream,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Got {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = sender
        .send_request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    Got {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> Got {
    send(addr, "GET", path, &[]).await
}

/// Writes `request` as is on a new connection and returns what comes back until the
/// server closes it (or 5 s pass): for requests a well-behaved client cannot make.
pub async fn raw(addr: SocketAddr, request: impl AsRef<[u8]>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_ref()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Starts a balancer of region `r1` named `name` on `listen` (admin on port 9901 of its
/// address) in front of `targets` (address, instance name), and waits until it listens.
pub async fn start_balancer(
    name: &str,
    listen: SocketAddr,
    targets: &[(SocketAddr, &str)],
    config: meridian_config::LoadBalancer,
) {
    let opts = meridian_lb::LbOptions {
        tls: None,
        name: name.into(),
        region: "r1".into(),
        listen,
        admin: SocketAddr::new(listen.ip(), 9901),
        targets: targets
            .iter()
            .map(|(a, n)| meridian_config::NodeSpec {
                name: n.to_string(),
                role: meridian_config::Role::Service,
                region: Some("r1".into()),
                az: Some("r1a".into()),
                address: *a,
                admin: *a,
            })
            .collect(),
        config,
        signer: None,
        access_log: None,
    };
    tokio::spawn(meridian_lb::run(opts, std::future::pending()));
    eventually("the balancer starts", Duration::from_secs(10), || async {
        TcpStream::connect(listen).await.is_ok()
    })
    .await;
}

/// A TLS connection to the PoP's HTTPS port as `edge.test`, trusting its development
/// certificate, offering `alpn`.
pub async fn tls_to_pop(pop: &Pop, alpn: &[u8]) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let (cert, _) = meridian_http::tls::dev_cert_paths(&pop.state);
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(pop.https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("edge.test").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// An origin on `addr` that answers `/hinted/*` with a 103 Early Hints (`Link` to
/// `/app.css`) at once and its 200 (cacheable for GET) only when `release` is notified,
/// so a test can see the hint arrive before the answer exists; `/hinted-now/*` sends both
/// at once, as most origins do. Served by Meridian's own
/// listener, which sends interim heads.
pub async fn hinting_origin(
    addr: SocketAddr,
) -> (Arc<tokio::sync::Notify>, Arc<Mutex<HashMap<String, u32>>>) {
    let release = Arc::new(tokio::sync::Notify::new());
    let hits: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let listener = TcpListener::bind(addr).await.unwrap();
    let (r, h) = (release.clone(), hits.clone());
    tokio::spawn(meridian_http::serve_conns(
        listener,
        meridian_http::ServerOptions::default(),
        None,
        move |peer: meridian_http::Peer| {
            let (r, h) = (r.clone(), h.clone());
            hyper::service::service_fn(move |req: Request<Incoming>| {
                let interim = peer.interim.as_ref().and_then(|c| c.current());
                let (r, h) = (r.clone(), h.clone());
                async move {
                    let path = req.uri().path().to_owned();
                    let mut res = Response::builder().status(200);
                    let at_once = path.starts_with("/hinted-now/");
                    if path.starts_with("/hinted/") || at_once {
                        *h.lock().unwrap().entry(path.clone()).or_default() += 1;
                        if let Some(i) = interim {
                            let mut headers = HeaderMap::new();
                            headers.insert(
                                http::header::LINK,
                                http::HeaderValue::from_static("</app.css>; rel=preload; as=style"),
                            );
                            i.send(meridian_http::interim::InterimHead {
                                status: StatusCode::EARLY_HINTS,
                                headers,
                            });
                        }
                        if !at_once {
                            let _ =
                                tokio::time::timeout(Duration::from_secs(10), r.notified()).await;
                        }
                        if req.method() == http::Method::GET {
                            res = res.header("cache-control", "max-age=60");
                        }
                    }
                    Ok::<_, Infallible>(
                        res.body(Full::new(Bytes::from(format!("page {path}"))))
                            .unwrap(),
                    )
                }
            })
        },
        std::future::pending::<()>(),
    ));
    (release, hits)
}
