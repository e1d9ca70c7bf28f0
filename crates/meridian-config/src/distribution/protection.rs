//! API protection in `[distribution]`, in AWS WAF's and CloudFront's words:
//! `[[distribution.rule]]` (a web ACL's rules, in order), `[[distribution.rate_based_rule]]`,
//! `[[distribution.jwt_authorizer]]`, `[[distribution.key_group]]` (public keys for signed
//! URLs and cookies), `[distribution.geo_restriction]`, and per behavior `jwt_authorizer`,
//! `trusted_key_groups` and `idempotency_window`. The edge enforces them
//! (`meridian-protect`); this module only reads and checks them, so a bad regex or an
//! unknown name is a config error with its line, never a surprise at run time.

use crate::common::read_named;
use crate::error::Diagnostics;
use crate::network::Cidr;
use crate::read::Table;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// Everything a PoP checks before it routes a viewer request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Protection {
    /// Custom rules, evaluated in order (a web ACL): the first `allow` or `block` ends the
    /// evaluation, `count` records and goes on.
    pub rules: Vec<Rule>,
    pub rate_based_rules: Vec<RateBasedRule>,
    pub jwt_authorizers: Vec<JwtAuthorizer>,
    pub key_groups: Vec<KeyGroup>,
    pub geo_restriction: GeoRestriction,
    /// How much of a request body rules may inspect (AWS WAF: 16 KB for CloudFront by
    /// default); what lies beyond is governed by each body match's `oversize`.
    pub body_inspection_limit: u64,
}

impl Protection {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
            && self.rate_based_rules.is_empty()
            && self.geo_restriction.restriction_type == GeoRestrictionType::None
    }

    /// The headers every JWT authorizer forwards claims in, once each (lower case): an
    /// origin trusts them, so only the edge may set them.
    pub fn claim_headers(&self) -> Vec<String> {
        let mut headers: Vec<String> = Vec::new();
        for a in &self.jwt_authorizers {
            for (_, h) in &a.forward_claims {
                if !headers.contains(h) {
                    headers.push(h.clone());
                }
            }
        }
        headers
    }

    pub fn jwt_authorizer(&self, name: &str) -> Option<&JwtAuthorizer> {
        self.jwt_authorizers.iter().find(|a| a.name == name)
    }
    pub fn key_group(&self, name: &str) -> Option<&KeyGroup> {
        self.key_groups.iter().find(|g| g.name == name)
    }
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    Allow,
    Block,
    /// Records the match (metrics, labels) and lets the request go on.
    Count,
}

impl RuleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::Allow => "allow",
            RuleAction::Block => "block",
            RuleAction::Count => "count",
        }
    }
}

/// The part of a request a match looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "field", content = "name")]
pub enum Field {
    Method,
    /// The path, without the query string.
    Path,
    /// The whole query string, without the `?`.
    QueryString,
    Header(String),
    QueryArgument(String),
    Cookie(String),
    /// The first `body_inspection_limit` bytes of the body.
    Body,
    /// The viewer's address (the connection's).
    Ip,
    /// The first address in a header such as `X-Forwarded-For`.
    ForwardedIp(String),
    /// Labels added by earlier rules.
    Label,
}

/// How a match compares.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "operator", content = "values")]
pub enum Operator {
    Exact(Vec<String>),
    Prefix(Vec<String>),
    Suffix(Vec<String>),
    Contains(Vec<String>),
    /// Checked to compile when the config is read.
    Regex(Vec<String>),
    IpSet(Vec<Cidr>),
}

/// What a body match decides for a body longer than the inspection limit (AWS WAF's
/// oversize handling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Oversize {
    /// Inspect the first `body_inspection_limit` bytes as if they were the whole body.
    Continue,
    Match,
    NoMatch,
}

/// One condition of a rule; a rule matches when all its conditions do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Match {
    pub field: Field,
    pub operator: Operator,
    /// Matches when the comparison fails (a missing field then matches).
    pub negate: bool,
    /// Compare lowercase (headers' values, paths): AWS WAF's LOWERCASE text transformation.
    pub lowercase: bool,
    pub oversize: Oversize,
}

/// `[[distribution.rule]]`: one rule of the web ACL.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub name: String,
    pub action: RuleAction,
    pub matches: Vec<Match>,
    /// Labels the request carries once this rule matched, for later rules' `label` field.
    pub labels: Vec<String>,
    /// For `block`: the status and body the viewer gets.
    pub block_status: u16,
    pub block_body: String,
}

/// One part of a rate-based rule's key (AWS WAF's aggregation keys). A request missing a
/// part is not counted by the rule, as in WAF; a missing or unreadable forwarded-IP header
/// counts as the connection's address instead (WAF's fallback), so omitting it is no way out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "name")]
pub enum RateKey {
    Ip,
    ForwardedIp(String),
    Header(String),
    Cookie(String),
    QueryArgument(String),
    /// A claim of the token the behavior's JWT authorizer verified.
    JwtClaim(String),
}

/// `[[distribution.rate_based_rule]]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateBasedRule {
    pub name: String,
    /// The scope: requests whose path matches (CloudFront pattern; a behavior's own pattern
    /// scopes the rule to that behavior).
    pub path_pattern: String,
    /// Empty means every method.
    pub methods: Vec<String>,
    pub limit: u64,
    #[serde(with = "crate::serde_duration")]
    pub window: Duration,
    pub key: Vec<RateKey>,
    /// `block` answers 429; `count` only records who would have been blocked.
    pub action: RuleAction,
}

impl RateBasedRule {
    /// Whether the rule needs a verified token first.
    pub fn keys_on_claims(&self) -> bool {
        self.key.iter().any(|k| matches!(k, RateKey::JwtClaim(_)))
    }
}

/// `[[distribution.jwt_authorizer]]`: who may call a behavior, proven by a JWT.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JwtAuthorizer {
    pub name: String,
    /// The JWKS file, reloaded when it changes. Without one, `up` makes a development key
    /// in its state directory and `meridian token` mints tokens with it.
    pub jwks: Option<PathBuf>,
    pub issuer: Option<String>,
    /// Any one must be in the token's `aud`; empty means `aud` is not checked.
    pub audiences: Vec<String>,
    #[serde(with = "crate::serde_duration")]
    pub leeway: Duration,
    /// `HS256`, `RS256`, `ES256`.
    pub algorithms: Vec<String>,
    /// Claims sent to the origin as request headers: (claim, header). A viewer's own header
    /// of that name is removed first, so an origin can trust it.
    pub forward_claims: Vec<(String, String)>,
    /// Also take the token from this cookie when there is no `Authorization: Bearer`.
    pub token_cookie: Option<String>,
}

/// `[[distribution.key_group]]`: public keys whose signed URLs and cookies a behavior
/// trusts (`trusted_key_groups`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyGroup {
    pub name: String,
    pub public_keys: Vec<PublicKey>,
}

/// `[[distribution.key_group.public_key]]`: CloudFront's public key: the ID that signed
/// URLs name in `Key-Pair-Id`, and its PEM file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublicKey {
    pub id: String,
    pub file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GeoRestrictionType {
    None,
    /// Only viewers in the listed countries.
    Whitelist,
    /// Every viewer except those in the listed countries.
    Blacklist,
}

/// `[distribution.geo_restriction]`: CloudFront's geographic restriction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GeoRestriction {
    pub restriction_type: GeoRestrictionType,
    /// ISO 3166-1 alpha-2 country codes, uppercase.
    pub locations: Vec<String>,
    /// A MaxMind country or city database; without one, a viewer's country is the one of
    /// the client location its address is in.
    pub geoip_database: Option<PathBuf>,
}

impl Default for GeoRestriction {
    fn default() -> Self {
        GeoRestriction {
            restriction_type: GeoRestrictionType::None,
            locations: Vec::new(),
            geoip_database: None,
        }
    }
}

impl GeoRestriction {
    /// Whether a viewer from `country` (None: unknown) may be served. An unknown country
    /// passes a block list and fails an allow list, as CloudFront.
    pub fn admits(&self, country: Option<&str>) -> bool {
        let listed = country.is_some_and(|c| self.locations.iter().any(|l| l == c));
        match self.restriction_type {
            GeoRestrictionType::None => true,
            GeoRestrictionType::Whitelist => listed,
            GeoRestrictionType::Blacklist => !listed,
        }
    }
}

const ALGORITHMS: &[&str] = &["HS256", "RS256", "ES256"];

pub(super) fn read_protection(t: &Table, d: &mut Diagnostics) -> Option<Protection> {
    let mut p = Protection {
        body_inspection_limit: 16 * 1024,
        ..Protection::default()
    };
    let mut ok = true;
    if let Some(n) = t.size(d, "body_inspection_limit") {
        p.body_inspection_limit = n.0;
    }
    match read_named(t, d, "rule", read_rule) {
        Some(r) => p.rules = r,
        None => ok = false,
    }
    match read_named(t, d, "rate_based_rule", read_rate_rule) {
        Some(r) => p.rate_based_rules = r,
        None => ok = false,
    }
    match read_named(t, d, "jwt_authorizer", read_jwt_authorizer) {
        Some(a) => p.jwt_authorizers = a,
        None => ok = false,
    }
    match read_named(t, d, "key_group", read_key_group) {
        Some(g) => p.key_groups = g,
        None => ok = false,
    }
    if let Some(g) = t.table(d, "geo_restriction") {
        match read_geo(&g, d) {
            Some(g) => p.geo_restriction = g,
            None => ok = false,
        }
    }
    ok.then_some(p)
}

fn read_action(s: &Table, d: &mut Diagnostics, allowed: &[&'static str]) -> Option<RuleAction> {
    if !s.has("action") {
        s.missing(d, "action", &format!("add action = \"{}\"", allowed[0]));
        return None;
    }
    Some(match s.choice(d, "action", allowed)? {
        "allow" => RuleAction::Allow,
        "count" => RuleAction::Count,
        _ => RuleAction::Block,
    })
}

fn read_rule(s: &Table, d: &mut Diagnostics, name: String) -> Option<Rule> {
    let action = read_action(s, d, &["block", "allow", "count"]);
    let block_status = s
        .int(d, "status", 400..=599)
        .map(|v| v as u16)
        .unwrap_or(403);
    let block_body = s
        .str(d, "body")
        .unwrap_or_else(|| "Request blocked\n".to_owned());
    let labels = labels(s, d, "labels");
    let mut matches = Vec::new();
    let mut ok = true;
    for m in s.tables(d, "match") {
        match read_match(&m, d) {
            Some(x) => matches.push(x),
            None => ok = false,
        }
    }
    if matches.is_empty() && ok {
        d.error(
            s.span.clone(),
            &format!("{}.match", s.path),
            format!("rule `{name}` has no conditions"),
            "add [[distribution.rule.match]] with field, operator and values",
        );
        ok = false;
    }
    s.finish(d);
    Some(Rule {
        name,
        action: action?,
        matches,
        labels,
        block_status,
        block_body,
    })
    .filter(|_| ok)
}

/// Label names: letters, digits, `-`, `_`, `:` (WAF writes namespaces with colons).
fn labels(s: &Table, d: &mut Diagnostics, key: &'static str) -> Vec<String> {
    let mut out = Vec::new();
    for l in s.str_list(d, key).unwrap_or_default() {
        let v = l.get_ref();
        let fine = !v.is_empty()
            && v.len() <= 128
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_:".contains(c));
        if fine {
            out.push(v.clone());
        } else {
            d.error(
                l.span(),
                &format!("{}.{key}", s.path),
                format!("`{v}` is not a valid label"),
                "use letters, digits, '-', '_' and ':' (at most 128), such as \"app:admin-path\"",
            );
        }
    }
    out
}

/// `field = "header:x-api-key"` and the like: the part before the colon picks the kind.
fn read_field(s: &Table, d: &mut Diagnostics) -> Option<Field> {
    let raw = s.req_str(
        d,
        "field",
        "add field = \"path\" (or method, header:<name>, ...)",
    )?;
    let (kind, name) = match raw.split_once(':') {
        Some((k, n)) => (k, Some(n.trim().to_owned())),
        None => (raw.as_str(), None),
    };
    let named = |n: Option<String>| n.filter(|n| !n.is_empty());
    let field = match (kind, named(name)) {
        ("method", None) => Field::Method,
        ("path", None) => Field::Path,
        ("query_string", None) => Field::QueryString,
        ("body", None) => Field::Body,
        ("ip", None) => Field::Ip,
        ("label", None) => Field::Label,
        ("header", Some(n)) => Field::Header(n.to_ascii_lowercase()),
        ("query", Some(n)) => Field::QueryArgument(n),
        ("cookie", Some(n)) => Field::Cookie(n),
        ("forwarded-ip", Some(n)) => Field::ForwardedIp(n.to_ascii_lowercase()),
        _ => {
            let f = s.get("field")?;
            d.error(
                f.span,
                &f.key,
                format!("`{raw}` is not a field a rule can match"),
                "use method, path, query_string, body, ip, label, header:<name>, query:<name>, cookie:<name> or forwarded-ip:<header>",
            );
            return None;
        }
    };
    Some(field)
}

fn read_match(s: &Table, d: &mut Diagnostics) -> Option<Match> {
    let field = read_field(s, d);
    let op = s.choice(
        d,
        "operator",
        &["exact", "prefix", "suffix", "contains", "regex", "ip_set"],
    );
    if op.is_none() && !s.has("operator") {
        s.missing(d, "operator", "add operator = \"exact\"");
    }
    let values = s.str_list(d, "values");
    if values.is_none() && !s.has("values") {
        s.missing(d, "values", "add values = [\"...\"] (any one may match)");
    }
    let negate = s.bool(d, "negate").unwrap_or(false);
    let lowercase = s.bool(d, "lowercase").unwrap_or(false);
    let oversize = match s.choice(d, "oversize", &["continue", "match", "no_match"]) {
        Some("match") => Oversize::Match,
        Some("no_match") => Oversize::NoMatch,
        _ => Oversize::Continue,
    };
    let field = field?;
    let values = values?;
    let key = format!("{}.values", s.path);
    let strings = || values.iter().map(|v| v.get_ref().clone()).collect();
    let operator = match op? {
        "exact" => Operator::Exact(strings()),
        "prefix" => Operator::Prefix(strings()),
        "suffix" => Operator::Suffix(strings()),
        "contains" => Operator::Contains(strings()),
        "regex" => {
            let mut ok = true;
            for v in &values {
                if let Err(e) = compile_regex(v.get_ref()) {
                    d.error(
                        v.span(),
                        &key,
                        format!("`{}` is not a valid regular expression: {e}", v.get_ref()),
                        "fix the pattern (Rust regex syntax, no look-around or back-references)",
                    );
                    ok = false;
                }
            }
            if !ok {
                return None;
            }
            Operator::Regex(strings())
        }
        _ => {
            let mut cidrs = Vec::new();
            for v in &values {
                let text = v.get_ref();
                let parsed = Cidr::parse(text).or_else(|| {
                    text.parse::<std::net::IpAddr>().ok().map(|addr| Cidr {
                        addr,
                        prefix: if addr.is_ipv4() { 32 } else { 128 },
                    })
                });
                match parsed {
                    Some(c) => cidrs.push(c),
                    None => d.error(
                        v.span(),
                        &key,
                        format!("`{text}` is not an address or network"),
                        "write an address or a CIDR such as \"203.0.113.0/24\"",
                    ),
                }
            }
            if cidrs.len() != values.len() {
                return None;
            }
            if !matches!(field, Field::Ip | Field::ForwardedIp(_)) {
                let f = s.get("operator")?;
                d.error(
                    f.span,
                    &f.key,
                    "ip_set compares addresses",
                    "use it with field = \"ip\" or \"forwarded-ip:<header>\"",
                );
                return None;
            }
            Operator::IpSet(cidrs)
        }
    };
    s.finish(d);
    Some(Match {
        field,
        operator,
        negate,
        lowercase,
        oversize,
    })
}

/// The one way rules' regular expressions are compiled, here and at the edge, so what
/// `validate` accepts is exactly what runs. Size limits keep a hostile pattern in a config
/// from using unbounded memory.
pub fn compile_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
}

fn read_rate_key(s: &Table, d: &mut Diagnostics) -> Option<Vec<RateKey>> {
    let list = s.str_list(d, "key")?;
    let mut out = Vec::new();
    for k in list {
        let raw = k.get_ref();
        let (kind, name) = match raw.split_once(':') {
            Some((k, n)) if !n.trim().is_empty() => (k, Some(n.trim().to_owned())),
            _ => (raw.as_str(), None),
        };
        let key = match (kind, name) {
            ("ip", None) => RateKey::Ip,
            ("forwarded-ip", Some(n)) => RateKey::ForwardedIp(n.to_ascii_lowercase()),
            ("header", Some(n)) => RateKey::Header(n.to_ascii_lowercase()),
            ("cookie", Some(n)) => RateKey::Cookie(n),
            ("query", Some(n)) => RateKey::QueryArgument(n),
            ("jwt", Some(n)) => RateKey::JwtClaim(n),
            _ => {
                d.error(
                    k.span(),
                    &format!("{}.key", s.path),
                    format!("`{raw}` is not a rate-limit key"),
                    "use ip, forwarded-ip:<header>, header:<name>, cookie:<name>, query:<name> or jwt:<claim>",
                );
                return None;
            }
        };
        out.push(key);
    }
    Some(out)
}

fn read_rate_rule(s: &Table, d: &mut Diagnostics, name: String) -> Option<RateBasedRule> {
    let limit = s.int(d, "limit", 1..=2_000_000_000).map(|v| v as u64);
    if !s.has("limit") {
        s.missing(d, "limit", "add limit = 100 (requests per window)");
    }
    let window = s.duration(d, "window").unwrap_or(Duration::from_secs(60));
    let window_ok = (Duration::from_secs(1)..=Duration::from_secs(600)).contains(&window)
        && window.subsec_nanos() == 0;
    if !window_ok {
        if let Some(f) = s.get("window") {
            d.error(
                f.span,
                &f.key,
                "a rate-based rule's window is whole seconds from 1s to 10m",
                "use a window such as \"1s\", \"60s\" or \"5m\"",
            );
        }
    }
    let key = if s.has("key") {
        read_rate_key(s, d)
    } else {
        Some(vec![RateKey::Ip])
    };
    let path_pattern = s.str(d, "path_pattern").unwrap_or_else(|| "*".to_owned());
    let methods = s
        .str_list(d, "methods")
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.into_inner().to_ascii_uppercase())
        .collect();
    let action = read_action(s, d, &["block", "count"]);
    s.finish(d);
    Some(RateBasedRule {
        name,
        path_pattern,
        methods,
        limit: limit?,
        window,
        key: key?,
        action: action?,
    })
    .filter(|_| window_ok)
}

fn read_jwt_authorizer(s: &Table, d: &mut Diagnostics, name: String) -> Option<JwtAuthorizer> {
    let jwks = s.str(d, "jwks").map(PathBuf::from);
    let issuer = s.str(d, "issuer");
    let audiences = s
        .str_list(d, "audiences")
        .unwrap_or_default()
        .into_iter()
        .map(|a| a.into_inner())
        .collect();
    let leeway = s.duration(d, "leeway").unwrap_or(Duration::from_secs(60));
    let mut ok = true;
    let algorithms = match s.str_list(d, "algorithms") {
        None => ALGORITHMS.iter().map(|a| a.to_string()).collect(),
        Some(list) => {
            let mut out = Vec::new();
            for a in list {
                let up = a.get_ref().to_ascii_uppercase();
                if ALGORITHMS.contains(&up.as_str()) {
                    out.push(up);
                } else {
                    d.error(
                        a.span(),
                        &format!("{}.algorithms", s.path),
                        format!("`{}` is not a supported JWT algorithm", a.get_ref()),
                        "use HS256, RS256 or ES256 (`none` is never accepted)",
                    );
                    ok = false;
                }
            }
            out
        }
    };
    let mut forward_claims = Vec::new();
    if let Some(t) = s.table(d, "forward_claims") {
        for claim in t.keys() {
            match t.str(d, claim) {
                Some(h) if http_header_name(&h) => {
                    forward_claims.push((claim.to_owned(), h.to_ascii_lowercase()))
                }
                Some(h) => {
                    if let Some(f) = t.get(claim) {
                        d.error(
                            f.span,
                            &f.key,
                            format!("`{h}` is not a header name"),
                            "use a name such as \"x-user-id\"",
                        );
                    }
                    ok = false;
                }
                None => ok = false,
            }
        }
    }
    let token_cookie = s.str(d, "token_cookie");
    s.finish(d);
    ok.then_some(JwtAuthorizer {
        name,
        jwks,
        issuer,
        audiences,
        leeway,
        algorithms,
        forward_claims,
        token_cookie,
    })
}

fn http_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn read_key_group(s: &Table, d: &mut Diagnostics, name: String) -> Option<KeyGroup> {
    let mut public_keys = Vec::new();
    let mut ok = true;
    for k in s.tables(d, "public_key") {
        let id = k.req_str(
            d,
            "id",
            "add id = \"K2JCJMDEHXQW5F\" (the ID signed URLs name in Key-Pair-Id)",
        );
        let file = k.req_str(d, "file", "add file = \"keys/public_key.pem\"");
        k.finish(d);
        match (id, file) {
            (Some(id), Some(file)) => public_keys.push(PublicKey {
                id,
                file: file.into(),
            }),
            _ => ok = false,
        }
    }
    if public_keys.is_empty() && ok {
        d.error(
            s.span.clone(),
            &format!("{}.public_key", s.path),
            format!("key group `{name}` has no public keys"),
            "add [[distribution.key_group.public_key]] with id and file",
        );
        ok = false;
    }
    s.finish(d);
    ok.then_some(KeyGroup { name, public_keys })
}

fn read_geo(s: &Table, d: &mut Diagnostics) -> Option<GeoRestriction> {
    let kind = match s.choice(d, "restriction_type", &["none", "whitelist", "blacklist"]) {
        Some("whitelist") => GeoRestrictionType::Whitelist,
        Some("blacklist") => GeoRestrictionType::Blacklist,
        _ => GeoRestrictionType::None,
    };
    let mut ok = true;
    let mut locations = Vec::new();
    for c in s.str_list(d, "locations").unwrap_or_default() {
        let v = c.get_ref();
        if v.len() == 2 && v.chars().all(|c| c.is_ascii_alphabetic()) {
            locations.push(v.to_ascii_uppercase());
        } else {
            d.error(
                c.span(),
                &format!("{}.locations", s.path),
                format!("`{v}` is not a country code"),
                "use ISO 3166-1 alpha-2 codes such as \"US\" or \"DE\"",
            );
            ok = false;
        }
    }
    if kind != GeoRestrictionType::None && locations.is_empty() && ok {
        d.error(
            s.span.clone(),
            &format!("{}.locations", s.path),
            "a geo restriction needs the countries it lists",
            "add locations = [\"US\", \"CA\"]",
        );
        ok = false;
    }
    let geoip_database = s.str(d, "geoip_database").map(PathBuf::from);
    s.finish(d);
    ok.then_some(GeoRestriction {
        restriction_type: kind,
        locations,
        geoip_database,
    })
}

/// Checks a behavior's references to protection (`jwt_authorizer`, `trusted_key_groups`)
/// against what `[distribution]` defines.
pub(super) fn check_behavior_refs(
    s: &Table,
    d: &mut Diagnostics,
    p: &Protection,
    jwt: &Option<String>,
    groups: &[String],
) {
    if let (Some(name), Some(f)) = (jwt, s.get("jwt_authorizer")) {
        if p.jwt_authorizer(name).is_none() {
            d.error(
                f.span,
                &f.key,
                format!("there is no JWT authorizer named `{name}`"),
                format!("define one with [[distribution.jwt_authorizer]] and name = \"{name}\""),
            );
        }
    }
    if let Some(f) = s.get("trusted_key_groups") {
        for g in groups {
            if p.key_group(g).is_none() {
                d.error(
                    f.span.clone(),
                    &f.key,
                    format!("there is no key group named `{g}`"),
                    format!("define one with [[distribution.key_group]] and name = \"{g}\""),
                );
            }
        }
    }
}
