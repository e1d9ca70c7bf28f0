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
