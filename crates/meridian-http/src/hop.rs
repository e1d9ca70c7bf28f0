//! Hop-by-hop fields: what belongs to one connection, not to the message, and so never
//! passes a proxy.

use http::header;

/// Headers that belong to one connection, not to the message (RFC 9110 §7.6.1).
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
}

/// The fields a message's Connection header names: they belong to that connection only.
pub fn connection_fields(headers: &http::HeaderMap) -> Vec<http::HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| http::HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect()
}

/// Removes hop-by-hop headers, including the ones named in Connection, before a proxy
/// passes a message on.
pub fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    for n in connection_fields(headers) {
        headers.remove(n);
    }
    for n in HOP_BY_HOP {
        headers.remove(*n);
    }
}
