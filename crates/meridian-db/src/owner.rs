//! Who PostgreSQL runs as. PostgreSQL refuses to run as root, so when Meridian runs as
//! root every PostgreSQL program runs as the `postgres` user and the data directory
//! belongs to it; as an ordinary user, everything simply runs as that user.

use crate::DbError;
use std::ffi::{CStr, CString};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The account PostgreSQL programs run as, when it differs from ours.
#[derive(Debug, Clone)]
pub(crate) struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// `Some(postgres)` when we are root, `None` when we run as an ordinary user.
pub(crate) fn run_as() -> Result<Option<RunAs>, DbError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    lookup("postgres").map(Some).ok_or(DbError::NoPostgresUser)
}

/// Looks a user up with the reentrant getpwnam_r (the keeper is multi-threaded).
fn lookup(name: &str) -> Option<RunAs> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain old data; getpwnam_r fills it and points into `buf`, which
    // outlives every read below.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    let home = if pwd.pw_dir.is_null() {
        PathBuf::from("/")
    } else {
        // SAFETY: non-null pw_dir is a NUL-terminated string inside `buf`.
        PathBuf::from(
            unsafe { CStr::from_ptr(pwd.pw_dir) }
                .to_string_lossy()
                .into_owned(),
        )
    };
    Some(RunAs {
        name: name.to_string(),
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
        home,
    })
}

impl RunAs {
    /// Makes `path` belong to this user (not following symlinks).
    pub fn chown(&self, path: &Path) -> Result<(), DbError> {
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
    pub fn check_traversable(&self, path: &Path) -> Result<(), DbError> {
        for dir in path.ancestors().skip(1) {
            let Ok(meta) = std::fs::metadata(dir) else {
                // Not there yet: we create it, traversable.
                continue;
            };
            let mode = meta.mode();
            let ok = if meta.uid() == self.uid {
                mode & 0o100 != 0
            } else if meta.gid() == self.gid {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !ok {
                return Err(DbError::NotTraversable {
                    data_dir: path.to_path_buf(),
                    dir: dir.to_path_buf(),
                    user: self.name.clone(),
                });
            }
        }
        Ok(())
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
