//! `[secrets]` and the edge→balancer transport: what reads, and the precise errors.

use meridian_config::{Config, OriginProtocol, SecretSource};

fn with(extra: &str) -> String {
    format!(
        "[deployment]\nname = \"x\"\nzone = \"x.example\"\n[[region]]\nname = \"r1\"\nlocation = {{ lat = 1, lon = 2 }}\nazs = [\"r1a\"]\n{extra}"
    )
}

#[test]
fn secrets_come_from_a_file_an_environment_variable_or_the_state_dir() {
    let c = Config::parse(
        &with("[secrets]\nadmin_token = { file = \"/etc/meridian/admin-token\" }\nedge_signing_key = { env = \"MERIDIAN_EDGE_KEY\" }\n"),
        "s.toml",
    )
    .unwrap();
    assert_eq!(
        c.secrets.admin_token,
        SecretSource::File("/etc/meridian/admin-token".into())
    );
    assert_eq!(
        c.secrets.edge_signing_key,
        SecretSource::Env("MERIDIAN_EDGE_KEY".into())
    );
    let p = Config::parse(
        &with("[secrets]\ndb_password = { file = \"/run/secrets/db\" }\ncache_password = { env = \"REDIS_PW\" }\ndisk_cache_key = { file = \"/run/secrets/disk\" }\n"),
        "s.toml",
    )
    .unwrap();
    assert_eq!(
        (
            p.secrets.db_password,
            p.secrets.cache_password,
            p.secrets.disk_cache_key
        ),
        (
            SecretSource::File("/run/secrets/db".into()),
            SecretSource::Env("REDIS_PW".into()),
            SecretSource::File("/run/secrets/disk".into())
        )
    );
    let d = Config::parse(&with(""), "s.toml").unwrap();
    assert_eq!(d.secrets.admin_token, SecretSource::StateDir);
    assert_eq!(d.secrets.db_password, SecretSource::StateDir);
    assert_eq!(d.distribution.origin_protocol, OriginProtocol::Http);
    assert_eq!(d.lb_tls_port(), 8080 + 363);
    assert_eq!(d.lb_server_name("r1"), "lb-r1.x.example");
}

#[test]
fn secret_and_transport_mistakes_name_the_key_and_the_fix() {
    let cases = [
        (
            "[secrets]\nadmin_token = { file = \"/a\", env = \"B\" }\n",
            "secrets.admin_token",
            "names both",
        ),
        (
            "[secrets]\nadmin_token = { env = \"NOT-A VAR\" }\n",
            "secrets.admin_token.env",
            "not an environment variable",
        ),
        (
            "[secrets]\nadmin_token = { }\n",
            "secrets.admin_token.file",
            "missing",
        ),
        (
            "[secrets]\nadmin_token = \"s3cret\"\n",
            "secrets.admin_token",
            "must be a table",
        ),
        (
            "[secrets]\nadmin_tokn = { file = \"/a\" }\n",
            "secrets.admin_tokn",
            "unknown key",
        ),
        (
            "[distribution]\norigin_protocol = \"htps\"\n",
            "distribution.origin_protocol",
            "not a valid",
        ),
        (
            "[load_balancer]\ntls_port = 0\n",
            "load_balancer.tls_port",
            "",
        ),
        (
            "[distribution]\n[[distribution.response_headers_policy]]\nname = \"p\"\n\
             [distribution.response_headers_policy.cors]\nallow_origins = [\"*\"]\n\
             allow_credentials = true\n",
            "distribution.response_headers_policy[0].cors.allow_credentials",
            "any site",
        ),
    ];
    for (extra, key, problem) in cases {
        let errs = Config::parse(&with(extra), "s.toml").unwrap_err().0;
        let e = errs
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("{extra}: {errs:#?}"));
        assert!(e.problem.contains(problem), "{extra}: {}", e.problem);
        assert!(!e.fix.is_empty(), "{extra}");
        assert!(
            !e.problem.contains("s3cret") && !e.fix.contains("s3cret"),
            "a secret in an error"
        );
    }
}
