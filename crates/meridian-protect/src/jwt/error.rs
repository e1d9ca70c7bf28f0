//! Why a bearer token was refused, and how to say so to the client (RFC 6750).

/// A refusal. Details stay in the variant for logs; what a client is told
/// ([`JwtError::www_authenticate`]) is a fixed phrase per kind, so it leaks nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("no bearer token")]
    Missing,
    #[error("the token is over {0} bytes")]
    TooLarge(usize),
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("algorithm refused: {0}")]
    Algorithm(&'static str),
    #[error("no key for the token")]
    UnknownKey,
    #[error("the signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's issuer is not the expected one")]
    Issuer,
    #[error("the token is not for this audience")]
    Audience,
    /// A claim the authorizer forwards to the origin is absent (or cannot be a header
    /// value): the origin would get no verified value, and might take the request as
    /// nobody's in particular.
    #[error("the token has no usable `{0}` claim, which this authorizer forwards")]
    MissingClaim(String),
}

impl JwtError {
    /// A short snake_case label, usable as a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::Missing => "missing",
            JwtError::TooLarge(_) => "too_large",
            JwtError::Malformed(_) => "malformed",
            JwtError::Algorithm(_) => "algorithm",
            JwtError::UnknownKey => "unknown_key",
            JwtError::Signature => "signature",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::Issuer => "issuer",
            JwtError::Audience => "audience",
            JwtError::MissingClaim(_) => "missing_claim",
        }
    }

    /// What the client is told: fixed text, within RFC 6750's error_description charset.
    fn description(&self) -> &'static str {
        match self {
            JwtError::Missing => "no token",
            JwtError::TooLarge(_) => "the token is too large",
            JwtError::Malformed(_) => "the token is malformed",
            JwtError::Algorithm(_) => "the token's algorithm is not accepted",
            JwtError::UnknownKey => "the token's signing key is unknown",
            JwtError::Signature => "the token's signature is invalid",
            JwtError::Expired => "the token has expired",
            JwtError::NotYetValid => "the token is not valid yet",
            JwtError::Issuer => "the token's issuer is not accepted",
            JwtError::Audience => "the token is not for this audience",
            JwtError::MissingClaim(_) => "the token lacks a required claim",
        }
    }

    /// The `WWW-Authenticate` value for a 401 (RFC 6750 section 3): the bare challenge when
    /// no token was sent, else with `error="invalid_token"` and a description.
    pub fn www_authenticate(&self, realm: &str) -> String {
        let mut realm_q = String::with_capacity(realm.len());
        for c in realm.chars() {
            if c == '"' || c == '\\' {
                realm_q.push('\\');
            }
            if !c.is_control() {
                realm_q.push(c);
            }
        }
        match self {
            JwtError::Missing => format!("Bearer realm=\"{realm_q}\""),
            _ => format!(
                "Bearer realm=\"{realm_q}\", error=\"invalid_token\", error_description=\"{}\"",
                self.description()
            ),
        }
    }
}

/// Why a token could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("bad signing key: {0}")]
    Key(&'static str),
    #[error("claims must be a JSON object")]
    Claims,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            JwtError::Missing.www_authenticate("api"),
            "Bearer realm=\"api\""
        );
        assert_eq!(
            JwtError::Expired.www_authenticate("a\"b"),
            "Bearer realm=\"a\\\"b\", error=\"invalid_token\", error_description=\"the token has expired\""
        );
    }
}
