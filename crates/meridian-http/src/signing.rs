//! Origin access control: the edge signs every request it sends to an origin, and a
//! balancer with `require_edge_signature` refuses what is unsigned or stale, so nobody can
//! reach a region around the CDN. In the spirit of SigV4: an HMAC-SHA256 over the time,
//! the method, the host and the path with its query, under a key named by its id. The body
//! is not signed (S3's UNSIGNED-PAYLOAD): a fill streams, and the key and the time already
//! bind a signature to one request line for a few minutes.
//!
//! Keys live in the state directory: `edge-signing-key` (the current one, which signs)
//! and, after `meridian secrets rotate edge-signing-key`, `edge-signing-key.previous` with
//! the moment it stops being accepted. Both are read again every few seconds, so a
//! rotation needs no restart: edges sign with the new key, balancers accept both.

use http::{HeaderMap, HeaderValue, Method};
use ring::hmac;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The header that carries the signature.
pub const HEADER: &str = "meridian-edge-signature";
/// The current key's file in a state directory.
pub const KEY_FILE: &str = "edge-signing-key";
/// How far a signature's time may be from the verifier's clock (SigV4 allows 15 minutes;
/// the edge signs each request as it sends it).
pub const MAX_SKEW: Duration = Duration::from_secs(300);
/// How often the key files are read again.
const RELOAD: Duration = Duration::from_secs(2);

/// Who a signature is for. A request a PoP sends to a balancer and one it sends to a
/// regional cache are signed apart, so a signature seen by a balancer or an instance
/// cannot be replayed at a regional cache to skip its viewer phases, nor the other way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// An origin: a region's balancer.
    Origin,
    /// A regional cache of the tier.
    Tier,
}

impl Audience {
    fn label(self) -> &'static str {
        match self {
            Audience::Origin => "MERIDIAN-EDGE-HMAC-SHA256",
            Audience::Tier => "MERIDIAN-TIER-HMAC-SHA256",
        }
    }
}

/// Why a request's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request is not signed (no {HEADER} header): it did not come through the CDN")]
    Missing,
    #[error("the {HEADER} header is malformed: {0}")]
    Malformed(&'static str),
    #[error("the signature names key {0}, which this balancer does not hold (rotated out?)")]
    UnknownKey(String),
    #[error("the signature is {0} s away from this balancer's clock (at most {max} s)", max = MAX_SKEW.as_secs())]
    Stale(u64),
    #[error("the signature does not match the request")]
    Mismatch,
}

struct Key {
    id: String,
    key: hmac::Key,
    /// None: the current key; Some: a previous key, accepted until then.
    until: Option<SystemTime>,
}

impl Key {
    fn new(secret: &str, until: Option<SystemTime>) -> Key {
        let digest = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
        Key {
            id: hex(&digest.as_ref()[..4]),
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
            until,
        }
    }
}

struct Loaded {
    keys: Vec<Key>,
    at: Instant,
}

/// The signing keys of a deployment: the first signs, every one still valid verifies.
pub struct Signer {
    /// The current key's file (the previous one is beside it); None: fixed keys.
    file: Option<PathBuf>,
    state: Mutex<Loaded>,
}

impl std::fmt::Debug for Signer {
    /// Key ids only: the secrets never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self.with_keys(|k| k.iter().map(|k| k.id.clone()).collect());
        f.debug_struct("Signer").field("keys", &ids).finish()
    }
}

impl Signer {
    /// The keys in `state_dir`; an error when there is no current key (`up` makes it).
    pub fn load(state_dir: &Path) -> std::io::Result<Signer> {
        Signer::load_file(&state_dir.join(KEY_FILE))
    }

    /// The key in `file` (and `<file>.previous` during a rotation's grace), re-read every
    /// few seconds.
    pub fn load_file(file: &Path) -> std::io::Result<Signer> {
        let keys = read_keys(file)?;
        Ok(Signer {
            file: Some(file.to_path_buf()),
            state: Mutex::new(Loaded {
                keys,
                at: Instant::now(),
            }),
        })
    }

    /// Fixed keys (tests, embedders): a current secret and a previous one with its end.
    pub fn from_secrets(current: &str, previous: Option<(&str, SystemTime)>) -> Signer {
        let mut keys = vec![Key::new(current, None)];
        if let Some((p, until)) = previous {
            keys.push(Key::new(p, Some(until)));
        }
        Signer {
            file: None,
            state: Mutex::new(Loaded {
                keys,
                at: Instant::now(),
            }),
        }
    }

    fn with_keys<T>(&self, f: impl FnOnce(&[Key]) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = &self.file {
            if state.at.elapsed() >= RELOAD {
                // A key file being rewritten is read again at the next reload.
                if let Ok(keys) = read_keys(file) {
                    state.keys = keys;
                }
                state.at = Instant::now();
            }
        }
        f(&state.keys)
    }

    /// The header value for a request sent now.
    /// A signature for an origin (a balancer).
    pub fn sign(&self, method: &Method, host: &str, path_and_query: &str) -> HeaderValue {
        self.sign_at(method, host, path_and_query, SystemTime::now())
    }

    /// A signature for `audience`.
    pub fn sign_for(
        &self,
        audience: Audience,
        method: &Method,
        host: &str,
        path_and_query: &str,
    ) -> HeaderValue {
        self.sign_at_for(audience, method, host, path_and_query, SystemTime::now())
    }

    pub fn sign_at(
        &self,
        method: &Method,
        host: &str,
        path_and_query: &str,
        now: SystemTime,
    ) -> HeaderValue {
        self.sign_at_for(Audience::Origin, method, host, path_and_query, now)
    }

    fn sign_at_for(
        &self,
        audience: Audience,
        method: &Method,
        host: &str,
        path_and_query: &str,
        now: SystemTime,
    ) -> HeaderValue {
        let t = unix(now);
        self.with_keys(|keys| {
            let key = &keys[0];
            let sig = hmac::sign(
                &key.key,
                to_sign(audience, t, method, host, path_and_query).as_bytes(),
            );
            let value = format!("v1;key={};t={t};sig={}", key.id, hex(sig.as_ref()));
            // Hex digits, a decimal and a key id made of hex: always a valid header value.
            HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("v1"))
        })
    }

    /// Checks the signature `headers` carry for this request line to an origin, at `now`.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        method: &Method,
        host: &str,
        path_and_query: &str,
        now: SystemTime,
    ) -> Result<(), SignatureError> {
        self.verify_for(Audience::Origin, headers, method, host, path_and_query, now)
    }

    /// Checks the signature `headers` carry for this request line to `audience`, at `now`.
    pub fn verify_for(
        &self,
        audience: Audience,
        headers: &HeaderMap,
        method: &Method,
        host: &str,
        path_and_query: &str,
        now: SystemTime,
    ) -> Result<(), SignatureError> {
        let value = headers
            .get(HEADER)
            .ok_or(SignatureError::Missing)?
            .to_str()
            .map_err(|_| SignatureError::Malformed("not visible ASCII"))?;
        let mut fields = value.split(';');
        if fields.next() != Some("v1") {
            return Err(SignatureError::Malformed("it does not start with v1"));
        }
        let (mut id, mut t, mut sig) = (None, None, None);
        for f in fields {
            match f.split_once('=') {
                Some(("key", v)) => id = Some(v),
                Some(("t", v)) => t = v.parse::<u64>().ok(),
                Some(("sig", v)) => sig = unhex(v),
                _ => return Err(SignatureError::Malformed("an unknown field")),
            }
        }
        let (Some(id), Some(t), Some(sig)) = (id, t, sig) else {
            return Err(SignatureError::Malformed("key, t and sig are all needed"));
        };
        let skew = unix(now).abs_diff(t);
        if skew > MAX_SKEW.as_secs() {
            return Err(SignatureError::Stale(skew));
        }
        self.with_keys(|keys| {
            let key = keys
                .iter()
                .find(|k| k.id == id && k.until.is_none_or(|u| now < u))
                .ok_or_else(|| SignatureError::UnknownKey(id.to_owned()))?;
            hmac::verify(
                &key.key,
                to_sign(audience, t, method, host, path_and_query).as_bytes(),
                &sig,
            )
            .map_err(|_| SignatureError::Mismatch)
        })
    }
}

/// The current key (`edge-signing-key`) and, when a rotation left one, the previous key
/// (`edge-signing-key.previous`: the secret, then the unix time it ends, on two lines).
fn read_keys(file: &Path) -> std::io::Result<Vec<Key>> {
    let current = std::fs::read_to_string(file)?;
    let current = current.trim();
    if current.is_empty() {
        return Err(std::io::Error::other(format!(
            "{} is empty",
            file.display()
        )));
    }
    let mut keys = vec![Key::new(current, None)];
    if let Some((secret, until)) = crate::secret_file::read_previous(file) {
        keys.push(Key::new(&secret, Some(until)));
    }
    Ok(keys)
}

/// The file that holds the previous key during a rotation's grace period.
pub fn previous_file() -> String {
    format!("{KEY_FILE}.previous")
}

fn to_sign(
    audience: Audience,
    t: u64,
    method: &Method,
    host: &str,
    path_and_query: &str,
) -> String {
    format!(
        "{}\n{t}\n{}\n{}\n{path_and_query}",
        audience.label(),
        method.as_str(),
        host.to_ascii_lowercase()
    )
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(s: &Signer, now: SystemTime) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            HEADER,
            s.sign_at(&Method::GET, "LB:8080", "/api/x?a=1", now),
        );
        h
    }

    #[test]
    fn a_signature_holds_for_its_audience_only() {
        let s = Signer::from_secrets("k1", None);
        let now = SystemTime::now();
        let (m, host, pq) = (Method::GET, "rec:8080", "/static/app.css");
        let mut tier = HeaderMap::new();
        tier.insert(HEADER, s.sign_for(Audience::Tier, &m, host, pq));
        let origin = {
            let mut h = HeaderMap::new();
            h.insert(HEADER, s.sign_for(Audience::Origin, &m, host, pq));
            h
        };
        let check = |a, h: &HeaderMap| s.verify_for(a, h, &m, host, pq, now);
        assert_eq!(check(Audience::Tier, &tier), Ok(()));
        assert_eq!(check(Audience::Origin, &origin), Ok(()));
        assert_eq!(
            check(Audience::Origin, &tier),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(Audience::Tier, &origin),
            Err(SignatureError::Mismatch)
        );
        // `verify` is for origins.
        assert_eq!(s.verify(&origin, &m, host, pq, now), Ok(()));
    }

    #[test]
    fn a_signature_holds_for_its_request_line_only() {
        let s = Signer::from_secrets("k1", None);
        let now = SystemTime::now();
        let h = signed(&s, now);
        assert_eq!(
            s.verify(&h, &Method::GET, "lb:8080", "/api/x?a=1", now),
            Ok(())
        );
        for (m, host, pq) in [
            (Method::POST, "lb:8080", "/api/x?a=1"),
            (Method::GET, "other:8080", "/api/x?a=1"),
            (Method::GET, "lb:8080", "/api/x?a=2"),
        ] {
            assert_eq!(
                s.verify(&h, &m, host, pq, now),
                Err(SignatureError::Mismatch),
                "{m} {host}{pq}"
            );
        }
        let other = Signer::from_secrets("k2", None);
        assert!(matches!(
            other.verify(&h, &Method::GET, "lb:8080", "/api/x?a=1", now),
            Err(SignatureError::UnknownKey(_))
        ));
    }

    #[test]
    fn missing_stale_and_malformed_signatures_are_refused() {
        let s = Signer::from_secrets("k1", None);
        let now = SystemTime::now();
        let verify = |h: &HeaderMap| s.verify(h, &Method::GET, "lb:8080", "/api/x?a=1", now);
        assert_eq!(verify(&HeaderMap::new()), Err(SignatureError::Missing));
        let old = signed(&s, now - Duration::from_secs(301));
        assert_eq!(verify(&old), Err(SignatureError::Stale(301)));
        for bad in [
            "v2;key=a;t=1;sig=00",
            "v1;key=a;t=1",
            "v1;key=a;t=x;sig=00",
            "v1;what=1",
            "v1;key=a;t=1;sig=0g",
        ] {
            let mut h = HeaderMap::new();
            h.insert(HEADER, HeaderValue::from_static(bad));
            assert!(
                matches!(verify(&h), Err(SignatureError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn after_a_rotation_the_previous_key_is_accepted_until_its_end() {
        let now = SystemTime::now();
        let before = Signer::from_secrets("old", None);
        let h = signed(&before, now);
        let after = Signer::from_secrets("new", Some(("old", now + Duration::from_secs(60))));
        let verify = |s: &Signer, at| s.verify(&h, &Method::GET, "lb:8080", "/api/x?a=1", at);
        assert_eq!(verify(&after, now), Ok(()));
        assert!(matches!(
            verify(&after, now + Duration::from_secs(61)),
            Err(SignatureError::UnknownKey(_))
        ));
        // The new key signs.
        let h2 = signed(&after, now);
        assert_eq!(
            after.verify(&h2, &Method::GET, "lb:8080", "/api/x?a=1", now),
            Ok(())
        );
        assert!(before
            .verify(&h2, &Method::GET, "lb:8080", "/api/x?a=1", now)
            .is_err());
    }

    #[test]
    fn keys_are_read_from_the_state_dir_again_after_a_rotation() {
        let dir = std::env::temp_dir().join(format!("meridian-signing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(Signer::load(&dir).is_err(), "no key yet");
        std::fs::write(dir.join(KEY_FILE), "first\n").unwrap();
        let s = Signer::load(&dir).unwrap();
        let now = SystemTime::now();
        let h = signed(&s, now);
        std::fs::write(dir.join(KEY_FILE), "second\n").unwrap();
        let until = unix(now) + 60;
        std::fs::write(dir.join(previous_file()), format!("first\n{until}\n")).unwrap();
        s.state.lock().unwrap().at = Instant::now() - RELOAD;
        let h2 = signed(&s, now);
        assert_ne!(h.get(HEADER), h2.get(HEADER), "the new key signs");
        for h in [&h, &h2] {
            assert_eq!(
                s.verify(h, &Method::GET, "lb:8080", "/api/x?a=1", now),
                Ok(())
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
