//! CloudFront signed URLs and signed cookies, checked as CloudFront checks them so that URLs
//! and cookies made by the AWS SDKs' and CLI's CloudFront signers work unchanged.
//!
//! - Canned policy: `Expires`, `Signature`, `Key-Pair-Id` (cookies `CloudFront-Expires`,
//!   `CloudFront-Signature`, `CloudFront-Key-Pair-Id`); the policy is rebuilt from the
//!   requested URL and `Expires`.
//! - Custom policy: `Policy` (cookie `CloudFront-Policy`) carries the JSON the signature covers,
//!   with `Resource` wildcards, `DateLessThan`, `DateGreaterThan` and `IpAddress`.
//! - Signatures are RSA PKCS#1 v1.5 over SHA-1, or over SHA-256 when `Hash-Algorithm=SHA256`
//!   (`CloudFront-Hash-Algorithm`) says so, as CloudFront now documents; P-256 ECDSA keys (which
//!   the AWS CLI signs with) are accepted with SHA-256.
//! - Base64 is CloudFront's URL-safe variant: `-` for `+`, `_` for `=`, `~` for `/`.
//!
//! URL parameters take precedence over cookies when a request carries both.

pub(crate) mod der;
mod error;
mod keys;
mod policy;
mod sign;
mod verify;

pub use error::SignedError;
pub use keys::{cf_encode, PublicKeys};
pub use policy::CustomPolicy;
pub use sign::{sign_canned, sign_cookies, sign_cookies_canned, sign_custom};
pub use verify::{
    strip_signing_params, verify, HashAlgorithm, SignedRequest, Source, Verified, MAX_COOKIE_LEN,
    MAX_POLICY_LEN,
};
