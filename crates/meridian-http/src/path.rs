//! A request path in the one form routing, keying and listener rules see, so two spellings
//! of one resource can never be routed apart (a rule for `/admin/*` met by
//! `/%61dmin/` or `/x/../admin/`).

use std::borrow::Cow;

/// Why a path has no one form; the text says what is wrong with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the path is not valid: {0}")]
pub struct BadPath(pub &'static str);

/// The path in the one form routing and keying see (RFC 3986 §6.2.2): percent-encoded
/// unreserved characters decoded, other escapes in upper case, runs of `/` merged, `.`
/// and `..` segments removed (never above the root). Refused: bad escapes, and encoded
/// `/`, `\` or NUL, which an origin may decode into a different path than the one routed.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, BadPath> {
    if !raw.starts_with('/') {
        return Err(BadPath("it must start with /"));
    }
    let bytes = raw.as_bytes();
    // Most paths are already in the one form: no escape, no `\`, only visible ASCII, and
    // no empty, `.` or `..` segment (a trailing `/` is kept, as below).
    if already_normal(bytes) {
        return Ok(Cow::Borrowed(raw));
    }
    rebuilt_path(raw).map(Cow::Owned)
}

/// `normalize` the long way, for a path that starts with `/`: decoded, then its
/// segments merged.
fn rebuilt_path(raw: &str) -> Result<String, BadPath> {
    let bytes = raw.as_bytes();
    let mut decoded = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .filter(|_| {
                        bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit()
                    })
                    .ok_or(BadPath("a % is not followed by two hex digits"))?;
                match hex {
                    b'/' | b'\\' | 0 => {
                        return Err(BadPath("it encodes /, \\ or NUL"));
                    }
                    c if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') => {
                        decoded.push(c as char)
                    }
                    c => decoded.push_str(&format!("%{c:02X}")),
                }
                i += 3;
            }
            b'\\' => return Err(BadPath("it contains \\")),
            // A URI holds visible ASCII only (anything else arrives percent-encoded); a path
            // from elsewhere with more is refused rather than guessed at.
            b if !b.is_ascii_graphic() => {
                return Err(BadPath("it holds a character a URI cannot"));
            }
            _ => {
                decoded.push(b as char);
                i += 1;
            }
        }
    }
    let mut out: Vec<&str> = Vec::new();
    // A path that ends in a directory (`/a/`, `/a/.`, `/a/..`) still does.
    let mut dir = false;
    for seg in decoded[1..].split('/') {
        dir = matches!(seg, "" | "." | "..");
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for s in &out {
        path.push('/');
        path.push_str(s);
    }
    if dir || path.is_empty() {
        path.push('/');
    }
    Ok(path)
}

/// Whether a path starting with `/` is already in the one form: only visible ASCII, no
/// escape and no `\`, and no `.` or `..` segment nor an empty one but the last (a
/// trailing `/`). One pass over the bytes: this runs for every request.
fn already_normal(path: &[u8]) -> bool {
    let mut start = 1;
    for (i, &b) in path.iter().enumerate().skip(1) {
        if !b.is_ascii_graphic() || b == b'%' || b == b'\\' {
            return false;
        }
        if b == b'/' {
            if matches!(&path[start..i], b"" | b"." | b"..") {
                return false;
            }
            start = i + 1;
        }
    }
    !matches!(&path[start..], b"." | b"..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutated_paths_normalise_to_fixed_points() {
        use rand::{Rng, SeedableRng};
        let alphabet: &[&str] = &[
            "/", ".", "..", "%2e", "%2E", "%2f", "%", "a", "%41", "~", "%7e", "%zz", ":", "[", "]",
            "\\", "\u{e9}", "\u{1}", " ",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        for _ in 0..30_000 {
            let n = rng.random_range(0..12);
            let s: String = (0..n)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            let raw = format!("/{s}");
            let Ok(p) = normalize(&raw) else {
                continue;
            };
            assert_eq!(normalize(&p).as_deref(), Ok(&*p), "from /{s}");
            // The fast path takes only what the long way leaves unchanged.
            assert_eq!(rebuilt_path(&raw).as_deref(), Ok(&*p));
            let inner = p.trim_end_matches('/');
            assert!(
                !inner
                    .split('/')
                    .skip(1)
                    .any(|seg| matches!(seg, "" | "." | "..")),
                "{p} from /{s}"
            );
        }
    }
}
