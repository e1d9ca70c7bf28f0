//! The admin token and the other state-dir secrets: how they are made and checked. Its
//! own module so the secrets holder and the admin router both use it without using each
//! other.

use crate::body::Body;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use std::path::Path;

/// The file in a state dir that holds the admin token.
pub const TOKEN_FILE: &str = "admin-token";

/// The file in a state dir that holds the database superuser's password.
pub const DB_PASSWORD_FILE: &str = "db-password";
/// The file in a state dir that holds the cache tier's password (Redis `requirepass`).
pub const CACHE_PASSWORD_FILE: &str = "cache-password";

/// The file in a state dir that holds the key of the edges' encrypted disk caches.
pub const DISK_CACHE_KEY_FILE: &str = "disk-cache-key";

/// The admin token of a state dir, made (random, owner-only) when there is none yet.
pub fn token(state_dir: &Path) -> std::io::Result<String> {
    secret(state_dir, TOKEN_FILE)
}

/// The secret kept in `file` of a state dir, made (random, owner-only) when there is none
/// yet. `up` makes every secret before it starts a node, so nodes only ever read them.
pub fn secret(state_dir: &Path, file: &str) -> std::io::Result<String> {
    secret_of(state_dir, file, 16)
}

/// Like [`secret`], for a key of `bytes` random bytes (kept as hex).
pub fn key_secret(state_dir: &Path, file: &str, bytes: usize) -> std::io::Result<String> {
    secret_of(state_dir, file, bytes)
}

fn secret_of(state_dir: &Path, file: &str, bytes: usize) -> std::io::Result<String> {
    let path = state_dir.join(file);
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_owned();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    std::fs::create_dir_all(state_dir)?;
    let token: String = (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    crate::secret_file::write_secret(&path, format!("{token}\n").as_bytes())?;
    // Another process may have won the race; everyone uses the file's token.
    Ok(std::fs::read_to_string(&path)
        .map(|t| t.trim().to_owned())
        .unwrap_or(token))
}

/// Whether `headers` carry `Authorization: Bearer <token>`. The comparison takes the same
/// time wherever the first difference is, so the token cannot be guessed byte by byte.
pub fn bearer_ok(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    !b.is_empty()
        && a.len() == b.len()
        && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The 401 every admin endpoint answers without a valid token.
pub fn unauthorized() -> Response<Body> {
    let mut r = crate::body::text(
        StatusCode::UNAUTHORIZED,
        "this endpoint needs `Authorization: Bearer <token>`; the token is in <state-dir>/admin-token",
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn only_the_exact_bearer_token_passes() {
        assert!(bearer_ok(&with("Bearer s3cret"), "s3cret"));
        assert!(!bearer_ok(&with("Bearer s3cre"), "s3cret"));
        assert!(!bearer_ok(&with("Bearer s3cret2"), "s3cret"));
        assert!(!bearer_ok(&with("Basic s3cret"), "s3cret"));
        assert!(!bearer_ok(&HeaderMap::new(), "s3cret"));
        assert!(
            !bearer_ok(&with("Bearer "), ""),
            "an empty token opens nothing"
        );
    }

    #[test]
    fn the_token_is_made_once_and_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("meridian-http-token-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let t = token(&d).unwrap();
        assert_eq!(t.len(), 32);
        assert_eq!(token(&d).unwrap(), t, "read back, not made again");
        let mode = std::fs::metadata(d.join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&d);
    }
}
