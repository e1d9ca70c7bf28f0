//! Targeted cache control (RFC 9213): fields such as `CDN-Cache-Control` that speak to one
//! class of cache and, for it, replace `Cache-Control`. A cache has a list of the fields
//! that target it, most specific first; it obeys the first one present and valid, and
//! falls back to `Cache-Control` when none is. A targeted field is a Structured Field
//! Dictionary (RFC 8941): one that does not parse as one is invalid and ignored.

use http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL};

/// The headers the edge's caching rules should read: `headers` with `Cache-Control`
/// replaced by the first targeted field in `targets` that is present and valid, or None
/// when none is (then `headers` themselves apply).
pub fn targeted_headers(headers: &HeaderMap, targets: &[HeaderName]) -> Option<HeaderMap> {
    for t in targets {
        let mut lines = headers.get_all(t).iter().peekable();
        if lines.peek().is_none() {
            continue;
        }
        // Several field lines are one field, joined with commas (RFC 9110 §5.3).
        let mut joined = String::new();
        let mut readable = true;
        for v in lines {
            match v.to_str() {
                Ok(s) => {
                    if !joined.is_empty() {
                        joined.push_str(", ");
                    }
                    joined.push_str(s);
                }
                Err(_) => readable = false,
            }
        }
        if !readable || !is_dictionary(&joined) {
            continue;
        }
        let Ok(value) = HeaderValue::from_str(&joined) else {
            continue;
        };
        let mut effective = headers.clone();
        effective.insert(CACHE_CONTROL, value);
        return Some(effective);
    }
    None
}

/// Whether `s` is a Structured Field Dictionary (RFC 8941 §4.2.2).
pub fn is_dictionary(s: &str) -> bool {
    let mut p = Parser {
        b: s.as_bytes(),
        i: 0,
    };
    p.dictionary().is_some()
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    fn ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// §4.2.2: members separated by commas; an empty field is an empty dictionary.
    fn dictionary(&mut self) -> Option<()> {
        self.sp();
        if self.peek().is_none() {
            return Some(());
        }
        loop {
            self.key()?;
            if self.eat(b'=') {
                self.item_or_inner_list()?;
            } else {
                self.parameters()?;
            }
            self.ows();
            if self.peek().is_none() {
                return Some(());
            }
            if !self.eat(b',') {
                return None;
            }
            self.ows();
            // A trailing comma is an error.
            self.peek()?;
        }
    }

    fn key(&mut self) -> Option<()> {
        match self.peek()? {
            b'a'..=b'z' | b'*' => self.i += 1,
            _ => return None,
        }
        while matches!(
            self.peek(),
            Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*')
        ) {
            self.i += 1;
        }
        Some(())
    }

    fn parameters(&mut self) -> Option<()> {
        while self.eat(b';') {
            self.sp();
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Some(())
    }

    fn item_or_inner_list(&mut self) -> Option<()> {
        if self.eat(b'(') {
            loop {
                self.sp();
                if self.eat(b')') {
                    break;
                }
                self.bare_item()?;
                self.parameters()?;
                match self.peek()? {
                    b' ' | b')' => {}
                    _ => return None,
                }
            }
        } else {
            self.bare_item()?;
        }
        self.parameters()
    }

    fn bare_item(&mut self) -> Option<()> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string(),
            b':' => self.bytes(),
            b'?' => {
                self.i += 1;
                match self.peek()? {
                    b'0' | b'1' => {
                        self.i += 1;
                        Some(())
                    }
                    _ => None,
                }
            }
            c if c.is_ascii_alphabetic() || c == b'*' => {
                self.i += 1;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c))
                {
                    self.i += 1;
                }
                Some(())
            }
            _ => None,
        }
    }

    /// §4.2.4: at most 15 integer digits, or a decimal with at most 12 and 3.
    fn number(&mut self) -> Option<()> {
        self.eat(b'-');
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let int_digits = self.i - start;
        if int_digits == 0 {
            return None;
        }
        if self.eat(b'.') {
            let frac = self.i;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
            let frac_digits = self.i - frac;
            return (int_digits <= 12 && (1..=3).contains(&frac_digits)).then_some(());
        }
        (int_digits <= 15).then_some(())
    }

    fn string(&mut self) -> Option<()> {
        self.i += 1;
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => {
                    self.i += 1;
                    match self.peek()? {
                        b'"' | b'\\' => self.i += 1,
                        _ => return None,
                    }
                }
                0x20..=0x7e => self.i += 1,
                _ => return None,
            }
        }
    }

    fn bytes(&mut self) -> Option<()> {
        self.i += 1;
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b':' => return Some(()),
                c if c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=') => {}
                _ => return None,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directives::CacheControl;
    use std::time::Duration;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    fn targets() -> Vec<HeaderName> {
        vec![
            HeaderName::from_static("meridian-cdn-cache-control"),
            HeaderName::from_static("cdn-cache-control"),
        ]
    }

    #[test]
    fn dictionaries_as_rfc_8941_writes_them() {
        for ok in [
            "max-age=60",
            "max-age=60, stale-while-revalidate=30",
            "no-store",
            "private, must-revalidate",
            "a=1;b=2, c=\"x\\\"y\", d=?1, e=:aGk=:, f=(1 2);p, g=tok/en:x, h=1.5",
            "",
        ] {
            assert!(is_dictionary(ok), "{ok}");
        }
        for bad in [
            "max-age=60s",
            "Max-Age=60",
            "max-age=",
            "max-age=60,",
            "max-age = 60",
            "a=1234567890123456",
            "a=\"unterminated",
            "a=(1 2",
            "a=1.2345",
        ] {
            assert!(!is_dictionary(bad), "{bad}");
        }
    }

    #[test]
    fn the_first_valid_target_replaces_cache_control() {
        let res = h(&[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=60"),
        ]);
        let eff = targeted_headers(&res, &targets()).unwrap();
        let cc = CacheControl::from_headers(&eff);
        assert_eq!(cc.max_age, Some(Duration::from_secs(60)));
        assert!(!cc.no_store);
        // The more specific target wins over CDN-Cache-Control.
        let res = h(&[
            ("meridian-cdn-cache-control", "max-age=5"),
            ("cdn-cache-control", "max-age=60"),
        ]);
        let eff = targeted_headers(&res, &targets()).unwrap();
        assert_eq!(
            CacheControl::from_headers(&eff).max_age,
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn an_invalid_target_falls_back_to_the_next_then_to_cache_control() {
        let res = h(&[
            ("meridian-cdn-cache-control", "max-age=5s"),
            ("cdn-cache-control", "max-age=60"),
        ]);
        let eff = targeted_headers(&res, &targets()).unwrap();
        assert_eq!(
            CacheControl::from_headers(&eff).max_age,
            Some(Duration::from_secs(60))
        );
        let res = h(&[
            ("cache-control", "max-age=7"),
            ("cdn-cache-control", "max-age=60s"),
        ]);
        assert!(targeted_headers(&res, &targets()).is_none());
        assert!(targeted_headers(&h(&[("cache-control", "max-age=7")]), &targets()).is_none());
    }
}
