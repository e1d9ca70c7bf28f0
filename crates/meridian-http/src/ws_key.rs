//! The keys of a WebSocket opening handshake (RFC 6455 §4): the client's random key, and
//! the accept a server answers it with. A proxy makes both: a key for an HTTP/1.1 upstream
//! when the viewer came over HTTP/2 (which has none), an accept for an HTTP/1.1 viewer when
//! the upstream was reached over HTTP/2 (which answers none).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::HeaderValue;

/// A `Sec-WebSocket-Key`: 16 random bytes in base64 (RFC 6455 §4.1).
pub(crate) fn fresh_key() -> HeaderValue {
    let bytes: [u8; 16] = rand::random();
    HeaderValue::from_str(&STANDARD.encode(bytes))
        .unwrap_or(HeaderValue::from_static("AAAAAAAAAAAAAAAAAAAAAA=="))
}

/// The `Sec-WebSocket-Accept` that answers `key` (RFC 6455 §4.2.2): the base64 of the
/// SHA-1 of the key and the protocol's fixed GUID.
pub fn accept_for(key: &[u8]) -> HeaderValue {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(GUID);
    let accept = STANDARD.encode(ctx.finish());
    HeaderValue::from_str(&accept).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_is_the_one_rfc_6455_gives_for_its_sample_key() {
        // RFC 6455 §1.3's worked example.
        assert_eq!(
            accept_for(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn a_fresh_key_is_16_bytes_in_base64() {
        let k = fresh_key();
        let k = k.to_str().unwrap();
        assert_eq!(k.len(), 24, "{k}");
        assert!(k.ends_with("=="), "{k}");
        assert!(k[..22]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/'));
        assert_ne!(fresh_key(), fresh_key());
    }
}
