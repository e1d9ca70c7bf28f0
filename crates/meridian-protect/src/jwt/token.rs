//! Verifying a JWS compact token (RFC 7515) carrying JWT claims (RFC 7519).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::{hmac, signature};
use serde_json::{Map, Value};

use super::alg::Algorithm;
use super::error::JwtError;
use super::jwks::{Jwks, KeyMaterial};

/// Tokens longer than this are refused before anything is decoded; real ones are well
/// under 2 KB, and headers carrying them rarely allow more than 8 KB.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Without a `kid`, at most this many keys are tried, which bounds the work a token can cause.
const MAX_KEYS_TRIED: usize = 8;

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectations {
    /// The `iss` a token must carry; None = not checked.
    pub issuer: Option<String>,
    /// Accepted `aud` values, any one of which the token must carry; empty = not checked.
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// The algorithms accepted.
    pub algorithms: Vec<Algorithm>,
}

/// A verified token's claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    map: Map<String, Value>,
}

impl Claims {
    /// A claim as text: a string as is, a number or bool as its JSON text, an array of
    /// strings joined with `,`; None for anything else or when absent.
    pub fn get(&self, name: &str) -> Option<String> {
        match self.map.get(name)? {
            Value::String(s) => Some(s.clone()),
            v @ (Value::Number(_) | Value::Bool(_)) => Some(v.to_string()),
            Value::Array(items) => {
                let parts: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                parts.map(|p| p.join(","))
            }
            _ => None,
        }
    }

    pub fn subject(&self) -> Option<&str> {
        self.map.get("sub").and_then(Value::as_str)
    }

    pub fn issuer(&self) -> Option<&str> {
        self.map.get("iss").and_then(Value::as_str)
    }

    pub fn expires_at(&self) -> Option<SystemTime> {
        self.time("exp")
    }

    pub fn not_before(&self) -> Option<SystemTime> {
        self.time("nbf")
    }

    /// The whole payload.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.map
    }

    fn time(&self, name: &str) -> Option<SystemTime> {
        let secs = self.map.get(name)?.as_f64()?;
        Duration::try_from_secs_f64(secs)
            .ok()
            .and_then(|d| UNIX_EPOCH.checked_add(d))
    }
}

/// The token from an `Authorization` value of the `Bearer` scheme (scheme name
/// case-insensitive, RFC 6750 section 2.1).
pub fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_start_matches(' ');
    // Header values hold no other whitespace than spaces and tabs; `contains` with one
    // ASCII character is a vectorized search, which every cache hit pays.
    (!token.is_empty() && !token.contains(' ') && !token.contains('\t')).then_some(token)
}

fn b64(part: &str, what: &'static str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed(what))
}

/// Verifies `token` against `keys` and `expect` at time `now`.
///
/// The header's `alg` must be one of `expect.algorithms` (so `none` never is), and the key
/// must be of that algorithm's type: an HS256 token is only ever checked with an `oct` key,
/// never with an RSA or EC public key's bytes.
pub fn verify(
    token: &str,
    keys: &Jwks,
    expect: &Expectations,
    now: SystemTime,
) -> Result<Claims, JwtError> {
    if token.is_empty() {
        return Err(JwtError::Missing);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLarge(MAX_TOKEN_LEN));
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("not three dot-separated parts"));
    };
    let header: Value = serde_json::from_slice(&b64(h64, "header is not base64url")?)
        .map_err(|_| JwtError::Malformed("header is not JSON"))?;
    let header = header
        .as_object()
        .ok_or(JwtError::Malformed("header is not a JSON object"))?;
    if header.contains_key("crit") {
        return Err(JwtError::Malformed("header has critical extensions"));
    }
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(JwtError::Malformed("header has no alg"))?;
    let alg = Algorithm::parse(alg_name).ok_or(JwtError::Algorithm("not a supported algorithm"))?;
    if !expect.algorithms.contains(&alg) {
        return Err(JwtError::Algorithm("algorithm not allowed"));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.as_str()),
        Some(_) => return Err(JwtError::Malformed("kid is not a string")),
    };
    let payload = b64(p64, "payload is not base64url")?;
    let sig = b64(s64, "signature is not base64url")?;
    let signed = &token.as_bytes()[..h64.len() + 1 + p64.len()];

    let named: Vec<_> = keys
        .keys
        .iter()
        .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
        .collect();
    if named.is_empty() {
        return Err(JwtError::UnknownKey);
    }
    let fitting: Vec<_> = named
        .into_iter()
        .filter(|k| k.material.suits(alg) && k.alg.is_none_or(|a| a == alg))
        .take(MAX_KEYS_TRIED)
        .collect();
    if fitting.is_empty() {
        return Err(match kid {
            Some(_) => JwtError::Algorithm("the named key is not for this algorithm"),
            None => JwtError::UnknownKey,
        });
    }
    if !fitting.iter().any(|k| check(&k.material, signed, &sig)) {
        return Err(JwtError::Signature);
    }

    let claims: Value =
        serde_json::from_slice(&payload).map_err(|_| JwtError::Malformed("payload is not JSON"))?;
    let Value::Object(map) = claims else {
        return Err(JwtError::Malformed("payload is not a JSON object"));
    };
    let claims = Claims { map };
    check_times(&claims, expect, now)?;
    if let Some(want) = &expect.issuer {
        if claims.issuer() != Some(want.as_str()) {
            return Err(JwtError::Issuer);
        }
    }
    if !expect.audiences.is_empty() {
        let ok = match claims.map.get("aud") {
            Some(Value::String(a)) => expect.audiences.contains(a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| expect.audiences.iter().any(|w| w == a)),
            _ => false,
        };
        if !ok {
            return Err(JwtError::Audience);
        }
    }
    Ok(claims)
}

fn check(key: &KeyMaterial, signed: &[u8], sig: &[u8]) -> bool {
    match key {
        KeyMaterial::Oct(secret) => {
            hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, secret), signed, sig).is_ok()
        }
        KeyMaterial::Rsa(der) => {
            signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, der)
                .verify(signed, sig)
                .is_ok()
        }
        KeyMaterial::P256(point) => {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed, sig)
                .is_ok()
        }
    }
}

/// `exp` (required) and `nbf` against `now`, with leeway; run again on every cache hit.
pub(crate) fn check_times(
    claims: &Claims,
    expect: &Expectations,
    now: SystemTime,
) -> Result<(), JwtError> {
    let exp = match claims.map.get("exp") {
        None => return Err(JwtError::Malformed("no exp claim")),
        Some(v) => claims.expires_at().ok_or(if v.is_number() {
            JwtError::Expired
        } else {
            JwtError::Malformed("exp is not a number")
        })?,
    };
    // Saturating: a time too far out to add to is simply "far in the future".
    if exp.checked_add(expect.leeway).is_some_and(|end| now >= end) {
        return Err(JwtError::Expired);
    }
    if let Some(v) = claims.map.get("nbf") {
        let secs = v
            .as_f64()
            .ok_or(JwtError::Malformed("nbf is not a number"))?;
        if secs > 0.0 {
            let ready = match (claims.not_before(), now.checked_add(expect.leeway)) {
                (Some(nbf), Some(late)) => late >= nbf,
                _ => false,
            };
            if !ready {
                return Err(JwtError::NotYetValid);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values() {
        assert_eq!(bearer_token("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer_token("bearer   abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER abc "), Some("abc"));
        assert_eq!(bearer_token("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer a b"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn claims_as_text() {
        let v = serde_json::json!({"sub":"u1","n":5,"b":true,"roles":["a","b"],"o":{"x":1},"mixed":["a",1],"exp":1.5e9});
        let Value::Object(map) = v else {
            unreachable!()
        };
        let c = Claims { map };
        assert_eq!(c.get("sub").as_deref(), Some("u1"));
        assert_eq!(c.get("n").as_deref(), Some("5"));
        assert_eq!(c.get("b").as_deref(), Some("true"));
        assert_eq!(c.get("roles").as_deref(), Some("a,b"));
        assert_eq!(c.get("o"), None);
        assert_eq!(c.get("mixed"), None);
        assert_eq!(c.get("absent"), None);
        assert_eq!(c.subject(), Some("u1"));
        assert_eq!(
            c.expires_at(),
            Some(UNIX_EPOCH + Duration::from_secs(1_500_000_000))
        );
    }

    #[test]
    fn negative_or_huge_times_do_not_panic() {
        let expect = Expectations {
            issuer: None,
            audiences: vec![],
            leeway: Duration::ZERO,
            algorithms: vec![],
        };
        for exp in [
            serde_json::json!(-1),
            serde_json::json!(1e300),
            serde_json::json!("soon"),
        ] {
            let mut map = Map::new();
            map.insert("exp".into(), exp);
            assert!(check_times(&Claims { map }, &expect, SystemTime::now()).is_err());
        }
    }
}
