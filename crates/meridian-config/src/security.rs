//! The security settings of a deployment: how the edge talks to the balancers (TLS or not,
//! which CA it trusts) and where each secret comes from.

use crate::error::Diagnostics;
use crate::read::Table;
use serde::Serialize;
use std::path::PathBuf;

/// CloudFront's origin protocol policy for the balancers of the deployment (`lb:<region>`
/// members); plain `http://` origins are always spoken to in HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OriginProtocol {
    Http,
    Https,
}

/// Where one secret is kept. The state dir is the one-machine default; on real machines a
/// file (a mounted secret) or an environment variable, so secrets never travel with the
/// state dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretSource {
    StateDir,
    File(PathBuf),
    Env(String),
}

/// `[secrets]`: where each secret comes from (the state dir unless a file or variable is
/// named): the admin token, the edge signing key, the database and cache passwords, and
/// the key that seals a PoP's disk cache.
#[derive(Debug, Clone, Serialize)]
pub struct Secrets {
    pub admin_token: SecretSource,
    pub edge_signing_key: SecretSource,
    pub db_password: SecretSource,
    pub cache_password: SecretSource,
    pub disk_cache_key: SecretSource,
}

impl Default for Secrets {
    fn default() -> Self {
        Secrets {
            admin_token: SecretSource::StateDir,
            edge_signing_key: SecretSource::StateDir,
            db_password: SecretSource::StateDir,
            cache_password: SecretSource::StateDir,
            disk_cache_key: SecretSource::StateDir,
        }
    }
}

pub(crate) fn read_secrets(t: &Table, d: &mut Diagnostics) -> Option<Secrets> {
    let mut s = Secrets::default();
    let mut ok = true;
    for (key, slot) in [
        ("admin_token", &mut s.admin_token),
        ("edge_signing_key", &mut s.edge_signing_key),
        ("db_password", &mut s.db_password),
        ("cache_password", &mut s.cache_password),
        ("disk_cache_key", &mut s.disk_cache_key),
    ] {
        if !t.has(key) {
            continue;
        }
        match t.table(d, key).map(|src| read_source(&src, d)) {
            Some(Some(src)) => *slot = src,
            _ => ok = false,
        }
    }
    t.finish(d);
    ok.then_some(s)
}

fn read_source(t: &Table, d: &mut Diagnostics) -> Option<SecretSource> {
    let file = t.str(d, "file");
    let env = t.str(d, "env");
    t.finish(d);
    let fix =
        "write `{ file = \"/etc/meridian/admin-token\" }` or `{ env = \"MERIDIAN_ADMIN_TOKEN\" }`";
    match (file, env) {
        (Some(_), Some(_)) => {
            d.error(
                t.span.clone(),
                &t.path,
                format!("`{}` names both a file and an environment variable", t.path),
                fix,
            );
            None
        }
        (Some(f), None) if f.trim().is_empty() => {
            let field = t.get("file")?;
            d.error(field.span, &field.key, "the file name is empty", fix);
            None
        }
        (Some(f), None) => Some(SecretSource::File(PathBuf::from(f))),
        (None, Some(e))
            if e.is_empty() || !e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            let field = t.get("env")?;
            d.error(
                field.span,
                &field.key,
                format!("`{e}` is not an environment variable name"),
                "use letters, digits and underscores, such as \"MERIDIAN_ADMIN_TOKEN\"",
            );
            None
        }
        (None, Some(e)) => Some(SecretSource::Env(e)),
        (None, None) => {
            if !t.has("file") && !t.has("env") {
                t.missing(d, "file", fix);
            }
            None
        }
    }
}

/// Reads `origin_protocol` and `origin_ca_file` of `[distribution]`.
pub(crate) fn read_origin_transport(
    t: &Table,
    d: &mut Diagnostics,
    protocol: &mut OriginProtocol,
    ca_file: &mut Option<PathBuf>,
) {
    match t.choice(d, "origin_protocol", &["http", "https"]) {
        Some("http") => *protocol = OriginProtocol::Http,
        Some(_) => *protocol = OriginProtocol::Https,
        None => {}
    }
    if let Some(f) = t.str(d, "origin_ca_file") {
        *ca_file = Some(PathBuf::from(f));
    }
}
