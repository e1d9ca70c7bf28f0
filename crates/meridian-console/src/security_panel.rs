//! How the console asks each PoP for its protection report: `GET /protection` on the PoP's
//! admin address with the deployment's admin token, once a tick beside the metrics scrape.

use meridian_config::{Config, SecretSource};
use meridian_http::secrets::AdminToken;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The PoP admin path the report is at.
pub const PATH: &str = "/protection";
/// A report larger than this is refused (top keys are bounded at the PoP).
pub const MAX_BODY: usize = 4 << 20;

/// The deployment's admin token, as every node loads it: from the configured file or
/// variable, or the state dir's file. None (reports are asked for without a token and
/// refused) when the token lives in a state dir the console was not given.
pub fn load_token(config: &Config, state_dir: Option<&Path>) -> Option<AdminToken> {
    let source = &config.secrets.admin_token;
    let dir = match (state_dir, source) {
        (Some(d), _) => d,
        (None, SecretSource::StateDir) => return None,
        (None, _) => Path::new("."),
    };
    AdminToken::load(source, dir)
        .map_err(
            |e| tracing::warn!(error = %e, "no admin token: PoP protection reports stay empty"),
        )
        .ok()
}

/// One PoP's report body, or why there is none.
pub async fn fetch(
    addr: SocketAddr,
    token: Option<&str>,
    timeout: Duration,
) -> Result<String, String> {
    let f = meridian_http::client::call(addr, http::Method::GET, PATH, token, timeout, MAX_BODY)
        .await?;
    match f.status {
        200 => Ok(String::from_utf8_lossy(&f.body).into_owned()),
        401 | 403 => Err(format!(
            "the PoP refused the console's admin token ({})",
            f.status
        )),
        404 => Err("the PoP serves no /protection (an older build)".into()),
        s => Err(format!("/protection answered {s}")),
    }
}
