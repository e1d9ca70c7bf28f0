//! `[distribution] http_version`, CloudFront's `HttpVersion`: what reads, the default, and
//! the precise error for a value the edge does not serve.

use meridian_config::{Config, HttpVersion};

fn with(extra: &str) -> String {
    format!(
        "[deployment]\nname = \"x\"\nzone = \"x.example\"\n[[region]]\nname = \"r1\"\nlocation = {{ lat = 1, lon = 2 }}\nazs = [\"r1a\"]\n{extra}"
    )
}

#[test]
fn http_version_reads_cloudfronts_values_and_defaults_to_http2() {
    let d = Config::parse(&with(""), "h.toml").unwrap();
    assert_eq!(d.distribution.http_version, HttpVersion::Http2);
    assert!(!d.distribution.http_version.http3());
    let two = Config::parse(
        &with("[distribution]\nhttp_version = \"http2\"\n"),
        "h.toml",
    )
    .unwrap();
    assert_eq!(two.distribution.http_version, HttpVersion::Http2);
    let three = Config::parse(
        &with("[distribution]\nhttp_version = \"http2and3\"\n"),
        "h.toml",
    )
    .unwrap();
    assert_eq!(three.distribution.http_version, HttpVersion::Http2And3);
    assert!(three.distribution.http_version.http3());
}

#[test]
fn an_unserved_http_version_names_file_line_key_and_the_choices() {
    for (value, hint) in [
        ("http3", ""),
        ("http2and4", "did you mean \"http2and3\""),
        ("http1.1", ""),
    ] {
        let text = with(&format!("[distribution]\n\nhttp_version = \"{value}\"\n"));
        let errs = Config::parse(&text, "h.toml").unwrap_err().0;
        let e = errs
            .iter()
            .find(|e| e.key == "distribution.http_version")
            .unwrap_or_else(|| panic!("{value}: {errs:#?}"));
        assert!(e.problem.contains(value), "{}", e.problem);
        assert!(e.fix.contains("http2, http2and3"), "{}", e.fix);
        assert!(e.fix.contains(hint), "{}", e.fix);
        assert_eq!((e.file.as_str(), e.line), ("h.toml", 10), "{e}");
    }
}
