//! Signalling a deployment's node processes: freezing and thawing them for a fault.
//!
//! Shared by the `chaos` scenarios and the data tier's (`data_chaos`), which `chaos`
//! itself depends on, so it lives apart from both.

/// `pid` as kill(2) takes it, when it names one process other than init. kill(2) reads
/// 0 as "our own process group", -1 as "every process we may signal" and other negative
/// values as whole groups, so a stale or corrupt endpoints.json could otherwise freeze
/// far more than a node.
pub(crate) fn one_process(pid: u32) -> Result<libc::pid_t, String> {
    match libc::pid_t::try_from(pid) {
        Ok(p) if p > 1 => Ok(p),
        _ => Err(format!(
            "refusing to signal pid {pid}: a node's pid is above 1 and at most {} (check endpoints.json)",
            libc::pid_t::MAX
        )),
    }
}

/// Sends `sig` to every pid, after checking them all: none is signalled if one is bad.
pub(crate) fn signal(pids: &[u32], sig: i32) -> Result<(), String> {
    let pids = pids
        .iter()
        .map(|&p| one_process(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut failed = Vec::new();
    for p in pids {
        // SAFETY: kill(2) on one process (checked above), a node of the deployment.
        if unsafe { libc::kill(p, sig) } != 0 {
            failed.push(format!("{p} ({})", std::io::Error::last_os_error()));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("cannot signal pid {}", failed.join(", ")))
    }
}

/// Every process under `root` (a database node's PostgreSQL server and its backends),
/// parents before children.
pub(crate) fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                    let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
                    // The command name may hold spaces and parentheses: ppid follows the last ')'.
                    let ppid = stat[stat.rfind(')')? + 1..]
                        .split_whitespace()
                        .nth(1)?
                        .parse()
                        .ok()?;
                    Some((pid, ppid))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(child, _) in parents.iter().filter(|(_, pp)| *pp == p) {
            out.push(child);
            frontier.push(child);
        }
    }
    out
}

/// Sends `sig` to whole nodes: each node's process, then every process under it, twice
/// over (a process started between the listing and the signal is caught the second time).
pub(crate) fn signal_nodes(roots: &[u32], sig: i32) -> Result<(), String> {
    signal(roots, sig)?;
    for _ in 0..2 {
        let under: Vec<u32> = roots.iter().flat_map(|&r| descendants(r)).collect();
        // A backend may exit between the listing and the signal: not an error.
        let _ = signal(&under, sig);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_checks_every_pid_and_reports_failures() {
        // Signal 0 only asks whether the process exists: safe to send anywhere.
        assert!(signal(&[0], 0).unwrap_err().contains("pid 0"));
        assert!(signal(&[std::process::id(), u32::MAX], 0).is_err());
        assert_eq!(signal(&[std::process::id()], 0), Ok(()));
        // The largest pid the kernel allows is far below i32::MAX: no such process.
        assert!(signal(&[i32::MAX as u32], 0)
            .unwrap_err()
            .contains("cannot signal pid"));
    }
}
