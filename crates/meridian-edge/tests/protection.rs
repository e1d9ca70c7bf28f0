//! API protection through running PoPs: rate-based rules (at one PoP, and spread over
//! three that share their counts), JWT authentication with a JWKS file that rotates,
//! CloudFront signed URLs and cookies, custom rules with body inspection, and request
//! deduplication with Idempotency-Key, geo restriction. Addresses: 127.52/16 (one PoP),
//! 127.53/16 (three), 127.54/16 (geo).

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use meridian_protect::jwt::{generate_es256, public_jwk, sign, SigningKey};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const RSA_PRIVATE: &str = include_str!("../../meridian-protect/tests/fixtures/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../../meridian-protect/tests/fixtures/rsa_public.pem");

/// An origin that echoes what reached it (path and query, the forwarded user, the body's
/// length) and counts every request; `/slow/*` answers after 300 ms.
async fn echo_origin(addr: SocketAddr) -> (Arc<AtomicU32>, tokio::sync::oneshot::Sender<()>) {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let stop = serve_with(addr, move |req: Request<hyper::body::Incoming>| {
        let c = c.clone();
        async move {
            let uri = req.uri().to_string();
            // The PoP's health checks are not requests a viewer made.
            let n = if uri.starts_with("/health") {
                0
            } else {
                c.fetch_add(1, Ordering::SeqCst) + 1
            };
            let user = req
                .headers()
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            if uri.starts_with("/slow/") {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let answer = json!({ "uri": uri, "user": user, "body_len": body.len(), "call": n });
            Response::builder()
                .status(201)
                .header("content-type", "application/json")
                .header(
                    "cache-control",
                    if uri.contains("/cacheable") {
                        "max-age=60"
                    } else {
                        "private"
                    },
                )
                .body(Full::new(Bytes::from(answer.to_string())))
                .unwrap()
        }
    })
    .await;
    (calls, stop)
}

/// One request from `source` with a body.
async fn request(
    source: IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Got {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(source, 0)).unwrap();
    let stream = sock.connect(addr).await.unwrap();
    send_body_on(stream, method, path, "edge.test", headers, body).await
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A state dir file for the test's keys.
fn key_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("meridian-protect-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn a_client_over_its_limit_gets_429_and_one_under_it_never_does() {
    let oa = SocketAddr::new(ip_in(52, 1, 2), 80);
    let (calls, _o) = echo_origin(oa).await;
    let p = pop_in(
        52,
        1,
        &[format!("http://{oa}")],
        r#"[[distribution.rate_based_rule]]
name = "api-per-ip"
path_pattern = "/api/*"
limit = 5
window = "3s"
key = ["ip"]
action = "block"
"#,
    )
    .await;
    let greedy = ip_in(52, 1, 10);
    let modest = ip_in(52, 1, 11);
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(request(greedy, p.http, "POST", "/api/orders", &[], "{}").await);
    }
    let ok = statuses.iter().filter(|g| g.status == 201).count();
    assert_eq!(ok, 5, "exactly the limit is admitted at one PoP");
    let refused = &statuses[5];
    assert_eq!(refused.status, 429);
    let retry: u64 = refused.h("retry-after").parse().unwrap();
    assert!(
        (1..=3).contains(&retry),
        "Retry-After within the window: {retry}"
    );
    assert!(
        refused.h("ratelimit-policy").contains("q=5"),
        "{:?}",
        refused.headers
    );
    assert!(
        refused.h("ratelimit").contains("r=0"),
        "{:?}",
        refused.headers
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        5,
        "refused requests never reach the origin"
    );
    // Another viewer, under its limit, is never refused; paths outside the scope are free.
    for _ in 0..4 {
        assert_eq!(
            request(modest, p.http, "GET", "/api/quotes/X", &[], "")
                .await
                .status,
            201
        );
    }
    assert_eq!(
        request(greedy, p.http, "GET", "/other", &[], "")
            .await
            .status,
        201
    );
    // After Retry-After the greedy client is admitted again.
    tokio::time::sleep(Duration::from_secs(retry) + Duration::from_millis(100)).await;
    assert_eq!(
        request(greedy, p.http, "POST", "/api/orders", &[], "{}")
            .await
            .status,
        201
    );
    // The admin API reports the rule with the greedy key on top.
    let report = request(
        ip_in(52, 1, 12),
        p.admin,
        "GET",
        "/protection",
        &[("authorization", &format!("Bearer {}", p.token))],
        "",
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&report.body).unwrap();
    let rule = &v["rate_based_rules"][0];
    assert_eq!(rule["blocked"], 3, "{v}");
    assert_eq!(rule["top_keys"][0]["key"], greedy.to_string(), "{v}");
}

#[tokio::test]
async fn a_client_spreading_over_three_pops_is_still_limited() {
    let oa = SocketAddr::new(ip_in(53, 200, 2), 80);
    let (calls, _o) = echo_origin(oa).await;
    let edges = "[[edge]]\nname = \"one\"\nlocation = { lat = 0, lon = 0 }\n\
                 [[edge]]\nname = \"two\"\nlocation = { lat = 1, lon = 1 }\n\
                 [[edge]]\nname = \"three\"\nlocation = { lat = 2, lon = 2 }\n";
    let rule = "[[distribution.rate_based_rule]]\nname = \"per-ip\"\nlimit = 30\nwindow = \"10s\"\nkey = [\"ip\"]\naction = \"block\"\n";
    let text = deployment(53, oa, edges, rule);
    let (pops, _stops, state) = start_pops(&text, "spread").await;
    assert_eq!(pops.len(), 3);
    // 90 requests over 4.5 s, round robin: each PoP alone would admit 30, so 90 in all.
    let client = ip_in(53, 250, 9);
    let mut admitted = 0;
    let mut refused = 0;
    let start = tokio::time::Instant::now();
    for i in 0..90u32 {
        tokio::time::sleep_until(start + Duration::from_millis(50) * i).await;
        let got = request(client, pops[i as usize % 3], "GET", "/x", &[], "").await;
        match got.status.as_u16() {
            201 => admitted += 1,
            429 => refused += 1,
            s => panic!("unexpected status {s}: {:?}", got.body),
        }
    }
    // The bound (meridian_protect::rate): limit + (P-1)·r·d/P with r = 20/s and d = the
    // 500 ms share interval plus transit: about 37. 45 leaves room for a slow machine, and
    // is far from the 90 that counting per PoP alone would admit.
    eprintln!("spread over three PoPs: {admitted} of 90 admitted (limit 30)");
    assert!(admitted >= 30, "the limit itself is admitted: {admitted}");
    assert!(
        admitted <= 45,
        "shared counts limit the spread client: {admitted} admitted"
    );
    assert_eq!(admitted + refused, 90);
    assert_eq!(calls.load(Ordering::SeqCst), admitted);
    let _ = std::fs::remove_dir_all(&state);
}

/// A one-region deployment on 127.`block`/16 whose PoPs and client locations are `tables`
/// and whose distribution serves origin group `o` (`origin`) with `distribution` added.
fn deployment(block: u8, origin: SocketAddr, tables: &str, distribution: &str) -> String {
    format!(
        r#"[deployment]
name = "protect"
zone = "protect.test"
[network]
subnet = "127.{block}.0.0/16"
[[region]]
name = "r1"
primary = true
location = {{ lat = 0, lon = 0 }}
azs = ["r1a"]
{tables}
[dns]
servers = 0
[distribution]
[[distribution.origin_group]]
name = "o"
members = ["http://{origin}"]
{distribution}"#
    )
}

/// Starts every PoP of a config (plain HTTP), waits until each accepts connections, and
/// returns their viewer addresses, what keeps them running, and their state dir.
async fn start_pops(
    text: &str,
    name: &str,
) -> (
    Vec<SocketAddr>,
    Vec<tokio::sync::oneshot::Sender<()>>,
    std::path::PathBuf,
) {
    let cfg = meridian_config::Config::parse(text, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    let state = key_dir(name);
    let mut stops = Vec::new();
    let mut pops = Vec::new();
    for node in cfg
        .nodes()
        .into_iter()
        .filter(|n| n.role == meridian_config::Role::Edge)
    {
        let mut opts = meridian_edge::EdgeOptions::from_config(&cfg, &node, &state).unwrap();
        opts.https = None;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(meridian_edge::run(opts, async {
            let _ = rx.await;
        }));
        stops.push(tx);
        pops.push(node.address);
    }
    for a in &pops {
        let a = *a;
        eventually("the PoP starts", Duration::from_secs(20), || async move {
            tokio::net::TcpStream::connect(a).await.is_ok()
        })
        .await;
    }
    (pops, stops, state)
}

#[tokio::test]
async fn geo_restriction_admits_only_the_listed_countries() {
    let oa = SocketAddr::new(ip_in(54, 199, 2), 80);
    let (calls, _o) = echo_origin(oa).await;
    let places = r#"[[edge]]
name = "one"
location = { lat = 0, lon = 0 }
[[client_location]]
name = "frankfurt"
location = { lat = 50.1, lon = 8.7 }
country = "DE"
[[client_location]]
name = "new-york"
location = { lat = 40.7, lon = -74.0 }
country = "US"
"#;
    let geo =
        "[distribution.geo_restriction]\nrestriction_type = \"whitelist\"\nlocations = [\"DE\"]\n";
    let text = deployment(54, oa, places, geo);
    let (pops, _stops, state) = start_pops(&text, "geo").await;
    // Client locations send from 127.54.200+i.0/24, in config order.
    let german = request(ip_in(54, 200, 5), pops[0], "GET", "/x", &[], "").await;
    assert_eq!(german.status, 201);
    let american = request(ip_in(54, 201, 5), pops[0], "GET", "/x", &[], "").await;
    assert_eq!(american.status, 403, "a listed country only");
    let unknown = request(ip_in(54, 250, 5), pops[0], "GET", "/x", &[], "").await;
    assert_eq!(
        unknown.status, 403,
        "an unknown country fails an allow list, as CloudFront"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let _ = std::fs::remove_dir_all(&state);
}

/// A JWKS file with one ES256 key and one HS256 secret.
fn write_jwks(path: &std::path::Path, es: &SigningKey, es_kid: &str, hs: &SigningKey) {
    let keys = json!({ "keys": [public_jwk(es, es_kid).unwrap(), public_jwk(hs, "hs").unwrap()] });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, keys.to_string()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn only_valid_tokens_pass_and_a_rotated_jwks_takes_effect_without_a_restart() {
    let dir = key_dir("jwt");
    let jwks = dir.join("jwks.json");
    let es = SigningKey::Es256 {
        pkcs8: generate_es256(),
    };
    let hs = SigningKey::Hs256(b"0123456789abcdef0123456789abcdef".to_vec());
    write_jwks(&jwks, &es, "k1", &hs);
    let oa = SocketAddr::new(ip_in(52, 2, 2), 80);
    let (calls, _o) = echo_origin(oa).await;
    let p = pop_in(
        52,
        2,
        &[format!("http://{oa}")],
        &format!(
            r#"[[distribution.jwt_authorizer]]
name = "users"
jwks = "{}"
issuer = "https://auth.test"
audiences = ["api"]
leeway = "5s"
forward_claims = {{ sub = "x-user" }}
token_cookie = "session"

[[distribution.origin_request_policy]]
name = "everything"
headers = "all"

[[distribution.behavior]]
path_pattern = "/me/*"
origin_group = "o"
jwt_authorizer = "users"

[[distribution.behavior]]
path_pattern = "/open/*"
origin_group = "o"
origin_request_policy = "everything"
"#,
            jwks.display()
        ),
    )
    .await;
    let now = unix_now();
    let claims = |exp: u64, aud: &str| json!({ "sub": "mei", "iss": "https://auth.test", "aud": aud, "exp": exp });
    let valid = sign(&es, Some("k1"), &claims(now + 300, "api")).unwrap();
    let with_hs = sign(&hs, Some("hs"), &claims(now + 300, "api")).unwrap();
    let viewer = ip_in(52, 2, 10);
    let call = |token: String| async move {
        let auth = format!("Bearer {token}");
        request(
            viewer,
            p.http,
            "GET",
            "/me/portfolio",
            &[("authorization", &auth), ("x-user", "forged")],
            "",
        )
        .await
    };
    let ok = call(valid.clone()).await;
    assert_eq!(ok.status, 201, "{:?}", ok.body);
    let seen: serde_json::Value = serde_json::from_slice(&ok.body).unwrap();
    assert_eq!(
        seen["user"], "mei",
        "the verified sub replaces the viewer's own header"
    );
    assert_eq!(call(with_hs).await.status, 201, "HS256 from the same JWKS");
    let before = calls.load(Ordering::SeqCst);

    let other = SigningKey::Es256 {
        pkcs8: generate_es256(),
    };
    let mut parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
    let tampered_payload = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut c: serde_json::Value =
            serde_json::from_slice(&b64.decode(&parts[1]).unwrap()).unwrap();
        c["sub"] = json!("admin");
        parts[1] = b64.encode(c.to_string());
        parts.join(".")
    };
    let none = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(claims(now + 300, "api").to_string())
        )
    };
    let refused = [
        (
            "expired",
            sign(&es, Some("k1"), &claims(now - 60, "api")).unwrap(),
            "expired",
        ),
        (
            "wrong audience",
            sign(&es, Some("k1"), &claims(now + 300, "other")).unwrap(),
            "audience",
        ),
        (
            "wrong key",
            sign(&other, Some("k1"), &claims(now + 300, "api")).unwrap(),
            "signature",
        ),
        ("alg none", none, "algorithm"),
        ("tampered payload", tampered_payload, "signature"),
        ("malformed", "not.a-token".to_owned(), "malformed"),
    ];
    let reasons: Vec<&str> = refused.iter().map(|r| r.2).collect();
    for (what, token, _) in refused {
        let r = call(token).await;
        assert_eq!(r.status, 401, "{what}");
        assert!(
            r.h("www-authenticate").starts_with("Bearer"),
            "{what}: {:?}",
            r.headers
        );
        assert!(r.h("www-authenticate").contains("invalid_token"), "{what}");
    }
    // Each refusal is counted under its reason, for the security dashboard.
    let metrics = get(p.admin, "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    for reason in reasons {
        assert!(
            text.lines()
                .any(|l| l.contains("edge_auth_failures")
                    && l.contains(&format!("reason=\"{reason}\""))),
            "{reason} not counted:\n{text}"
        );
    }
    // One credential only: two Authorization headers, or one that is not Bearer, never
    // fall back to another token.
    let auth = format!("Bearer {valid}");
    let two = [
        ("authorization", auth.as_str()),
        ("authorization", "Bearer forged"),
    ];
    assert_eq!(
        request(viewer, p.http, "GET", "/me/portfolio", &two, "")
            .await
            .status,
        401
    );
    let cookie = format!("session={valid}");
    let basic = [
        ("authorization", "Basic bWVpOnB3"),
        ("cookie", cookie.as_str()),
    ];
    assert_eq!(
        request(viewer, p.http, "GET", "/me/portfolio", &basic, "")
            .await
            .status,
        401
    );
    let missing = request(viewer, p.http, "GET", "/me/portfolio", &[], "").await;
    assert_eq!(missing.status, 401);
    assert!(
        !missing.h("www-authenticate").contains("error="),
        "no token: no error code (RFC 6750)"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "refused requests never reach the origin"
    );

    // A claim header only a verified token sets: forged on a behavior without the
    // authorizer, it never reaches the origin.
    let open = request(viewer, p.http, "GET", "/open/x", &[("x-user", "admin")], "").await;
    let seen: serde_json::Value = serde_json::from_slice(&open.body).unwrap();
    assert_eq!(seen["user"], "", "{seen}");

    // Tokens in a cookie: one user's answer is never another's, even when it is cacheable.
    let li = sign(
        &es,
        Some("k1"),
        &json!({ "sub": "li", "iss": "https://auth.test", "aud": "api", "exp": now + 300 }),
    )
    .unwrap();
    for (user, token) in [("mei", &valid), ("li", &li)] {
        let c = format!("session={token}");
        let r = request(
            viewer,
            p.http,
            "GET",
            "/me/cacheable",
            &[("cookie", &c)],
            "",
        )
        .await;
        let seen: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(seen["user"], user, "{seen}");
    }

    // Rotation: a new key replaces k1 in the file; the PoP follows without a restart.
    let es2 = SigningKey::Es256 {
        pkcs8: generate_es256(),
    };
    write_jwks(&jwks, &es2, "k2", &hs);
    let fresh = sign(&es2, Some("k2"), &claims(now + 300, "api")).unwrap();
    eventually(
        "the rotated key is admitted",
        Duration::from_secs(10),
        || {
            let t = fresh.clone();
            async move { call(t).await.status == 201 }
        },
    )
    .await;
    assert_eq!(
        call(valid).await.status,
        401,
        "the retired key no longer works"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn signed_urls_and_cookies_made_as_cloudfront_signs_them() {
    let dir = key_dir("signed");
    let public = dir.join("signer.pub.pem");
    std::fs::write(&public, RSA_PUBLIC).unwrap();
    let oa = SocketAddr::new(ip_in(52, 3, 2), 80);
    let (calls, _o) = echo_origin(oa).await;
    let p = pop_in(
        52,
        3,
        &[format!("http://{oa}")],
        &format!(
            r#"[[distribution.key_group]]
name = "signers"
[[distribution.key_group.public_key]]
id = "K2JCJMDEHXQW5F"
file = "{}"

[[distribution.behavior]]
path_pattern = "/private/*"
origin_group = "o"
trusted_key_groups = ["signers"]
"#,
            public.display()
        ),
    )
    .await;
    use meridian_protect::signed_url::{
        sign_canned, sign_cookies, sign_cookies_canned, CustomPolicy,
    };
    let viewer = ip_in(52, 3, 10);
    let base = format!("http://{}", "edge.test");
    let get = |path: String, cookie: Option<String>| async move {
        let mut h: Vec<(&str, String)> = Vec::new();
        if let Some(c) = cookie {
            h.push(("cookie", c));
        }
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        request(viewer, p.http, "GET", &path, &h, "").await
    };
    let signed = sign_canned(
        &format!("{base}/private/report.pdf?v=2"),
        unix_now() + 300,
        "K2JCJMDEHXQW5F",
        RSA_PRIVATE,
    )
    .unwrap();
    let path = signed.strip_prefix(&base).unwrap().to_owned();
    let ok = get(path.clone(), None).await;
    assert_eq!(ok.status, 201, "{:?}", ok.body);
    let seen: serde_json::Value = serde_json::from_slice(&ok.body).unwrap();
    assert_eq!(
        seen["uri"], "/private/report.pdf?v=2",
        "the origin never sees the signing parameters"
    );

    let expired = sign_canned(
        &format!("{base}/private/report.pdf"),
        unix_now() - 10,
        "K2JCJMDEHXQW5F",
        RSA_PRIVATE,
    )
    .unwrap();
    let unknown = sign_canned(
        &format!("{base}/private/report.pdf"),
        unix_now() + 300,
        "KUNKNOWN",
        RSA_PRIVATE,
    )
    .unwrap();
    let tampered = path.replace("report.pdf", "salaries.pdf");
    let before = calls.load(Ordering::SeqCst);
    for (what, p) in [
        ("expired", expired.strip_prefix(&base).unwrap().to_owned()),
        (
            "unknown key id",
            unknown.strip_prefix(&base).unwrap().to_owned(),
        ),
        ("tampered", tampered),
        ("unsigned", "/private/report.pdf".to_owned()),
    ] {
        assert_eq!(get(p, None).await.status, 403, "{what}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), before);

    // Signed cookies with a custom policy: a wildcard resource, only this viewer's address.
    let policy = CustomPolicy {
        resource: Some(format!("{base}/private/*")),
        date_less_than: unix_now() + 300,
        date_greater_than: None,
        source_ip: Some(format!("{viewer}/32")),
    };
    let cookie = |pairs: Vec<(&'static str, String)>| {
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let jar = cookie(sign_cookies(&policy, "K2JCJMDEHXQW5F", RSA_PRIVATE).unwrap());
    assert_eq!(
        get("/private/a/b.pdf".into(), Some(jar.clone()))
            .await
            .status,
        201
    );
    assert_eq!(
        get("/public-not-covered".into(), Some(jar.clone()))
            .await
            .status,
        201,
        "behaviors without key groups ignore cookies"
    );
    let elsewhere = CustomPolicy {
        source_ip: Some("192.0.2.0/24".into()),
        ..policy.clone()
    };
    let wrong_ip = cookie(sign_cookies(&elsewhere, "K2JCJMDEHXQW5F", RSA_PRIVATE).unwrap());
    assert_eq!(
        get("/private/a/b.pdf".into(), Some(wrong_ip)).await.status,
        403
    );
    let canned = cookie(
        sign_cookies_canned(
            &format!("{base}/private/one.pdf"),
            unix_now() + 300,
            "K2JCJMDEHXQW5F",
            RSA_PRIVATE,
        )
        .unwrap(),
    );
    assert_eq!(
        get("/private/one.pdf".into(), Some(canned.clone()))
            .await
            .status,
        201
    );
    assert_eq!(
        get("/private/two.pdf".into(), Some(canned)).await.status,
        403,
        "a canned policy names one URL"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn rules_block_by_header_and_by_an_oversized_body() {
    let oa = SocketAddr::new(ip_in(52, 4, 2), 80);
    let (calls, _o) = echo_origin(oa).await;
    let p = pop_in(
        52,
        4,
        &[format!("http://{oa}")],
        r#"body_inspection_limit = "64B"
[[distribution.rule]]
name = "office"
action = "allow"
[[distribution.rule.match]]
field = "ip"
operator = "ip_set"
values = ["127.52.4.20/32"]

[[distribution.rule]]
name = "bots"
action = "block"
status = 403
body = "no bots\n"
labels = ["bot"]
[[distribution.rule.match]]
field = "header:user-agent"
operator = "regex"
values = ["(?i)evilbot"]

[[distribution.rule]]
name = "sqli"
action = "block"
status = 406
[[distribution.rule.match]]
field = "body"
operator = "contains"
values = ["DROP TABLE"]
oversize = "match"

[[distribution.rule]]
name = "watch-admin"
action = "count"
[[distribution.rule.match]]
field = "path"
operator = "prefix"
values = ["/admin"]
"#,
    )
    .await;
    let viewer = ip_in(52, 4, 10);
    let office = ip_in(52, 4, 20);
    let bot = request(
        viewer,
        p.http,
        "GET",
        "/x",
        &[("user-agent", "EvilBot/2")],
        "",
    )
    .await;
    assert_eq!(
        (bot.status.as_u16(), &bot.body[..]),
        (403, &b"no bots\n"[..])
    );
    assert_eq!(
        request(
            office,
            p.http,
            "GET",
            "/x",
            &[("user-agent", "EvilBot/2")],
            ""
        )
        .await
        .status,
        201,
        "allow ends the rules"
    );
    assert_eq!(
        request(
            viewer,
            p.http,
            "POST",
            "/orders",
            &[],
            "x; DROP TABLE orders"
        )
        .await
        .status,
        406
    );
    let long = "a".repeat(100);
    assert_eq!(
        request(viewer, p.http, "POST", "/orders", &[], &long)
            .await
            .status,
        406,
        "oversize = match"
    );
    assert_eq!(
        request(viewer, p.http, "POST", "/orders", &[], "{\"qty\":1}")
            .await
            .status,
        201
    );
    assert_eq!(
        request(viewer, p.http, "GET", "/admin/x", &[], "")
            .await
            .status,
        201,
        "count only records"
    );
    let metrics = get(p.admin, "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    let line = text
        .lines()
        .find(|l| {
            l.contains("edge_protection_requests")
                && l.contains("rule=\"watch-admin\"")
                && l.contains("action=\"counted\"")
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.ends_with(" 1"), "{line}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn duplicates_with_one_idempotency_key_reach_the_origin_once() {
    let oa = SocketAddr::new(ip_in(52, 5, 2), 80);
    let (calls, _o) = echo_origin(oa).await;
    let p = pop_in(
        52,
        5,
        &[format!("http://{oa}")],
        r#"[[distribution.behavior]]
path_pattern = "/slow/*"
origin_group = "o"
allowed_methods = ["GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"]
idempotency_window = "1m"
"#,
    )
    .await;
    let viewer = ip_in(52, 5, 10);
    let body = r#"{"symbol":"AAPL","qty":3}"#;
    let key = [("idempotency-key", "order-7f3a")];
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            tokio::spawn(async move {
                request(viewer, p.http, "POST", "/slow/orders", &key, body).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "ten concurrent duplicates, one origin call"
    );
    assert!(
        answers
            .iter()
            .all(|a| a.status == 201 && a.body == answers[0].body),
        "ten identical answers"
    );
    let replay = request(viewer, p.http, "POST", "/slow/orders", &key, body).await;
    assert_eq!(replay.body, answers[0].body);
    assert_eq!(replay.h("idempotent-replayed"), "true");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a later replay makes no origin call"
    );
    let changed = request(
        viewer,
        p.http,
        "POST",
        "/slow/orders",
        &key,
        r#"{"symbol":"AAPL","qty":300}"#,
    )
    .await;
    assert_eq!(changed.status, 422);
    let other = request(
        viewer,
        p.http,
        "POST",
        "/slow/orders",
        &[("idempotency-key", "order-8")],
        body,
    )
    .await;
    assert_eq!(other.status, 201);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // The same key from another user (another session cookie) is that user's own request.
    let theirs = [
        ("idempotency-key", "order-7f3a"),
        ("cookie", "session=someone-else"),
    ];
    let r = request(viewer, p.http, "POST", "/slow/orders", &theirs, body).await;
    assert_eq!((r.status.as_u16(), r.h("idempotent-replayed")), (201, ""));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}
