//! The `Date` field every answer carries (RFC 9110 §6.6.1), as our servers write it.

/// Now as an HTTP date, made once a second per thread.
pub(crate) fn now() -> http::HeaderValue {
    thread_local! {
        static NOW: std::cell::RefCell<(u64, http::HeaderValue)> =
            const { std::cell::RefCell::new((u64::MAX, http::HeaderValue::from_static(""))) };
    }
    let now = std::time::SystemTime::now();
    let second = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    NOW.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != second {
            let text = httpdate::fmt_http_date(now);
            if let Ok(v) = http::HeaderValue::from_str(&text) {
                *cached = (second, v);
            }
        }
        cached.1.clone()
    })
}
