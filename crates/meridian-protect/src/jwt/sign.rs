//! Minting tokens, for a development token command and for tests.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use serde_json::{json, Map, Value};

use super::alg::Algorithm;
use super::error::SignError;
use crate::signed_url::der;

/// A key to sign with.
#[derive(Clone)]
pub enum SigningKey {
    /// An HMAC secret.
    Hs256(Vec<u8>),
    /// An RSA private key, PKCS#8 DER.
    Rs256 { pkcs8: Vec<u8> },
    /// A P-256 private key, PKCS#8 DER (see [`generate_es256`]).
    Es256 { pkcs8: Vec<u8> },
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.algorithm().as_str())
    }
}

impl SigningKey {
    pub fn algorithm(&self) -> Algorithm {
        match self {
            SigningKey::Hs256(_) => Algorithm::Hs256,
            SigningKey::Rs256 { .. } => Algorithm::Rs256,
            SigningKey::Es256 { .. } => Algorithm::Es256,
        }
    }
}

fn es256(pkcs8: &[u8]) -> Result<EcdsaKeyPair, SignError> {
    EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8,
        &SystemRandom::new(),
    )
    .map_err(|_| SignError::Key("not a PKCS#8 P-256 key"))
}

fn rs256(pkcs8: &[u8]) -> Result<RsaKeyPair, SignError> {
    RsaKeyPair::from_pkcs8(pkcs8).map_err(|_| SignError::Key("not a PKCS#8 RSA key"))
}

/// A token signed with `key`, its header naming `kid` when given.
pub fn sign(key: &SigningKey, kid: Option<&str>, claims: &Value) -> Result<String, SignError> {
    if !claims.is_object() {
        return Err(SignError::Claims);
    }
    let mut header = Map::new();
    header.insert("alg".into(), key.algorithm().as_str().into());
    header.insert("typ".into(), "JWT".into());
    if let Some(kid) = kid {
        header.insert("kid".into(), kid.into());
    }
    let mut out = URL_SAFE_NO_PAD.encode(Value::Object(header).to_string());
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
    let rng = SystemRandom::new();
    let sig = match key {
        SigningKey::Hs256(secret) => {
            if secret.is_empty() {
                return Err(SignError::Key("empty HMAC secret"));
            }
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), out.as_bytes())
                .as_ref()
                .to_vec()
        }
        SigningKey::Rs256 { pkcs8 } => {
            let pair = rs256(pkcs8)?;
            let mut sig = vec![0; pair.public().modulus_len()];
            pair.sign(&signature::RSA_PKCS1_SHA256, &rng, out.as_bytes(), &mut sig)
                .map_err(|_| SignError::Key("RSA signing failed"))?;
            sig
        }
        SigningKey::Es256 { pkcs8 } => es256(pkcs8)?
            .sign(&rng, out.as_bytes())
            .map_err(|_| SignError::Key("ECDSA signing failed"))?
            .as_ref()
            .to_vec(),
    };
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(sig));
    Ok(out)
}

/// A new P-256 private key, PKCS#8 DER.
pub fn generate_es256() -> Vec<u8> {
    // Fails only if the system's random source does, when nothing could be signed anyway.
    EcdsaKeyPair::generate_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &SystemRandom::new(),
    )
    .expect("the system random source failed")
    .as_ref()
    .to_vec()
}

/// The JWK a JWKS file should hold to verify tokens signed with `key`: the public key for
/// RS256 and ES256, the secret itself (`oct`) for HS256.
pub fn public_jwk(key: &SigningKey, kid: &str) -> Result<Value, SignError> {
    let b = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    Ok(match key {
        SigningKey::Hs256(secret) => {
            json!({"kty": "oct", "kid": kid, "alg": "HS256", "use": "sig", "k": b(secret)})
        }
        SigningKey::Rs256 { pkcs8 } => {
            let pair = rs256(pkcs8)?;
            let (n, e) = der::rsa_components(pair.public().as_ref())
                .ok_or(SignError::Key("RSA public key"))?;
            json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": b(n), "e": b(e)})
        }
        SigningKey::Es256 { pkcs8 } => {
            let pair = es256(pkcs8)?;
            let point = pair.public_key().as_ref();
            let (x, y) = point
                .get(1..33)
                .zip(point.get(33..65))
                .ok_or(SignError::Key("P-256 public key"))?;
            json!({"kty": "EC", "kid": kid, "alg": "ES256", "use": "sig", "crv": "P-256", "x": b(x), "y": b(y)})
        }
    })
}
