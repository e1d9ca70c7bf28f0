//! BIND zone files (RFC 1035 §5): `$ORIGIN`, `$TTL`, relative names, omitted owners and
//! TTLs, parentheses across lines, comments, quoted strings. Errors name the line.

use hickory_proto::rr::rdata::{caa::CAA, A, AAAA, CNAME, MX, NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record};
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {problem}\n  = fix: {fix}")]
pub struct ZoneFileError {
    pub file: String,
    pub line: usize,
    pub problem: String,
    pub fix: String,
}

/// Splits text into entries (one per record, parentheses joined), each with its first line.
fn entries(text: &str, file: &str) -> Result<Vec<(usize, bool, Vec<String>)>, ZoneFileError> {
    let mut out = Vec::new();
    let mut tokens: Vec<String> = Vec::new();
    let mut start_line = 0;
    let mut indented = false;
    let mut depth = 0;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if depth == 0 {
            start_line = n;
            indented = line.starts_with(' ') || line.starts_with('\t');
        }
        let mut chars = line.chars().peekable();
        let mut cur = String::new();
        let mut quoted = false;
        let flush = |cur: &mut String, tokens: &mut Vec<String>| {
            if !cur.is_empty() {
                tokens.push(std::mem::take(cur));
            }
        };
        while let Some(c) = chars.next() {
            match c {
                '"' => {
                    if quoted {
                        tokens.push(format!("\"{cur}"));
                        cur.clear();
                    } else {
                        flush(&mut cur, &mut tokens);
                    }
                    quoted = !quoted;
                }
                '\\' if quoted => {
                    if let Some(next) = chars.next() {
                        cur.push(next);
                    }
                }
                _ if quoted => cur.push(c),
                ';' => break,
                '(' => {
                    flush(&mut cur, &mut tokens);
                    depth += 1;
                }
                ')' => {
                    flush(&mut cur, &mut tokens);
                    if depth == 0 {
                        return Err(err(
                            file,
                            n,
                            "`)` without a matching `(`",
                            "remove it or open the parenthesis",
                        ));
                    }
                    depth -= 1;
                }
                c if c.is_whitespace() => flush(&mut cur, &mut tokens),
                c => cur.push(c),
            }
        }
        if quoted {
            return Err(err(
                file,
                n,
                "unterminated quoted string",
                "close the string with `\"` on the same line",
            ));
        }
        flush(&mut cur, &mut tokens);
        if depth == 0 && !tokens.is_empty() {
            out.push((start_line, indented, std::mem::take(&mut tokens)));
        }
    }
    if depth > 0 {
        return Err(err(
            file,
            start_line,
            "`(` is never closed",
            "add the closing `)`",
        ));
    }
    Ok(out)
}

fn err(
    file: &str,
    line: usize,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> ZoneFileError {
    ZoneFileError {
        file: file.to_owned(),
        line,
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// A TTL in seconds, or BIND's units (`1h30m`, `2d`).
fn parse_ttl(s: &str) -> Option<u32> {
    if let Ok(n) = s.parse() {
        return Some(n);
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let mult = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 604_800,
            _ => return None,
        };
        total += num.parse::<u64>().ok()? * mult;
        num.clear();
    }
    if !num.is_empty() {
        return None;
    }
    u32::try_from(total).ok()
}

const TYPES: &[&str] = &["SOA", "NS", "A", "AAAA", "CNAME", "TXT", "MX", "CAA"];

/// Parses a zone file for `origin`; returns its records in file order.
pub fn parse(text: &str, file: &str, origin: &Name) -> Result<Vec<Record>, ZoneFileError> {
    let mut origin = origin.clone();
    let mut default_ttl: Option<u32> = None;
    let mut last_owner: Option<Name> = None;
    let mut last_ttl: Option<u32> = None;
    let mut records = Vec::new();
    for (line, indented, tokens) in entries(text, file)? {
        let name_of = |s: &str, origin: &Name| -> Result<Name, ZoneFileError> {
            if s == "@" {
                return Ok(origin.clone());
            }
            Name::parse(s, Some(origin))
                .map(|n| n.to_lowercase())
                .map_err(|e| {
                    err(
                        file,
                        line,
                        format!("`{s}` is not a domain name: {e}"),
                        "use letters, digits and hyphens, with a trailing dot for absolute names",
                    )
                })
        };
        match tokens[0].as_str() {
            "$ORIGIN" => {
                let Some(o) = tokens.get(1) else {
                    return Err(err(
                        file,
                        line,
                        "$ORIGIN needs a name",
                        "write `$ORIGIN example.com.`",
                    ));
                };
                origin = name_of(o, &origin)?;
                continue;
            }
            "$TTL" => {
                default_ttl = Some(tokens.get(1).and_then(|t| parse_ttl(t)).ok_or_else(|| {
                    err(
                        file,
                        line,
                        "$TTL needs a time",
                        "write `$TTL 3600` or `$TTL 1h`",
                    )
                })?);
                continue;
            }
            d if d.starts_with('$') => {
                return Err(err(
                    file,
                    line,
                    format!("`{d}` is not supported"),
                    "use $ORIGIN and $TTL; put included records in this file",
                ));
            }
            _ => {}
        }
        let mut rest: &[String] = &tokens;
        let owner = if indented {
            last_owner.clone().ok_or_else(|| {
                err(
                    file,
                    line,
                    "the first record has no owner name",
                    "start the line with a name or @",
                )
            })?
        } else {
            let o = name_of(&rest[0], &origin)?;
            rest = &rest[1..];
            o
        };
        // [ttl] [class] type, in either order.
        let mut ttl = None;
        loop {
            match rest.first().map(String::as_str) {
                Some("IN") => rest = &rest[1..],
                Some(c) if ["CH", "HS", "CS"].contains(&c) => {
                    return Err(err(
                        file,
                        line,
                        format!("class {c} is not served"),
                        "use class IN or leave it out",
                    ));
                }
                Some(t)
                    if ttl.is_none() && t.chars().next().is_some_and(|c| c.is_ascii_digit()) =>
                {
                    ttl = Some(parse_ttl(t).ok_or_else(|| {
                        err(
                            file,
                            line,
                            format!("`{t}` is not a TTL"),
                            "write seconds or units such as 1h",
                        )
                    })?);
                    rest = &rest[1..];
                }
                _ => break,
            }
        }
        let Some(rtype) = rest.first() else {
            return Err(err(
                file,
                line,
                "the record has no type",
                format!("add one of: {}", TYPES.join(", ")),
            ));
        };
        let rtype = rtype.to_ascii_uppercase();
        let data = &rest[1..];
        let ttl = ttl.or(default_ttl).or(last_ttl).ok_or_else(|| {
            err(
                file,
                line,
                "the record has no TTL and there is no $TTL",
                "add `$TTL 3600` at the top of the file",
            )
        })?;
        let need = |n: usize, example: &str| {
            if data.len() < n {
                Err(err(
                    file,
                    line,
                    format!("{rtype} needs {n} field(s), found {}", data.len()),
                    format!("write it as {example}"),
                ))
            } else {
                Ok(())
            }
        };
        let unquote = |s: &str| s.strip_prefix('"').unwrap_or(s).to_owned();
        let rdata = match rtype.as_str() {
            "A" => {
                need(1, "`www IN A 192.0.2.1`")?;
                RData::A(A(data[0].parse().map_err(|_| {
                    err(
                        file,
                        line,
                        format!("`{}` is not an IPv4 address", data[0]),
                        "write a dotted quad such as 192.0.2.1",
                    )
                })?))
            }
            "AAAA" => {
                need(1, "`www IN AAAA 2001:db8::1`")?;
                RData::AAAA(AAAA(data[0].parse().map_err(|_| {
                    err(
                        file,
                        line,
                        format!("`{}` is not an IPv6 address", data[0]),
                        "write an address such as 2001:db8::1",
                    )
                })?))
            }
            "CNAME" => {
                need(1, "`www IN CNAME web`")?;
                RData::CNAME(CNAME(name_of(&data[0], &origin)?))
            }
            "NS" => {
                need(1, "`@ IN NS ns1`")?;
                RData::NS(NS(name_of(&data[0], &origin)?))
            }
            "MX" => {
                need(2, "`@ IN MX 10 mail`")?;
                let pref = data[0].parse().map_err(|_| {
                    err(
                        file,
                        line,
                        format!("`{}` is not a preference", data[0]),
                        "write a number such as 10",
                    )
                })?;
                RData::MX(MX::new(pref, name_of(&data[1], &origin)?))
            }
            "TXT" => {
                need(1, "`@ IN TXT \"text\"`")?;
                RData::TXT(TXT::new(data.iter().map(|s| unquote(s)).collect()))
            }
            "CAA" => {
                need(3, "`@ IN CAA 0 issue \"letsencrypt.org\"`")?;
                let critical = data[0] == "128";
                let value = unquote(&data[2]);
                let issuer = if value.is_empty() {
                    None
                } else {
                    Some(Name::from_str(&value).map_err(|e| {
                        err(
                            file,
                            line,
                            format!("`{value}`: {e}"),
                            "name the CA's domain",
                        )
                    })?)
                };
                match data[1].as_str() {
                    "issue" => RData::CAA(CAA::new_issue(critical, issuer, Vec::new())),
                    "issuewild" => RData::CAA(CAA::new_issuewild(critical, issuer, Vec::new())),
                    t => {
                        return Err(err(
                            file,
                            line,
                            format!("CAA tag `{t}` is not supported"),
                            "use issue or issuewild",
                        ))
                    }
                }
            }
            "SOA" => {
                need(7, "`@ IN SOA ns1 hostmaster ( 1 3600 600 604800 300 )`")?;
                let num = |i: usize| -> Result<u32, ZoneFileError> {
                    parse_ttl(&data[i]).ok_or_else(|| {
                        err(
                            file,
                            line,
                            format!("`{}` is not a number", data[i]),
                            "SOA times are seconds or units such as 1h",
                        )
                    })
                };
                RData::SOA(SOA::new(
                    name_of(&data[0], &origin)?,
                    name_of(&data[1], &origin)?,
                    num(2)?,
                    num(3)? as i32,
                    num(4)? as i32,
                    num(5)? as i32,
                    num(6)?,
                ))
            }
            other => {
                return Err(err(
                    file,
                    line,
                    format!("`{other}` is not a record type Meridian serves"),
                    format!("use one of: {}", TYPES.join(", ")),
                ));
            }
        };
        last_owner = Some(owner.clone());
        last_ttl = Some(ttl);
        records.push(Record::from_rdata(owner, ttl, rdata));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Name {
        Name::from_str("example.com.").unwrap()
    }

    #[test]
    fn parses_a_typical_zone() {
        let text = "$ORIGIN example.com.\n$TTL 1h\n@ IN SOA ns1 hostmaster (\n  2026112401 ; serial\n  3600 600 604800 300 )\n  IN NS ns1\nns1 IN A 192.0.2.53\nwww 300 IN A 192.0.2.1\n    IN AAAA 2001:db8::1\nmail IN MX 10 mx.other.net.\n@ IN TXT \"v=spf1 -all\" \"second; part\"\n@ IN CAA 0 issue \"letsencrypt.org\"\nalias IN CNAME www\n";
        let r = parse(text, "z", &origin()).unwrap();
        assert_eq!(r.len(), 9);
        assert_eq!(r[0].ttl, 3600);
        assert!(matches!(r[0].data, RData::SOA(_)));
        assert_eq!(
            r[1].name,
            origin(),
            "an indented line keeps the previous owner"
        );
        assert_eq!(r[3].ttl, 300);
        assert_eq!(r[4].name.to_string(), "www.example.com.");
        assert_eq!(
            r[4].ttl, 3600,
            "an omitted TTL is $TTL when one is set (RFC 2308)"
        );
        match &r[6].data {
            RData::TXT(t) => assert_eq!(t.txt_data.len(), 2),
            _ => panic!(),
        }
        match &r[8].data {
            RData::CNAME(c) => assert_eq!(c.0.to_string(), "www.example.com."),
            _ => panic!(),
        }
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("$TTL 60\nwww IN A 300.1.1.1\n", 2, "IPv4"),
            ("$TTL 60\n\n\nx IN BOGUS 1\n", 4, "BOGUS"),
            ("www IN A 192.0.2.1\n", 1, "no TTL"),
            ("$TTL 60\n@ IN SOA ns1 h ( 1 2 3\n", 2, "never closed"),
            ("$TTL 60\n@ IN TXT \"open\n", 2, "unterminated"),
            ("$TTL 60\n  IN A 192.0.2.1\n", 2, "no owner"),
            ("$INCLUDE other.zone\n", 1, "not supported"),
            ("$TTL 60\nmail IN MX 10\n", 2, "MX needs 2"),
        ];
        for (text, line, needle) in cases {
            let e = parse(text, "bad.zone", &origin()).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.problem.contains(needle), "{text:?}: {e}");
            assert!(e.to_string().starts_with(&format!("bad.zone:{line}:")));
        }
    }
}
