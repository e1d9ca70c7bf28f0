//! Generated static assets of realistic sizes and compressibility, with strong ETags.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::OnceLock;

pub struct Asset {
    pub body: axum::body::Bytes,
    pub content_type: &'static str,
    pub etag: String,
}

/// Path, content type, size in bytes and whether the content is text (compressible).
const CATALOG: &[(&str, &str, usize, bool)] = &[
    (
        "app.js",
        "application/javascript; charset=utf-8",
        184_320,
        true,
    ),
    (
        "vendor.js",
        "application/javascript; charset=utf-8",
        491_520,
        true,
    ),
    ("app.css", "text/css; charset=utf-8", 40_960, true),
    ("index.html", "text/html; charset=utf-8", 6_144, true),
    ("img/logo.png", "image/png", 12_288, false),
    ("img/hero.jpg", "image/jpeg", 225_280, false),
    ("img/chart-bg.webp", "image/webp", 61_440, false),
    ("fonts/inter.woff2", "font/woff2", 49_152, false),
    // The object sizes the edge benchmark compares caches at (bench/edge.sh).
    ("bench/1k.bin", "application/octet-stream", 1_024, false),
    ("bench/32k.bin", "application/octet-stream", 32_768, false),
    ("bench/1m.bin", "application/octet-stream", 1_048_576, false),
];

/// Last-Modified for every asset: they are "built" once, like a release.
const LAST_MODIFIED: &str = "Mon, 02 Nov 2026 12:00:00 GMT";

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: fast and deterministic.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

const WORDS: &[&str] = &[
    "function",
    "return",
    "const",
    "let",
    "quote",
    "portfolio",
    "price",
    "symbol",
    "render",
    "=>",
    "{",
    "}",
    "(",
    ")",
    ";",
    "if",
    "else",
    "await",
    "async",
    "fetch",
    "data",
    "map",
    "filter",
    "props",
    "state",
    "useEffect",
    "import",
    "export",
    "default",
    "className",
];

fn generate(name: &str, size: usize, text: bool) -> Vec<u8> {
    let mut rng = Rng(crate::market::fnv(name.as_bytes()) | 1);
    let mut out = Vec::with_capacity(size + 16);
    if text {
        // Source-like text: a small vocabulary with varying identifiers, which compresses
        // about as well as minified JavaScript and CSS do (4-6x).
        while out.len() < size {
            let r = rng.next();
            out.extend_from_slice(WORDS[(r % WORDS.len() as u64) as usize].as_bytes());
            if r.is_multiple_of(7) {
                out.extend_from_slice(format!("_{:x}", r >> 48).as_bytes());
            }
            out.push(if r.is_multiple_of(11) { b'\n' } else { b' ' });
        }
    } else {
        // Already-compressed media: random bytes behind the format's magic number.
        let magic: &[u8] = match name.rsplit('.').next() {
            Some("png") => b"\x89PNG\r\n\x1a\n",
            Some("jpg") => b"\xff\xd8\xff\xe0",
            Some("webp") => b"RIFF\0\0\0\0WEBP",
            _ => b"wOF2",
        };
        out.extend_from_slice(magic);
        while out.len() < size {
            out.extend_from_slice(&rng.next().to_le_bytes());
        }
    }
    out.truncate(size);
    out
}

pub fn catalog() -> &'static HashMap<&'static str, Asset> {
    static ASSETS: OnceLock<HashMap<&'static str, Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        CATALOG
            .iter()
            .map(|&(name, content_type, size, text)| {
                let body = generate(name, size, text);
                let digest = Sha256::digest(&body);
                let etag = format!("\"{}\"", &hex::encode(digest)[..20]);
                (
                    name,
                    Asset {
                        body: body.into(),
                        content_type,
                        etag,
                    },
                )
            })
            .collect()
    })
}

/// RFC 9110 §13.1.2: If-None-Match uses weak comparison, and `*` matches any.
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

/// What the page links to first: a browser told early (103 Early Hints, RFC 8297) fetches
/// them while the page is on its way.
const PAGE_HINTS: &str =
    "</static/app.css>; rel=preload; as=style, </static/app.js>; rel=preload; as=script";

pub async fn serve(
    Path(path): Path<String>,
    headers: HeaderMap,
    interim: Option<Extension<meridian_http::interim::Interim>>,
) -> Response {
    // Only to a page navigation (it accepts HTML): browsers use hints there alone, and
    // some HTTP/1.1 peers (Varnish 7.1 among them) take a 103 for a broken answer.
    let navigation = meridian_http::interim::wants_hints(&headers);
    if let (Some(Extension(interim)), "index.html", true) = (interim, path.as_str(), navigation) {
        let mut hints = HeaderMap::new();
        hints.insert(header::LINK, HeaderValue::from_static(PAGE_HINTS));
        interim.send(meridian_http::interim::InterimHead {
            status: StatusCode::EARLY_HINTS,
            headers: hints,
        });
    }
    let Some(asset) = catalog().get(path.as_str()) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CACHE_CONTROL, "public, max-age=60")],
            "no such asset\n",
        )
            .into_response();
    };
    let common = [
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        ),
        (
            header::ETAG,
            HeaderValue::from_str(&asset.etag).unwrap_or(HeaderValue::from_static("\"\"")),
        ),
        (
            header::LAST_MODIFIED,
            HeaderValue::from_static(LAST_MODIFIED),
        ),
    ];
    if none_match(&headers, &asset.etag) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body.clone(),
    )
        .into_response()
}
