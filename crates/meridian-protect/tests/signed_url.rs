//! CloudFront signed URLs and cookies end to end through the public API. The SHA-1
//! vectors are signatures the openssl CLI made as CloudFront's guide shows, not this crate.

mod common;

use common::*;
use std::net::IpAddr;

use meridian_protect::signed_url::{
    self, CustomPolicy, PublicKeys, SignedRequest, Source, MAX_COOKIE_LEN, MAX_POLICY_LEN,
};

// ------------------------------------------------------- signed URLs

fn vectors() -> std::collections::HashMap<String, String> {
    fixture("cloudfront_vectors.txt")
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

fn rsa_keys(id: &str) -> PublicKeys {
    let mut keys = PublicKeys::new();
    keys.insert_pem(id, &fixture("rsa_public.pem"))
        .expect("public key");
    keys
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn req<'a>(
    url: &'a str,
    query: Option<&'a str>,
    cookies: &'a [&'a str],
    viewer: &str,
) -> SignedRequest<'a> {
    SignedRequest {
        url,
        query,
        cookie_headers: cookies,
        viewer_ip: ip(viewer),
    }
}

const IMAGE: &str = "https://d111111abcdef8.cloudfront.net/images/image.jpg";

fn sreason(r: Result<signed_url::Verified, signed_url::SignedError>) -> &'static str {
    r.expect_err("must be refused").reason()
}

/// Why `request` is refused with `keys` at `secs`.
fn refusal(request: SignedRequest<'_>, keys: &PublicKeys, secs: u64) -> &'static str {
    sreason(signed_url::verify(&request, keys, at(secs)))
}

#[test]
fn openssl_canned_sha1_vector_verifies_and_tampering_fails() {
    let v = vectors();
    let q = v["canned_sha1_query"].as_str();
    let keys = rsa_keys("K2JCJMDEHXQW5F");
    let ok = signed_url::verify(&req(IMAGE, Some(q), &[], "198.51.100.1"), &keys, at(NOW))
        .expect("valid");
    assert_eq!(ok.source, Source::Url);
    assert!(!ok.custom);
    assert_eq!(ok.hash, signed_url::HashAlgorithm::Sha1);
    assert_eq!(ok.expires, at(4_102_444_800));

    // The same key as PKCS#1 PEM verifies the same signature.
    let mut pkcs1 = PublicKeys::new();
    pkcs1
        .insert_pem("K2JCJMDEHXQW5F", &fixture("rsa_public_pkcs1.pem"))
        .expect("pkcs1");
    assert!(signed_url::verify(&req(IMAGE, Some(q), &[], "198.51.100.1"), &pkcs1, at(NOW)).is_ok());

    let other = "https://d111111abcdef8.cloudfront.net/images/other.jpg";
    assert_eq!(
        refusal(req(other, Some(q), &[], "198.51.100.1"), &keys, NOW),
        "signature"
    );
    let q2 = q.replace("size=large", "size=small");
    assert_eq!(
        refusal(req(IMAGE, Some(&q2), &[], "198.51.100.1"), &keys, NOW),
        "signature"
    );
    let q3 = q.replace("Expires=4102444800", "Expires=4102444801");
    assert_eq!(
        refusal(req(IMAGE, Some(&q3), &[], "198.51.100.1"), &keys, NOW),
        "signature"
    );
    let sig_at = q.find("Signature=").expect("sig") + "Signature=".len();
    let mut q4 = q.to_string();
    let flipped = if &q4[sig_at + 5..sig_at + 6] == "A" {
        "B"
    } else {
        "A"
    };
    q4.replace_range(sig_at + 5..sig_at + 6, flipped);
    assert_eq!(
        refusal(req(IMAGE, Some(&q4), &[], "198.51.100.1"), &keys, NOW),
        "signature"
    );
    assert_eq!(
        refusal(
            req(IMAGE, Some(q), &[], "198.51.100.1"),
            &keys,
            4_102_444_800
        ),
        "expired"
    );
    assert_eq!(
        sreason(signed_url::verify(
            &req(IMAGE, Some(q), &[], "198.51.100.1"),
            &rsa_keys("KOTHER"),
            at(NOW)
        )),
        "unknown_key"
    );
    // A percent-encoded copy of the same query is the same signature.
    let encoded = q
        .replace('~', "%7E")
        .replace("Key-Pair-Id", "Key%2DPair%2DId");
    assert!(signed_url::verify(
        &req(IMAGE, Some(&encoded), &[], "198.51.100.1"),
        &keys,
        at(NOW)
    )
    .is_ok());
    assert_eq!(
        signed_url::strip_signing_params(q).as_deref(),
        Some("size=large")
    );
}

#[test]
fn openssl_custom_sha1_vector_checks_resource_ip_and_dates() {
    let v = vectors();
    let q = v["custom_sha1_query"].as_str();
    let keys = rsa_keys("K2JCJMDEHXQW5F");
    let video = "https://d111111abcdef8.cloudfront.net/videos/2024/intro.mp4";
    let ok =
        signed_url::verify(&req(video, Some(q), &[], "192.0.2.77"), &keys, at(NOW)).expect("valid");
    assert!(ok.custom);
    assert_eq!(
        refusal(req(video, Some(q), &[], "192.0.3.77"), &keys, NOW),
        "ip"
    );
    let mov = "https://d111111abcdef8.cloudfront.net/videos/2024/intro.mov";
    assert_eq!(
        refusal(req(mov, Some(q), &[], "192.0.2.77"), &keys, NOW),
        "resource"
    );
    assert_eq!(
        refusal(req(video, Some(q), &[], "192.0.2.77"), &keys, 1_600_000_000),
        "not_yet_valid"
    );
    // An extra query parameter is part of the URL the wildcard is matched against.
    let with_q = format!("{q}&quality=hd");
    assert!(signed_url::verify(
        &req(video, Some(&with_q), &[], "192.0.2.77"),
        &keys,
        at(NOW)
    )
    .is_err());
}

#[test]
fn openssl_sha256_and_ecdsa_vectors_verify() {
    let v = vectors();
    let keys = rsa_keys("K2JCJMDEHXQW5F");
    let url = v["canned_sha256_url"].as_str();
    let q = v["canned_sha256_query"].as_str();
    let ok =
        signed_url::verify(&req(url, Some(q), &[], "198.51.100.1"), &keys, at(NOW)).expect("valid");
    assert_eq!(ok.hash, signed_url::HashAlgorithm::Sha256);
    let as_sha1 = q.replace("&Hash-Algorithm=SHA256", "");
    assert_eq!(
        refusal(req(url, Some(&as_sha1), &[], "198.51.100.1"), &keys, NOW),
        "signature"
    );

    let mut ec = PublicKeys::new();
    ec.insert_pem("KECDSAEXAMPLE", &fixture("ec_public.pem"))
        .expect("ec key");
    let cookie = v["ecdsa_cookie"].as_str();
    let any_url = "https://d111111abcdef8.cloudfront.net/anything/at/all";
    let ok = signed_url::verify(&req(any_url, None, &[cookie], "203.0.113.9"), &ec, at(NOW))
        .expect("valid");
    assert_eq!(ok.source, Source::Cookie);
    assert_eq!(ok.key_pair_id, "KECDSAEXAMPLE");
}

fn private_pem() -> String {
    fixture("rsa_private.pem")
}

#[test]
fn our_signed_urls_verify_canned_and_custom() {
    let keys = rsa_keys("KTEST");
    let url = "https://cdn.example.com/a/b.txt?v=2";
    let signed = signed_url::sign_canned(url, NOW + 60, "KTEST", &private_pem()).expect("sign");
    let (base, query) = signed.split_once('?').expect("query");
    assert!(query.starts_with("v=2&Expires="));
    assert!(signed_url::verify(&req(base, Some(query), &[], "10.0.0.1"), &keys, at(NOW)).is_ok());
    assert_eq!(
        refusal(req(base, Some(query), &[], "10.0.0.1"), &keys, NOW + 60),
        "expired"
    );

    let policy = CustomPolicy {
        resource: Some("https://cdn.example.com/a/*".into()),
        date_less_than: NOW + 60,
        date_greater_than: Some(NOW - 60),
        source_ip: Some("2001:db8::/32".into()),
    };
    let signed = signed_url::sign_custom(
        "https://cdn.example.com/a/c.txt",
        &policy,
        "KTEST",
        &private_pem(),
    )
    .expect("sign");
    let (base, query) = signed.split_once('?').expect("query");
    assert!(
        signed_url::verify(&req(base, Some(query), &[], "2001:db8::7"), &keys, at(NOW)).is_ok()
    );
    assert_eq!(
        refusal(req(base, Some(query), &[], "10.0.0.1"), &keys, NOW),
        "ip"
    );
    let elsewhere = "https://cdn.example.com/b/c.txt";
    assert_eq!(
        refusal(req(elsewhere, Some(query), &[], "2001:db8::7"), &keys, NOW),
        "resource"
    );
    assert_eq!(signed_url::strip_signing_params(query), None);
}

#[test]
fn signed_cookies_work_and_url_parameters_take_precedence() {
    let keys = rsa_keys("KTEST");
    let page = "https://cdn.example.com/members/page.html";
    let cookies =
        signed_url::sign_cookies_canned(page, NOW + 60, "KTEST", &private_pem()).expect("sign");
    let header: String = cookies
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let header = format!("session=abc; {header}; theme=dark");
    let ok = signed_url::verify(&req(page, None, &[&header], "10.0.0.1"), &keys, at(NOW))
        .expect("valid");
    assert_eq!(ok.source, Source::Cookie);
    let other = "https://cdn.example.com/members/other.html";
    assert_eq!(
        refusal(req(other, None, &[&header], "10.0.0.1"), &keys, NOW),
        "signature"
    );

    // Custom policy cookies, split across two Cookie headers.
    let policy = CustomPolicy {
        resource: Some("https://cdn.example.com/members/*".into()),
        date_less_than: NOW + 60,
        date_greater_than: None,
        source_ip: None,
    };
    let cookies = signed_url::sign_cookies(&policy, "KTEST", &private_pem()).expect("sign");
    let first = format!("{}={}", cookies[0].0, cookies[0].1);
    let rest: String = cookies[1..]
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    assert!(signed_url::verify(
        &req(other, None, &[&first, &rest], "10.0.0.1"),
        &keys,
        at(NOW)
    )
    .is_ok());
    let outside = "https://cdn.example.com/public/x";
    assert_eq!(
        refusal(req(outside, None, &[&first, &rest], "10.0.0.1"), &keys, NOW),
        "resource"
    );

    // URL parameters win over valid cookies: a bad URL signature is refused.
    let bad_q = "Expires=1900000000&Signature=AAAA&Key-Pair-Id=KTEST";
    assert_eq!(
        refusal(
            req(other, Some(bad_q), &[&first, &rest], "10.0.0.1"),
            &keys,
            NOW
        ),
        "signature"
    );
    assert_eq!(
        refusal(req(other, Some("a=1"), &[], "10.0.0.1"), &keys, NOW),
        "missing"
    );
    assert_eq!(
        refusal(
            req(other, None, &["CloudFront-Key-Pair-Id=KTEST"], "10.0.0.1"),
            &keys,
            NOW
        ),
        "malformed"
    );
}

#[test]
fn oversize_cookies_and_policies_are_too_large() {
    let keys = rsa_keys("KTEST");
    let url = "https://cdn.example.com/x";
    let huge = format!(
        "CloudFront-Policy={}; CloudFront-Signature=AAAA; CloudFront-Key-Pair-Id=KTEST",
        "A".repeat(MAX_POLICY_LEN + 1)
    );
    assert_eq!(
        refusal(req(url, None, &[&huge], "10.0.0.1"), &keys, NOW),
        "too_large"
    );
    let filler = format!("junk={}", "x".repeat(MAX_COOKIE_LEN));
    assert_eq!(
        refusal(req(url, None, &[&filler], "10.0.0.1"), &keys, NOW),
        "too_large"
    );
    let q = format!(
        "Policy={}&Signature=AAAA&Key-Pair-Id=KTEST",
        "A".repeat(MAX_POLICY_LEN + 1)
    );
    assert_eq!(
        refusal(req(url, Some(&q), &[], "10.0.0.1"), &keys, NOW),
        "too_large"
    );
    let q = format!("Expires=1&Signature={}&Key-Pair-Id=KTEST", "A".repeat(5000));
    assert_eq!(
        refusal(req(url, Some(&q), &[], "10.0.0.1"), &keys, NOW),
        "too_large"
    );
}
