//! Finding the PostgreSQL server programs: Meridian runs the real PostgreSQL the machine
//! has, it never ships or downloads one.

use crate::error::DbError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the PostgreSQL programs are and which major version they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    pub bindir: PathBuf,
    pub version: u32,
}

impl PgBinaries {
    /// The path of one program (`initdb`, `postgres`, `pg_basebackup`, ...).
    pub fn program(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }
}

/// `pg_config --bindir` first (what the packager says), else the highest
/// `/usr/lib/postgresql/*/bin` (Debian installs the server there without `pg_config`
/// on the PATH unless the dev package is in).
pub fn binaries() -> Result<PgBinaries, DbError> {
    if let Some(found) = from_pg_config() {
        return Ok(found);
    }
    highest_under(Path::new("/usr/lib/postgresql")).ok_or(DbError::NotInstalled)
}

fn from_pg_config() -> Option<PgBinaries> {
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let bindir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    if !bindir.join("postgres").is_file() {
        // pg_config from a client-only package: the server is elsewhere or missing.
        return None;
    }
    let version = version_of(&bindir)?;
    Some(PgBinaries { bindir, version })
}

/// The highest-versioned `ROOT/<major>/bin` that holds a `postgres` server.
fn highest_under(root: &Path) -> Option<PgBinaries> {
    std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bindir = e.path().join("bin");
            bindir
                .join("postgres")
                .is_file()
                .then_some(PgBinaries { bindir, version })
        })
        .max_by_key(|b| b.version)
}

/// The major version from `postgres --version` ("postgres (PostgreSQL) 15.8 (Debian ...)").
fn version_of(bindir: &Path) -> Option<u32> {
    let out = Command::new(bindir.join("postgres"))
        .arg("--version")
        .output()
        .ok()?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

fn parse_version(text: &str) -> Option<u32> {
    let after = text.split("(PostgreSQL)").nth(1)?.trim_start();
    let digits: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_version_lines() {
        assert_eq!(
            parse_version("postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)\n"),
            Some(15)
        );
        assert_eq!(parse_version("postgres (PostgreSQL) 17beta1"), Some(17));
        assert_eq!(parse_version("something else"), None);
    }

    #[test]
    fn picks_the_highest_installed_major() {
        let root = std::env::temp_dir().join(format!("meridian-db-bins-{}", std::process::id()));
        for v in ["9", "13", "15", "notaversion"] {
            let bin = root.join(v).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join("postgres"), b"").unwrap();
        }
        // A higher version without a server is not a candidate.
        std::fs::create_dir_all(root.join("16").join("bin")).unwrap();
        let found = highest_under(&root).unwrap();
        assert_eq!(found.version, 15);
        assert_eq!(found.bindir, root.join("15").join("bin"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
