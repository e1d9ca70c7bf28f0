//! What the database and cache keepers both need from the operating system: PostgreSQL
//! refuses to run as root and Redis has no need to, so when Meridian runs as root each runs
//! its server as the account its Debian package made (`postgres`, `redis`), and checks
//! first that the account can reach the server's directory.

use std::ffi::{CStr, CString};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A local account, as the password database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Whether this process runs as root (its effective user).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Looks an account up with the reentrant getpwnam_r (keepers are multi-threaded).
pub fn lookup(name: &str) -> Option<Account> {
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
        // SAFETY: a non-null pw_dir is a NUL-terminated string inside `buf`.
        PathBuf::from(
            unsafe { CStr::from_ptr(pwd.pw_dir) }
                .to_string_lossy()
                .into_owned(),
        )
    };
    Some(Account {
        name: name.to_owned(),
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
        home,
    })
}

/// The first existing ancestor of `path` that the account `uid`/`gid` cannot pass
/// through (no search permission), or None when it can reach `path`. Judged from the mode
/// bits with the account's primary group; ACLs are not read. Ancestors that do not exist
/// yet are skipped: whoever creates them makes them passable.
pub fn closed_ancestor(uid: u32, gid: u32, path: &Path) -> Option<PathBuf> {
    path.ancestors().skip(1).find_map(|dir| {
        let meta = std::fs::metadata(dir).ok()?;
        let mode = meta.mode();
        let passable = if meta.uid() == uid {
            mode & 0o100 != 0
        } else if meta.gid() == gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        (!passable).then(|| dir.to_path_buf())
    })
}

/// Where Debian and most source installs put programs when the PATH does not say (a
/// service's PATH often lacks the sbin directories, where `nft` and `ss` live).
const PROGRAM_DIRS: [&str; 6] = [
    "/usr/bin",
    "/usr/local/bin",
    "/usr/sbin",
    "/sbin",
    "/bin",
    "/usr/local/sbin",
];

/// The program `name`: the first executable file of that name on the PATH, else in the
/// usual directories. Relative PATH entries are skipped: a keeper running as root must
/// not run a program that happens to sit in its working directory.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|d| d.is_absolute())
        .chain(PROGRAM_DIRS.iter().map(PathBuf::from))
        .collect();
    find_in(name, &dirs)
}

/// The first executable file named `name` in `dirs`.
pub fn find_in(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(name)).find(|p| is_executable(p))
}

/// Whether `p` is a file someone may execute.
pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn root_is_looked_up_and_nobody_in_particular_is_not() {
        let root = lookup("root").expect("every Linux has root");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(lookup("no-such-user-here"), None);
        assert_eq!(lookup("nul\0inside"), None);
    }

    #[test]
    fn a_closed_parent_is_found_and_an_open_one_is_not() {
        let base = std::env::temp_dir().join(format!("meridian-os-{}", std::process::id()));
        let closed = base.join("closed");
        std::fs::create_dir_all(&closed).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        // Neither the owner nor the group of anything we create.
        let (uid, gid) = (4_000_000_001, 4_000_000_001);
        let inside = closed.join("node").join("data");
        assert_eq!(closed_ancestor(uid, gid, &inside), Some(closed.clone()));
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(closed_ancestor(uid, gid, &inside), None);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
