//! JWT bearer authentication at the edge, as API Gateway's JWT authorizers do it: JWS compact
//! tokens (RFC 7515/7519) signed HS256, RS256 or ES256 (RFC 7518), keys from a JWKS file
//! (RFC 7517) that is re-read when it changes, and RFC 6750's `WWW-Authenticate` challenges.

mod alg;
mod cache;
mod error;
mod jwks;
mod sign;
mod token;

pub use alg::Algorithm;
pub use cache::{Verifier, CACHE_CAPACITY};
pub use error::{JwtError, SignError};
pub use jwks::{Jwks, JwksError, JwksFile, MAX_JWKS_LEN};
pub use sign::{generate_es256, public_jwk, sign, SigningKey};
pub use token::{bearer_token, verify, Claims, Expectations, MAX_TOKEN_LEN};
