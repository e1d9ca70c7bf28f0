//! What asking an origin group gives: a response and the member that sent it, or why
//! no member could answer.

use http::Response;
use std::time::Duration;

/// The member that answered, as the config writes it (`lb:us-east-1`): what the access
/// log and the edge's own errors name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginName(pub String);

impl OriginName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for OriginName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why no origin produced a usable answer.
#[derive(Debug, Clone)]
pub struct OriginFailure {
    /// One line per member tried.
    pub attempts: Vec<String>,
    /// Every attempt timed out (504 rather than 502).
    pub timed_out: bool,
}

impl std::fmt::Display for OriginFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.attempts.join("; "))
    }
}

/// A response from an origin, and which member sent it.
pub struct OriginResponse {
    pub member: OriginName,
    /// Boxed so an origin-response function (or one that answered at origin-request) can
    /// stand in for the origin's own body.
    pub response: Response<meridian_http::Body>,
    pub elapsed: Duration,
}
