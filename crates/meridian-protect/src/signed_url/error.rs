//! Why a signed URL or signed cookie was refused.

/// A refusal, with a short label for metrics ([`SignedError::reason`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedError {
    #[error("the request carries neither signed URL parameters nor signed cookies")]
    Missing,
    #[error("malformed signed request: {0}")]
    Malformed(&'static str),
    #[error("no public key with id {0:?}")]
    UnknownKey(String),
    #[error("the signature does not match the policy")]
    Signature,
    #[error("the policy has expired")]
    Expired,
    #[error("the policy is not valid yet")]
    NotYetValid,
    #[error("the viewer's address is outside the policy's source IP range")]
    Ip,
    #[error("the policy does not cover the requested URL")]
    Resource,
    #[error("{0} is over its size limit")]
    TooLarge(&'static str),
    /// A key given to [`super::PublicKeys`] or to a signing function could not be used.
    #[error("key {id:?}: {why}")]
    BadKey { id: String, why: &'static str },
}

impl SignedError {
    /// A short snake_case label, usable as a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            SignedError::Missing => "missing",
            SignedError::Malformed(_) => "malformed",
            SignedError::UnknownKey(_) => "unknown_key",
            SignedError::Signature => "signature",
            SignedError::Expired => "expired",
            SignedError::NotYetValid => "not_yet_valid",
            SignedError::Ip => "ip",
            SignedError::Resource => "resource",
            SignedError::TooLarge(_) => "too_large",
            SignedError::BadKey { .. } => "bad_key",
        }
    }
}
