//! Secrets that rotate without a restart. A secret lives in a file (the state dir's, or
//! one the config names); `meridian secrets rotate` moves it to `<file>.previous` with the
//! unix time its grace period ends on a second line, then writes a new one. Nodes read both
//! files again every few seconds, so the old value keeps working until the grace ends and
//! the new one from the next reload on. A secret from an environment variable is fixed for
//! the life of the process.

use http::HeaderMap;
use meridian_config::SecretSource;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use crate::secret_file::{previous_path, read_previous, RELOAD};

/// The secrets `meridian secrets` knows, by the name of their file in the state dir.
pub const NAMES: &[&str] = &[
    crate::admin::token::TOKEN_FILE,
    crate::signing::KEY_FILE,
    crate::admin::token::DB_PASSWORD_FILE,
    crate::admin::token::CACHE_PASSWORD_FILE,
];

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the secret {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the secret {0} is empty\n  fix: write the secret (one line) into it")]
    Empty(PathBuf),
    #[error("the environment variable {0} that [secrets] names is not set or empty")]
    Env(String),
    #[error("cannot write the secret {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{0}` is not a secret Meridian rotates; known: {names}", names = NAMES.join(", "))]
    Unknown(String),
    #[error("{name} is not used here: the deployment has no {section}\n  fix: rotate it in a deployment whose config has {section}")]
    NotUsed { name: String, section: &'static str },
    #[error(
        "{0} comes from the environment variable {1}: set a new value there and restart the nodes"
    )]
    FromEnv(String, String),
}

/// Where the secret `name` (a file name of [`NAMES`]) of a deployment is read from.
pub fn location(source: &SecretSource, state_dir: &Path, name: &str) -> Location {
    match source {
        SecretSource::StateDir => Location::File(state_dir.join(name)),
        SecretSource::File(p) => Location::File(p.clone()),
        SecretSource::Env(v) => Location::Env(v.clone()),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    Env(String),
}

fn read_one(path: &Path) -> Result<String, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
        path: path.to_owned(),
        source,
    })?;
    let value = text.lines().next().unwrap_or("").trim().to_owned();
    if value.is_empty() {
        return Err(SecretError::Empty(path.to_owned()));
    }
    Ok(value)
}

struct Values {
    current: String,
    previous: Option<(String, SystemTime)>,
    at: Instant,
}

struct Shared {
    location: Option<Location>,
    values: Mutex<Values>,
}

/// A secret as its users hold it: re-read every [`RELOAD`] from where it lives, so a
/// rotation needs no restart, with the previous value while its grace period lasts.
/// Every rotating secret (admin token, database and cache passwords) is one of these, so
/// there is one reload path. Cheap to clone; clones share the values.
#[derive(Clone)]
pub struct Secret(Arc<Shared>);

impl std::fmt::Debug for Secret {
    /// Never the value itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("location", &self.0.location)
            .finish()
    }
}

impl From<String> for Secret {
    /// A fixed value (tests, embedders): never re-read.
    fn from(value: String) -> Self {
        Secret(Arc::new(Shared {
            location: None,
            values: Mutex::new(Values {
                current: value,
                previous: None,
                at: Instant::now(),
            }),
        }))
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::from(value.to_owned())
    }
}

impl Secret {
    /// The secret at `location`, read now (an error names the file or variable) and again
    /// every [`RELOAD`].
    pub fn load(location: Location) -> Result<Secret, SecretError> {
        let (current, previous) = read_location(&location)?;
        Ok(Secret(Arc::new(Shared {
            location: Some(location),
            values: Mutex::new(Values {
                current,
                previous,
                at: Instant::now(),
            }),
        })))
    }

    /// The secret kept in the file `path` (and `<path>.previous` during a grace).
    pub fn load_file(path: &Path) -> Result<Secret, SecretError> {
        Secret::load(Location::File(path.to_owned()))
    }

    /// Where it is read from; None for a fixed value.
    pub fn location(&self) -> Option<&Location> {
        self.0.location.as_ref()
    }

    fn with<T>(&self, f: impl FnOnce(&Values) -> T) -> T {
        let mut v = self.0.values.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(loc) = &self.0.location {
            if v.at.elapsed() >= RELOAD {
                // A file being rewritten is read again at the next reload.
                if let Ok((current, previous)) = read_location(loc) {
                    v.current = current;
                    v.previous = previous;
                }
                v.at = Instant::now();
            }
        }
        f(&v)
    }

    /// Reads the files again at the next use, without waiting for [`RELOAD`]: for tests
    /// and for a caller told that a rotation just happened.
    pub fn reload_soon(&self) {
        let mut v = self.0.values.lock().unwrap_or_else(|p| p.into_inner());
        v.at = Instant::now().checked_sub(RELOAD).unwrap_or(v.at);
    }

    /// The value to use for new connections and calls.
    pub fn current(&self) -> String {
        self.with(|v| v.current.clone())
    }

    /// The value before the last rotation, while its grace period lasts.
    pub fn previous(&self) -> Option<String> {
        self.previous_until().map(|(p, _)| p)
    }

    /// The previous value and the end of its grace, while that grace lasts.
    pub fn previous_until(&self) -> Option<(String, SystemTime)> {
        let now = SystemTime::now();
        self.with(|v| v.previous.clone().filter(|(_, until)| now < *until))
    }

    /// The values to try, in order: the current one, then the previous one during its
    /// grace (a peer may not have taken the new one yet).
    pub fn candidates(&self) -> Vec<String> {
        let now = SystemTime::now();
        self.with(|v| {
            let mut all = vec![v.current.clone()];
            if let Some((p, until)) = &v.previous {
                if now < *until && *p != v.current {
                    all.push(p.clone());
                }
            }
            all
        })
    }

    /// Whether `check` holds for the current value, or the previous one in its grace.
    /// Every candidate is checked, so the time taken does not say which one matched.
    pub fn matches(&self, check: impl Fn(&str) -> bool) -> bool {
        self.candidates().iter().fold(false, |ok, c| check(c) | ok)
    }

    pub fn is_empty(&self) -> bool {
        self.with(|v| v.current.is_empty())
    }
}

/// The secret `name` of a deployment from where its config says: the state dir's file
/// (made, random and owner-only, when missing, as `up` does), or the named file or
/// variable (which must exist: nothing is made outside the state dir).
pub fn configured(
    source: &SecretSource,
    state_dir: &Path,
    name: &str,
) -> Result<Secret, SecretError> {
    match source {
        SecretSource::StateDir => state_dir_password(state_dir, name),
        other => Secret::load(location(other, state_dir, name)),
    }
}

/// A password kept in the state dir's file `name` (`db-password`, `cache-password`),
/// made when missing (as for a node run on its own) and re-read as every [`Secret`].
fn state_dir_password(state_dir: &Path, name: &str) -> Result<Secret, SecretError> {
    crate::admin::token::secret(state_dir, name).map_err(|source| SecretError::Write {
        path: state_dir.join(name),
        source,
    })?;
    Secret::load_file(&state_dir.join(name))
}

/// Runs `attempt` with each of `secret`'s candidates in turn (current, then previous in
/// its grace), moving on only while `refused` says the server refused that value: the
/// way a client logs in while a rotation reaches the server. The first success, or the
/// last error.
pub async fn try_each<T, E, Fut>(
    secret: &Secret,
    mut attempt: impl FnMut(String) -> Fut,
    refused: impl Fn(&E) -> bool,
) -> Result<T, E>
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut candidates = secret.candidates().into_iter().peekable();
    loop {
        // `candidates()` always holds the current value.
        let value = candidates.next().unwrap_or_default();
        match attempt(value).await {
            Err(e) if refused(&e) && candidates.peek().is_some() => continue,
            other => return other,
        }
    }
}

/// The deployment's admin token as every admin endpoint checks it: a [`Secret`], so a
/// rotation needs no restart and the previous token is accepted until its grace period
/// ends. Cheap to clone.
#[derive(Clone)]
pub struct AdminToken(Secret);

impl std::fmt::Debug for AdminToken {
    /// Never the token itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken")
            .field("location", &self.0.location())
            .finish()
    }
}

impl From<String> for AdminToken {
    /// A fixed token (tests, embedders): never re-read.
    fn from(token: String) -> Self {
        AdminToken(Secret::from(token))
    }
}

impl From<&str> for AdminToken {
    fn from(token: &str) -> Self {
        AdminToken::from(token.to_owned())
    }
}

impl AdminToken {
    /// The token of a deployment: from the configured file or variable, or the state
    /// dir's file (made when missing, as a node run on its own needs one).
    pub fn load(source: &SecretSource, state_dir: &Path) -> Result<AdminToken, SecretError> {
        let location = location(source, state_dir, crate::admin::token::TOKEN_FILE);
        if *source == SecretSource::StateDir {
            crate::admin::token::token(state_dir).map_err(|source| SecretError::Write {
                path: state_dir.join(crate::admin::token::TOKEN_FILE),
                source,
            })?;
        }
        Secret::load(location).map(AdminToken)
    }

    /// Whether `headers` carry the current token, or the previous one during its grace.
    pub fn accepts(&self, headers: &HeaderMap) -> bool {
        self.0
            .matches(|t| crate::admin::token::bearer_ok(headers, t))
    }

    /// The current token, for calls to other nodes.
    pub fn current(&self) -> String {
        self.0.current()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The secret underneath.
    pub fn secret(&self) -> &Secret {
        &self.0
    }
}

/// The edge signing keys of a deployment (current and previous), from where the config
/// says: a file is re-read every few seconds, a variable is fixed.
pub fn signer(
    source: &SecretSource,
    state_dir: &Path,
) -> Result<crate::signing::Signer, SecretError> {
    match location(source, state_dir, crate::signing::KEY_FILE) {
        Location::File(p) => crate::signing::Signer::load_file(&p)
            .map_err(|source| SecretError::Read { path: p, source }),
        loc @ Location::Env(_) => {
            let (current, _) = read_location(&loc)?;
            Ok(crate::signing::Signer::from_secrets(&current, None))
        }
    }
}

fn read_location(loc: &Location) -> Result<(String, Option<(String, SystemTime)>), SecretError> {
    match loc {
        Location::File(p) => Ok((read_one(p)?, read_previous(p))),
        Location::Env(var) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok((v.trim().to_owned(), None)),
            _ => Err(SecretError::Env(var.clone())),
        },
    }
}

/// What a rotation did: where the new value is, and until when the old one is accepted.
#[derive(Debug)]
pub struct Rotated {
    pub path: PathBuf,
    pub previous_until: SystemTime,
}

/// Rotates the secret in `path`: its value goes to `<path>.previous` with the end of the
/// grace period (now + `grace`), then a new random value replaces it. In that order, so a
/// node reading in between holds the old value either way. Both files are owner-only.
pub fn rotate(path: &Path, grace: Duration) -> Result<Rotated, SecretError> {
    let old = read_one(path)?;
    let until = SystemTime::now() + grace;
    let unix = until
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let previous = previous_path(path);
    crate::secret_file::write_secret(&previous, format!("{old}\n{unix}\n").as_bytes()).map_err(
        |source| SecretError::Write {
            path: previous.clone(),
            source,
        },
    )?;
    let new = format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    );
    crate::secret_file::write_secret(path, format!("{new}\n").as_bytes()).map_err(|source| {
        SecretError::Write {
            path: path.to_owned(),
            source,
        }
    })?;
    Ok(Rotated {
        path: path.to_owned(),
        previous_until: until,
    })
}

/// One line of `meridian secrets list`: never the value.
#[derive(Debug)]
pub struct SecretInfo {
    pub name: String,
    pub location: Location,
    /// Since the file was last written (None for a variable or a missing file).
    pub age: Option<Duration>,
    /// The end of the previous value's grace period, when one is still accepted.
    pub previous_until: Option<SystemTime>,
}

/// The state of the secret `name` at `location`.
pub fn describe(name: &str, location: Location) -> SecretInfo {
    let (age, previous_until) = match &location {
        Location::File(p) => (
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok()),
            read_previous(p)
                .map(|(_, until)| until)
                .filter(|u| *u > SystemTime::now()),
        ),
        Location::Env(_) => (None, None),
    };
    SecretInfo {
        name: name.to_owned(),
        location,
        age,
        previous_until,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{header, HeaderValue};

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
        h
    }

    fn force_reload(t: &AdminToken) {
        t.secret().reload_soon();
    }

    #[test]
    fn after_a_rotation_the_old_token_works_until_the_grace_ends() {
        let d = std::env::temp_dir().join(format!("meridian-secrets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let token = AdminToken::load(&SecretSource::StateDir, &d).unwrap();
        let old = token.current();
        assert!(token.accepts(&bearer(&old)));
        let r = rotate(
            &d.join(crate::admin::token::TOKEN_FILE),
            Duration::from_secs(2),
        )
        .unwrap();
        force_reload(&token);
        let new = token.current();
        assert_ne!(new, old);
        assert!(token.accepts(&bearer(&new)), "the new token works at once");
        assert!(token.accepts(&bearer(&old)), "the old one during the grace");
        assert!(!token.accepts(&bearer("guess")));
        let info = describe("admin-token", Location::File(r.path.clone()));
        assert!(info.previous_until.is_some());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(previous_path(&r.path))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Bounded: the grace is 2 s.
        std::thread::sleep(Duration::from_millis(2100));
        assert!(!token.accepts(&bearer(&old)), "not after the grace");
        assert!(token.accepts(&bearer(&new)));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_password_gives_current_then_previous_during_the_grace_only() {
        let d = std::env::temp_dir().join(format!("meridian-secret-pw-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let path = d.join(crate::admin::token::DB_PASSWORD_FILE);
        let first = crate::admin::token::secret(&d, crate::admin::token::DB_PASSWORD_FILE).unwrap();
        let pw = Secret::load_file(&path).unwrap();
        assert_eq!(pw.candidates(), vec![first.clone()]);
        assert_eq!(pw.previous(), None);
        rotate(&path, Duration::from_secs(60)).unwrap();
        assert_eq!(pw.current(), first, "not re-read before the reload time");
        pw.reload_soon();
        let second = pw.current();
        assert_ne!(second, first);
        assert_eq!(pw.previous(), Some(first.clone()));
        assert_eq!(pw.candidates(), vec![second.clone(), first.clone()]);
        assert!(pw.matches(|c| c == first) && pw.matches(|c| c == second));
        // A grace that has ended: the previous value is gone.
        rotate(&path, Duration::ZERO).unwrap();
        pw.reload_soon();
        assert_eq!(pw.previous(), None);
        assert_eq!(pw.candidates().len(), 1);
        assert!(!pw.matches(|c| c == second));
        assert!(
            !format!("{pw:?}").contains(&pw.current()),
            "Debug never shows it"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_configured_file_or_variable_is_read_and_errors_name_it() {
        let missing = SecretSource::File("/nonexistent/meridian/token".into());
        let e = AdminToken::load(&missing, Path::new("/tmp")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/meridian/token"), "{e}");
        let var = "MERIDIAN_TEST_TOKEN_THAT_IS_NOT_SET";
        let e = AdminToken::load(&SecretSource::Env(var.into()), Path::new("/tmp")).unwrap_err();
        assert!(e.to_string().contains(var), "{e}");
    }
}
