//! Reading the signing parameters from a request's query or cookies, and checking them.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::signature;

use super::der::PublicKeyDer;
use super::error::SignedError;
use super::keys::{cf_decode, PublicKeys};
use super::policy::{canned, CustomPolicy};

/// The largest encoded policy accepted (CloudFront's own URL limit keeps real ones far
/// smaller); anything larger is refused before it is decoded.
pub const MAX_POLICY_LEN: usize = 8 * 1024;
/// The largest encoded signature: an 8192-bit RSA signature is 1368 base64 characters.
const MAX_SIGNATURE_LEN: usize = 1400;
/// The largest Cookie headers, all values together, that are searched for signed cookies.
pub const MAX_COOKIE_LEN: usize = 16 * 1024;
/// Key IDs, expiry times and hash names are short.
const MAX_SHORT_LEN: usize = 128;

/// The query parameters that carry a signature; removed before the request goes on.
const SIGNING_PARAMS: [&str; 5] = [
    "Expires",
    "Policy",
    "Signature",
    "Key-Pair-Id",
    "Hash-Algorithm",
];

/// The parts of a viewer request that signed URLs and cookies are checked against.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// `scheme://host/path`, without the query.
    pub url: &'a str,
    /// The raw query string, without the `?`.
    pub query: Option<&'a str>,
    /// The raw values of the request's Cookie headers.
    pub cookie_headers: &'a [&'a str],
    pub viewer_ip: IpAddr,
}

/// Where the signature came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Url,
    Cookie,
}

/// The digest the signature was made over: SHA-1 unless the signer said `SHA256`
/// (`Hash-Algorithm` / `CloudFront-Hash-Algorithm`, which CloudFront added later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    Sha1,
    Sha256,
}

/// An admitted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub source: Source,
    pub key_pair_id: String,
    /// True for a custom policy, false for a canned one.
    pub custom: bool,
    pub hash: HashAlgorithm,
    pub expires: SystemTime,
}

/// The signing values, whichever of URL or cookies they came from.
#[derive(Default)]
struct Params<'a> {
    expires: Option<Cow<'a, str>>,
    policy: Option<Cow<'a, str>>,
    signature: Option<Cow<'a, str>>,
    key_pair_id: Option<Cow<'a, str>>,
    hash: Option<Cow<'a, str>>,
}

impl<'a> Params<'a> {
    fn any(&self) -> bool {
        self.expires.is_some()
            || self.policy.is_some()
            || self.signature.is_some()
            || self.key_pair_id.is_some()
    }

    fn set(&mut self, name: &str, value: Cow<'a, str>) -> Result<(), SignedError> {
        let (slot, limit) = match name {
            "Expires" => (&mut self.expires, MAX_SHORT_LEN),
            "Policy" => (&mut self.policy, MAX_POLICY_LEN),
            "Signature" => (&mut self.signature, MAX_SIGNATURE_LEN),
            "Key-Pair-Id" => (&mut self.key_pair_id, MAX_SHORT_LEN),
            "Hash-Algorithm" => (&mut self.hash, MAX_SHORT_LEN),
            _ => return Ok(()),
        };
        if value.len() > limit {
            return Err(SignedError::TooLarge(if name == "Policy" {
                "policy"
            } else {
                "a signing parameter"
            }));
        }
        if slot.is_some() {
            return Err(SignedError::Malformed("a signing parameter appears twice"));
        }
        *slot = Some(value);
        Ok(())
    }
}

/// Checks a request's signed URL parameters or, when it has none, its signed cookies.
/// The signature is checked before any condition, so a forged policy learns nothing.
pub fn verify(
    req: &SignedRequest,
    keys: &PublicKeys,
    now: SystemTime,
) -> Result<Verified, SignedError> {
    let mut from_url = Params::default();
    if let Some(q) = req.query {
        for pair in q.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode(name);
            // Only the signing parameters' values are decoded; the rest pass through as sent.
            if SIGNING_PARAMS.contains(&name.as_ref()) {
                from_url.set(&name, percent_decode(value))?;
            }
        }
    }
    let (params, source) = if from_url.any() {
        (from_url, Source::Url)
    } else {
        (cookie_params(req.cookie_headers)?, Source::Cookie)
    };
    if !params.any() {
        return Err(SignedError::Missing);
    }
    let key_id = params
        .key_pair_id
        .ok_or(SignedError::Malformed("no Key-Pair-Id"))?;
    let sig_text = params
        .signature
        .ok_or(SignedError::Malformed("no Signature"))?;
    let hash = match params.hash.as_deref() {
        None | Some("SHA1") => HashAlgorithm::Sha1,
        Some("SHA256") => HashAlgorithm::Sha256,
        Some(_) => {
            return Err(SignedError::Malformed(
                "Hash-Algorithm is neither SHA1 nor SHA256",
            ));
        }
    };
    let sig = cf_decode(&sig_text).ok_or(SignedError::Malformed("Signature is not base64"))?;
    let key = keys
        .get(&key_id)
        .ok_or_else(|| SignedError::UnknownKey(key_id.to_string()))?;

    // The URL a canned policy names is the one the viewer asked for, less the signing
    // parameters (which a cookie-signed request has none of).
    let resource = match strip_signing_params(req.query.unwrap_or("")) {
        Some(rest) => format!("{}?{rest}", req.url),
        None => req.url.to_string(),
    };

    let (policy, custom) = match (params.policy, params.expires) {
        (Some(p), _) => {
            let json = cf_decode(&p).ok_or(SignedError::Malformed("Policy is not base64"))?;
            check_signature(key, hash, &json, &sig)?;
            (CustomPolicy::parse(&json)?, true)
        }
        (None, Some(e)) => {
            if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
                return Err(SignedError::Malformed("Expires is not epoch seconds"));
            }
            let expires: u64 = e
                .parse()
                .map_err(|_| SignedError::Malformed("Expires is out of range"))?;
            check_signature(key, hash, canned(&resource, expires).as_bytes(), &sig)?;
            let policy = CustomPolicy {
                resource: None,
                date_less_than: expires,
                date_greater_than: None,
                source_ip: None,
            };
            (policy, false)
        }
        (None, None) => return Err(SignedError::Malformed("neither Expires nor Policy")),
    };
    policy.check(&resource, req.viewer_ip, now)?;
    Ok(Verified {
        source,
        key_pair_id: key_id.into_owned(),
        custom,
        hash,
        expires: UNIX_EPOCH + Duration::from_secs(policy.date_less_than),
    })
}

fn check_signature(
    key: &PublicKeyDer,
    hash: HashAlgorithm,
    msg: &[u8],
    sig: &[u8],
) -> Result<(), SignedError> {
    let (alg, der): (&dyn signature::VerificationAlgorithm, &[u8]) = match (key, hash) {
        (PublicKeyDer::Rsa(k), HashAlgorithm::Sha1) => {
            (&signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY, k)
        }
        (PublicKeyDer::Rsa(k), HashAlgorithm::Sha256) => {
            (&signature::RSA_PKCS1_2048_8192_SHA256, k)
        }
        (PublicKeyDer::P256(k), HashAlgorithm::Sha256) => (&signature::ECDSA_P256_SHA256_ASN1, k),
        // ECDSA over SHA-1 is not something ring verifies, nor anything worth admitting.
        (PublicKeyDer::P256(_), HashAlgorithm::Sha1) => {
            return Err(SignedError::Malformed(
                "an ECDSA key needs Hash-Algorithm=SHA256",
            ));
        }
    };
    signature::UnparsedPublicKey::new(alg, der)
        .verify(msg, sig)
        .map_err(|_| SignedError::Signature)
}

/// The query without the signing parameters, in its original order and encoding, or None
/// when nothing remains. The edge forwards this to the origin and keys its cache with it.
pub fn strip_signing_params(query: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n);
            !SIGNING_PARAMS.contains(&percent_decode(name).as_ref())
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// Decodes `%XX` escapes; a broken escape is kept as is (it then fails to match anything).
fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn cookie_params<'a>(headers: &[&'a str]) -> Result<Params<'a>, SignedError> {
    let total: usize = headers.iter().map(|h| h.len()).sum();
    if total > MAX_COOKIE_LEN {
        return Err(SignedError::TooLarge("Cookie header"));
    }
    let mut params = Params::default();
    for header in headers {
        for pair in header.split(';') {
            let Some((name, value)) = pair.trim().split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            let name = match name.trim() {
                "CloudFront-Expires" => "Expires",
                "CloudFront-Policy" => "Policy",
                "CloudFront-Signature" => "Signature",
                "CloudFront-Key-Pair-Id" => "Key-Pair-Id",
                "CloudFront-Hash-Algorithm" => "Hash-Algorithm",
                _ => continue,
            };
            params.set(name, Cow::Borrowed(value))?;
        }
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripping_keeps_other_parameters_in_order() {
        assert_eq!(
            strip_signing_params(
                "color=red&Expires=1&size=m&Signature=x&Key-Pair-Id=K&Hash-Algorithm=SHA256"
            )
            .as_deref(),
            Some("color=red&size=m")
        );
        assert_eq!(
            strip_signing_params("Policy=p&Signature=s&Key-Pair-Id=K"),
            None
        );
        assert_eq!(
            strip_signing_params("Key%2DPair%2DId=K&a=1").as_deref(),
            Some("a=1")
        );
        assert_eq!(strip_signing_params(""), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%7Eb"), "a~b");
        assert_eq!(percent_decode("a%7"), "a%7");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("%"), "%");
    }
}
