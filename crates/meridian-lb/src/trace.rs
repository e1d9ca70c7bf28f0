//! ALB's request tracing: the `X-Amzn-Trace-Id` header, named as AWS names it so tools
//! built for ALB (X-Ray, log queries) read Meridian's as they read AWS's.
//!
//! As ALB does: a request without the header gets `Root=1-<epoch hex>-<24 hex>`; one with
//! a `Root` keeps it (and any fields of the application's own) and gets a `Self` field in
//! front, or its `Self` replaced. The header is updated on the request only, never on the
//! response.

use http::HeaderValue;
use std::time::SystemTime;

/// The header's name, lower case as `http` stores it.
pub const HEADER: &str = "x-amzn-trace-id";

/// [`HEADER`] as a name, made at compile time (`forwarded.rs` says why).
pub(crate) static NAME: http::HeaderName = http::HeaderName::from_static(HEADER);

/// ALB rewrites a header bigger than this to a plain `Root` (it limits headers to 7 KB).
const MAX_LEN: usize = 7 * 1024;

/// The length of a trace id: `1-` 8 hex `-` 24 hex.
const ID_LEN: usize = 35;

/// Writes one trace id, `1-<8 hex digits of epoch seconds>-<24 random hex digits>`, into
/// `out` (on the stack: every request without a trace header gets one, so it costs no
/// allocation of its own).
fn write_id(out: &mut [u8; ID_LEN], now: SystemTime) {
    use meridian_http::ids;
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as u32;
    out[0] = b'1';
    out[1] = b'-';
    ids::write_hex(&mut out[2..10], u128::from(secs));
    out[10] = b'-';
    // 96 bits of a fresh id: 24 hex digits.
    ids::write_hex(&mut out[11..], rand::random());
}

/// One trace id, as text.
pub(crate) fn new_id(now: SystemTime) -> String {
    let mut id = [0u8; ID_LEN];
    write_id(&mut id, now);
    String::from_utf8_lossy(&id).into_owned()
}

/// `Root=<new id>`: what a request without the header gets.
fn fresh(now: SystemTime) -> HeaderValue {
    let mut v = [0u8; 5 + ID_LEN];
    v[..5].copy_from_slice(b"Root=");
    let mut id = [0u8; ID_LEN];
    write_id(&mut id, now);
    v[5..].copy_from_slice(&id);
    crate::forwarded::shared_value(&v).unwrap_or(HeaderValue::from_static("Root=1-0-0"))
}

/// The header to send the target, from the one the client sent (if any).
pub(crate) fn header_for(incoming: Option<&HeaderValue>, now: SystemTime) -> HeaderValue {
    let Some(incoming) = incoming else {
        return fresh(now);
    };
    let fresh = || format!("Root={}", new_id(now));
    let value = match incoming.to_str().ok() {
        Some(v) if !v.trim().is_empty() && v.len() <= MAX_LEN => {
            let fields: Vec<&str> = v
                .split(';')
                .map(str::trim)
                .filter(|f| !f.is_empty() && !f.starts_with("Self="))
                .collect();
            if fields.iter().any(|f| f.starts_with("Root=")) {
                let mut out = format!("Self={}", new_id(now));
                for f in fields {
                    out.push(';');
                    out.push_str(f);
                }
                out
            } else {
                // No Root to keep: this balancer starts the trace, the rest stays.
                std::iter::once(fresh())
                    .chain(fields.into_iter().map(str::to_owned))
                    .collect::<Vec<_>>()
                    .join(";")
            }
        }
        _ => fresh(),
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| {
        HeaderValue::from_str(&fresh()).unwrap_or(HeaderValue::from_static("Root=1-0-0"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn is_id(s: &str) -> bool {
        let p: Vec<&str> = s.split('-').collect();
        p.len() == 3
            && p[0] == "1"
            && p[1].len() == 8
            && p[2].len() == 24
            && p[1..]
                .iter()
                .all(|x| x.chars().all(|c| c.is_ascii_hexdigit()))
    }

    #[test]
    fn a_request_without_one_gets_a_root() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(0x6789_1233);
        let v = header_for(None, now);
        let v = v.to_str().unwrap();
        let id = v.strip_prefix("Root=").unwrap();
        assert!(is_id(id), "{v}");
        assert!(id.starts_with("1-67891233-"), "{v}");
    }

    #[test]
    fn a_root_is_kept_and_self_inserted_or_replaced() {
        let now = SystemTime::now();
        let root = "Root=1-67891233-abcdef012345678912345678";
        let v = header_for(Some(&HeaderValue::from_static(root)), now);
        let v = v.to_str().unwrap();
        let (first, rest) = v.split_once(';').unwrap();
        assert!(is_id(first.strip_prefix("Self=").unwrap()), "{v}");
        assert_eq!(rest, root);

        let custom = HeaderValue::from_static(
            "Self=1-67891233-12456789abcdef012345678;Root=1-67891233-abcdef012345678912345678;CalledFrom=app",
        );
        let v = header_for(Some(&custom), now);
        let v = v.to_str().unwrap();
        assert_eq!(v.matches("Self=").count(), 1, "{v}");
        assert!(
            !v.contains("12456789abcdef012345678;"),
            "old Self kept: {v}"
        );
        assert!(v.ends_with(";Root=1-67891233-abcdef012345678912345678;CalledFrom=app"));
    }

    #[test]
    fn a_header_without_root_gets_one_and_keeps_its_fields() {
        let v = header_for(
            Some(&HeaderValue::from_static("CalledFrom=app")),
            SystemTime::now(),
        );
        let v = v.to_str().unwrap();
        assert!(
            v.starts_with("Root=1-") && v.ends_with(";CalledFrom=app"),
            "{v}"
        );
    }
}
