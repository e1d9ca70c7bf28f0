//! Who redis-server runs as. Redis would run as root, but a network server has no need of
//! it: when Meridian runs as root and the machine has a `redis` user (Debian's package
//! makes one), the server runs as that user and its directory belongs to it.

/// The account redis-server runs as, when it differs from ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// `Some(redis)` when we are root and there is a `redis` user, else None (run as we are).
pub(crate) fn run_as() -> Option<RunAs> {
    if !meridian_os::is_root() {
        return None;
    }
    meridian_os::lookup("redis").map(|a| RunAs {
        uid: a.uid,
        gid: a.gid,
    })
}

/// Whether `user` can pass through every existing ancestor of `path`. When it cannot (a
/// state directory under root's 0700 home), the server runs as root rather than not at
/// all.
pub(crate) fn can_reach(user: RunAs, path: &std::path::Path) -> bool {
    meridian_os::closed_ancestor(user.uid, user.gid, path).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

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
