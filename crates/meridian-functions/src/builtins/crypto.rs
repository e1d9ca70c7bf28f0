//! `crypto` natives: digests and HMACs computed by RustCrypto crates, not JS polyfills, so
//! they are correct and fast under the 1 ms budget.

use super::bytes::bytes;
use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use rquickjs::{Ctx, Exception, Result, TypedArray};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

pub(crate) const JS: &str = include_str!("crypto.js");

/// Digest of `data` with `alg` (md5, sha1, sha256, sha512).
pub(crate) fn digest(alg: &str, data: &[u8]) -> Option<Vec<u8>> {
    Some(match alg {
        "md5" => Md5::digest(data).to_vec(),
        "sha1" => Sha1::digest(data).to_vec(),
        "sha256" => Sha256::digest(data).to_vec(),
        "sha512" => Sha512::digest(data).to_vec(),
        _ => return None,
    })
}

fn mac<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so new_from_slice cannot fail; fall back to empty.
    match <M as KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// HMAC of `data` keyed by `key` with `alg`.
pub(crate) fn hmac(alg: &str, key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    Some(match alg {
        "md5" => mac::<Hmac<Md5>>(key, data),
        "sha1" => mac::<Hmac<Sha1>>(key, data),
        "sha256" => mac::<Hmac<Sha256>>(key, data),
        "sha512" => mac::<Hmac<Sha512>>(key, data),
        _ => return None,
    })
}

pub(crate) fn js_digest<'js>(
    ctx: Ctx<'js>,
    alg: String,
    data: TypedArray<'js, u8>,
) -> Result<TypedArray<'js, u8>> {
    match digest(&alg, bytes(&data)) {
        Some(d) => TypedArray::new(ctx, d),
        None => Err(Exception::throw_type(
            &ctx,
            &format!("Digest method not supported: {alg}"),
        )),
    }
}

pub(crate) fn js_hmac<'js>(
    ctx: Ctx<'js>,
    alg: String,
    key: TypedArray<'js, u8>,
    data: TypedArray<'js, u8>,
) -> Result<TypedArray<'js, u8>> {
    match hmac(&alg, bytes(&key), bytes(&data)) {
        Some(d) => TypedArray::new(ctx, d),
        None => Err(Exception::throw_type(
            &ctx,
            &format!("Digest method not supported: {alg}"),
        )),
    }
}
