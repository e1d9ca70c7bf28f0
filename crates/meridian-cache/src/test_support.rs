//! What the unit tests of several modules build their headers with.

use http::{header::HeaderName, HeaderMap, HeaderValue};

/// A header map from (name, value) pairs, repeated names appended in order.
pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    m
}
