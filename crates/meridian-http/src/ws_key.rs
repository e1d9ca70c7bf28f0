//! The keys of a WebSocket opening handshake (RFC 6455 §4): the client's random key, and
//! the accept a server answers it with. A proxy makes both: a key for an HTTP/1.1 upstream
//! when the viewer came over HTTP/2 (which has none), an accept for an HTTP/1.1 viewer when
//! the upstream was reached over HTTP/2 (which answers none).

use http::HeaderValue;

/// A `Sec-WebSocket-Key`: 16 random bytes in base64 (RFC 6455 §4.1).
pub(crate) fn fresh_key() -> HeaderValue {
    let bytes: [u8; 16] = rand::random();
    HeaderValue::from_str(&base64(&bytes))
        .unwrap_or(HeaderValue::from_static("AAAAAAAAAAAAAAAAAAAAAA=="))
}

/// The `Sec-WebSocket-Accept` that answers `key` (RFC 6455 §4.2.2): the base64 of the
/// SHA-1 of the key and the protocol's fixed GUID.
pub fn accept_for(key: &[u8]) -> HeaderValue {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(GUID);
    let accept = base64(ctx.finish().as_ref());
    HeaderValue::from_str(&accept).unwrap_or(HeaderValue::from_static(""))
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
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
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
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
