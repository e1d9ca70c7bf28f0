//! API protection in `[distribution]`: what the default deployment protects, and precise
//! errors for rules that could not run.

use meridian_config::{Config, Field, Operator, Oversize, RateKey, RuleAction};

fn config(extra: &str) -> String {
    format!(
        "[deployment]\nname = \"x\"\nzone = \"x.example\"\n[[region]]\nname = \"r1\"\nlocation = {{ lat = 1, lon = 2 }}\nazs = [\"r1a\"]\n[distribution]\n{extra}"
    )
}

fn errors(extra: &str) -> Vec<meridian_config::ConfigError> {
    Config::parse(&config(extra), "waf.toml").unwrap_err().0
}

#[test]
fn the_default_deployment_protects_portfolios_and_limits_api_calls() {
    let cfg = Config::embedded_default();
    let p = &cfg.distribution.protection;
    let portfolio = cfg.distribution.behavior_for("/api/portfolio/mei");
    assert_eq!(portfolio.jwt_authorizer.as_deref(), Some("users"));
    let users = p.jwt_authorizer("users").unwrap();
    assert!(users.jwks.is_none(), "up makes the development key");
    assert_eq!(
        users.forward_claims,
        vec![("sub".to_owned(), "x-richesreach-user".to_owned())]
    );
    // Every balancer passes that field on only from a signed edge request.
    assert_eq!(cfg.load_balancer.claim_headers, vec!["x-richesreach-user"]);
    let r = &p.rate_based_rules[0];
    assert_eq!(
        (r.limit, r.window.as_secs(), r.action),
        (50, 1, RuleAction::Block)
    );
    assert_eq!(r.key, vec![RateKey::Ip]);
    assert_eq!(r.path_pattern, "/api/*");
    let orders = cfg.distribution.behavior_for("/api/orders");
    assert!(orders.idempotency_window.is_some());
    assert!(cfg
        .distribution
        .behavior_for("/static/app.css")
        .jwt_authorizer
        .is_none());
}

#[test]
fn rules_read_in_waf_terms() {
    let cfg = Config::parse(
        &config(
            r#"body_inspection_limit = "8KB"
[[distribution.rule]]
name = "no-sqli"
action = "block"
status = 406
labels = ["app:sqli"]
[[distribution.rule.match]]
field = "body"
operator = "regex"
values = ["(?i)union\\s+select"]
oversize = "match"
[[distribution.rule.match]]
field = "header:Content-Type"
operator = "prefix"
values = ["application/"]
lowercase = true
[[distribution.rate_based_rule]]
name = "per-key"
limit = 10
window = "10m"
key = ["header:X-Api-Key", "jwt:sub"]
action = "count"
"#,
        ),
        "waf.toml",
    )
    .unwrap();
    let p = &cfg.distribution.protection;
    assert_eq!(p.body_inspection_limit, 8000);
    let r = &p.rules[0];
    assert_eq!((r.action, r.block_status), (RuleAction::Block, 406));
    assert_eq!(r.matches[0].field, Field::Body);
    assert_eq!(r.matches[0].oversize, Oversize::Match);
    assert!(matches!(&r.matches[0].operator, Operator::Regex(v) if v.len() == 1));
    assert_eq!(r.matches[1].field, Field::Header("content-type".into()));
    let rate = &p.rate_based_rules[0];
    assert_eq!(rate.window.as_secs(), 600);
    assert!(rate.keys_on_claims());
    assert_eq!(
        rate.key,
        vec![
            RateKey::Header("x-api-key".into()),
            RateKey::JwtClaim("sub".into())
        ]
    );
}

#[test]
fn impossible_protection_gets_precise_errors() {
    // (the config text, the key named, a phrase of the fix, the line)
    let cases = [
        (
            "[[distribution.rule]]\nname = \"r\"\naction = \"block\"\n[[distribution.rule.match]]\nfield = \"path\"\noperator = \"regex\"\nvalues = [\"/admin(\"]\n",
            "distribution.rule[0].match[0].values",
            "regex",
            15,
        ),
        (
            "[[distribution.rule]]\nname = \"r\"\naction = \"deny\"\n[[distribution.rule.match]]\nfield = \"path\"\noperator = \"exact\"\nvalues = [\"/x\"]\n",
            "distribution.rule[0].action",
            "block",
            11,
        ),
        (
            "[[distribution.rule]]\nname = \"r\"\naction = \"block\"\n[[distribution.rule.match]]\nfield = \"path\"\noperator = \"ip_set\"\nvalues = [\"10.0.0.0/8\"]\n",
            "distribution.rule[0].match[0].operator",
            "field = \"ip\"",
            14,
        ),
        (
            "[[distribution.rate_based_rule]]\nname = \"r\"\nlimit = 5\nwindow = \"20m\"\naction = \"block\"\n",
            "distribution.rate_based_rule[0].window",
            "\"5m\"",
            12,
        ),
        (
            "[[distribution.rate_based_rule]]\nname = \"r\"\nlimit = 5\nkey = [\"user\"]\naction = \"block\"\n",
            "distribution.rate_based_rule[0].key",
            "jwt:<claim>",
            12,
        ),
        (
            "[[distribution.jwt_authorizer]]\nname = \"a\"\nalgorithms = [\"none\"]\n",
            "distribution.jwt_authorizer[0].algorithms",
            "never",
            11,
        ),
        (
            "[distribution.default_behavior]\njwt_authorizer = \"missing\"\n",
            "distribution.default_behavior.jwt_authorizer",
            "[[distribution.jwt_authorizer]]",
            10,
        ),
        (
            "[distribution.geo_restriction]\nrestriction_type = \"whitelist\"\nlocations = [\"USA\"]\n",
            "distribution.geo_restriction.locations",
            "alpha-2",
            11,
        ),
    ];
    for (extra, key, fix, line) in cases {
        let errs = errors(extra);
        assert_eq!(errs.len(), 1, "{extra}\n{errs:#?}");
        let e = &errs[0];
        assert_eq!(e.key, key, "{extra}");
        assert!(e.fix.contains(fix), "{extra}: {}", e.fix);
        assert_eq!(e.line, line, "{extra}");
        assert_eq!(e.file, "waf.toml");
    }
}
