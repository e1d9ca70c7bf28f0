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
}
