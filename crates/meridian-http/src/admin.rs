//! The deployment's admin token: one random secret in the state dir that every node's
//! mutating admin endpoint asks for as `Authorization: Bearer <token>`, so nothing that can
//! merely reach an admin port can purge a cache, cut the WAN or steer the DNS.

pub mod router;
pub(crate) mod token;

pub use router::{Router, ANY, READ};
pub use token::{
    bearer_ok, key_secret, secret, token, unauthorized, CACHE_PASSWORD_FILE, DB_PASSWORD_FILE,
    DISK_CACHE_KEY_FILE, TOKEN_FILE,
};
