//! Secret files on disk: how they are written, where a rotation keeps the previous value,
//! and how often they are read again. A leaf, so `secrets`, `tls`, `signing` and `admin`
//! share it without depending on each other.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often secret files are read again.
pub const RELOAD: Duration = Duration::from_secs(2);

/// The file that holds a file's previous value during a grace period.
pub fn previous_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".previous");
    PathBuf::from(s)
}

/// The previous value of `path` and the end of its grace period, if a rotation left one.
pub fn read_previous(path: &Path) -> Option<(String, SystemTime)> {
    let text = std::fs::read_to_string(previous_path(path)).ok()?;
    let mut lines = text.lines();
    let value = lines.next()?.trim().to_owned();
    let until = lines.next()?.trim().parse::<u64>().ok()?;
    (!value.is_empty()).then(|| (value, UNIX_EPOCH + Duration::from_secs(until)))
}

/// Writes a secret (a private key, a token) to `path`, readable by its owner only from the
/// moment the file exists: it is created with mode 0600 (never chmod-ed afterwards, which
/// would leave a window where others can read it), under a temporary name in the same
/// directory, then renamed onto `path` so a concurrent reader never sees half a secret.
pub fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} is not a file name", path.display())))?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.{}",
        name.to_string_lossy(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    // A leftover from a process that died with this pid would make create_new fail.
    let _ = std::fs::remove_file(&tmp);
    let written = create_secret(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Runs `make` while holding the lock file `<dir>/.<name>.lock`, so that nodes started
/// together (two PoPs run on one state dir) make a key pair once instead of each writing
/// half of one. A lock older than `STALE` is a crashed holder's and is taken over.
pub fn made_once<T>(
    dir: &Path,
    name: &str,
    make: impl FnOnce() -> std::io::Result<T>,
) -> std::io::Result<T> {
    const STALE: Duration = Duration::from_secs(10);
    std::fs::create_dir_all(dir)?;
    let lock = dir.join(format!(".{name}.lock"));
    let deadline = std::time::Instant::now() + STALE * 2;
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
        {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let age = std::fs::metadata(&lock)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok());
                if age.is_some_and(|a| a > STALE) || std::time::Instant::now() > deadline {
                    let _ = std::fs::remove_file(&lock);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
    let made = make();
    let _ = std::fs::remove_file(&lock);
    made
}

/// A new file that only its owner can read or write, from its creation on.
fn create_secret(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("meridian-http-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn secrets_are_owner_only_and_replace_what_was_there() {
        let d = scratch("secret");
        let p = d.join("token");
        write_secret(&p, b"one").unwrap();
        assert_eq!(mode(&p), 0o600);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_secret(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(mode(&p), 0o600, "a replaced secret is owner-only again");
        let left: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["token"], "no temporary file is left behind");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_secret_file_is_owner_only_before_a_byte_is_written() {
        let d = scratch("create");
        let p = d.join("key");
        let f = create_secret(&p).unwrap();
        // What `std::fs::write` followed by a chmod showed here: 0644 under umask 022.
        assert_eq!(mode(&p), 0o600);
        drop(f);
        let again = create_secret(&p).map(|_| ()).unwrap_err();
        assert_eq!(
            again.kind(),
            std::io::ErrorKind::AlreadyExists,
            "never opens a file someone else made"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
