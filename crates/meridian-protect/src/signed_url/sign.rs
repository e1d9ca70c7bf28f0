//! Making signed URLs and cookies, for tests and for a `sign-url` command.
//!
//! ring signs RSA with SHA-256 but not with SHA-1, so what we make carries
//! `Hash-Algorithm=SHA256` (documented by CloudFront, and accepted by [`super::verify`]);
//! SHA-1 signatures are only ever verified here, never made.

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};

use super::der;
use super::error::SignedError;
use super::keys::cf_encode;
use super::policy::{canned, CustomPolicy};

enum Signer {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
}

/// Reads a private key: PKCS#8 (`BEGIN PRIVATE KEY`, RSA or P-256) or PKCS#1
/// (`BEGIN RSA PRIVATE KEY`, what `openssl genrsa` wrote before OpenSSL 3).
fn signer(pem: &str) -> Result<Signer, SignedError> {
    let bad = |why| SignedError::BadKey {
        id: "private key".into(),
        why,
    };
    let block = der::pem(pem).ok_or_else(|| bad("not a PEM block"))?;
    match block.label.as_str() {
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&block.der)
            .map(Signer::Rsa)
            .or_else(|_| {
                EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                    &block.der,
                    &SystemRandom::new(),
                )
                .map(Signer::Ecdsa)
                .map_err(|_| bad("PKCS#8 key is neither RSA nor P-256"))
            }),
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&block.der)
            .map(Signer::Rsa)
            .map_err(|_| bad("bad RSA key")),
        _ => Err(bad("PEM label is neither PRIVATE KEY nor RSA PRIVATE KEY")),
    }
}

/// Signs `policy` with SHA-256, in CloudFront's base64.
fn sign_policy(pem: &str, policy: &[u8]) -> Result<String, SignedError> {
    let rng = SystemRandom::new();
    let failed = || SignedError::BadKey {
        id: "private key".into(),
        why: "signing failed",
    };
    let sig = match signer(pem)? {
        Signer::Rsa(key) => {
            let mut sig = vec![0; key.public().modulus_len()];
            key.sign(&signature::RSA_PKCS1_SHA256, &rng, policy, &mut sig)
                .map_err(|_| failed())?;
            sig
        }
        Signer::Ecdsa(key) => key
            .sign(&rng, policy)
            .map_err(|_| failed())?
            .as_ref()
            .to_vec(),
    };
    Ok(cf_encode(&sig))
}

fn join(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

/// A canned-policy signed URL for `url` (which may carry its own query), valid until
/// `expires` (epoch seconds).
pub fn sign_canned(
    url: &str,
    expires: u64,
    key_pair_id: &str,
    private_key_pem: &str,
) -> Result<String, SignedError> {
    let sig = sign_policy(private_key_pem, canned(url, expires).as_bytes())?;
    Ok(join(
        url,
        &format!(
            "Expires={expires}&Signature={sig}&Key-Pair-Id={key_pair_id}&Hash-Algorithm=SHA256"
        ),
    ))
}

/// A custom-policy signed URL for `url`.
pub fn sign_custom(
    url: &str,
    policy: &CustomPolicy,
    key_pair_id: &str,
    private_key_pem: &str,
) -> Result<String, SignedError> {
    let json = policy.to_json();
    let sig = sign_policy(private_key_pem, json.as_bytes())?;
    let encoded = cf_encode(json.as_bytes());
    Ok(join(
        url,
        &format!(
            "Policy={encoded}&Signature={sig}&Key-Pair-Id={key_pair_id}&Hash-Algorithm=SHA256"
        ),
    ))
}

/// The signed cookies (name, value) for a custom policy, as `Set-Cookie` would carry them.
pub fn sign_cookies(
    policy: &CustomPolicy,
    key_pair_id: &str,
    private_key_pem: &str,
) -> Result<Vec<(&'static str, String)>, SignedError> {
    let json = policy.to_json();
    let sig = sign_policy(private_key_pem, json.as_bytes())?;
    Ok(vec![
        ("CloudFront-Policy", cf_encode(json.as_bytes())),
        ("CloudFront-Signature", sig),
        ("CloudFront-Key-Pair-Id", key_pair_id.to_string()),
        ("CloudFront-Hash-Algorithm", "SHA256".to_string()),
    ])
}

/// The signed cookies for a canned policy covering `url` until `expires`.
pub fn sign_cookies_canned(
    url: &str,
    expires: u64,
    key_pair_id: &str,
    private_key_pem: &str,
) -> Result<Vec<(&'static str, String)>, SignedError> {
    let sig = sign_policy(private_key_pem, canned(url, expires).as_bytes())?;
    Ok(vec![
        ("CloudFront-Expires", expires.to_string()),
        ("CloudFront-Signature", sig),
        ("CloudFront-Key-Pair-Id", key_pair_id.to_string()),
        ("CloudFront-Hash-Algorithm", "SHA256".to_string()),
    ])
}
