//! The cache password's rotation without a restart.
//!
//! Redis's ACL lets a user hold several passwords, so during a grace period the old and
//! the new cache password both truly authenticate. At every check a keeper compares the
//! passwords its Redis holds with what the password files say (the current one, and the
//! previous one while its grace lasts) and, when they differ, sets exactly those on the
//! default user (`ACL SETUSER default resetpass >current >previous`), gives the current one
//! to its primary as `masterauth` (`CONFIG SET`), and rewrites redis.conf so a restarted
//! server holds the same. When the grace ends the same step leaves only the new one.
//! Connections already authenticated stay open.

use crate::keeper::Keeper;
use meridian_config::CacheRole;
use meridian_resp::{Client, RespError};
use std::net::SocketAddr;

/// Why a password cannot be used, if it cannot: redis.conf holds it unquoted, and an empty
/// one would leave Redis open.
pub(crate) fn usable(password: &str) -> Result<(), &'static str> {
    if password.is_empty() {
        return Err("the password is empty (Redis would run without protection)");
    }
    if password
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\'')
    {
        return Err("the password has a space, quote or control character (redis.conf cannot hold it unquoted)");
    }
    Ok(())
}

impl Keeper {
    /// The passwords this node's Redis should take now: the current one, then the
    /// previous one during its grace; values that cannot be used are left out (and said).
    pub(crate) fn wanted_passwords(&self) -> Vec<String> {
        let all = self.opts.password.candidates();
        let mut wanted = Vec::with_capacity(all.len());
        for p in all {
            match usable(&p) {
                Ok(()) => wanted.push(p),
                Err(why) => {
                    tracing::warn!("{}: a cache password is not used: {why}", self.opts.name)
                }
            }
        }
        wanted
    }

    /// The passwords to try on a Redis of this cluster, in order: the files' (current,
    /// previous) and then the ones last given to this node's Redis, so a keeper whose
    /// files moved on faster than its Redis (a grace shorter than a check) still gets in.
    fn passwords_to_try(&self) -> Vec<String> {
        let mut all = self.wanted_passwords();
        for p in self.applied_passwords() {
            if !all.contains(&p) {
                all.push(p);
            }
        }
        all
    }

    pub(crate) fn applied_passwords(&self) -> Vec<String> {
        self.applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Notes the passwords a config just written holds.
    pub(crate) fn set_applied(&self, passwords: Vec<String>) {
        *self.applied.lock().unwrap_or_else(|p| p.into_inner()) = passwords;
    }

    /// An authenticated connection to the Redis at `addr` (this node's or the peer's).
    pub(crate) async fn connect(&self, addr: SocketAddr) -> Result<Client, RespError> {
        Client::connect_any(addr, &self.passwords_to_try(), self.call_timeout()).await
    }

    /// Brings the passwords of this node's Redis in line with the files (see the module
    /// doc); `c` is a connection to it. Nothing is sent when they already agree.
    pub(crate) async fn sync_passwords(&self, c: &mut Client) {
        let wanted = self.wanted_passwords();
        if wanted.is_empty() || wanted == self.applied_passwords() {
            return;
        }
        let name = &self.opts.name;
        let mut args: Vec<String> = ["ACL", "SETUSER", "default", "on", "resetpass"]
            .map(String::from)
            .to_vec();
        args.extend(wanted.iter().map(|p| format!(">{p}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if let Err(e) = c.call(&args).await {
            // Not in the log with its arguments: they are the passwords.
            tracing::warn!("{name}: cannot set the cache passwords: {}", redact(&e));
            return;
        }
        if let Err(e) = c.call(&["CONFIG", "SET", "masterauth", &wanted[0]]).await {
            tracing::warn!("{name}: cannot set masterauth: {}", redact(&e));
            return;
        }
        let replica_of = match self.role() {
            CacheRole::Replica => self.primary(),
            CacheRole::Primary => None,
        };
        if let Err(e) = self.write_conf(replica_of, &wanted) {
            tracing::warn!("{name}: {e}");
        }
        tracing::info!(
            "{name}: Redis now takes {} (the current cache password{})",
            if wanted.len() == 1 {
                "one password"
            } else {
                "two passwords"
            },
            if wanted.len() == 1 {
                ""
            } else {
                ", and the previous one until its grace ends"
            }
        );
        self.set_applied(wanted);
    }
}

/// An error without the command's arguments.
fn redact(e: &RespError) -> String {
    match e {
        RespError::Refused { addr, message, .. } => format!("redis at {addr} refused: {message}"),
        other => other.to_string(),
    }
}
