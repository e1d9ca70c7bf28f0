//! Authentication through a running PoP: JWT authorizers (valid, expired, wrong audience,
//! wrong key, `alg: none`, tampered, malformed; claim headers; tokens in cookies; JWKS
//! rotation without a restart) and CloudFront signed URLs and cookies. Addresses: 127.52/16.

mod common;

use common::protect::*;
use common::*;
use meridian_protect::jwt::{generate_es256, public_jwk, sign, SigningKey};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

const RSA_PRIVATE: &str = include_str!("../../meridian-protect/tests/fixtures/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../../meridian-protect/tests/fixtures/rsa_public.pem");

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
        (
            // The origin reads the user from the forwarded `sub`: a token without one
            // would reach it as nobody's in particular.
            "no sub to forward",
            sign(
                &es,
                Some("k1"),
                &json!({ "iss": "https://auth.test", "aud": "api", "exp": now + 300 }),
            )
            .unwrap(),
            "missing_claim",
        ),
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
