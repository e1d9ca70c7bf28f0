//! The `postgres` password's rotation without a restart.
//!
//! PostgreSQL holds one password per role, so it cannot take the old and the new one at
//! once as Redis does. This is AWS Secrets Manager's *single user* rotation: the primary's
//! keeper, on seeing a new current password in the file, sets it on the role (`ALTER ROLE
//! postgres PASSWORD`, sent as a SCRAM verifier so the plain text never reaches the server
//! or its logs); the change replicates to every standby with the WAL. From then on new
//! sessions need the new password; sessions opened before stay open. Every Meridian client
//! re-reads the file and logs in with the current password, falling back to the previous
//! one during its grace, which covers the moments before the primary applied it. A
//! standby's stream (`primary_conninfo`) is moved to the new password once its upstream
//! takes it, with `ALTER SYSTEM` and `pg_reload_conf()`.

use crate::keeper::Keeper;
use crate::status::{describe, Probe};

/// Why a password cannot be used, if it cannot: initdb reads one line, and every TCP
/// connection uses scram-sha-256.
pub(crate) fn usable(password: &str) -> Result<(), &'static str> {
    if password.contains(['\n', '\r', '\0']) {
        return Err("the postgres password has a line break or NUL (initdb reads one line)");
    }
    if password.is_empty() {
        return Err("the postgres password is empty (every TCP connection uses scram-sha-256)");
    }
    Ok(())
}

/// `ALTER ROLE` with the SCRAM-SHA-256 verifier of `password`, not the password itself.
fn alter_role_sql(password: &str) -> String {
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    format!(
        "ALTER ROLE postgres PASSWORD '{}'",
        verifier.replace('\'', "''")
    )
}

impl Keeper<'_> {
    /// Primary: makes the role's password the current one, once per new value. `on_role`
    /// is the value known to be set (None at start: it is checked by logging in with it,
    /// so a keeper restarted mid-rotation sets it if nobody has).
    pub(crate) async fn keep_password(&self, on_role: &mut Option<String>) {
        let name = &self.opts.name;
        let current = self.opts.password.current();
        if on_role.as_deref() == Some(current.as_str()) {
            return;
        }
        if let Err(why) = usable(&current) {
            tracing::warn!("{name}: the new database password is not used: {why}");
            return;
        }
        let check = tokio::time::timeout(self.tick(), self.probe.connect_with(&current)).await;
        match check {
            Ok(Ok(_)) => {
                *on_role = Some(current);
                return;
            }
            // Refused: the role has another password. Anything else: next tick.
            Ok(Err(e)) if e.refused => {}
            _ => return,
        }
        let sql = alter_role_sql(&current);
        let set = async {
            let client = self.probe.connect().await?;
            // Not waiting for a synchronous standby (one may be down): a standby gets the
            // change with the WAL in any case, and clients fall back to the previous
            // password meanwhile. Lost in a failover, it is set again by the new primary's
            // keeper, which finds the current password refused.
            client
                .batch_execute("SET synchronous_commit = local")
                .await
                .map_err(|e| describe(&e))?;
            client.batch_execute(&sql).await.map_err(|e| describe(&e))
        };
        match tokio::time::timeout(self.tick(), set).await {
            Ok(Ok(())) => {
                tracing::info!(
                    "{name}: the postgres role has the new password (standbys get it with the WAL)"
                );
                *on_role = Some(current);
            }
            Ok(Err(e)) => tracing::warn!("{name}: cannot set the new database password: {e}"),
            Err(_) => tracing::warn!(
                "{name}: setting the new database password did not finish within a tick; trying again"
            ),
        }
    }

    /// Standby or replica: moves its stream to the current password once the upstream
    /// takes it (before that, the stream keeps the one that works). `in_conninfo` is the
    /// value known to be in `primary_conninfo`.
    pub(crate) async fn keep_conninfo(&self, in_conninfo: &mut Option<String>) {
        let Some(upstream) = self.opts.upstream else {
            return;
        };
        let name = &self.opts.name;
        let current = self.opts.password.current();
        if in_conninfo.as_deref() == Some(current.as_str()) || usable(&current).is_err() {
            return;
        }
        let work = async {
            let own = self.probe.connect().await?;
            let shown: String = own
                .query_one("SHOW primary_conninfo", &[])
                .await
                .map_err(|e| describe(&e))?
                .get(0);
            if crate::conf::conninfo_get(&shown, "password").as_deref() == Some(&current) {
                return Ok(true);
            }
            if Probe::of(upstream, self.opts)
                .connect_with(&current)
                .await
                .is_err()
            {
                // The primary has not set it yet (or cannot be reached): next tick.
                return Ok(false);
            }
            let conninfo = crate::conf::primary_conninfo(upstream, name, &current);
            // Two statements: ALTER SYSTEM cannot run in a multi-statement transaction.
            own.batch_execute(&format!(
                "ALTER SYSTEM SET primary_conninfo = {}",
                crate::conf::quote(&conninfo)
            ))
            .await
            .map_err(|e| describe(&e))?;
            own.batch_execute("SELECT pg_reload_conf()")
                .await
                .map_err(|e| describe(&e))?;
            tracing::info!("{name}: streams from {upstream} with the new database password");
            Ok::<bool, String>(true)
        };
        match tokio::time::timeout(self.tick(), work).await {
            Ok(Ok(true)) => *in_conninfo = Some(current),
            Ok(Ok(false)) | Err(_) => {}
            // Its own server starting, or restarting: the next tick tries again.
            Ok(Err(e)) => {
                tracing::debug!("{name}: cannot move the stream to the new password yet: {e}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_gets_a_verifier_never_the_password() {
        let sql = alter_role_sql("s3cret-value");
        assert!(
            sql.starts_with("ALTER ROLE postgres PASSWORD 'SCRAM-SHA-256$4096:"),
            "{sql}"
        );
        assert!(!sql.contains("s3cret-value"));
        assert!(usable("").is_err());
        assert!(usable("a\nb").is_err());
        assert!(usable("fine").is_ok());
    }
}
