//! The data directory: telling what is there, making it (initdb on a primary, a base
//! backup from the upstream on a standby) and writing the configuration Meridian owns.
//!
//! A new directory is built beside the final one (`<data>.meridian-new`) and renamed into
//! place only when complete, so an interrupted initdb or copy never leaves a half-made
//! directory that looks real. A directory Meridian did not make is never wiped.

use crate::admin::Phase;
use crate::binaries::PgBinaries;
use crate::conf;
use crate::error::DbError;
use crate::options::{slot_name, PgOptions};
use crate::owner::{RunAs, RunAsExt};
use crate::spawn::{command, run_tool, tail};
use crate::status::Probe;
use meridian_config::DbRole;
use std::ffi::OsString;
use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a standby waits for its upstream to answer, and then for its slot.
const UPSTREAM_WAIT: Duration = Duration::from_secs(120);

/// Everything the data directory steps need.
pub(crate) struct Node<'a> {
    pub opts: &'a PgOptions,
    pub bins: &'a PgBinaries,
    pub run_as: Option<&'a RunAs>,
    /// What the keeper is doing, for /health while PostgreSQL is not up yet.
    pub phase: &'a Phase,
}

/// What a data directory path holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// Missing or empty: make one.
    Empty,
    /// A complete data directory of the installed major version.
    Ready,
}

/// Tells what `path` holds; anything but missing, empty or a sound data directory of
/// this PostgreSQL version is an error naming the directory.
pub(crate) fn inspect(path: &Path, installed: u32) -> Result<Found, DbError> {
    let mut entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Empty),
        Err(source) => {
            return Err(DbError::Io {
                step: "reading the data directory",
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if entries.next().is_none() {
        return Ok(Found::Empty);
    }
    let version = match std::fs::read_to_string(path.join("PG_VERSION")) {
        Ok(v) => v.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DbError::NotADataDir {
                path: path.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(DbError::Io {
                step: "reading PG_VERSION",
                path: path.join("PG_VERSION"),
                source,
            })
        }
    };
    if version != installed.to_string() {
        return Err(DbError::VersionMismatch {
            path: path.to_path_buf(),
            found: version,
            installed,
        });
    }
    for required in ["global/pg_control", "postgresql.conf", "base", "pg_wal"] {
        if !path.join(required).exists() {
            return Err(DbError::Damaged {
                path: path.to_path_buf(),
                reason: format!("{required} is missing"),
            });
        }
    }
    Ok(Found::Ready)
}

/// Makes the data directory ready to start: created if empty, configuration rewritten.
pub(crate) async fn prepare(node: &Node<'_>) -> Result<(), DbError> {
    let data = &node.opts.data_dir;
    if let Some(parent) = data.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|source| DbError::Io {
                step: "creating the data directory's parent",
                path: parent.to_path_buf(),
                source,
            })?;
    }
    if let Some(user) = node.run_as {
        user.check_traversable(data)?;
    }
    match inspect(data, node.bins.version)? {
        Found::Ready => {
            tracing::info!(
                "{}: using the data directory {}",
                node.opts.name,
                data.display()
            )
        }
        Found::Empty => {
            let staging = staging_dir(data, "new");
            fresh_dir(&staging, node.run_as)?;
            match node.opts.role {
                DbRole::Primary => initdb(node, &staging).await?,
                DbRole::SyncStandby | DbRole::Replica => basebackup(node, &staging).await?,
            }
            install(&staging, data)?;
        }
    }
    write_conf(node)
}

/// `<data>.meridian-<what>`, beside the data directory.
fn staging_dir(data: &Path, what: &str) -> PathBuf {
    let mut name = data
        .file_name()
        .map(OsString::from)
        .unwrap_or_else(|| OsString::from("data"));
    name.push(format!(".meridian-{what}"));
    data.with_file_name(name)
}

/// An empty 0700 directory owned by the postgres user; a leftover from an interrupted
/// attempt (ours by its name) is removed first.
fn fresh_dir(dir: &Path, run_as: Option<&RunAs>) -> Result<(), DbError> {
    if dir.exists() {
        tracing::info!("removing {} left by an interrupted attempt", dir.display());
        std::fs::remove_dir_all(dir).map_err(|source| DbError::Io {
            step: "removing an interrupted attempt",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|source| DbError::Io {
            step: "creating the new data directory",
            path: dir.to_path_buf(),
            source,
        })?;
    // The umask may have taken bits; PostgreSQL insists on 0700 (or 0750).
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|source| {
        DbError::Io {
            step: "setting the data directory's mode to 0700",
            path: dir.to_path_buf(),
            source,
        }
    })?;
    if let Some(user) = run_as {
        user.chown(dir)?;
    }
    Ok(())
}

/// Moves a complete new directory into place (over an empty one, if there).
fn install(staging: &Path, data: &Path) -> Result<(), DbError> {
    std::fs::rename(staging, data).map_err(|source| DbError::Io {
        step: "moving the new data directory into place",
        path: data.to_path_buf(),
        source,
    })
}

/// The password file initdb reads, 0600, removed when dropped.
struct PwFile(PathBuf);

impl PwFile {
    fn write(path: PathBuf, password: &str, run_as: Option<&RunAs>) -> Result<Self, DbError> {
        let io = |source| DbError::Io {
            step: "writing initdb's password file",
            path: path.clone(),
            source,
        };
        let _ = std::fs::remove_file(&path);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        let guard = PwFile(path.clone());
        file.write_all(format!("{password}\n").as_bytes())
            .map_err(io)?;
        if let Some(user) = run_as {
            user.chown(&path)?;
        }
        Ok(guard)
    }
}

impl Drop for PwFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn initdb(node: &Node<'_>, dir: &Path) -> Result<(), DbError> {
    let name = &node.opts.name;
    let started = Instant::now();
    node.phase.set("initializing the data directory (initdb)");
    tracing::info!("{name}: initdb {}", node.opts.data_dir.display());
    let pwfile = PwFile::write(
        staging_dir(&node.opts.data_dir, "pwfile"),
        &node.opts.password.current(),
        node.run_as,
    )?;
    let program = node.bins.program("initdb");
    let mut cmd = command(&program, node.run_as, libc::SIGKILL);
    let mut pwarg = OsString::from("--pwfile=");
    pwarg.push(&pwfile.0);
    cmd.arg("-D")
        .arg(dir)
        .args(["-U", "postgres"])
        .arg(pwarg)
        .args([
            "--auth-host=scram-sha-256",
            "--auth-local=peer",
            "-E",
            "UTF8",
            // The C locale exists everywhere; the machine's may not be generated.
            "--locale=C",
            "--no-instructions",
        ]);
    run_tool("initializing the data directory (initdb)", &program, cmd).await?;
    drop(pwfile);
    append_include(dir)?;
    tracing::info!(
        "{name}: initdb done in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Copies the upstream's data directory into `dir` through this node's slot.
async fn basebackup(node: &Node<'_>, dir: &Path) -> Result<(), DbError> {
    let name = &node.opts.name;
    let upstream = node.opts.upstream.ok_or_else(|| {
        DbError::InvalidOptions(format!("db node {name:?}: a standby needs an upstream"))
    })?;
    node.phase
        .set(format!("waiting for the upstream {upstream}"));
    // The password the upstream takes now: during a rotation, the current or the previous.
    let password = wait_for_upstream(name, &Probe::of(upstream, node.opts)).await?;
    node.phase.set(format!(
        "copying the data directory from {upstream} (pg_basebackup)"
    ));

    let slot = slot_name(name);
    let program = node.bins.program("pg_basebackup");
    let started = Instant::now();
    let mut last_log: Option<Instant> = None;
    loop {
        let mut cmd = command(&program, node.run_as, libc::SIGKILL);
        cmd.args(["-h", &upstream.ip().to_string()])
            .args(["-p", &upstream.port().to_string()])
            .args(["-U", "postgres", "-w"])
            .arg("-D")
            .arg(dir)
            .args(["-X", "stream", "-R", "-c", "fast", "-S", &slot])
            .args([
                "-d",
                &format!("application_name={}", conf::conninfo_value(name)),
            ])
            .env("PGPASSWORD", &password);
        if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            tracing::info!(
                "{name}: copying the data directory from {upstream} (pg_basebackup, slot {slot})"
            );
            last_log = Some(Instant::now());
        }
        match run_tool(
            "copying the data directory from the upstream (pg_basebackup)",
            &program,
            cmd,
        )
        .await
        {
            Ok(_) => break,
            Err(DbError::Tool { stderr_tail, .. })
                if retryable(&stderr_tail) && started.elapsed() < UPSTREAM_WAIT =>
            {
                tracing::debug!("{name}: pg_basebackup will retry: {stderr_tail}");
                // pg_basebackup empties the directory on failure; start from a fresh one.
                fresh_dir(dir, node.run_as)?;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
    remove_socket_locks(dir)?;
    append_include(dir)?;
    ensure_conninfo(node, dir, upstream, &password)?;
    tracing::info!(
        "{name}: copied the data directory from {upstream} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Makes this data directory a standby of `upstream` after a failover: pg_rewind takes
/// back what it wrote that the new primary never had (finishing crash recovery first
/// when the server was killed), then standby.signal and this node's primary_conninfo.
pub(crate) async fn rewind(node: &Node<'_>, upstream: std::net::SocketAddr) -> Result<(), DbError> {
    let name = &node.opts.name;
    let data = &node.opts.data_dir;
    node.phase.set(format!(
        "waiting for the primary {upstream} to rewind from it"
    ));
    let source = Probe::of(upstream, node.opts);
    let password = wait_for_upstream(name, &source).await?;
    // pg_rewind reads the source's timeline from its pg_control, which a promotion only
    // updates at its next checkpoint.
    if let Err(e) = async {
        let client = source.connect().await?;
        client
            .batch_execute("CHECKPOINT")
            .await
            .map_err(|e| crate::status::describe(&e))
    }
    .await
    {
        tracing::warn!("{name}: CHECKPOINT on {upstream} before rewinding failed: {e}");
    }
    node.phase
        .set(format!("rewinding from {upstream} (pg_rewind)"));
    tracing::warn!(
        "{name}: rewinding its data directory from {upstream} (pg_rewind) to rejoin as a standby"
    );
    let program = node.bins.program("pg_rewind");
    let started = Instant::now();
    let mut cmd = command(&program, node.run_as, libc::SIGKILL);
    cmd.arg("--target-pgdata")
        .arg(data)
        .arg(format!(
            "--source-server=host={} port={} user=postgres dbname=postgres application_name={}",
            upstream.ip(),
            upstream.port(),
            conf::conninfo_value(name)
        ))
        .env("PGPASSWORD", &password);
    // What pg_rewind decided (it says so on stderr) is worth keeping in the log.
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let out = cmd.output().await.map_err(|source| DbError::Spawn {
        step: "rewinding the data directory (pg_rewind)",
        program: program.clone(),
        source,
    })?;
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(DbError::Tool {
            step: "rewinding the data directory (pg_rewind)",
            program,
            status: crate::spawn::describe_status(out.status),
            stderr_tail: tail(&said),
        });
    }
    remove_socket_locks(data)?;
    // The copy brought the primary's own primary_conninfo, if it had one: this node's
    // replaces it.
    let auto = data.join("postgresql.auto.conf");
    let text: String = std::fs::read_to_string(&auto)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            !l.starts_with("primary_conninfo") && !l.starts_with("primary_slot_name")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    write_owned(&auto, &text, node.run_as, 0o600)?;
    ensure_conninfo(node, data, upstream, &password)?;
    write_owned(&data.join("standby.signal"), "", node.run_as, 0o600)?;
    // The copy also brought the primary's meridian.conf and pg_hba.conf: this node's own.
    write_conf(node)?;
    tracing::warn!(
        "{name}: rewound from {upstream} in {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        tail(&said)
    );
    Ok(())
}

/// The upstream keeps its unix socket in its data directory, so the copy holds the
/// upstream's socket lock files, naming a live postmaster: this server would refuse to
/// start on them.
fn remove_socket_locks(dir: &Path) -> Result<(), DbError> {
    let entries = std::fs::read_dir(dir).map_err(|source| DbError::Io {
        step: "reading the copied data directory",
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(".s.PGSQL.") {
            std::fs::remove_file(entry.path()).map_err(|source| DbError::Io {
                step: "removing the upstream's socket lock file from the copy",
                path: entry.path(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Failures that go away by themselves: the primary has not made this node's slot yet,
/// or is restarting.
fn retryable(stderr: &str) -> bool {
    let permanent = [
        "password authentication failed",
        "no pg_hba.conf entry",
        "permission denied",
    ];
    if permanent.iter().any(|p| stderr.contains(p)) {
        return false;
    }
    (stderr.contains("replication slot") && stderr.contains("does not exist"))
        || stderr.contains("could not connect")
        || stderr.contains("connection to server")
        || stderr.contains("the database system is starting up")
        || stderr.contains("the database system is shutting down")
}

/// Waits until the upstream accepts a PostgreSQL connection, saying so every few seconds;
/// the password it took.
async fn wait_for_upstream(name: &str, probe: &Probe) -> Result<String, DbError> {
    let started = Instant::now();
    let mut last_log = Instant::now();
    loop {
        match probe.connect_as().await {
            Ok((_, password)) => return Ok(password),
            Err(reason) => {
                if started.elapsed() >= UPSTREAM_WAIT {
                    return Err(DbError::UpstreamUnreachable {
                        upstream: probe.target(),
                        waited: UPSTREAM_WAIT,
                        last_error: reason,
                    });
                }
                if last_log.elapsed() >= Duration::from_secs(5) {
                    tracing::info!(
                        "{name}: waiting for the upstream {} ({}s): {reason}",
                        probe.target(),
                        started.elapsed().as_secs()
                    );
                    last_log = Instant::now();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// pg_basebackup -R writes primary_conninfo; if it lacks this node's application_name
/// (the primary would not know it as a synchronous standby) write our own after it.
fn ensure_conninfo(
    node: &Node<'_>,
    dir: &Path,
    upstream: std::net::SocketAddr,
    password: &str,
) -> Result<(), DbError> {
    let path = dir.join("postgresql.auto.conf");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if conf::auto_conf_ok(&current, &node.opts.name) && current.contains("primary_slot_name") {
        return Ok(());
    }
    tracing::info!(
        "{}: writing primary_conninfo into {}",
        node.opts.name,
        path.display()
    );
    let mut text = current;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!(
        "primary_conninfo = {}\nprimary_slot_name = {}\n",
        conf::quote(&conf::primary_conninfo(upstream, &node.opts.name, password)),
        conf::quote(&slot_name(&node.opts.name))
    ));
    write_owned(&path, &text, node.run_as, 0o600)
}

/// Adds `include = 'meridian.conf'` at the end of postgresql.conf, once.
fn append_include(dir: &Path) -> Result<(), DbError> {
    let path = dir.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&path).map_err(|source| DbError::Io {
        step: "reading postgresql.conf",
        path: path.clone(),
        source,
    })?;
    if conf::has_include(&text) {
        return Ok(());
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("\n# Meridian's settings; they override the ones above.\n");
    text.push_str(conf::INCLUDE_LINE);
    text.push('\n');
    std::fs::write(&path, text).map_err(|source| DbError::Io {
        step: "adding Meridian's include to postgresql.conf",
        path,
        source,
    })
}

/// Rewrites the files Meridian owns, at every start.
fn write_conf(node: &Node<'_>) -> Result<(), DbError> {
    let data = &node.opts.data_dir;
    append_include(data)?;
    write_owned(
        &data.join(conf::INCLUDE_FILE),
        &conf::meridian_conf(node.opts),
        node.run_as,
        0o600,
    )?;
    write_owned(
        &data.join("pg_hba.conf"),
        &conf::pg_hba(node.opts.listen),
        node.run_as,
        0o600,
    )
}

/// Writes a file in the data directory, owned by the postgres user, atomically.
fn write_owned(path: &Path, text: &str, run_as: Option<&RunAs>, mode: u32) -> Result<(), DbError> {
    let tmp = path.with_extension("meridian-tmp");
    let io = |step, source| DbError::Io {
        step,
        path: path.to_path_buf(),
        source,
    };
    let _ = std::fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io("writing a configuration file", e))?;
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| io("writing a configuration file", e))?;
    if let Some(user) = run_as {
        user.chown(&tmp)?;
    }
    std::fs::rename(&tmp, path).map_err(|e| io("replacing a configuration file", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_is_beside_the_data_dir() {
        assert_eq!(
            staging_dir(Path::new("/s/db-a/data"), "new"),
            PathBuf::from("/s/db-a/data.meridian-new")
        );
    }

    #[test]
    fn slot_and_connection_trouble_is_retried_auth_is_not() {
        assert!(retryable("pg_basebackup: error: could not send replication command \"START_REPLICATION\": ERROR:  replication slot \"db_b\" does not exist"));
        assert!(retryable("pg_basebackup: error: connection to server at \"127.0.0.1\", port 5432 failed: Connection refused"));
        assert!(!retryable("pg_basebackup: error: connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  password authentication failed for user \"postgres\""));
    }
}
