//! The JWS algorithms accepted (RFC 7518 section 3.1); `none` is never one of them.

/// A signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC with SHA-256, a shared secret (`oct` key).
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256 (`RSA` key, 2048 bits or more).
    Rs256,
    /// ECDSA on P-256 with SHA-256 (`EC` key, `crv` P-256), the signature as r‖s.
    Es256,
}

impl Algorithm {
    /// The algorithm a JOSE header names; None for `none` and anything else.
    pub fn parse(s: &str) -> Option<Algorithm> {
        match s {
            "HS256" => Some(Algorithm::Hs256),
            "RS256" => Some(Algorithm::Rs256),
            "ES256" => Some(Algorithm::Es256),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Hs256 => "HS256",
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
        }
    }
}
