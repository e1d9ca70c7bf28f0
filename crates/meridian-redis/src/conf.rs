//! The redis.conf a keeper writes for its server: a cache, not a store. It binds only the
//! node's address, needs the deployment's password from every client (and gives it to its
//! primary as a replica), keeps nothing on disk, and evicts by policy at `maxmemory`.
//! During a password rotation the default user holds both passwords, so a server the
//! keeper restarts mid-rotation takes the old one and the new one, as before.

use crate::options::CacheOptions;
use std::fmt::Write;
use std::net::SocketAddr;

/// The config text; `replica_of` starts the server as a replica of that primary, so it
/// never serves an empty dataset as a primary first. `passwords` are the ones the default
/// user takes (the current one first: it is also the one given to a primary).
pub(crate) fn render(
    opts: &CacheOptions,
    replica_of: Option<SocketAddr>,
    version: u32,
    passwords: &[String],
) -> String {
    let mut c = String::new();
    let ip = opts.listen.ip();
    let _ = writeln!(
        c,
        "# Written by the Meridian keeper of {}; rewritten at every start.",
        opts.name
    );
    let _ = writeln!(c, "bind {ip}");
    let _ = writeln!(c, "port {}", opts.listen.port());
    let _ = writeln!(c, "protected-mode yes");
    let current = passwords.first().map(String::as_str).unwrap_or("");
    if version >= 6 {
        // ACL: the default user with every permission and each password. Channels (`&*`)
        // are named from Redis 7 on; 6 allows every channel by default.
        let channels = if version >= 7 { " &*" } else { "" };
        let _ = write!(c, "user default on ~*{channels} +@all");
        for p in passwords {
            let _ = write!(c, " >{p}");
        }
        let _ = writeln!(c);
    } else {
        let _ = writeln!(c, "requirepass {current}");
    }
    let _ = writeln!(c, "masterauth {current}");
    let _ = writeln!(c, "daemonize no");
    let _ = writeln!(c, "supervised no");
    // Logs go to stdout, which the keeper reads.
    let _ = writeln!(c, "logfile \"\"");
    let _ = writeln!(c, "dir {}", quote(&opts.dir.display().to_string()));
    // A cache: no RDB snapshots, no append-only file. A restarted node copies its peer.
    let _ = writeln!(c, "save \"\"");
    let _ = writeln!(c, "appendonly no");
    let _ = writeln!(c, "maxmemory {}", opts.maxmemory);
    let _ = writeln!(c, "maxmemory-policy {}", opts.eviction);
    // A full sync streams straight to the replica: there is no disk copy to make.
    let _ = writeln!(c, "repl-diskless-sync yes");
    let _ = writeln!(c, "repl-diskless-sync-delay 0");
    let _ = writeln!(c, "replica-read-only yes");
    let _ = writeln!(c, "replica-serve-stale-data yes");
    // A replica notices a dead link within the failover time the keeper works to.
    let timeout = opts.failover.as_secs().clamp(2, 60);
    let _ = writeln!(c, "repl-timeout {timeout}");
    let _ = writeln!(c, "repl-ping-replica-period 1");
    let _ = writeln!(c, "tcp-keepalive 30");
    if version >= 7 {
        // Replication leaves from the node's own address, as from a machine of its own.
        let _ = writeln!(c, "bind-source-addr {ip}");
    }
    if let Some(p) = replica_of {
        let _ = writeln!(c, "replicaof {} {}", p.ip(), p.port());
    }
    c
}

/// A config string in double quotes, with the characters Redis's parser treats specially
/// escaped.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' | '\\' => {
                out.push('\\');
                out.push(ch);
            }
            '\n' => out.push_str("\\n"),
            _ => out.push(ch),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_config_binds_its_own_address_and_follows_its_primary() {
        let opts = crate::options::tests::options("redis-r1b", "127.81.9.71:6379");
        let both = ["new".to_owned(), "old".to_owned()];
        let text = render(&opts, Some("127.81.9.70:6379".parse().unwrap()), 7, &both);
        for line in [
            "bind 127.81.9.71",
            "port 6379",
            "protected-mode yes",
            "user default on ~* &* +@all >new >old",
            "masterauth new",
            "save \"\"",
            "maxmemory 8388608",
            "maxmemory-policy allkeys-lru",
            "bind-source-addr 127.81.9.71",
            "replicaof 127.81.9.70 6379",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        let primary = render(&opts, None, 6, &both[..1]);
        assert!(!primary.contains("replicaof"));
        assert!(primary
            .lines()
            .any(|l| l == "user default on ~* +@all >new"));
        let old = render(&opts, None, 5, &both[..1]);
        assert!(old.lines().any(|l| l == "requirepass new"), "{old}");
        assert!(
            !primary.contains("bind-source-addr"),
            "Redis 6 has no such setting"
        );
        assert_eq!(quote("a \"b\"\\"), "\"a \\\"b\\\"\\\\\"");
    }
}
