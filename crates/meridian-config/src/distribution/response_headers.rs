//! Response headers policies: security headers, CORS and custom headers added to viewer
//! responses.

use crate::error::Diagnostics;
use crate::read::Table;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct Cors {
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub allow_credentials: bool,
    #[serde(with = "crate::serde_duration")]
    pub max_age: Duration,
}

/// Headers the edge adds to viewer responses.
#[derive(Debug, Clone, Serialize)]
pub struct ResponseHeadersPolicy {
    pub name: String,
    pub strict_transport_security: Option<String>,
    pub content_security_policy: Option<String>,
    pub frame_options: Option<String>,
    pub content_type_options: bool,
    pub referrer_policy: Option<String>,
    pub cors: Option<Cors>,
    pub custom_headers: Vec<(String, String)>,
    pub remove_headers: Vec<String>,
}

pub(super) fn read_response_headers(
    s: &Table,
    d: &mut Diagnostics,
    name: String,
) -> Option<ResponseHeadersPolicy> {
    let mut custom_headers = Vec::new();
    if let Some(h) = s.table(d, "custom_headers") {
        // Keys are header names: read every entry as a string.
        for key in h.keys() {
            if let Some(v) = h.str(d, key) {
                if http_header_name_ok(key) {
                    custom_headers.push((key.to_owned(), v));
                } else if let Some(f) = h.get(key) {
                    d.error(
                        f.span,
                        &f.key,
                        format!("`{key}` is not a valid header name"),
                        "use letters, digits and hyphens",
                    );
                }
            }
        }
    }
    let cors = match s.table(d, "cors") {
        Some(c) => {
            let list = |c: &Table, d: &mut Diagnostics, k: &'static str| -> Vec<String> {
                c.str_list(d, k)
                    .map(|v| v.into_iter().map(|x| x.into_inner()).collect())
                    .unwrap_or_default()
            };
            let cors = Cors {
                allow_origins: list(&c, d, "allow_origins"),
                allow_methods: list(&c, d, "allow_methods"),
                allow_headers: list(&c, d, "allow_headers"),
                expose_headers: list(&c, d, "expose_headers"),
                allow_credentials: c.bool(d, "allow_credentials").unwrap_or(false),
                max_age: c.duration(d, "max_age").unwrap_or(Duration::from_secs(600)),
            };
            if cors.allow_origins.is_empty() {
                c.missing(
                    d,
                    "allow_origins",
                    "add allow_origins = [\"*\"] or a list of origins",
                );
            }
            // Browsers refuse `*` with credentials; answering any origin with them would
            // let every site read a signed-in viewer's answers.
            if let (true, true, Some(f)) = (
                cors.allow_credentials,
                cors.allow_origins.iter().any(|o| o == "*"),
                c.get("allow_credentials"),
            ) {
                d.error(
                    f.span,
                    &f.key,
                    "`allow_credentials = true` with `allow_origins = [\"*\"]` would let any site read answers meant for a signed-in viewer",
                    "list the origins that may send credentials in allow_origins, or set allow_credentials = false",
                );
            }
            c.finish(d);
            Some(cors)
        }
        None => None,
    };
    let p = ResponseHeadersPolicy {
        name,
        strict_transport_security: s.str(d, "strict_transport_security"),
        content_security_policy: s.str(d, "content_security_policy"),
        frame_options: s.str(d, "frame_options"),
        content_type_options: s.bool(d, "content_type_options").unwrap_or(false),
        referrer_policy: s.str(d, "referrer_policy"),
        cors,
        custom_headers,
        remove_headers: s
            .str_list(d, "remove_headers")
            .map(|v| v.into_iter().map(|x| x.into_inner()).collect())
            .unwrap_or_default(),
    };
    if let (Some(v), Some(f)) = (&p.frame_options, s.get("frame_options")) {
        if !matches!(v.as_str(), "DENY" | "SAMEORIGIN") {
            d.error(
                f.span,
                &f.key,
                format!("`{v}` is not an X-Frame-Options value"),
                "use \"DENY\" or \"SAMEORIGIN\"",
            );
        }
    }
    s.finish(d);
    Some(p)
}

fn http_header_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
