//! A WebSocket opening handshake: what makes a request one (RFC 6455 §4 over HTTP/1.1,
//! RFC 8441 over HTTP/2), and its keys: the client's random key, and the accept a server
//! answers it with. A proxy makes both: a key for an HTTP/1.1 upstream when the viewer came
//! over HTTP/2 (which has none), an accept for an HTTP/1.1 viewer when the upstream was
//! reached over HTTP/2 (which answers none).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, UPGRADE};
use http::{Method, Version};

pub(crate) const SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
pub(crate) const SEC_WEBSOCKET_VERSION: HeaderName =
    HeaderName::from_static("sec-websocket-version");
pub(crate) const SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");

/// Whether a header holds `token` in its comma-separated list (case-insensitive), as
/// `Connection: keep-alive, Upgrade` does.
fn has_token(headers: &HeaderMap, name: HeaderName, token: &[u8]) -> bool {
    headers
        .get_all(name)
        .iter()
        .any(|v| crate::h1_head::has_token(v.as_bytes(), token))
}

/// An RFC 6455 opening handshake: an HTTP/1.1 GET with `Connection: upgrade`,
/// `Upgrade: websocket` and a `Sec-WebSocket-Key`. Anything else (a POST, a missing token
/// or key, HTTP/2) is an ordinary request, whose upgrade headers are stripped as hop-by-hop
/// (RFC 9110 §7.8 lets a server ignore an upgrade): with no key there is no accept to
/// answer, so no upstream is asked to open a tunnel for it.
pub fn is_websocket_upgrade(method: &Method, version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && method == Method::GET
        && has_token(headers, CONNECTION, b"upgrade")
        && has_token(headers, UPGRADE, b"websocket")
        && headers.contains_key(SEC_WEBSOCKET_KEY)
}

/// Whether a request is an RFC 8441 WebSocket: an HTTP/2 CONNECT whose `:protocol` is
/// `websocket` (hyper's server and ours, `h2_server.rs`, accept one only where the server
/// enabled the protocol; each marks it with its own type).
pub fn is_extended_connect(parts: &http::request::Parts) -> bool {
    extended_connect(parts.version, &parts.method, &parts.extensions)
}

/// [`is_extended_connect`] on a request's pieces, for a server before it splits one.
pub(crate) fn extended_connect(
    version: Version,
    method: &Method,
    extensions: &http::Extensions,
) -> bool {
    let websocket = |p: &str| p.eq_ignore_ascii_case("websocket");
    version == Version::HTTP_2
        && method == Method::CONNECT
        && (extensions
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| websocket(p.as_str()))
            || extensions
                .get::<h2::ext::Protocol>()
                .is_some_and(|p| websocket(p.as_str())))
}

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
    fn only_get_over_http11_with_both_tokens_and_a_key_is_a_handshake() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("WebSocket"));
        assert!(!is_websocket_upgrade(&Method::GET, Version::HTTP_11, &h));
        h.insert(SEC_WEBSOCKET_KEY, fresh_key());
        assert!(is_websocket_upgrade(&Method::GET, Version::HTTP_11, &h));
        assert!(!is_websocket_upgrade(&Method::POST, Version::HTTP_11, &h));
        assert!(!is_websocket_upgrade(&Method::GET, Version::HTTP_2, &h));
        let mut no_conn = h.clone();
        no_conn.remove(CONNECTION);
        assert!(!is_websocket_upgrade(
            &Method::GET,
            Version::HTTP_11,
            &no_conn
        ));
        let mut h2c = h.clone();
        h2c.insert(UPGRADE, HeaderValue::from_static("h2c"));
        assert!(!is_websocket_upgrade(&Method::GET, Version::HTTP_11, &h2c));
    }

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
