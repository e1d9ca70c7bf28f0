//! Development signing keys for JWT authorizers that name no JWKS file: `up` makes one per
//! authorizer in its state directory (an ES256 key, owner-only, and the JWKS PoPs read),
//! and `meridian token` mints tokens with it. Production names its own JWKS file, from the
//! identity provider that signs its tokens.

use crate::jwt::{generate_es256, public_jwk, sign, SigningKey};
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DevKeyError {
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the development key {path} is unusable ({message}); delete it and run `meridian up` again"
    )]
    Key { path: PathBuf, message: String },
}

/// The key (PKCS#8) and JWKS files of `authorizer` under `state_dir`.
pub fn files(state_dir: &Path, authorizer: &str) -> (PathBuf, PathBuf) {
    let dir = state_dir.join("jwt");
    (
        dir.join(format!("{authorizer}.key.pk8")),
        dir.join(format!("{authorizer}.jwks.json")),
    )
}

/// The key id development tokens carry.
pub fn kid(authorizer: &str) -> String {
    format!("dev-{authorizer}")
}

/// Makes the authorizer's key and JWKS when missing, and returns the JWKS path. Safe to call
/// from several processes at once: each file appears whole, and the first one made wins.
pub fn ensure(state_dir: &Path, authorizer: &str) -> Result<PathBuf, DevKeyError> {
    let (key_path, jwks_path) = files(state_dir, authorizer);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| DevKeyError::Io { path, source }
    };
    if let Some(dir) = key_path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    if !key_path.exists() {
        write_new(&key_path, &generate_es256()).map_err(io(&key_path))?;
    }
    if !jwks_path.exists() {
        let key = load(&key_path)?;
        let jwk = public_jwk(&key, &kid(authorizer)).map_err(|e| DevKeyError::Key {
            path: key_path.clone(),
            message: e.to_string(),
        })?;
        let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
        write_new(&jwks_path, jwks.as_bytes()).map_err(io(&jwks_path))?;
    }
    Ok(jwks_path)
}

/// A token for `claims`, signed with the authorizer's development key.
pub fn mint(state_dir: &Path, authorizer: &str, claims: &Value) -> Result<String, DevKeyError> {
    let (key_path, _) = files(state_dir, authorizer);
    let key = load(&key_path)?;
    sign(&key, Some(&kid(authorizer)), claims).map_err(|e| DevKeyError::Key {
        path: key_path,
        message: e.to_string(),
    })
}

fn load(path: &Path) -> Result<SigningKey, DevKeyError> {
    let pkcs8 = std::fs::read(path).map_err(|source| DevKeyError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(SigningKey::Es256 { pkcs8 })
}

/// Writes `data` to a private temporary file and links it into place, so readers never see
/// half a file and a file another process made first is kept.
fn write_new(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::{verify, Algorithm, Expectations, Jwks};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    #[test]
    fn a_minted_token_verifies_against_the_made_jwks_and_the_key_is_kept() {
        let dir = std::env::temp_dir().join(format!("meridian-devkey-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let jwks = ensure(&dir, "users").unwrap();
        let first = std::fs::read(files(&dir, "users").0).unwrap();
        assert_eq!(ensure(&dir, "users").unwrap(), jwks);
        assert_eq!(
            std::fs::read(files(&dir, "users").0).unwrap(),
            first,
            "kept, not remade"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(files(&dir, "users").0)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the key is owner-only");
        }
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 60;
        let token = mint(
            &dir,
            "users",
            &serde_json::json!({ "sub": "demo-user", "exp": exp }),
        )
        .unwrap();
        let keys = Jwks::parse(&std::fs::read(&jwks).unwrap()).unwrap();
        let expect = Expectations {
            issuer: None,
            audiences: Vec::new(),
            leeway: Duration::from_secs(5),
            algorithms: vec![Algorithm::Es256],
        };
        let claims = verify(&token, &keys, &expect, SystemTime::now()).unwrap();
        assert_eq!(claims.subject(), Some("demo-user"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
