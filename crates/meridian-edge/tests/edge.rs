//! A PoP against scripted origins: caching by RFC 9111 and the cache policy, collapsing,
//! stale handling, failover inside a request, invalidation, compression, TLS, malformed
//! input. Each test has its own loopback addresses so they run in parallel.

mod common;
use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------- tests ----------

#[tokio::test]
async fn second_get_is_a_hit_that_never_reaches_the_origin() {
    let (o, p, _s, clock) = clocked_origin(1, "").await;
    let first = get(p.http, "/cc/app.css").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.h("x-cache"), "Miss from meridian");
    let second = get(p.http, "/cc/app.css").await;
    assert_eq!(second.h("x-cache"), "Hit from meridian");
    assert_eq!(second.body, first.body);
    assert_eq!(o.hits("/cc/app.css"), 1, "the hit did not reach the origin");
    assert!(second.h("cache-status").contains("hit"));
    assert_eq!(
        second.h("age"),
        "0",
        "no time has passed on the PoP's clock"
    );
    // Response headers policy and the edge's own headers.
    assert_eq!(second.h("strict-transport-security"), "max-age=600");
    assert_eq!(second.h("x-content-type-options"), "nosniff");
    assert_eq!(second.h("x-frame-options"), "DENY");
    assert!(second.h("via").contains("pop (meridian)"));
    // Query strings are in the key (policy: all), in any order.
    get(p.http, "/cc/q?a=1&b=2").await;
    assert_eq!(
        get(p.http, "/cc/q?b=2&a=1").await.h("x-cache"),
        "Hit from meridian"
    );
    // no-store and private are never stored.
    get(p.http, "/cc/ns?cc=no-store").await;
    assert_eq!(
        get(p.http, "/cc/ns?cc=no-store").await.h("x-cache"),
        "Miss from meridian"
    );
    assert_eq!(o.hits("/cc/ns"), 2);
    // Age grows with time in the cache, second for second.
    clock.advance(Duration::from_secs(5));
    let aged = get(p.http, "/cc/app.css").await;
    assert_eq!(aged.h("age"), "5");
    assert_eq!(aged.h("x-cache"), "Hit from meridian");
    // HEAD is answered from the stored GET, with no body.
    let head = send(p.http, "HEAD", "/cc/app.css", &[]).await;
    assert_eq!(head.h("x-cache"), "Hit from meridian");
    assert!(head.body.is_empty());
    assert_eq!(head.h("content-length"), first.body.len().to_string());
    // A range is cut from the stored full object.
    let r = send(p.http, "GET", "/cc/app.css", &[("range", "bytes=0-3")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(&r.body[..], &first.body[..4]);
    assert_eq!(
        r.h("content-range"),
        format!("bytes 0-3/{}", first.body.len())
    );
    let r = send(p.http, "GET", "/cc/app.css", &[("range", "bytes=9999-")]).await;
    assert_eq!(r.status, 416);
    // A matching conditional gets 304 from the edge.
    let r = send(p.http, "GET", "/cc/app.css", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(r.status, 304);
    assert_eq!(o.hits("/cc/app.css"), 1);
    let _ = std::fs::remove_dir_all(&p.state);
}

#[tokio::test]
async fn concurrent_misses_collapse_into_one_origin_fetch() {
    let (o, p, _s) = one_origin(2, "").await;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let addr = p.http;
        tasks.push(tokio::spawn(
            async move { get(addr, "/slow/new-key").await },
        ));
    }
    let mut bodies = Vec::new();
    for t in tasks {
        let g = t.await.unwrap();
        assert_eq!(g.status, 200);
        bodies.push(g.body);
    }
    assert_eq!(
        o.hits("/slow/new-key"),
        1,
        "100 concurrent misses, one origin fetch"
    );
    assert!(bodies.iter().all(|b| b == &bodies[0]));
}

#[tokio::test]
async fn a_private_answer_is_never_handed_to_other_waiters() {
    // Forward x-user so each viewer's own answer is visible.
    let (o, p, _s) = one_origin(3, &forwarding("/private/*", "x-user")).await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let addr = p.http;
        tasks.push(tokio::spawn(async move {
            let user = format!("user{i}");
            let g = send(addr, "GET", "/private/portfolio", &[("x-user", &user)]).await;
            (user, g)
        }));
    }
    for t in tasks {
        let (user, g) = t.await.unwrap();
        assert_eq!(g.status, 200);
        assert_eq!(
            g.body,
            Bytes::from(format!("for {user}")),
            "each viewer got its own answer"
        );
        assert_eq!(g.h("x-cache"), "Miss from meridian");
    }
    assert_eq!(o.hits("/private/portfolio"), 10);
}

#[tokio::test]
async fn stale_while_revalidate_serves_at_once_and_refreshes_behind() {
    let (o, p, _s, clock) = clocked_origin(4, "").await;
    let path = "/cc/swr?cc=max-age=1,stale-while-revalidate=30";
    get(p.http, path).await;
    clock.advance(Duration::from_secs(2));
    let g = get(p.http, path).await;
    assert_eq!(g.status, 200);
    assert!(
        g.h("cache-status").contains("stale-while-revalidate"),
        "{}",
        g.h("cache-status")
    );
    // The background refresh is a conditional request answered 304.
    eventually(
        "the background refresh",
        Duration::from_secs(10),
        || async { *o.not_modified.lock().unwrap() >= 1 },
    )
    .await;
    assert_eq!(*o.not_modified.lock().unwrap(), 1);
    let g = get(p.http, path).await;
    assert_eq!(g.h("x-cache"), "Hit from meridian");
    assert_eq!(
        g.h("x-refreshed"),
        "yes",
        "304 headers refresh the stored ones"
    );
}

#[tokio::test]
async fn stale_content_is_revalidated_then_served_stale_when_the_origin_is_gone() {
    let clock = manual_clock();
    let o = Origin {
        name: "a",
        clock: Some(clock.clone()),
        ..Default::default()
    };
    let oa = SocketAddr::new(ip(5, 2), 80);
    let stop = serve_origin(oa, o.clone()).await;
    let p = pop_timed(77, 5, &[format!("http://{oa}")], "", Some(clock.clone())).await;
    get(p.http, "/cc/x?cc=max-age=1").await;
    get(p.http, "/cc/must?cc=max-age=1,must-revalidate").await;
    clock.advance(Duration::from_secs(2));
    // Stale: revalidated with If-None-Match, answered 304: RefreshHit.
    let g = get(p.http, "/cc/x?cc=max-age=1").await;
    assert_eq!(g.h("x-cache"), "RefreshHit from meridian");
    assert_eq!(o.hits("/cc/x"), 2);
    clock.advance(Duration::from_secs(2));
    // The origin goes away: stale-if-error serves the stored copy...
    let _ = stop.send(());
    eventually(
        "the origin refuses connections",
        Duration::from_secs(10),
        || async { TcpStream::connect(oa).await.is_err() },
    )
    .await;
    let g = get(p.http, "/cc/x?cc=max-age=1").await;
    assert_eq!(g.status, 200);
    assert!(
        g.h("cache-status").contains("stale-if-error"),
        "{}",
        g.h("cache-status")
    );
    assert!(g.body.starts_with(b"body of /cc/x"));
    // ...but never a response that said must-revalidate.
    let g = get(p.http, "/cc/must?cc=max-age=1,must-revalidate").await;
    assert_eq!(g.status, 502);
    assert_eq!(g.h("x-cache"), "Error from meridian");
}

#[tokio::test]
async fn failover_inside_one_request_on_refused_failing_and_frozen_origins() {
    let dead = SocketAddr::new(ip(6, 2), 80); // nothing listens
    let frozen = SocketAddr::new(ip(6, 3), 80);
    frozen_origin(frozen).await;
    let good = Origin {
        name: "good",
        ..Default::default()
    };
    let ga = SocketAddr::new(ip(6, 4), 80);
    let _g = serve_origin(ga, good.clone()).await;
    let failing = Origin {
        name: "failing",
        ..Default::default()
    };
    let fa = SocketAddr::new(ip(6, 5), 80);
    let _f = serve_origin(fa, failing.clone()).await;

    let p = pop(
        6,
        &[
            format!("http://{dead}"),
            format!("http://{frozen}"),
            format!("http://{ga}"),
        ],
        "",
    )
    .await;
    let g = get(p.http, "/cc/a").await;
    assert_eq!(g.status, 200, "{:?}", g.body);
    assert_eq!(
        g.h("x-origin"),
        "good",
        "refused and frozen origins were passed over"
    );

    // A failover status moves a GET on; an unsafe POST is not repeated.
    let p2 = pop(16, &[format!("http://{fa}"), format!("http://{ga}")], "").await;
    let g = get(p2.http, "/fail/x").await;
    assert_eq!(g.status, 503, "the good origin fails this path too");
    assert_eq!((failing.hits("/fail/x"), good.hits("/fail/x")), (1, 1));
    let g = get(p2.http, "/cc/ok").await;
    assert_eq!(
        g.h("x-origin"),
        "failing",
        "first member answers 200 itself"
    );
    let g = send(p2.http, "POST", "/fail/y", &[]).await;
    assert_eq!(g.status, 503);
    assert_eq!(
        (failing.hits("/fail/y"), good.hits("/fail/y")),
        (1, 0),
        "POST is not retried"
    );
    // A refused connection means the POST never left: it may go on.
    let p3 = pop(26, &[format!("http://{dead}"), format!("http://{ga}")], "").await;
    let g = send(p3.http, "POST", "/cc/post", &[]).await;
    assert_eq!(g.status, 200);
    assert_eq!(good.hits("/cc/post"), 1);
}

#[tokio::test]
async fn invalidation_needs_the_token_and_makes_the_next_get_a_miss() {
    let (_, p, _s) = one_origin(7, "").await;
    for path in ["/cc/static/a.js", "/cc/static/b.css", "/cc/api/q"] {
        get(p.http, path).await;
        assert_eq!(get(p.http, path).await.h("x-cache"), "Hit from meridian");
    }
    // The viewer port has no admin API, and the admin port wants the token.
    let body = r#"{"paths":["/cc/static/*"]}"#;
    let post = |token: Option<String>| {
        let admin = p.admin;
        async move {
            let stream = TcpStream::connect(admin).await.unwrap();
            let (mut s, c) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(c);
            let mut r = Request::post("/invalidate").header("host", "x");
            if let Some(t) = token {
                r = r.header("authorization", format!("Bearer {t}"));
            }
            s.send_request(
                r.body(Full::new(Bytes::from_static(body.as_bytes())))
                    .unwrap(),
            )
            .await
            .unwrap()
            .status()
        }
    };
    assert_eq!(post(None).await, 401);
    assert_eq!(post(Some("wrong".into())).await, 401);
    assert_eq!(
        get(p.http, "/cc/static/a.js").await.h("x-cache"),
        "Hit from meridian"
    );
    assert_eq!(post(Some(p.token.clone())).await, 200);
    assert_eq!(
        get(p.http, "/cc/static/a.js").await.h("x-cache"),
        "Miss from meridian"
    );
    assert_eq!(
        get(p.http, "/cc/static/b.css").await.h("x-cache"),
        "Miss from meridian"
    );
    assert_eq!(
        get(p.http, "/cc/api/q").await.h("x-cache"),
        "Hit from meridian",
        "outside the wildcard"
    );
    // The command's client reaches every PoP given to it.
    let results = meridian_edge::client::invalidate_all(
        vec![("pop".into(), p.admin)],
        &p.token,
        &["/cc/api/q".to_owned()],
        "t",
        |_| {},
    )
    .await;
    assert!(results.iter().all(|r| r.result.is_ok()));
    assert_eq!(
        get(p.http, "/cc/api/q").await.h("x-cache"),
        "Miss from meridian"
    );
    // A successful unsafe request invalidates its target (RFC 9111 §4.4).
    get(p.http, "/cc/api/q").await;
    assert_eq!(send(p.http, "POST", "/cc/api/q", &[]).await.status, 200);
    assert_eq!(
        get(p.http, "/cc/api/q").await.h("x-cache"),
        "Miss from meridian"
    );
}

#[tokio::test]
async fn compression_follows_accept_encoding_and_size_limits() {
    use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZstdDecoder};
    let (o, p, _s) = one_origin(8, "").await;
    let plain = get(p.http, "/text/q").await;
    assert_eq!(plain.h("content-encoding"), "");
    assert!(plain.h("vary").contains("Accept-Encoding"));
    for (ae, want) in [
        ("gzip, deflate, br", "br"),
        ("gzip", "gzip"),
        ("zstd, gzip;q=0.5", "zstd"),
    ] {
        let g = send(p.http, "GET", "/text/q", &[("accept-encoding", ae)]).await;
        assert_eq!(g.h("content-encoding"), want, "for {ae}");
        assert!(g.body.len() < plain.body.len() / 5);
        let mut back = Vec::new();
        match want {
            "br" => BrotliDecoder::new(&g.body[..]).read_to_end(&mut back).await,
            "zstd" => ZstdDecoder::new(&g.body[..]).read_to_end(&mut back).await,
            _ => GzipDecoder::new(&g.body[..]).read_to_end(&mut back).await,
        }
        .unwrap();
        assert_eq!(back, plain.body);
    }
    assert_eq!(
        o.hits("/text/q"),
        1,
        "every variant comes from one stored object"
    );
    let g = send(p.http, "GET", "/small", &[("accept-encoding", "gzip")]).await;
    assert_eq!(g.h("content-encoding"), "", "under 1000 bytes stays as is");
    let g = send(
        p.http,
        "GET",
        "/text/q",
        &[("accept-encoding", "gzip;q=0, identity")],
    )
    .await;
    assert_eq!(g.h("content-encoding"), "");
}

#[tokio::test]
async fn vary_keeps_one_variant_per_selecting_header() {
    // The origin must see the header it varies on.
    let (o, p, _s) = one_origin(9, &forwarding("/vary/*", "accept-language")).await;
    let en = send(p.http, "GET", "/vary/x", &[("accept-language", "en")]).await;
    let fr = send(p.http, "GET", "/vary/x", &[("accept-language", "fr")]).await;
    assert_eq!(en.body, "lang=en");
    assert_eq!(fr.body, "lang=fr");
    let en2 = send(p.http, "GET", "/vary/x", &[("accept-language", "en")]).await;
    assert_eq!(en2.body, "lang=en");
    assert_eq!(en2.h("x-cache"), "Hit from meridian");
    assert_eq!(o.hits("/vary/x"), 2);
}

#[tokio::test]
async fn behaviors_methods_protocol_policy_cors_and_error_caching() {
    let (o, p, _s) = one_origin(10, "").await;
    let g = send(p.http, "DELETE", "/readonly/x", &[]).await;
    assert_eq!(g.status, 403);
    assert_eq!(o.hits("/readonly/x"), 0);
    let g = get(p.http, "/secure/page?a=1").await;
    assert_eq!(g.status, 301);
    assert_eq!(g.h("location"), "https://edge.test:8443/secure/page?a=1");
    // CORS preflight answered at the edge for an allowed origin.
    let g = send(
        p.http,
        "OPTIONS",
        "/cc/api",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
        ],
    )
    .await;
    assert_eq!(g.status, 204);
    assert_eq!(g.h("access-control-allow-origin"), "https://app.example");
    assert_eq!(g.h("access-control-allow-methods"), "GET, POST");
    let g = send(
        p.http,
        "GET",
        "/cc/cors",
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(g.h("access-control-allow-origin"), "");
    // A 404 without freshness is kept for the error caching TTL (10 s by default).
    get(p.http, "/error404").await;
    let g = get(p.http, "/error404").await;
    assert_eq!(g.status, 404);
    assert_eq!(g.h("x-cache"), "Hit from meridian");
    assert_eq!(o.hits("/error404"), 1);
}

#[tokio::test]
async fn custom_error_responses_replace_the_page_and_status() {
    let extra = r#"
[[distribution.custom_error_response]]
error_code = 503
response_code = 200
response_page_path = "/cc/sorry.html"
error_caching_min_ttl = "5s"
[[distribution.custom_error_response]]
error_code = 404
response_code = 410
"#;
    let (o, p, _s) = one_origin(13, extra).await;
    let g = get(p.http, "/fail/page").await;
    assert_eq!(g.status, 200);
    assert_eq!(g.body, "body of /cc/sorry.html from a");
    let g = get(p.http, "/fail/other").await;
    assert_eq!(g.body, "body of /cc/sorry.html from a");
    assert_eq!(
        o.hits("/cc/sorry.html"),
        1,
        "the error page is cached like any object"
    );
    // The origin's 503 itself is kept for the error caching TTL: not asked again.
    get(p.http, "/fail/page").await;
    assert_eq!(
        o.hits("/fail/page"),
        1,
        "a 503 is cached for error_caching_min_ttl"
    );
    assert_eq!(get(p.http, "/error404").await.status, 410);
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_400_and_431_and_the_pop_keeps_serving() {
    let (_, p, _s) = one_origin(11, "").await;
    let raw = |bytes: Vec<u8>| async move {
        let mut s = TcpStream::connect(p.http).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        let mut buf = vec![0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let r = raw(b"GARBAGE\r\n\r\n".to_vec()).await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = raw(b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: nope\r\n\r\n".to_vec()).await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let mut big = b"GET /x HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..2000 {
        big.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(60)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    let r = raw(big).await;
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    assert_eq!(get(p.http, "/cc/still-here").await.status, 200);
}

#[tokio::test]
async fn https_with_tls_1_3_and_1_2_and_http2_by_alpn() {
    let (_, p, _s) = one_origin(12, "").await;
    let (cert, _) = meridian_http::tls::dev_cert_paths(&p.state);
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    for (version, alpn) in [
        (&rustls::version::TLS13, "h2"),
        (&rustls::version::TLS12, "http/1.1"),
    ] {
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        cfg.alpn_protocols = vec![alpn.as_bytes().to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let tcp = TcpStream::connect(p.https).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("edge.test").unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn.as_bytes()));
        let req = Request::get("https://edge.test/secure/x")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let res = if alpn == "h2" {
            let (mut s, c) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                TokioIo::new(tls),
            )
            .await
            .unwrap();
            tokio::spawn(c);
            s.send_request(req).await.unwrap()
        } else {
            let (mut s, c) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(c);
            let mut req = req;
            req.headers_mut()
                .insert("host", "edge.test".parse().unwrap());
            s.send_request(req).await.unwrap()
        };
        // Over HTTPS the redirect-to-https behavior serves the page.
        assert_eq!(res.status(), 200, "{version:?}");
    }
    // The health engine's https fetch (what `meridian health --url https://...` uses).
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = meridian_http::client::Tls {
        config: Arc::new(cfg),
        server_name: "edge.test".into(),
    };
    let req = Request::get("/cc/health-over-tls")
        .header("host", "edge.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let f = meridian_http::client::fetch_with(
        None,
        Some(&tls),
        p.https,
        req,
        Duration::from_secs(3),
        1 << 20,
    )
    .await
    .unwrap();
    assert_eq!(f.status, 200);
}

#[tokio::test]
async fn https_picks_the_certificate_by_sni() {
    let dir = std::env::temp_dir().join(format!("meridian-sni-{}", std::process::id()));
    let (a_cert, a_key) =
        meridian_http::tls::ensure_dev_cert(&dir.join("a"), &["a.test".into()]).unwrap();
    let (b_cert, b_key) =
        meridian_http::tls::ensure_dev_cert(&dir.join("b"), &["*.b.test".into()]).unwrap();
    let extra = format!(
        r#"
[[distribution.certificate]]
names = ["a.test"]
cert = "{}"
key = "{}"
[[distribution.certificate]]
names = ["*.b.test"]
cert = "{}"
key = "{}"
"#,
        a_cert.display(),
        a_key.display(),
        b_cert.display(),
        b_key.display()
    );
    let (_, p, _s) = one_origin(14, &extra).await;
    use rustls::pki_types::pem::PemObject;
    let der = |path: &std::path::Path| {
        rustls::pki_types::CertificateDer::pem_file_iter(path)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
    };
    // Accept any certificate: the test looks at which one was presented.
    #[derive(Debug)]
    struct Any;
    impl rustls::client::danger::ServerCertVerifier for Any {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Any))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    for (sni, want) in [
        ("a.test", &a_cert),
        ("www.b.test", &b_cert),
        ("other.test", &a_cert),
    ] {
        let tcp = TcpStream::connect(p.https).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        assert_eq!(presented, der(want), "certificate for {sni}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Answers every request with a body in two parts, the second only once `second` is
/// set: a test that sees the first part before it lets the second go knows it was
/// streamed, without timing anything (the test PoP's origin timeout is 700 ms between
/// bytes, so the test lets it go as soon as it has the first part).
async fn dripping_origin(addr: SocketAddr, second: tokio::sync::watch::Receiver<bool>) {
    let l = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut second = second.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-type: application/octet-stream\r\ncontent-length: 20\r\nconnection: close\r\n\r\n";
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(b"first-part").await;
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), second.wait_for(|go| *go)).await;
                let _ = s.write_all(b"second-prt").await;
            });
        }
    });
}

#[tokio::test]
async fn a_miss_streams_to_the_first_viewer_while_it_is_stored() {
    let oa = SocketAddr::new(ip(15, 2), 80);
    let (second, held) = tokio::sync::watch::channel(false);
    dripping_origin(oa, held).await;
    let p = pop(15, &[format!("http://{oa}")], "").await;
    let stream = TcpStream::connect(p.http).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/drip/file")
        .header("host", "edge.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.headers()["x-cache"], "Miss from meridian");
    let mut body = res.into_body();
    // The origin holds its second part until this viewer has the first: only a streamed
    // miss gets here (a buffered one would wait out the origin timeout and fail).
    let mut all = Vec::new();
    while all.len() < b"first-part".len() {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("the first part arrives while the origin holds the second")
            .expect("the body goes on")
            .unwrap();
        all.extend_from_slice(&frame.into_data().unwrap());
    }
    assert_eq!(all, b"first-part", "streamed before the body was whole");
    second.send_replace(true);
    while let Some(f) = body.frame().await {
        all.extend_from_slice(&f.unwrap().into_data().unwrap());
    }
    assert_eq!(all, b"first-partsecond-prt");
    // It was stored whole on the way.
    let g = get(p.http, "/drip/file").await;
    assert_eq!(g.h("x-cache"), "Hit from meridian");
    assert_eq!(g.body, "first-partsecond-prt");
}
