//! A verifier that remembers tokens it has verified, so a client sending the same token on
//! every request costs one hash and a map lookup rather than an RSA or ECDSA verification.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::error::JwtError;
use super::jwks::JwksFile;
use super::token::{check_times, verify, Claims, Expectations, MAX_TOKEN_LEN};

/// Verified tokens remembered, at most.
pub const CACHE_CAPACITY: usize = 10_000;
/// Independent locks, so concurrent requests rarely wait on each other.
const SHARDS: usize = 16;
const PER_SHARD: usize = CACHE_CAPACITY / SHARDS;

struct Entry {
    claims: Arc<Claims>,
    /// The JWKS generation the token was verified under; after a rotation it is verified
    /// again, so a token signed by a withdrawn key stops working at once.
    generation: u64,
}

/// Verifies bearer tokens against a [`JwksFile`], with a bounded cache of verified tokens.
/// The cache key is the whole token, compared in full, so two tokens never share an entry
/// (a keyed SipHash picks the bucket, and only verified tokens are ever inserted); `exp`
/// and `nbf` are checked against the time on every hit.
pub struct Verifier {
    file: JwksFile,
    expect: Expectations,
    shards: Vec<Mutex<HashMap<Box<str>, Entry>>>,
}

impl Verifier {
    pub fn new(file: JwksFile, expect: Expectations) -> Verifier {
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(HashMap::with_capacity(PER_SHARD / 4)))
            .collect();
        Verifier {
            file,
            expect,
            shards,
        }
    }

    pub fn expectations(&self) -> &Expectations {
        &self.expect
    }

    pub fn jwks(&self) -> &JwksFile {
        &self.file
    }

    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Arc<Claims>, JwtError> {
        if token.is_empty() {
            return Err(JwtError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::TooLarge(MAX_TOKEN_LEN));
        }
        let generation = self.file.generation();
        // The signature's last character picks the shard: it is spread by the signing key,
        // and only tokens that verified are ever inserted.
        let last = token.as_bytes()[token.len() - 1];
        let shard = &self.shards[last as usize % SHARDS];

        let cached = {
            let map = shard.lock().unwrap_or_else(|e| e.into_inner());
            map.get(token)
                .filter(|e| e.generation == generation)
                .map(|e| e.claims.clone())
        };
        if let Some(claims) = cached {
            check_times(&claims, &self.expect, now)?;
            return Ok(claims);
        }

        // Keys read after the generation: at worst a rotation in between labels the entry
        // with the older generation, and it is verified once more.
        let (keys, _) = self.file.snapshot();
        let claims = Arc::new(verify(token, &keys, &self.expect, now)?);
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= PER_SHARD && !map.contains_key(token) {
            map.retain(|_, e| {
                e.generation == generation && check_times(&e.claims, &self.expect, now).is_ok()
            });
            if map.len() >= PER_SHARD {
                // The map's hashing is randomly seeded, so its first key is an arbitrary one.
                if let Some(victim) = map.keys().next().cloned() {
                    map.remove(&victim);
                }
            }
        }
        map.insert(
            token.into(),
            Entry {
                claims: claims.clone(),
                generation,
            },
        );
        Ok(claims)
    }

    /// How many verified tokens are remembered.
    pub fn cached(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}
