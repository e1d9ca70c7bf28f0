//! Who redis-server runs as. Redis would run as root, but a network server has no need of
//! it: when Meridian runs as root and the machine has a `redis` user (Debian's package
//! makes one), the server runs as that user and its directory belongs to it.

use std::ffi::CString;

/// The account redis-server runs as, when it differs from ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// `Some(redis)` when we are root and there is a `redis` user, else None (run as we are).
pub(crate) fn run_as() -> Option<RunAs> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    lookup("redis")
}

/// Whether `user` can pass through every existing ancestor of `path` (search
/// permission, judged from the mode bits with its primary group). When it cannot (a state
/// directory under root's 0700 home), the server runs as root rather than not at all.
pub(crate) fn can_reach(user: RunAs, path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    path.ancestors().skip(1).all(|dir| {
        let Ok(meta) = std::fs::metadata(dir) else {
            return true;
        };
        let mode = meta.mode();
        if meta.uid() == user.uid {
            mode & 0o100 != 0
        } else if meta.gid() == user.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        }
    })
}

/// Looks a user up with the reentrant getpwnam_r (the keeper is multi-threaded).
fn lookup(name: &str) -> Option<RunAs> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain old data; getpwnam_r fills it and points into `buf`, which
    // outlives the reads below.
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
    Some(RunAs {
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_looked_up_and_nobody_in_particular_is_not() {
        assert_eq!(lookup("root"), Some(RunAs { uid: 0, gid: 0 }));
        assert_eq!(lookup("no-such-user-here"), None);
    }

    #[test]
    fn a_closed_parent_cannot_be_passed() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("meridian-redis-own-{}", std::process::id()));
        let closed = base.join("closed");
        std::fs::create_dir_all(&closed).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        let stranger = RunAs {
            uid: 4_000_000_001,
            gid: 4_000_000_001,
        };
        assert!(!can_reach(stranger, &closed.join("node")));
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(can_reach(stranger, &closed.join("node")));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
