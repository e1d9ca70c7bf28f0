//! Custom rules as an AWS WAF web ACL reads them: in order, each rule a conjunction of
//! matches; the first `allow` or `block` ends the evaluation, `count` records and goes on;
//! a matching rule's labels are visible to the rules after it.

use http::HeaderMap;
use meridian_config::{Field, Match, Operator, Oversize, Protection, Rule, RuleAction};
use std::net::IpAddr;

/// The parts of a viewer request the rules may look at.
pub struct RequestView<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub ip: IpAddr,
    /// The first `body_inspection_limit` bytes of the body (empty without one).
    pub body: &'a [u8],
    /// The body is longer than what `body` holds.
    pub body_oversize: bool,
}

/// The rules, compiled once per PoP.
pub struct WebAcl {
    rules: Vec<CompiledRule>,
    body_limit: usize,
}

struct CompiledRule {
    rule: Rule,
    tests: Vec<Test>,
}

/// A match's comparison, with its regular expressions built.
enum Test {
    Strings,
    Regex(Vec<regex::Regex>),
}

/// What the web ACL decided for one request.
#[derive(Debug, Default)]
pub struct Verdict {
    /// The rule that ended the evaluation, and its action (`allow` or `block`).
    pub terminal: Option<(usize, RuleAction)>,
    /// Rules with action `count` that matched, in order.
    pub counted: Vec<usize>,
    /// Labels the matching rules added.
    pub labels: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("rule `{rule}`: `{pattern}` is not a valid regular expression: {source}")]
pub struct RuleError {
    pub rule: String,
    pub pattern: String,
    #[source]
    pub source: regex::Error,
}

impl WebAcl {
    pub fn new(p: &Protection) -> Result<WebAcl, RuleError> {
        let mut rules = Vec::with_capacity(p.rules.len());
        for rule in &p.rules {
            let mut tests = Vec::with_capacity(rule.matches.len());
            for m in &rule.matches {
                tests.push(match &m.operator {
                    Operator::Regex(patterns) => {
                        let mut out = Vec::with_capacity(patterns.len());
                        for pattern in patterns {
                            let re = meridian_config::compile_regex(pattern).map_err(|source| {
                                RuleError {
                                    rule: rule.name.clone(),
                                    pattern: pattern.clone(),
                                    source,
                                }
                            })?;
                            out.push(re);
                        }
                        Test::Regex(out)
                    }
                    _ => Test::Strings,
                });
            }
            rules.push(CompiledRule {
                rule: rule.clone(),
                tests,
            });
        }
        Ok(WebAcl {
            rules,
            body_limit: usize::try_from(p.body_inspection_limit).unwrap_or(usize::MAX),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rule(&self, i: usize) -> &Rule {
        &self.rules[i].rule
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().map(|r| &r.rule)
    }

    /// How much of a body to read before evaluating: zero when no rule looks at bodies, so
    /// requests are not held up for nothing.
    pub fn body_limit(&self) -> usize {
        let looks = self
            .rules
            .iter()
            .any(|r| r.rule.matches.iter().any(|m| m.field == Field::Body));
        if looks {
            self.body_limit
        } else {
            0
        }
    }

    pub fn evaluate(&self, req: &RequestView<'_>) -> Verdict {
        let mut v = Verdict::default();
        for (i, r) in self.rules.iter().enumerate() {
            let all = r
                .rule
                .matches
                .iter()
                .zip(&r.tests)
                .all(|(m, t)| matches(m, t, req, &v.labels));
            if !all {
                continue;
            }
            v.labels.extend(r.rule.labels.iter().cloned());
            match r.rule.action {
                RuleAction::Count => v.counted.push(i),
                action => {
                    v.terminal = Some((i, action));
                    break;
                }
            }
        }
        v
    }
}

/// One match: the field's values compared (any value, any operand), then negated.
fn matches(m: &Match, t: &Test, req: &RequestView<'_>, labels: &[String]) -> bool {
    if m.field == Field::Body && req.body_oversize {
        match m.oversize {
            Oversize::Match => return !m.negate,
            Oversize::NoMatch => return m.negate,
            Oversize::Continue => {}
        }
    }
    let values = field_values(&m.field, req, labels);
    let hit = values.iter().any(|v| {
        let lowered;
        let v: &str = if m.lowercase {
            lowered = v.to_lowercase();
            &lowered
        } else {
            v
        };
        compare(&m.operator, t, v, m.lowercase)
    });
    hit != m.negate
}

fn compare(op: &Operator, t: &Test, v: &str, lowercase: bool) -> bool {
    let any = |operands: &[String], f: &dyn Fn(&str, &str) -> bool| {
        operands.iter().any(|o| {
            if lowercase {
                f(v, &o.to_lowercase())
            } else {
                f(v, o)
            }
        })
    };
    match (op, t) {
        (Operator::Exact(o), _) => any(o, &|v, o| v == o),
        (Operator::Prefix(o), _) => any(o, &|v, o| v.starts_with(o)),
        (Operator::Suffix(o), _) => any(o, &|v, o| v.ends_with(o)),
        (Operator::Contains(o), _) => any(o, &|v, o| v.contains(o)),
        (Operator::Regex(_), Test::Regex(res)) => res.iter().any(|re| re.is_match(v)),
        (Operator::Regex(_), Test::Strings) => false,
        (Operator::IpSet(nets), _) => v
            .parse::<IpAddr>()
            .is_ok_and(|ip| nets.iter().any(|n| n.contains(ip))),
    }
}

/// Every value the field has in this request (none when it is absent).
fn field_values<'a>(
    f: &'a Field,
    req: &'a RequestView<'_>,
    labels: &'a [String],
) -> Vec<std::borrow::Cow<'a, str>> {
    use std::borrow::Cow;
    match f {
        Field::Method => vec![Cow::Borrowed(req.method)],
        Field::Path => vec![Cow::Borrowed(req.path)],
        Field::QueryString => req.query.map(Cow::Borrowed).into_iter().collect(),
        Field::Header(name) => req
            .headers
            .get_all(name.as_str())
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .collect(),
        Field::QueryArgument(name) => query_values(req.query, name).map(Cow::Owned).collect(),
        Field::Cookie(name) => cookie_values(req.headers, name)
            .map(Cow::Borrowed)
            .collect(),
        Field::Body => vec![String::from_utf8_lossy(req.body)],
        Field::Ip => vec![Cow::Owned(req.ip.to_string())],
        Field::ForwardedIp(header) => forwarded_ip(req.headers, header)
            .map(|ip| Cow::Owned(ip.to_string()))
            .into_iter()
            .collect(),
        Field::Label => labels.iter().map(|l| Cow::Borrowed(l.as_str())).collect(),
    }
}

/// The values of query argument `name`, percent-decoded (`+` is a space, as forms write it).
pub fn query_values<'q>(
    query: Option<&'q str>,
    name: &'q str,
) -> impl Iterator<Item = String> + 'q {
    query.unwrap_or("").split('&').filter_map(move |pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// The values of cookie `name` across every `Cookie` header.
pub fn cookie_values<'h>(
    headers: &'h HeaderMap,
    name: &'h str,
) -> impl Iterator<Item = &'h str> + 'h {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |c| {
            let (k, v) = c.trim().split_once('=')?;
            (k.trim() == name).then_some(v.trim())
        })
}

/// The first address a forwarding header names (AWS WAF reads the first), if it is one.
pub fn forwarded_ip(headers: &HeaderMap, header: &str) -> Option<IpAddr> {
    let v = headers.get(header)?.to_str().ok()?;
    v.split(',').next()?.trim().parse().ok()
}

/// `%XX` and `+` decoded; invalid escapes are kept as written.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_config::Cidr;

    fn rule(name: &str, action: RuleAction, matches: Vec<Match>, labels: &[&str]) -> Rule {
        Rule {
            name: name.into(),
            action,
            matches,
            labels: labels.iter().map(|l| l.to_string()).collect(),
            block_status: 403,
            block_body: "no\n".into(),
        }
    }

    fn m(field: Field, operator: Operator) -> Match {
        Match {
            field,
            operator,
            negate: false,
            lowercase: false,
            oversize: Oversize::Continue,
        }
    }

    fn acl(rules: Vec<Rule>) -> WebAcl {
        WebAcl::new(&Protection {
            rules,
            body_inspection_limit: 8,
            ..Protection::default()
        })
        .expect("rules compile")
    }

    fn view<'a>(
        path: &'a str,
        query: Option<&'a str>,
        headers: &'a HeaderMap,
        body: &'a [u8],
    ) -> RequestView<'a> {
        RequestView {
            method: "POST",
            path,
            query,
            headers,
            ip: "203.0.113.9".parse().expect("ip"),
            // The edge hands over what it read: at most the inspection limit.
            body: &body[..body.len().min(8)],
            body_oversize: body.len() > 8,
        }
    }

    #[test]
    fn first_terminal_rule_wins_and_counts_go_on() {
        let a = acl(vec![
            rule(
                "c",
                RuleAction::Count,
                vec![m(Field::Path, Operator::Prefix(vec!["/admin".into()]))],
                &["admin"],
            ),
            rule(
                "allow-office",
                RuleAction::Allow,
                vec![m(
                    Field::Ip,
                    Operator::IpSet(vec![Cidr::parse("198.51.100.0/24").expect("cidr")]),
                )],
                &[],
            ),
            rule(
                "block-admin",
                RuleAction::Block,
                vec![m(Field::Label, Operator::Exact(vec!["admin".into()]))],
                &[],
            ),
        ]);
        let h = HeaderMap::new();
        let v = a.evaluate(&view("/admin/users", None, &h, b""));
        assert_eq!(v.counted, vec![0]);
        assert_eq!(
            v.terminal,
            Some((2, RuleAction::Block)),
            "the label from rule 0 reached rule 2"
        );
        let v = a.evaluate(&view("/public", None, &h, b""));
        assert_eq!(v.terminal, None);
        assert!(v.counted.is_empty());
    }

    #[test]
    fn headers_queries_cookies_regex_and_negation() {
        let mut h = HeaderMap::new();
        h.insert("user-agent", "EvilBot/1.0".parse().expect("hv"));
        h.insert("cookie", "a=1; session=abc%20d".parse().expect("hv"));
        let mut ua = m(
            Field::Header("user-agent".into()),
            Operator::Regex(vec!["(?i)evilbot".into()]),
        );
        let a = acl(vec![rule("ua", RuleAction::Block, vec![ua.clone()], &[])]);
        assert!(a.evaluate(&view("/", None, &h, b"")).terminal.is_some());
        ua.negate = true;
        let a = acl(vec![rule("ua", RuleAction::Block, vec![ua], &[])]);
        assert!(a.evaluate(&view("/", None, &h, b"")).terminal.is_none());
        let q = m(
            Field::QueryArgument("id".into()),
            Operator::Exact(vec!["1 OR 1".into()]),
        );
        let a = acl(vec![rule("q", RuleAction::Block, vec![q], &[])]);
        assert!(a
            .evaluate(&view("/", Some("x=2&id=1+OR%201"), &h, b""))
            .terminal
            .is_some());
        assert!(a
            .evaluate(&view("/", Some("id=2"), &h, b""))
            .terminal
            .is_none());
        let c = m(
            Field::Cookie("session".into()),
            Operator::Prefix(vec!["abc".into()]),
        );
        let a = acl(vec![rule("c", RuleAction::Block, vec![c], &[])]);
        assert!(a.evaluate(&view("/", None, &h, b"")).terminal.is_some());
    }

    #[test]
    fn oversize_bodies_follow_the_rules_handling() {
        let h = HeaderMap::new();
        let mut body = m(Field::Body, Operator::Contains(vec!["DROP".into()]));
        for (oversize, long_blocked) in [
            (Oversize::Continue, false),
            (Oversize::Match, true),
            (Oversize::NoMatch, false),
        ] {
            body.oversize = oversize;
            let a = acl(vec![rule("b", RuleAction::Block, vec![body.clone()], &[])]);
            assert_eq!(a.body_limit(), 8);
            assert!(a.evaluate(&view("/", None, &h, b"DROP")).terminal.is_some());
            // Nine bytes: over the eight inspected, and the word is not in the first eight.
            let v = a.evaluate(&view("/", None, &h, b"xxxxxxxxDROP"));
            assert_eq!(v.terminal.is_some(), long_blocked, "{oversize:?}");
        }
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
