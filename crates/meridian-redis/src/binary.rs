//! Finding `redis-server`: Meridian runs the Redis the machine has, it never ships or
//! downloads one.

use crate::error::CacheError;
use std::path::{Path, PathBuf};

/// Names the `redis-server` to run (a build of one's own); when set, no other is used.
pub const PROGRAM_ENV: &str = "MERIDIAN_REDIS_SERVER";

/// The `redis-server` program: the one `MERIDIAN_REDIS_SERVER` names, else the first on
/// the PATH, else in the usual directories.
pub fn redis_server() -> Result<PathBuf, CacheError> {
    if let Some(named) = std::env::var_os(PROGRAM_ENV) {
        let path = PathBuf::from(named);
        return if meridian_os::is_executable(&path) {
            Ok(path)
        } else {
            Err(CacheError::NamedProgramMissing { path })
        };
    }
    meridian_os::find_program("redis-server").ok_or(CacheError::NotInstalled)
}

/// The major version from `redis-server --version` ("Redis server v=7.0.15 sha=...").
pub fn major_version(program: &Path) -> Option<u32> {
    let out = std::process::Command::new(program)
        .arg("--version")
        .output()
        .ok()?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

fn parse_version(text: &str) -> Option<u32> {
    let after = text.split("v=").nth(1)?;
    let digits: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn parses_server_version_lines() {
        assert_eq!(
            parse_version("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64"),
            Some(7)
        );
        assert_eq!(parse_version("something else"), None);
    }

    #[test]
    fn finds_only_an_executable_file() {
        let root = std::env::temp_dir().join(format!("meridian-redis-bin-{}", std::process::id()));
        let (a, b) = (root.join("a"), root.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        // Not executable: skipped.
        std::fs::write(a.join("redis-server"), b"").unwrap();
        let find_in = |dirs: &[PathBuf]| meridian_os::find_in("redis-server", dirs);
        assert_eq!(find_in(&[a.clone(), b.clone()]), None);
        std::fs::write(b.join("redis-server"), b"").unwrap();
        std::fs::set_permissions(
            b.join("redis-server"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert_eq!(find_in(&[a, b.clone()]), Some(b.join("redis-server")));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn not_installed_says_how_to_install_in_one_line() {
        let msg = CacheError::NotInstalled.to_string();
        assert!(msg.contains("`apt-get install redis-server`"), "{msg}");
        assert!(!msg.contains('\n'));
        assert!(CacheError::NotInstalled.needs_a_person());
    }
}
