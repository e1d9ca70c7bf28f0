//! JSON Web Key Sets (RFC 7517), from a document or from a file that is re-read when it
//! changes, so keys rotate without a restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde_json::Value;

use super::alg::Algorithm;
use crate::signed_url::der;

/// The largest JWKS file read; real ones are a few KB.
pub const MAX_JWKS_LEN: u64 = 1024 * 1024;
/// How often, at most, a [`JwksFile`] looks at its file.
const CHECK_EVERY_MS: u64 = 1000;

/// JWKS members are base64url without padding (RFC 7515 section 2); padding some
/// publishers leave on is tolerated, since this is configuration, not a token.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a JWKS could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS is not JSON: {0}")]
    NotJson(String),
    #[error("JWKS has no \"keys\" array")]
    NoKeys,
    #[error("JWKS key {index}: {why}")]
    Key { index: usize, why: String },
    #[error("JWKS file {path}: {why}")]
    Io { path: String, why: String },
}

/// A verification key. The secret of an `oct` key is kept out of `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum KeyMaterial {
    /// PKCS#1 RSAPublicKey DER.
    Rsa(Vec<u8>),
    /// Uncompressed P-256 point.
    P256(Vec<u8>),
    /// HMAC secret.
    Oct(Vec<u8>),
}

impl KeyMaterial {
    pub(crate) fn suits(&self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (KeyMaterial::Rsa(_), Algorithm::Rs256)
                | (KeyMaterial::P256(_), Algorithm::Es256)
                | (KeyMaterial::Oct(_), Algorithm::Hs256)
        )
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyMaterial::Rsa(_) => "RSA",
            KeyMaterial::P256(_) => "EC P-256",
            KeyMaterial::Oct(_) => "oct (secret)",
        })
    }
}

/// One usable key of a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Jwk {
    pub kid: Option<String>,
    /// When the JWK names an algorithm, the only one it may be used with.
    pub alg: Option<Algorithm>,
    pub material: KeyMaterial,
}

/// The signing keys of a JWKS that can verify HS256, RS256 or ES256.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwks {
    pub(crate) keys: Vec<Jwk>,
}

impl Jwks {
    /// Reads a JWKS document. Keys meant for encryption (`use` other than `sig`), and keys of
    /// a type or algorithm not supported here, are skipped as RFC 7517 section 5 advises; a key
    /// of a supported type with broken members is an error naming its index.
    pub fn parse(json: &[u8]) -> Result<Jwks, JwksError> {
        let doc: Value =
            serde_json::from_slice(json).map_err(|e| JwksError::NotJson(e.to_string()))?;
        let list = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::NoKeys)?;
        let mut keys = Vec::new();
        for (index, k) in list.iter().enumerate() {
            let err = |why: &str| JwksError::Key {
                index,
                why: why.to_string(),
            };
            let obj = k.as_object().ok_or_else(|| err("not an object"))?;
            let text = |name: &str| -> Result<Option<&str>, JwksError> {
                match obj.get(name) {
                    None => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s)),
                    Some(_) => Err(err(&format!("\"{name}\" is not a string"))),
                }
            };
            if text("use")?.is_some_and(|u| u != "sig") {
                continue;
            }
            let alg = match text("alg")? {
                None => None,
                Some(a) => match Algorithm::parse(a) {
                    Some(a) => Some(a),
                    None => continue,
                },
            };
            let bytes = |name: &str| -> Result<Vec<u8>, JwksError> {
                let s = text(name)?.ok_or_else(|| err(&format!("no \"{name}\"")))?;
                B64URL
                    .decode(s)
                    .map_err(|_| err(&format!("\"{name}\" is not base64url")))
            };
            let material = match text("kty")?.ok_or_else(|| err("no \"kty\""))? {
                "RSA" => {
                    let (n, e) = (bytes("n")?, bytes("e")?);
                    let bits = n.iter().skip_while(|&&b| b == 0).count() * 8;
                    if !(2048..=8192).contains(&bits) {
                        return Err(err("RSA modulus must be 2048 to 8192 bits"));
                    }
                    if e.iter().all(|&b| b == 0) {
                        return Err(err("RSA exponent is zero"));
                    }
                    KeyMaterial::Rsa(der::rsa_public_key(&n, &e))
                }
                "EC" => {
                    if text("crv")? != Some("P-256") {
                        return Err(err("only the P-256 curve is supported"));
                    }
                    let (x, y) = (bytes("x")?, bytes("y")?);
                    if x.len() != 32 || y.len() != 32 {
                        return Err(err("P-256 \"x\" and \"y\" must be 32 bytes each"));
                    }
                    let mut point = Vec::with_capacity(65);
                    point.push(4);
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    KeyMaterial::P256(point)
                }
                "oct" => {
                    let k = bytes("k")?;
                    if k.len() < 16 {
                        return Err(err("oct key shorter than 16 bytes"));
                    }
                    KeyMaterial::Oct(k)
                }
                _ => continue,
            };
            if alg.is_some_and(|a| !material.suits(a)) {
                return Err(err("\"alg\" does not fit \"kty\""));
            }
            keys.push(Jwk {
                kid: text("kid")?.map(str::to_string),
                alg,
                material,
            });
        }
        Ok(Jwks { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// What identifies a version of the file cheaply.
type Stamp = (Option<SystemTime>, u64);

struct Loaded {
    keys: Arc<Jwks>,
    generation: u64,
    stamp: Stamp,
}

/// A JWKS file, re-read when its modification time or length changes. Each use looks at the
/// file at most once a second (one atomic load otherwise); a new version that does not parse
/// leaves the previous keys in place and is reported by [`JwksFile::last_error`].
pub struct JwksFile {
    path: PathBuf,
    loaded: RwLock<Loaded>,
    started: Instant,
    last_check_ms: AtomicU64,
    last_error: Mutex<Option<JwksError>>,
}

impl JwksFile {
    pub fn open(path: impl AsRef<Path>) -> Result<JwksFile, JwksError> {
        let path = path.as_ref().to_path_buf();
        let (keys, stamp) = load(&path)?;
        Ok(JwksFile {
            path,
            loaded: RwLock::new(Loaded {
                keys: Arc::new(keys),
                generation: 0,
                stamp,
            }),
            started: Instant::now(),
            last_check_ms: AtomicU64::new(0),
            last_error: Mutex::new(None),
        })
    }

    /// The current keys.
    pub fn keys(&self) -> Arc<Jwks> {
        self.snapshot().0
    }

    /// Bumps on every successful reload.
    pub fn generation(&self) -> u64 {
        self.maybe_refresh();
        self.read().generation
    }

    /// The keys and the generation they belong to, read together.
    pub(crate) fn snapshot(&self) -> (Arc<Jwks>, u64) {
        self.maybe_refresh();
        let l = self.read();
        (l.keys.clone(), l.generation)
    }

    /// Why the latest version of the file was not taken, if it was not.
    pub fn last_error(&self) -> Option<JwksError> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Looks at the file now, whatever the throttle says (for a reload signal, say).
    /// Ok(true) when new keys were taken.
    pub fn refresh(&self) -> Result<bool, JwksError> {
        let stamp = stamp(&self.path);
        let result = match &stamp {
            Err(e) => Err(e.clone()),
            Ok(s) if *s == self.read().stamp => return Ok(false),
            Ok(_) => load(&self.path),
        };
        let mut last_error = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok((keys, stamp)) => {
                let mut l = self.loaded.write().unwrap_or_else(|e| e.into_inner());
                l.keys = Arc::new(keys);
                l.stamp = stamp;
                l.generation += 1;
                *last_error = None;
                Ok(true)
            }
            Err(e) => {
                // Remember the broken version so it is not re-parsed every second.
                if let Ok(s) = stamp {
                    self.loaded.write().unwrap_or_else(|e| e.into_inner()).stamp = s;
                }
                *last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    fn maybe_refresh(&self) {
        // Milliseconds since open, plus one so that 0 can mean "never looked".
        let now = self.started.elapsed().as_millis() as u64 + 1;
        let last = self.last_check_ms.load(Ordering::Relaxed);
        if last != 0 && now < last + CHECK_EVERY_MS {
            return;
        }
        // One thread looks; the others carry on with the keys they have.
        let swapped =
            self.last_check_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed);
        if swapped.is_ok() {
            let _ = self.refresh();
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        self.loaded.read().unwrap_or_else(|e| e.into_inner())
    }
}

fn io_err(path: &Path, e: impl fmt::Display) -> JwksError {
    JwksError::Io {
        path: path.display().to_string(),
        why: e.to_string(),
    }
}

fn stamp(path: &Path) -> Result<Stamp, JwksError> {
    let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
    Ok((meta.modified().ok(), meta.len()))
}

fn load(path: &Path) -> Result<(Jwks, Stamp), JwksError> {
    let stamp = stamp(path)?;
    if stamp.1 > MAX_JWKS_LEN {
        return Err(io_err(path, format!("over {MAX_JWKS_LEN} bytes")));
    }
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    Ok((Jwks::parse(&bytes)?, stamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_the_key() {
        let err = Jwks::parse(
            br#"{"keys":[{"kty":"oct","k":"AAAAAAAAAAAAAAAAAAAAAA"},{"kty":"RSA","e":"AQAB"}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            err,
            JwksError::Key {
                index: 1,
                why: "no \"n\"".into()
            }
        );
        assert_eq!(Jwks::parse(b"{}").unwrap_err(), JwksError::NoKeys);
        assert!(matches!(Jwks::parse(b"nope"), Err(JwksError::NotJson(_))));
        let err =
            Jwks::parse(br#"{"keys":[{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}]}"#).unwrap_err();
        assert!(matches!(err, JwksError::Key { index: 0, .. }));
    }

    #[test]
    fn encryption_keys_and_unknown_types_are_skipped() {
        let jwks = Jwks::parse(
            br#"{"keys":[
                {"kty":"oct","use":"enc","k":"AAAAAAAAAAAAAAAAAAAAAA"},
                {"kty":"OKP","crv":"Ed25519","x":"AA"},
                {"kty":"oct","alg":"HS512","k":"AAAAAAAAAAAAAAAAAAAAAA"},
                {"kty":"oct","use":"sig","kid":"a","k":"AAAAAAAAAAAAAAAAAAAAAA"}]}"#,
        )
        .expect("parses");
        assert_eq!(jwks.len(), 1);
        assert_eq!(jwks.keys[0].kid.as_deref(), Some("a"));
        assert_eq!(format!("{:?}", jwks.keys[0].material), "oct (secret)");
    }

    #[test]
    fn alg_must_fit_kty() {
        let err =
            Jwks::parse(br#"{"keys":[{"kty":"oct","alg":"RS256","k":"AAAAAAAAAAAAAAAAAAAAAA"}]}"#)
                .unwrap_err();
        assert!(matches!(err, JwksError::Key { index: 0, .. }));
    }
}
