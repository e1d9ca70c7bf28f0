//! `Buffer`, `TextEncoder`/`TextDecoder`, `atob`/`btoa`. The byte-level codecs (UTF-8, base64,
//! hex) are native because doing them char by char in JS would eat the 1 ms budget.

use super::bytes::bytes;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use rquickjs::{Ctx, Exception, Result, TypedArray};

pub(crate) const JS: &str = include_str!("buffer.js");

/// Node's base64 decoder is lenient: either alphabet, padding optional, whitespace ignored.
const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const LENIENT_STD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);

pub(crate) fn utf8_encode<'js>(ctx: Ctx<'js>, s: String) -> Result<TypedArray<'js, u8>> {
    TypedArray::new(ctx, s.into_bytes())
}

pub(crate) fn utf8_decode(data: TypedArray<'_, u8>) -> String {
    String::from_utf8_lossy(bytes(&data)).into_owned()
}

pub(crate) fn b64_encode(data: TypedArray<'_, u8>, url: bool) -> String {
    if url {
        URL_SAFE_NO_PAD.encode(bytes(&data))
    } else {
        STANDARD.encode(bytes(&data))
    }
}

/// Decode base64 or base64url; `strict` (for `atob`) throws on garbage instead of skipping it.
pub(crate) fn b64_decode<'js>(
    ctx: Ctx<'js>,
    s: String,
    strict: bool,
) -> Result<TypedArray<'js, u8>> {
    let mut clean: String = s
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    if !strict {
        clean.retain(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=');
        if let Some(p) = clean.find('=') {
            clean.truncate(p);
        }
    }
    match LENIENT_STD.decode(clean.as_bytes()) {
        Ok(v) => TypedArray::new(ctx, v),
        Err(e) => Err(Exception::throw_type(&ctx, &format!("invalid base64: {e}"))),
    }
}

pub(crate) fn hex_encode(data: TypedArray<'_, u8>) -> String {
    hex::encode(bytes(&data))
}

/// Like Node: decodes pairs until the first invalid one.
pub(crate) fn hex_decode<'js>(ctx: Ctx<'js>, s: String) -> Result<TypedArray<'js, u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len() / 2);
    for pair in b.chunks_exact(2) {
        match std::str::from_utf8(pair)
            .ok()
            .and_then(|p| u8::from_str_radix(p, 16).ok())
        {
            Some(v) => out.push(v),
            None => break,
        }
    }
    TypedArray::new(ctx, out)
}
