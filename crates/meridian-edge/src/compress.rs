//! On-the-fly compression of cached objects: Brotli, zstd or gzip, by what the viewer
//! accepts, for compressible types within the distribution's size limits.

use crate::key::Coding;
use bytes::Bytes;
use http::HeaderMap;
use tokio::io::AsyncReadExt;

/// Types worth compressing (CloudFront's list, in short: text, JSON, JS, XML, SVG, fonts).
pub fn compressible(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    // Compared without case and without allocating: this runs for every hit.
    let ct = ct.split(';').next().unwrap_or("").trim();
    let is = |t: &str| ct.eq_ignore_ascii_case(t);
    ct.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("text/"))
        || [
            "application/json",
            "application/javascript",
            "application/x-javascript",
            "application/xml",
            "application/graphql-response+json",
            "application/ld+json",
            "application/manifest+json",
            "application/wasm",
            "image/svg+xml",
            "image/x-icon",
            "font/ttf",
            "font/otf",
            "application/vnd.ms-fontobject",
        ]
        .into_iter()
        .any(is)
}

/// Compresses `body` with `coding`. Levels favour speed: an edge compresses once per
/// object and variant, then serves the stored result.
pub async fn encode(coding: Coding, body: &[u8]) -> std::io::Result<Bytes> {
    use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder};
    use async_compression::Level;
    let mut out = Vec::with_capacity(body.len() / 3 + 64);
    match coding {
        Coding::Br => {
            BrotliEncoder::with_quality(body, Level::Precise(5))
                .read_to_end(&mut out)
                .await?
        }
        Coding::Zstd => {
            ZstdEncoder::with_quality(body, Level::Precise(3))
                .read_to_end(&mut out)
                .await?
        }
        Coding::Gzip => {
            GzipEncoder::with_quality(body, Level::Precise(6))
                .read_to_end(&mut out)
                .await?
        }
        Coding::Identity => return Ok(Bytes::copy_from_slice(body)),
    };
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZstdDecoder};

    #[tokio::test]
    async fn each_coding_round_trips_and_shrinks_text() {
        let text = "{\"symbol\":\"AAPL\",\"price\":189.12}\n".repeat(200);
        for c in [Coding::Br, Coding::Zstd, Coding::Gzip] {
            let z = encode(c, text.as_bytes()).await.unwrap();
            assert!(z.len() < text.len() / 4, "{c:?}: {} bytes", z.len());
            let mut back = Vec::new();
            match c {
                Coding::Br => BrotliDecoder::new(&z[..]).read_to_end(&mut back).await,
                Coding::Zstd => ZstdDecoder::new(&z[..]).read_to_end(&mut back).await,
                _ => GzipDecoder::new(&z[..]).read_to_end(&mut back).await,
            }
            .unwrap();
            assert_eq!(back, text.as_bytes());
        }
    }

    #[test]
    fn compressible_types() {
        let h = |ct: &str| {
            let mut m = HeaderMap::new();
            m.insert(http::header::CONTENT_TYPE, ct.parse().unwrap());
            m
        };
        assert!(compressible(&h("application/json; charset=utf-8")));
        assert!(compressible(&h("text/css")));
        assert!(compressible(&h("Text/HTML; charset=utf-8")));
        assert!(compressible(&h(" APPLICATION/JSON ")));
        assert!(!compressible(&h("text")));
        assert!(!compressible(&h("application/jsonp")));
        assert!(!compressible(&h("image/png")));
        assert!(!compressible(&HeaderMap::new()));
    }
}
