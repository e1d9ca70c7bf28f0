//! A hostile viewer against a PoP: forged Host headers, paths spelled to dodge a
//! behavior, framing headers on requests that carry no body. Each must be refused or made
//! harmless, and the PoP must keep serving everyone else.

mod common;
use common::*;

#[tokio::test]
async fn a_forged_host_cannot_poison_another_path() {
    let (o, p, _s) = one_origin(40, "").await;
    // `Host: edge.test/cc` + `/p.js` once shared the key of `/cc/p.js`.
    let r = raw(
        p.http,
        "GET /p.js HTTP/1.1\r\nHost: edge.test/cc\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert_eq!(
        o.hits("/p.js"),
        0,
        "a refused request never reaches the origin"
    );
    let victim = get(p.http, "/cc/p.js").await;
    assert_eq!(victim.status, 200);
    assert_eq!(victim.body, "body of /cc/p.js from a");
    for bad in ["a b", "edge.test:99999", "[::1", "x@edge.test"] {
        let r = raw(
            p.http,
            format!("GET /cc/p.js HTTP/1.1\r\nHost: {bad}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 400"), "Host: {bad}: {r}");
    }
    let two = raw(
        p.http,
        "GET /cc/p.js HTTP/1.1\r\nHost: edge.test\r\nHost: other.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(two.starts_with("HTTP/1.1 400"), "{two}");
    let none = raw(p.http, "GET /cc/p.js HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(none.starts_with("HTTP/1.1 400"), "{none}");
    // Case and a trailing dot do not split the cache: one key, one origin fetch.
    for host in ["EDGE.test", "edge.test."] {
        let r = raw(
            p.http,
            format!("GET /cc/p.js HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(r.contains("x-cache: Hit from meridian"), "{r}");
    }
    assert_eq!(o.hits("/cc/p.js"), 1);
}

#[tokio::test]
async fn with_alternate_domain_names_only_those_hosts_are_served() {
    let (o, p, _s) = one_origin(41, "aliases = [\"edge.test\", \"*.img.edge.test\"]\n").await;
    assert_eq!(get(p.http, "/cc/a").await.status, 200);
    let other = |host: &'static str| {
        raw(
            p.http,
            format!("GET /cc/a HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
    };
    assert!(other("evil.example").await.starts_with("HTTP/1.1 403"));
    assert!(other("127.77.41.1:8080").await.starts_with("HTTP/1.1 403"));
    assert!(other("x.img.edge.test").await.starts_with("HTTP/1.1 200"));
    assert!(other("edge.test:8080").await.starts_with("HTTP/1.1 200"));
    assert_eq!(
        o.hits("/cc/a"),
        3,
        "one fetch per host[:port]: hosts are keyed apart"
    );
}

#[tokio::test]
async fn paths_are_normalised_before_routing_and_keying() {
    let (o, p, _s) = one_origin(42, "").await;
    // `/readonly/*` allows GET and HEAD only; each spelling must still land there.
    for path in [
        "/x/../readonly/a",
        "/x/%2e%2e/readonly/a",
        "/x/%2E%2E/readonly/a",
        "//readonly/a",
        "/./readonly/./a",
    ] {
        let r = send(p.http, "POST", path, &[]).await;
        assert_eq!(r.status, 403, "POST {path} must meet /readonly/*'s methods");
    }
    assert_eq!(o.hits("/readonly/a"), 0);
    // `/secure/*` is redirect-to-https whatever the spelling.
    let r = get(p.http, "/x/../secure/page").await;
    assert_eq!(r.status, 301);
    assert!(
        r.h("location").ends_with("/secure/page"),
        "{}",
        r.h("location")
    );
    // Spellings of one path share one key; the origin sees the normalised path.
    for path in ["/cc/n", "/cc/./n", "/cc//n", "/x/../cc/n", "/%63c/n"] {
        let r = get(p.http, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body, "body of /cc/n from a", "{path}");
    }
    assert_eq!(o.hits("/cc/n"), 1, "one key for every spelling");
    // What an origin could decode into another path is refused.
    for path in [
        "/cc%2f..%2fadmin",
        "/cc/%5c..%5cadmin",
        "/cc/%zz",
        "/cc/%00",
    ] {
        assert_eq!(get(p.http, path).await.status, 400, "{path}");
    }
}

#[tokio::test]
async fn body_framing_of_a_get_never_reaches_the_origin() {
    let orp = r#"
[[distribution.origin_request_policy]]
name = "everything"
headers = "all"
query_strings = "all"
cookies = "all"
[[distribution.behavior]]
path_pattern = "/cc/*"
origin_group = "o"
origin_request_policy = "everything"
"#;
    let (o, p, _s) = one_origin(43, orp).await;
    // A GET with a body through the cache: the fill sends none, so it must not say it does.
    let r = raw(
        p.http,
        "GET /cc/framed HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = raw(
        p.http,
        "GET /cc/chunked HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // The pooled origin connection is still in step: later requests get their own answers.
    for i in 0..5 {
        let path = format!("/cc/after-{i}");
        let r = get(p.http, &path).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, format!("body of {path} from a"));
    }
    assert!(
        o.framed.lock().unwrap().is_empty(),
        "framing headers on body-less requests: {:?}",
        o.framed.lock().unwrap()
    );
}

#[tokio::test]
async fn an_origin_error_with_set_cookie_is_not_handed_to_other_viewers() {
    let (o, p, _s) = one_origin(44, "").await;
    let waiters: Vec<_> = (0..4)
        .map(|_| tokio::spawn(get(p.http, "/slowfail/page")))
        .collect();
    for w in waiters {
        let r = w.await.unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.h("set-cookie"), "", "one viewer's cookie reached another");
    }
    assert_eq!(
        o.hits("/slowfail/page"),
        1,
        "the misses collapsed into one fetch"
    );
}

/// Request smuggling over HTTP/1.1: each attack is followed on the same connection by a
/// plain request; the PoP must refuse the attack or read it exactly as the origin is
/// then sent it, so that the hidden `/smuggled` request never reaches the origin.
#[tokio::test]
async fn smuggling_attempts_are_refused_or_read_without_desync() {
    let (o, p, _s) = one_origin(45, "").await;
    let hidden = "GET /smuggled HTTP/1.1\r\nHost: edge.test\r\n\r\n";
    let follow = "GET /cc/follow HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n\r\n";
    let attacks: Vec<(&str, String)> = vec![
        (
            "CL.TE",
            format!(
                "POST /cc/a HTTP/1.1\r\nHost: edge.test\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}",
                5 + hidden.len()
            ),
        ),
        (
            "TE.CL",
            format!(
                "POST /cc/a HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{hidden}\r\n0\r\n\r\n",
                hidden.len()
            ),
        ),
        (
            "CL.0",
            format!(
                "GET /cc/a HTTP/1.1\r\nHost: edge.test\r\nContent-Length: {}\r\n\r\n{hidden}",
                hidden.len()
            ),
        ),
        (
            "duplicate Content-Length",
            format!(
                "POST /cc/a HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{hidden}",
                hidden.len()
            ),
        ),
        (
            "obfuscated Transfer-Encoding",
            format!(
                "POST /cc/a HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: xchunked\r\nContent-Length: 0\r\n\r\n{hidden}"
            ),
        ),
        (
            "obs-fold",
            format!(
                "POST /cc/a HTTP/1.1\r\nHost: edge.test\r\nX-A: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n{hidden}"
            ),
        ),
        (
            "bare LF",
            format!(
                "GET /cc/a HTTP/1.1\nHost: edge.test\nContent-Length: {}\n\n{hidden}",
                hidden.len()
            ),
        ),
    ];
    for (name, attack) in attacks {
        let answer = raw(p.http, format!("{attack}{follow}")).await;
        let statuses: Vec<&str> = answer
            .match_indices("HTTP/1.1 ")
            .map(|(i, _)| &answer[i + 9..i + 12])
            .collect();
        assert!(
            !statuses.is_empty() && statuses.iter().all(|s| ["200", "400", "501"].contains(s)),
            "{name}: {answer}"
        );
        assert_eq!(o.hits("/smuggled"), 0, "{name} reached the origin");
    }
    // The pooled origin connections stayed in step and the PoP still serves.
    for i in 0..5 {
        let path = format!("/cc/after-{i}");
        assert_eq!(
            get(p.http, &path).await.body,
            format!("body of {path} from a")
        );
    }
}

/// HTTP/2 carries no framing of its own to downgrade: a `content-length` that disagrees
/// with the DATA sent is a stream error, never a body handed on with that length.
#[tokio::test]
async fn an_h2_content_length_that_lies_is_refused_not_downgraded() {
    let (o, p, _s) = one_origin(46, "").await;
    let tcp = tokio::net::TcpStream::connect(p.http).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let hidden = "GET /smuggled HTTP/1.1\r\nHost: edge.test\r\n\r\n";
    for (method, path) in [("POST", "/cc/h2-post"), ("GET", "/cc/h2-get")] {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("http://edge.test{path}"))
            .header("content-length", "0")
            .body(())
            .unwrap();
        let (res, mut stream) = client.send_request(req, false).unwrap();
        let _ = stream.send_data(bytes::Bytes::from(hidden), true);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), res)
            .await
            .expect("an answer or a reset, not a hang");
        if let Ok(r) = got {
            assert!(r.status().is_client_error(), "{method}: {}", r.status());
        }
        client = client.ready().await.unwrap();
    }
    assert_eq!(o.hits("/smuggled"), 0);
    assert_eq!(o.hits("/cc/h2-post"), 0, "a lying POST is not forwarded");
    assert_eq!(get(p.http, "/cc/h2-after").await.status, 200);
}

/// A field the viewer names in `Connection` belongs to its connection (RFC 9110 §7.6.1):
/// it is dropped before the cache key is made, not only before the origin request, so an
/// answer made without it cannot be stored under the key of a request with it.
#[tokio::test]
async fn a_field_named_in_connection_cannot_poison_its_variant() {
    let extra = r#"
[[distribution.cache_policy]]
name = "by-language"
default_ttl = "60s"
headers = ["accept-language"]
[[distribution.behavior]]
path_pattern = "/vary/*"
origin_group = "o"
cache_policy = "by-language"
"#;
    let (o, p, _s) = one_origin(47, extra).await;
    let r = raw(
        p.http,
        "GET /vary/home HTTP/1.1\r\nHost: edge.test\r\nAccept-Language: fr\r\n\
         Connection: close, Accept-Language\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.ends_with("lang=none"), "the origin got no language: {r}");
    let fr = send(p.http, "GET", "/vary/home", &[("accept-language", "fr")]).await;
    assert_eq!(fr.body, "lang=fr", "the French variant was poisoned");
    assert_eq!(o.hits("/vary/home"), 2);
    // The request without the field shares the key of the one that dropped it.
    let none = get(p.http, "/vary/home").await;
    assert_eq!(
        (none.body.as_ref(), none.h("x-cache")),
        (&b"lang=none"[..], "Hit from meridian")
    );
}

/// An unsafe request invalidates its target URI (RFC 9111 §4.4): its host's objects of
/// that path, never another host's (one viewer's POST on any host once evicted the path
/// everywhere).
#[tokio::test]
async fn an_unsafe_request_invalidates_only_its_own_hosts_objects() {
    let (_o, p, _s) = one_origin(48, "").await;
    let on = |host: &'static str, method: &'static str| async move {
        let stream = tokio::net::TcpStream::connect(p.http).await.unwrap();
        send_on(stream, method, "/cc/inv?page=1", host, &[]).await
    };
    assert_eq!(
        on("edge.test", "GET").await.h("x-cache"),
        "Miss from meridian"
    );
    assert_eq!(
        on("edge.test", "GET").await.h("x-cache"),
        "Hit from meridian"
    );
    assert_eq!(on("attacker.test", "POST").await.status, 200);
    assert_eq!(
        on("edge.test", "GET").await.h("x-cache"),
        "Hit from meridian",
        "another host's POST evicted the object"
    );
    assert_eq!(on("edge.test", "POST").await.status, 200);
    assert_eq!(
        on("edge.test", "GET").await.h("x-cache"),
        "Miss from meridian"
    );
}

/// A viewer's `Cache-Control` does not send its request past the cache to the origin (as
/// at CloudFront): otherwise any client could make every request an origin fetch.
/// `only-if-cached` is honoured.
#[tokio::test]
async fn a_viewers_no_cache_does_not_bypass_the_cache() {
    let (o, p, _s) = one_origin(49, "").await;
    assert_eq!(
        get(p.http, "/cc/busting").await.h("x-cache"),
        "Miss from meridian"
    );
    for cc in [
        "no-cache",
        "max-age=0",
        "no-store, max-age=0, must-revalidate",
    ] {
        let got = send(
            p.http,
            "GET",
            "/cc/busting",
            &[("cache-control", cc), ("pragma", "no-cache")],
        )
        .await;
        assert_eq!(got.h("x-cache"), "Hit from meridian", "{cc}");
    }
    assert_eq!(o.hits("/cc/busting"), 1, "one origin fetch in all");
    let not_cached = send(
        p.http,
        "GET",
        "/cc/elsewhere",
        &[("cache-control", "only-if-cached")],
    )
    .await;
    assert_eq!(not_cached.status, 504);
    assert_eq!(o.hits("/cc/elsewhere"), 0);
}
