//! Who PostgreSQL runs as. PostgreSQL refuses to run as root, so when Meridian runs as
//! root every PostgreSQL program runs as the `postgres` user and the data directory
//! belongs to it; as an ordinary user, everything simply runs as that user.

use crate::error::DbError;
use std::path::Path;

/// The account PostgreSQL programs run as, when it differs from ours.
pub(crate) type RunAs = meridian_os::Account;

/// `Some(postgres)` when we are root, `None` when we run as an ordinary user.
pub(crate) fn run_as() -> Result<Option<RunAs>, DbError> {
    if !meridian_os::is_root() {
        return Ok(None);
    }
    meridian_os::lookup("postgres")
        .map(Some)
        .ok_or(DbError::NoPostgresUser)
}

/// What the keeper does with that account.
pub(crate) trait RunAsExt {
    fn chown(&self, path: &Path) -> Result<(), DbError>;
    fn check_traversable(&self, path: &Path) -> Result<(), DbError>;
}

impl RunAsExt for RunAs {
    /// Makes `path` belong to this user (not following symlinks).
    fn chown(&self, path: &Path) -> Result<(), DbError> {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid)).map_err(|source| {
            DbError::Io {
                step: "giving the data directory to the postgres user",
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// Every existing ancestor of `path` must let this user through (search permission),
    /// or PostgreSQL fails later with a bare "permission denied" far from the cause.
    /// Judged from the mode bits with the user's primary group; ACLs are not read.
    fn check_traversable(&self, path: &Path) -> Result<(), DbError> {
        match meridian_os::closed_ancestor(self.uid, self.gid, path) {
            None => Ok(()),
            Some(dir) => Err(DbError::NotTraversable {
                data_dir: path.to_path_buf(),
                dir,
                user: self.name.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_closed_parent_is_named_with_the_fix() {
        let base = std::env::temp_dir().join(format!("meridian-db-trav-{}", std::process::id()));
        let closed = base.join("closed");
        std::fs::create_dir_all(&closed).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        let user = RunAs {
            name: "nobody-in-particular".into(),
            // Neither the owner nor the group of anything we create.
            uid: 4_000_000_001,
            gid: 4_000_000_001,
            home: "/".into(),
        };
        let err = user
            .check_traversable(&closed.join("node").join("data"))
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("chmod o+x {}", closed.display())),
            "{msg}"
        );
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o755)).unwrap();
        user.check_traversable(&closed.join("node").join("data"))
            .unwrap();
        std::fs::remove_dir_all(&base).unwrap();
    }
}
