//! How PostgreSQL's programs are started as children, and how a failed one reads in an
//! error. A leaf apart from `process`, so `datadir` runs its tools without depending on
//! the server's supervision (which depends on `datadir`).

use crate::error::DbError;
use crate::owner::RunAs;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use tokio::process::Command;

/// Lines of a program's stderr kept for error messages.
pub(crate) const TAIL_LINES: usize = 12;

/// A command for one of PostgreSQL's programs, as the right user, with a clean slate.
pub(crate) fn command(program: &Path, run_as: Option<&RunAs>, on_parent_death: i32) -> Command {
    let mut cmd = Command::new(program);
    cmd.kill_on_drop(true)
        .stdin(Stdio::null())
        // The keeper's own directory may not be readable by the postgres user.
        .current_dir("/")
        // Settings from the keeper's environment must not redirect these programs.
        .env_remove("PGDATA")
        .env_remove("PGHOST")
        .env_remove("PGPORT")
        .env_remove("PGUSER")
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE")
        .env_remove("PGOPTIONS");
    if let Some(user) = run_as {
        cmd.uid(user.uid)
            .gid(user.gid)
            .env("HOME", &user.home)
            .env("USER", &user.name)
            .env("LOGNAME", &user.name);
    }
    // SAFETY: prctl and getppid are async-signal-safe; the closure allocates nothing.
    // It runs after the uid change, which would otherwise clear the setting.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, on_parent_death as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The keeper may have died between fork and prctl.
            if libc::getppid() == 1 {
                return Err(std::io::Error::other("the keeper exited"));
            }
            Ok(())
        });
    }
    cmd
}

/// Runs a tool to completion; its stdout on success, an error with its stderr tail on
/// failure.
pub(crate) async fn run_tool(
    step: &'static str,
    program: &Path,
    mut cmd: Command,
) -> Result<String, DbError> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = cmd.output().await.map_err(|source| DbError::Spawn {
        step,
        program: program.to_path_buf(),
        source,
    })?;
    if !out.status.success() {
        return Err(DbError::Tool {
            step,
            program: program.to_path_buf(),
            status: describe_status(out.status),
            stderr_tail: tail(&String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last lines of a program's output, on one line for an error message.
pub(crate) fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    let joined = lines[start..].join(" | ");
    if joined.is_empty() {
        "(no output)".into()
    } else {
        joined
    }
}

pub(crate) fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}
