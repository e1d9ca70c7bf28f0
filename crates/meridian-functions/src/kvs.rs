//! CloudFront KeyValueStore: a small read-mostly map that functions read through
//! `cf.kvs().get(...)`.
//!
//! One store is shared by every engine that uses it (`Arc<RwLock>`), so a `put` from the
//! control plane is seen by the very next invocation on any worker, without rebuilding engines.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;
use thiserror::Error;

/// CloudFront's limit on a key.
pub const MAX_KEY_BYTES: usize = 512;
/// CloudFront's limit on a value.
pub const MAX_VALUE_BYTES: usize = 1024;
/// CloudFront's limit on a whole store (keys plus values).
pub const MAX_STORE_BYTES: usize = 5 * 1024 * 1024;

/// Why a store operation was refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum KvsError {
    #[error("key is empty")]
    EmptyKey,
    #[error("key is {0} bytes, the limit is {MAX_KEY_BYTES} bytes")]
    KeyTooLarge(usize),
    #[error("value for key {key:?} is {size} bytes, the limit is {MAX_VALUE_BYTES} bytes")]
    ValueTooLarge { key: String, size: usize },
    #[error("store would be {0} bytes, the limit is {MAX_STORE_BYTES} bytes")]
    StoreTooLarge(usize),
    #[error("invalid import JSON: {0}")]
    Import(String),
}

/// Import file format: `{"data":[{"key":"k","value":"v"}]}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportFile {
    pub data: Vec<ImportItem>,
}

/// One entry of the import file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportItem {
    pub key: String,
    pub value: String,
}

/// What `kvsHandle.meta()` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KvsMeta {
    /// ISO 8601.
    pub creation_date_time: String,
    /// ISO 8601.
    pub last_updated_date_time: String,
    pub key_count: usize,
}

#[derive(Debug)]
struct Inner {
    map: BTreeMap<String, String>,
    bytes: usize,
    created: SystemTime,
    updated: SystemTime,
}

/// A shared key value store. Cloning is cheap and clones share data.
#[derive(Debug, Clone)]
pub struct KeyValueStore {
    id: Arc<str>,
    inner: Arc<RwLock<Inner>>,
}

fn check_key(key: &str) -> Result<(), KvsError> {
    if key.is_empty() {
        return Err(KvsError::EmptyKey);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KvsError::KeyTooLarge(key.len()));
    }
    Ok(())
}

fn check_value(key: &str, value: &str) -> Result<(), KvsError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvsError::ValueTooLarge {
            key: key.to_string(),
            size: value.len(),
        });
    }
    Ok(())
}

impl KeyValueStore {
    /// An empty store with the given id (name or ARN; `cf.kvs(id)` may name it).
    pub fn new(id: impl Into<String>) -> KeyValueStore {
        let now = SystemTime::now();
        KeyValueStore {
            id: Arc::from(id.into()),
            inner: Arc::new(RwLock::new(Inner {
                map: BTreeMap::new(),
                bytes: 0,
                created: now,
                updated: now,
            })),
        }
    }

    /// Load CloudFront's import JSON. All entries are checked before anything is stored.
    pub fn from_import_json(id: impl Into<String>, json: &str) -> Result<KeyValueStore, KvsError> {
        let file: ImportFile =
            serde_json::from_str(json).map_err(|e| KvsError::Import(e.to_string()))?;
        let store = KeyValueStore::new(id);
        store.replace_all(file.data.into_iter().map(|i| (i.key, i.value)))?;
        Ok(store)
    }

    /// The store's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-written (every write is a
        // single insert/remove), so a poisoned lock is safe to keep using.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Replace the whole content atomically (a re-import).
    pub fn replace_all(
        &self,
        items: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), KvsError> {
        let mut map = BTreeMap::new();
        let mut bytes = 0usize;
        for (k, v) in items {
            check_key(&k)?;
            check_value(&k, &v)?;
            bytes += k.len() + v.len();
            if let Some(old) = map.insert(k.clone(), v) {
                bytes -= k.len() + old.len();
            }
            if bytes > MAX_STORE_BYTES {
                return Err(KvsError::StoreTooLarge(bytes));
            }
        }
        let mut inner = self.write();
        inner.map = map;
        inner.bytes = bytes;
        inner.updated = SystemTime::now();
        Ok(())
    }

    /// Insert or overwrite one key.
    pub fn put(&self, key: impl Into<String>, value: impl Into<String>) -> Result<(), KvsError> {
        let (key, value) = (key.into(), value.into());
        check_key(&key)?;
        check_value(&key, &value)?;
        let mut inner = self.write();
        let old = inner.map.get(&key).map_or(0, |v| key.len() + v.len());
        let bytes = inner.bytes - old + key.len() + value.len();
        if bytes > MAX_STORE_BYTES {
            return Err(KvsError::StoreTooLarge(bytes));
        }
        inner.map.insert(key, value);
        inner.bytes = bytes;
        inner.updated = SystemTime::now();
        Ok(())
    }

    /// Remove a key; returns whether it existed.
    pub fn delete(&self, key: &str) -> bool {
        let mut inner = self.write();
        match inner.map.remove(key) {
            Some(v) => {
                inner.bytes -= key.len() + v.len();
                inner.updated = SystemTime::now();
                true
            }
            None => false,
        }
    }

    /// Value of a key.
    pub fn get(&self, key: &str) -> Option<String> {
        self.read().map.get(key).cloned()
    }

    /// Whether a key exists.
    pub fn exists(&self, key: &str) -> bool {
        self.read().map.contains_key(key)
    }

    /// All entries, sorted by key.
    pub fn list(&self) -> Vec<(String, String)> {
        self.read()
            .map
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.read().map.len()
    }

    /// True when the store has no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes used (keys plus values), counted against the 5 MB limit.
    pub fn size_bytes(&self) -> usize {
        self.read().bytes
    }

    /// What `meta()` returns to functions.
    pub fn meta(&self) -> KvsMeta {
        let inner = self.read();
        KvsMeta {
            creation_date_time: iso8601(inner.created),
            last_updated_date_time: iso8601(inner.updated),
            key_count: inner.map.len(),
        }
    }

    /// Export in the import format.
    pub fn to_import_json(&self) -> String {
        let data = self
            .list()
            .into_iter()
            .map(|(key, value)| ImportItem { key, value })
            .collect();
        serde_json::to_string(&ImportFile { data }).unwrap_or_default()
    }
}

/// UTC ISO 8601 without pulling in a date crate (civil-from-days, Howard Hinnant's algorithm).
fn iso8601(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_and_limits() {
        let s = KeyValueStore::from_import_json(
            "s",
            r#"{"data":[{"key":"a","value":"1"},{"key":"b","value":"2"}]}"#,
        )
        .expect("import");
        assert_eq!(s.get("a").as_deref(), Some("1"));
        assert_eq!(s.len(), 2);
        assert_eq!(s.size_bytes(), 4);
        assert!(matches!(
            s.put("k".repeat(513), "v"),
            Err(KvsError::KeyTooLarge(513))
        ));
        assert!(matches!(
            s.put("k", "v".repeat(1025)),
            Err(KvsError::ValueTooLarge { .. })
        ));
        assert!(s.delete("a"));
        assert!(!s.exists("a"));
        assert!(KeyValueStore::from_import_json("s", "{").is_err());
        // 5 MB limit: 6000 keys of ~1 KB values.
        let items = (0..6000).map(|i| (format!("key{i}"), "x".repeat(1000)));
        assert!(matches!(
            KeyValueStore::new("big").replace_all(items),
            Err(KvsError::StoreTooLarge(_))
        ));
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(iso8601(t), "2023-11-14T22:13:20Z");
    }
}
