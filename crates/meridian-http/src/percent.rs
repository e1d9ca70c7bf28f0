//! Percent-encoding of query values (RFC 3986), one implementation for every client that
//! builds a URL and every admin endpoint that reads one.

/// `s` with every byte outside RFC 3986's unreserved set (`A-Z a-z 0-9 - _ . ~`) written
/// as `%XX`, so it can stand as one query value whatever it holds.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query value as its sender meant it: `%XX` decoded, `+` as a space (forms send it so).
/// A `%` not followed by two hex digits stays as it is; bytes that are not UTF-8 become
/// U+FFFD instead of an error, as a value a person typed may be anything.
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of the first `key=value` pair named `key` in a query string, decoded; the
/// one way admin endpoints read their parameters.
pub fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == key)
        .map(|(_, value)| decode(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_parameter_is_found_by_name_and_decoded() {
        let q = Some("candidate=db-a&term=7&to=pop%3Alondon&empty=");
        assert_eq!(query_param(q, "term").as_deref(), Some("7"));
        assert_eq!(query_param(q, "to").as_deref(), Some("pop:london"));
        assert_eq!(query_param(q, "empty").as_deref(), Some(""));
        assert_eq!(query_param(q, "cand"), None);
        assert_eq!(query_param(None, "term"), None);
    }

    #[test]
    fn unreserved_bytes_stay_and_the_rest_is_escaped() {
        assert_eq!(encode("api.example.com"), "api.example.com");
        assert_eq!(encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(encode("{\"s\":1} &=/"), "%7B%22s%22%3A1%7D%20%26%3D%2F");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn decoding_undoes_encoding() {
        for s in ["{\"symbol\":\"AAPL\"}", "pop:london", "a b&c=d", "é~"] {
            assert_eq!(decode(&encode(s)), s);
        }
        assert_eq!(decode("a+b"), "a b");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz%4"), "%zz%4");
    }
}
