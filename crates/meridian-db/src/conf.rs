//! The configuration Meridian owns inside a data directory: `meridian.conf` (included at
//! the end of `postgresql.conf`, rewritten at every start so a changed option always takes
//! effect), `pg_hba.conf`, and the standby's `primary_conninfo` when pg_basebackup did
//! not write a usable one.

use crate::options::PgOptions;
use meridian_config::DbRole;
use std::net::SocketAddr;

pub(crate) const INCLUDE_FILE: &str = "meridian.conf";
pub(crate) const INCLUDE_LINE: &str = "include = 'meridian.conf'";

/// `meridian.conf` for this node. Standbys get the same WAL settings as a primary so a
/// later promotion needs no restart for them.
pub(crate) fn meridian_conf(opts: &PgOptions) -> String {
    let sync_names = match opts.role {
        DbRole::Primary => synchronous_standby_names(&opts.sync_standbys),
        // A standby has nothing to wait for; a promotion rewrites this.
        DbRole::SyncStandby | DbRole::Replica => String::new(),
    };
    let settings: Vec<(&str, String)> = vec![
        ("listen_addresses", quote(&opts.listen.ip().to_string())),
        ("port", opts.listen.port().to_string()),
        // TCP only. Not /var/run/postgresql: several nodes on one machine may share a
        // port on different loopback addresses, and a socket's name is only the port. Not
        // the data directory either: pg_rewind copies every file of the primary's, and
        // cannot read a socket.
        ("unix_socket_directories", quote("")),
        ("password_encryption", quote("scram-sha-256")),
        ("cluster_name", quote(&opts.name)),
        ("wal_level", "replica".into()),
        // pg_rewind (an old primary rejoining) needs hint bits in the WAL.
        ("wal_log_hints", "on".into()),
        ("max_wal_senders", "16".into()),
        ("max_replication_slots", "16".into()),
        ("hot_standby", "on".into()),
        ("wal_keep_size", quote("256MB")),
        // A slot whose standby is gone for good must not fill the disk of a laptop.
        ("max_slot_wal_keep_size", quote("2GB")),
        ("synchronous_standby_names", quote(&sync_names)),
        ("synchronous_commit", "on".into()),
        // Small: a laptop runs several instances.
        ("shared_buffers", quote("32MB")),
        ("fsync", "on".into()),
        // The keeper reads stderr and logs it through tracing.
        ("logging_collector", "off".into()),
        ("log_destination", quote("stderr")),
        ("log_line_prefix", quote("[%p] ")),
    ];
    let mut out = String::from(
        "# Written by Meridian's db keeper at every start: edits here are lost.\n\
         # Settings made with ALTER SYSTEM (postgresql.auto.conf) still take precedence.\n",
    );
    for (key, value) in settings {
        out.push_str(&format!("{key} = {value}\n"));
    }
    out
}

/// `FIRST 1 ("a", "b")`: the first connected name in the list is the synchronous one,
/// the others are candidates that take over if it goes. Empty: asynchronous only.
pub(crate) fn synchronous_standby_names(names: &[String]) -> String {
    if names.is_empty() {
        return String::new();
    }
    let list: Vec<String> = names
        .iter()
        .map(|n| format!("\"{}\"", n.replace('"', "\"\"")))
        .collect();
    format!("FIRST 1 ({})", list.join(", "))
}

/// pg_hba.conf: peer on the unix socket, scram-sha-256 for every TCP connection
/// (replication included) from loopback, and from the listen address's own network when
/// PostgreSQL listens beyond loopback.
pub(crate) fn pg_hba(listen: SocketAddr) -> String {
    let mut out = String::from(
        "# Written by Meridian's db keeper at every start: edits here are lost.\n\
         # TYPE  DATABASE     USER  ADDRESS        METHOD\n\
         local   all          all                  peer\n\
         local   replication  all                  peer\n\
         host    all          all   127.0.0.0/8    scram-sha-256\n\
         host    replication  all   127.0.0.0/8    scram-sha-256\n\
         host    all          all   ::1/128        scram-sha-256\n\
         host    replication  all   ::1/128        scram-sha-256\n",
    );
    let ip = listen.ip();
    if !ip.is_loopback() {
        // Standbys on other machines reach a primary that listens on a real interface.
        out.push_str(
            "host    all          all   samenet        scram-sha-256\n\
             host    replication  all   samenet        scram-sha-256\n",
        );
    }
    out
}

/// `primary_conninfo` for a standby, in libpq's key=value syntax.
pub(crate) fn primary_conninfo(upstream: SocketAddr, name: &str, password: &str) -> String {
    format!(
        "host={} port={} user=postgres password={} application_name={}",
        upstream.ip(),
        upstream.port(),
        conninfo_value(password),
        conninfo_value(name)
    )
}

/// The value of `key` in a libpq key=value conninfo (quoted or not), if it is there.
pub(crate) fn conninfo_get(conninfo: &str, key: &str) -> Option<String> {
    let mut chars = conninfo.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        chars.peek()?;
        let mut k = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            k.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        chars.next_if_eq(&'=')?;
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut v = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next()? {
                    '\\' => v.push(chars.next()?),
                    '\'' => break,
                    c => v.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                match c {
                    '\\' => v.push(chars.next()?),
                    c => v.push(c),
                }
            }
        }
        if k == key {
            return Some(v);
        }
    }
}

/// A server log line with any conninfo `password=` value hidden: PostgreSQL logs a
/// changed `primary_conninfo` (after a password rotation) in full.
pub(crate) fn redact_password(line: &str) -> String {
    let Some(at) = line.find("password=") else {
        return line.to_owned();
    };
    let start = at + "password=".len();
    let rest = &line[start..];
    let mut end = 0;
    let mut chars = rest.char_indices();
    if rest.starts_with('\'') {
        chars.next();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '\'' => {
                    end = i + 1;
                    break;
                }
                _ => end = i + c.len_utf8(),
            }
        }
    } else {
        end = rest
            .find(|c: char| c.is_whitespace() || c == '"')
            .unwrap_or(rest.len());
    }
    format!(
        "{}<hidden>{}",
        &line[..start],
        redact_password(&rest[end..])
    )
}

/// A libpq conninfo value: single-quoted, `\` and `'` escaped with a backslash.
pub(crate) fn conninfo_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A postgresql.conf string value: single-quoted, quotes doubled, backslashes escaped.
pub(crate) fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// Whether `postgresql.conf` text already includes Meridian's file.
pub(crate) fn has_include(conf: &str) -> bool {
    conf.lines().any(|l| l.trim() == INCLUDE_LINE)
}

/// Whether `postgresql.auto.conf` text has a primary_conninfo that names this node
/// (the primary matches synchronous standbys by application_name).
pub(crate) fn auto_conf_ok(auto_conf: &str, name: &str) -> bool {
    auto_conf.lines().any(|l| {
        let l = l.trim_start();
        l.starts_with("primary_conninfo")
            && (l.contains(&format!("application_name={name} "))
                || l.contains(&format!("application_name={name}'"))
                || l.contains(&format!(
                    "application_name=''{}''",
                    name.replace('\'', "\\''")
                )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synchronous_names_are_quoted_identifiers() {
        assert_eq!(synchronous_standby_names(&[]), "");
        assert_eq!(
            synchronous_standby_names(&["db-a".into(), "we\"ird".into()]),
            "FIRST 1 (\"db-a\", \"we\"\"ird\")"
        );
        assert_eq!(
            quote(&synchronous_standby_names(&["db-a".into()])),
            "'FIRST 1 (\"db-a\")'"
        );
    }

    #[test]
    fn conninfo_values_are_escaped() {
        assert_eq!(conninfo_value("pa'ss\\w"), "'pa\\'ss\\\\w'");
        let ci = primary_conninfo("127.0.0.1:5432".parse().unwrap(), "db-a", "pw");
        assert_eq!(conninfo_get(&ci, "password").as_deref(), Some("pw"));
        assert_eq!(conninfo_get(&ci, "port").as_deref(), Some("5432"));
        let odd = primary_conninfo("127.0.0.1:5432".parse().unwrap(), "db-a", "p w'\\x");
        assert_eq!(conninfo_get(&odd, "password").as_deref(), Some("p w'\\x"));
        assert_eq!(
            conninfo_get(
                "user=postgres passfile=/x password = abc host=h",
                "password"
            )
            .as_deref(),
            Some("abc")
        );
        assert_eq!(conninfo_get("host=h", "password"), None);
        assert_eq!(
            redact_password(&format!("changed to \"{odd}\"")),
            "changed to \"host=127.0.0.1 port=5432 user=postgres password=<hidden> application_name='db-a'\""
        );
        assert_eq!(redact_password("a password=abc b"), "a password=<hidden> b");
        assert_eq!(redact_password("no secret here"), "no secret here");
        assert_eq!(conninfo_get("password='unterminated", "password"), None);
        assert_eq!(
            ci,
            "host=127.0.0.1 port=5432 user=postgres password='pw' application_name='db-a'"
        );
    }

    #[test]
    fn recognises_application_name_in_auto_conf() {
        assert!(auto_conf_ok(
            "primary_conninfo = 'user=postgres application_name=db-a host=x'\n",
            "db-a"
        ));
        assert!(auto_conf_ok(
            "primary_conninfo = 'host=x application_name=db-a'\n",
            "db-a"
        ));
        assert!(auto_conf_ok(
            "primary_conninfo = 'host=x application_name=''db-a'''\n",
            "db-a"
        ));
        assert!(!auto_conf_ok(
            "primary_conninfo = 'host=x application_name=db-ab'\n",
            "db-a"
        ));
        assert!(!auto_conf_ok("primary_conninfo = 'host=x'\n", "db-a"));
    }
}
