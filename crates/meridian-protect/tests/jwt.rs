//! JWT verification end to end through the public API: HS256, RS256 and ES256, refusals
//! by reason, leeway, JWKS rotation and the verified-token cache. RSA keys are fixtures, so
//! nothing here generates RSA keys.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use meridian_protect::jwt::{
    self, Algorithm, Expectations, Jwks, JwksFile, JwtError, SigningKey, Verifier,
};
use serde_json::{json, Value};

// ---------------------------------------------------------------- JWT

fn hs_key() -> SigningKey {
    SigningKey::Hs256(b"a shared secret of decent length".to_vec())
}

fn rs_key() -> SigningKey {
    SigningKey::Rs256 {
        pkcs8: pem_der(&fixture("rsa_private.pem")),
    }
}

fn jwks_of(keys: &[(&SigningKey, &str)]) -> Value {
    let list: Vec<Value> = keys
        .iter()
        .map(|(k, kid)| jwt::public_jwk(k, kid).expect("jwk"))
        .collect();
    json!({ "keys": list })
}

fn parse_jwks(v: &Value) -> Jwks {
    Jwks::parse(v.to_string().as_bytes()).expect("jwks")
}

fn expect_all() -> Expectations {
    Expectations {
        issuer: Some("https://issuer.example".into()),
        audiences: vec!["api".into(), "admin".into()],
        leeway: Duration::from_secs(30),
        algorithms: vec![Algorithm::Hs256, Algorithm::Rs256, Algorithm::Es256],
    }
}

fn claims(exp: u64) -> Value {
    json!({"sub": "user-1", "iss": "https://issuer.example", "aud": "api", "exp": exp, "iat": NOW, "roles": ["r1", "r2"]})
}

fn reason(r: Result<impl std::fmt::Debug, JwtError>) -> &'static str {
    r.expect_err("must be refused").reason()
}

#[test]
fn hs256_rs256_es256_tokens_are_admitted() {
    let es = SigningKey::Es256 {
        pkcs8: jwt::generate_es256(),
    };
    let (hs, rs) = (hs_key(), rs_key());
    let keys = parse_jwks(&jwks_of(&[(&hs, "h"), (&rs, "r"), (&es, "e")]));
    assert_eq!(keys.len(), 3);
    for (key, kid) in [
        (&hs, Some("h")),
        (&rs, Some("r")),
        (&es, Some("e")),
        (&es, None),
        (&rs, None),
    ] {
        let token = jwt::sign(key, kid, &claims(NOW + 600)).expect("sign");
        let c = jwt::verify(&token, &keys, &expect_all(), at(NOW))
            .unwrap_or_else(|e| panic!("{:?} {kid:?}: {e}", key.algorithm()));
        assert_eq!(c.subject(), Some("user-1"));
        assert_eq!(c.get("roles").as_deref(), Some("r1,r2"));
        assert_eq!(c.get("exp"), Some((NOW + 600).to_string()));
        assert_eq!(c.expires_at(), Some(at(NOW + 600)));
    }
}

#[test]
fn claims_that_do_not_hold_are_refused() {
    let hs = hs_key();
    let keys = parse_jwks(&jwks_of(&[(&hs, "h")]));
    let ex = expect_all();
    let tok = |c: Value| jwt::sign(&hs, Some("h"), &c).expect("sign");

    assert_eq!(
        reason(jwt::verify(&tok(claims(NOW - 31)), &keys, &ex, at(NOW))),
        "expired"
    );
    let mut c = claims(NOW + 60);
    c["aud"] = json!("someone-else");
    assert_eq!(
        reason(jwt::verify(&tok(c.clone()), &keys, &ex, at(NOW))),
        "audience"
    );
    c["aud"] = json!(["x", "admin"]);
    assert!(jwt::verify(&tok(c.clone()), &keys, &ex, at(NOW)).is_ok());
    c.as_object_mut().expect("object").remove("aud");
    assert_eq!(
        reason(jwt::verify(&tok(c.clone()), &keys, &ex, at(NOW))),
        "audience"
    );
    let no_aud = Expectations {
        audiences: vec![],
        ..expect_all()
    };
    assert!(jwt::verify(&tok(c), &keys, &no_aud, at(NOW)).is_ok());

    let mut c = claims(NOW + 60);
    c["iss"] = json!("https://evil.example");
    assert_eq!(reason(jwt::verify(&tok(c), &keys, &ex, at(NOW))), "issuer");

    let mut c = claims(NOW + 60);
    c.as_object_mut().expect("object").remove("exp");
    assert_eq!(
        reason(jwt::verify(&tok(c), &keys, &ex, at(NOW))),
        "malformed"
    );
}

#[test]
fn leeway_works_both_ways() {
    let hs = hs_key();
    let keys = parse_jwks(&jwks_of(&[(&hs, "h")]));
    let ex = expect_all(); // 30 s leeway
    let tok = |c: Value| jwt::sign(&hs, None, &c).expect("sign");
    // Expired 20 s ago: inside the leeway. 40 s ago: outside.
    assert!(jwt::verify(&tok(claims(NOW - 20)), &keys, &ex, at(NOW)).is_ok());
    assert_eq!(
        reason(jwt::verify(&tok(claims(NOW - 40)), &keys, &ex, at(NOW))),
        "expired"
    );
    // Not before 20 s from now: inside the leeway. 40 s: not yet valid.
    let mut c = claims(NOW + 600);
    c["nbf"] = json!(NOW + 20);
    assert!(jwt::verify(&tok(c.clone()), &keys, &ex, at(NOW)).is_ok());
    c["nbf"] = json!(NOW + 40);
    assert_eq!(
        reason(jwt::verify(&tok(c), &keys, &ex, at(NOW))),
        "not_yet_valid"
    );
    let strict = Expectations {
        leeway: Duration::ZERO,
        ..expect_all()
    };
    assert_eq!(
        reason(jwt::verify(&tok(claims(NOW - 1)), &keys, &strict, at(NOW))),
        "expired"
    );
    assert_eq!(
        reason(jwt::verify(&tok(claims(NOW)), &keys, &strict, at(NOW))),
        "expired"
    );
}

#[test]
fn wrong_key_and_tampering_are_refused() {
    let hs = hs_key();
    let other = SigningKey::Hs256(b"another secret, also long enough".to_vec());
    let keys = parse_jwks(&jwks_of(&[(&hs, "h")]));
    let ex = expect_all();
    let forged = jwt::sign(&other, Some("h"), &claims(NOW + 60)).expect("sign");
    assert_eq!(
        reason(jwt::verify(&forged, &keys, &ex, at(NOW))),
        "signature"
    );
    let unknown = jwt::sign(&hs, Some("nope"), &claims(NOW + 60)).expect("sign");
    assert_eq!(
        reason(jwt::verify(&unknown, &keys, &ex, at(NOW))),
        "unknown_key"
    );

    // Same signature, payload changed to another subject.
    let token = jwt::sign(&hs, Some("h"), &claims(NOW + 60)).expect("sign");
    let parts: Vec<&str> = token.split('.').collect();
    let mut c = claims(NOW + 60);
    c["sub"] = json!("admin");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(c.to_string()),
        parts[2]
    );
    assert_eq!(
        reason(jwt::verify(&tampered, &keys, &ex, at(NOW))),
        "signature"
    );

    // ES256 key with a valid ES256 signature from a different key.
    let es1 = SigningKey::Es256 {
        pkcs8: jwt::generate_es256(),
    };
    let es2 = SigningKey::Es256 {
        pkcs8: jwt::generate_es256(),
    };
    let keys = parse_jwks(&jwks_of(&[(&es1, "e")]));
    let t = jwt::sign(&es2, Some("e"), &claims(NOW + 60)).expect("sign");
    assert_eq!(reason(jwt::verify(&t, &keys, &ex, at(NOW))), "signature");
}

fn unsigned(header: Value, payload: Value, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

#[test]
fn alg_none_and_algorithm_confusion_are_refused() {
    let rs = rs_key();
    let keys = parse_jwks(&jwks_of(&[(&rs, "r")]));
    let none = unsigned(json!({"alg": "none"}), claims(NOW + 60), b"");
    assert_eq!(
        reason(jwt::verify(&none, &keys, &expect_all(), at(NOW))),
        "algorithm"
    );
    let none = format!("{}.", &none[..none.len() - 1]);
    assert_eq!(
        reason(jwt::verify(&none, &keys, &expect_all(), at(NOW))),
        "algorithm"
    );

    // An HS256 token whose HMAC key is the RSA public key (PEM text and DER both tried).
    let public_pem = fixture("rsa_public.pem");
    for secret in [public_pem.as_bytes().to_vec(), pem_der(&public_pem)] {
        let confused = SigningKey::Hs256(secret);
        let only_rs = Expectations {
            algorithms: vec![Algorithm::Rs256],
            ..expect_all()
        };
        let t = jwt::sign(&confused, Some("r"), &claims(NOW + 60)).expect("sign");
        assert_eq!(
            reason(jwt::verify(&t, &keys, &only_rs, at(NOW))),
            "algorithm"
        );
        // Even with HS256 allowed, an RSA key is never used as an HMAC secret.
        assert_eq!(
            reason(jwt::verify(&t, &keys, &expect_all(), at(NOW))),
            "algorithm"
        );
        let t = jwt::sign(&confused, None, &claims(NOW + 60)).expect("sign");
        assert_eq!(
            reason(jwt::verify(&t, &keys, &expect_all(), at(NOW))),
            "unknown_key"
        );
    }
    // An algorithm we do not allow, though the key would verify it.
    let only_es = Expectations {
        algorithms: vec![Algorithm::Es256],
        ..expect_all()
    };
    let t = jwt::sign(&rs, Some("r"), &claims(NOW + 60)).expect("sign");
    assert_eq!(
        reason(jwt::verify(&t, &keys, &only_es, at(NOW))),
        "algorithm"
    );
}

#[test]
fn malformed_and_oversize_tokens_are_refused() {
    let hs = hs_key();
    let keys = parse_jwks(&jwks_of(&[(&hs, "h")]));
    let ex = expect_all();
    let good = jwt::sign(&hs, Some("h"), &claims(NOW + 60)).expect("sign");
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.x"),
        format!("{}.{}.{}", parts[0], "*not*base64*", parts[2]),
        format!("{}.{}.{}", parts[0], parts[1], "%%%"),
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode("not json"),
            parts[1],
            parts[2]
        ),
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode("[1,2]"),
            parts[1],
            parts[2]
        ),
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT"}"#),
            parts[1],
            parts[2]
        ),
        "garbage".to_string(),
    ];
    for t in &cases {
        assert_eq!(
            reason(jwt::verify(t, &keys, &ex, at(NOW))),
            "malformed",
            "{t}"
        );
    }
    // A correctly signed payload that is not a JSON object.
    let t = {
        let head = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#);
        let body = URL_SAFE_NO_PAD.encode("[]");
        let key =
            ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"a shared secret of decent length");
        let sig = ring::hmac::sign(&key, format!("{head}.{body}").as_bytes());
        format!("{head}.{body}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    };
    assert_eq!(reason(jwt::verify(&t, &keys, &ex, at(NOW))), "malformed");

    let big = format!(
        "{}.{}.{}",
        parts[0],
        "A".repeat(jwt::MAX_TOKEN_LEN),
        parts[2]
    );
    assert_eq!(reason(jwt::verify(&big, &keys, &ex, at(NOW))), "too_large");
    assert_eq!(reason(jwt::verify("", &keys, &ex, at(NOW))), "missing");
}

#[test]
fn errors_speak_rfc_6750() {
    assert_eq!(
        JwtError::Missing.www_authenticate("meridian"),
        r#"Bearer realm="meridian""#
    );
    assert_eq!(
        JwtError::Signature.www_authenticate("meridian"),
        r#"Bearer realm="meridian", error="invalid_token", error_description="the token's signature is invalid""#
    );
    assert_eq!(jwt::bearer_token("bEaReR abc.def.ghi"), Some("abc.def.ghi"));
    assert_eq!(jwt::bearer_token("Basic abc"), None);
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "meridian-protect-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `body` and sets the modification time, so a change is seen however coarse the
/// file system's clock is.
fn write_with_mtime(path: &Path, body: &[u8], mtime: SystemTime) {
    std::fs::write(path, body).expect("write");
    let f = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open");
    f.set_modified(mtime).expect("set mtime");
}

#[test]
fn jwks_file_rotation_is_picked_up_and_a_corrupt_rewrite_keeps_the_old_keys() {
    let dir = TempDir::new("rotation");
    let path = dir.0.join("jwks.json");
    let es_old = SigningKey::Es256 {
        pkcs8: jwt::generate_es256(),
    };
    let es_new = SigningKey::Es256 {
        pkcs8: jwt::generate_es256(),
    };
    let t0 = SystemTime::now();
    write_with_mtime(
        &path,
        jwks_of(&[(&es_old, "old")]).to_string().as_bytes(),
        t0,
    );

    let verifier = Verifier::new(JwksFile::open(&path).expect("open"), expect_all());
    let now = SystemTime::now();
    let exp = now.duration_since(UNIX_EPOCH).expect("clock").as_secs() + 600;
    let old_token = jwt::sign(&es_old, Some("old"), &claims(exp)).expect("sign");
    let new_token = jwt::sign(&es_new, Some("new"), &claims(exp)).expect("sign");
    assert!(verifier.verify(&old_token, now).is_ok());
    assert_eq!(
        verifier.verify(&new_token, now).unwrap_err().reason(),
        "unknown_key"
    );
    let generation = verifier.jwks().generation();

    write_with_mtime(
        &path,
        jwks_of(&[(&es_new, "new")]).to_string().as_bytes(),
        t0 + Duration::from_secs(5),
    );
    // The file is looked at no more than once a second: wait that out, bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while verifier.jwks().generation() == generation {
        assert!(
            std::time::Instant::now() < deadline,
            "the rewrite was never picked up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(verifier.jwks().generation(), generation + 1);
    assert_eq!(
        verifier.verify(&old_token, now).unwrap_err().reason(),
        "unknown_key"
    );
    assert!(verifier.verify(&new_token, now).is_ok());

    write_with_mtime(&path, b"{\"keys\": [ oops", t0 + Duration::from_secs(10));
    assert!(verifier.jwks().refresh().is_err());
    assert!(verifier.jwks().last_error().is_some());
    assert_eq!(verifier.jwks().generation(), generation + 1);
    assert!(
        verifier.verify(&new_token, now).is_ok(),
        "old keys kept after a corrupt rewrite"
    );
    // The broken version is not re-read until the file changes again.
    assert_eq!(verifier.jwks().refresh(), Ok(false));
}

#[test]
fn a_cached_token_still_expires() {
    let dir = TempDir::new("cache");
    let path = dir.0.join("jwks.json");
    let rs = rs_key();
    std::fs::write(&path, jwks_of(&[(&rs, "r")]).to_string()).expect("write");
    let verifier = Verifier::new(JwksFile::open(&path).expect("open"), expect_all());
    let token = jwt::sign(&rs, Some("r"), &claims(NOW + 100)).expect("sign");
    let first = verifier.verify(&token, at(NOW)).expect("valid");
    let second = verifier
        .verify(&token, at(NOW + 50))
        .expect("valid, from the cache");
    assert!(
        std::sync::Arc::ptr_eq(&first, &second),
        "the second answer came from the cache"
    );
    assert_eq!(verifier.cached(), 1);
    assert_eq!(
        verifier.verify(&token, at(NOW + 131)).unwrap_err().reason(),
        "expired"
    );
    // A tampered token is not served from the cache of the good one.
    let mid = token.len() - 20;
    let flipped = if &token[mid..mid + 1] == "A" {
        "B"
    } else {
        "A"
    };
    let tampered = format!("{}{flipped}{}", &token[..mid], &token[mid + 1..]);
    assert_eq!(
        verifier.verify(&tampered, at(NOW)).unwrap_err().reason(),
        "signature"
    );

    fn send_sync<T: Send + Sync>(_: &T) {}
    send_sync(&verifier);
}

#[test]
fn jwks_refuses_a_broken_key_by_index() {
    let doc = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}]});
    let err = Jwks::parse(doc.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("key 0"), "{err}");
}

#[test]
fn the_verifier_cache_is_bounded_and_shared_across_threads() {
    let dir = TempDir::new("bounded");
    let path = dir.0.join("jwks.json");
    let hs = hs_key();
    std::fs::write(&path, jwks_of(&[(&hs, "h")]).to_string()).expect("write");
    let verifier = std::sync::Arc::new(Verifier::new(
        JwksFile::open(&path).expect("open"),
        expect_all(),
    ));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let verifier = verifier.clone();
            let hs = hs.clone();
            std::thread::spawn(move || {
                for i in 0..3_000u64 {
                    let mut c = claims(NOW + 600);
                    c["jti"] = json!(format!("{t}-{i}"));
                    let token = jwt::sign(&hs, Some("h"), &c).expect("sign");
                    let got = verifier.verify(&token, at(NOW)).expect("valid");
                    assert_eq!(got.get("jti"), Some(format!("{t}-{i}")));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let cached = verifier.cached();
    assert!(cached <= jwt::CACHE_CAPACITY, "{cached} entries");
    assert!(
        cached >= jwt::CACHE_CAPACITY / 2,
        "{cached} entries: the cache should be in use"
    );
}
