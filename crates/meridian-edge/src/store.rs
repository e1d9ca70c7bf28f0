//! Cache storage: a memory tier (moka, weighed in bytes) over a disk tier (one file per
//! object, LRU by bytes). Objects leaving memory for lack of room go to disk; objects too
//! large for memory go straight to disk and are served from the file in chunks, so a large
//! body never sits whole in memory. With a disk key, every file is sealed (AES-256-GCM
//! records, see `sealed`), and a file that fails authentication is removed, never served.

use crate::sealed::{self, DiskKey, SealError};
use bytes::Bytes;
use http::HeaderMap;
use meridian_cache::Stored;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Where a stored body is.
#[derive(Debug, Clone)]
pub enum ObjectBody {
    Memory(Bytes),
    Disk {
        file: PathBuf,
        len: u64,
        /// The cache key the file was written for (a sealed file is bound to it).
        owner: Arc<str>,
    },
}

impl ObjectBody {
    pub fn len(&self) -> u64 {
        match self {
            ObjectBody::Memory(b) => b.len() as u64,
            ObjectBody::Disk { len, .. } => *len,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One stored response.
#[derive(Debug, Clone)]
pub struct Object {
    /// The full cache key (primary key, plus variant suffixes).
    pub key: String,
    /// The request path it answers, for invalidation.
    pub path: String,
    pub meta: Stored,
    pub body: ObjectBody,
    /// Set on a Vary marker: the request headers that select the variant.
    pub vary: Option<Vec<http::HeaderName>>,
    /// Names this body: compressed variants are keyed by it, so a new body never gets
    /// an old body's variants (a 304 refresh keeps it).
    pub body_id: u64,
}

impl Object {
    /// Bytes this object costs in the memory tier.
    fn weight(&self) -> u32 {
        let headers: usize = self
            .meta
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        let body = match &self.body {
            ObjectBody::Memory(b) => b.len(),
            ObjectBody::Disk { .. } => 0,
        };
        (self.key.len() + headers + body + 256).min(u32::MAX as usize) as u32
    }
}

struct DiskEntry {
    obj: Arc<Object>,
    len: u64,
    tick: u64,
}

#[derive(Default)]
struct DiskIndex {
    entries: HashMap<String, DiskEntry>,
    lru: BTreeMap<u64, String>,
    bytes: u64,
    tick: u64,
}

/// Sizes and counts per tier, for metrics and the admin API.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct StoreStats {
    pub memory_objects: u64,
    pub memory_bytes: u64,
    pub disk_objects: u64,
    pub disk_bytes: u64,
}

pub struct Store {
    memory: moka::sync::Cache<String, Arc<Object>>,
    disk: Arc<Mutex<DiskIndex>>,
    disk_dir: Option<PathBuf>,
    disk_limit: u64,
    /// Objects larger than this skip memory.
    pub max_memory_object: u64,
    /// The memory tier's size.
    pub memory_limit: u64,
    demote: Option<tokio::sync::mpsc::Sender<Arc<Object>>>,
    file_seq: Arc<AtomicU64>,
    /// Seals every file of the disk tier when set.
    key: Option<Arc<DiskKey>>,
}

impl Store {
    /// A store with `memory_bytes` of memory and, when `disk_dir` is given, `disk_bytes`
    /// on disk there (the directory is emptied: a PoP starts cold), sealed under `key`
    /// when one is given.
    pub fn new(
        memory_bytes: u64,
        disk_dir: Option<PathBuf>,
        disk_bytes: u64,
        key: Option<Arc<DiskKey>>,
    ) -> std::io::Result<Arc<Store>> {
        if let Some(dir) = &disk_dir {
            if dir.exists() {
                std::fs::remove_dir_all(dir)?;
            }
            std::fs::create_dir_all(dir)?;
        }
        let disk = Arc::new(Mutex::new(DiskIndex::default()));
        let disk_enabled = disk_dir.is_some() && disk_bytes > 0;
        let (demote_tx, mut demote_rx) = tokio::sync::mpsc::channel::<Arc<Object>>(1024);
        let tx_for_listener = demote_tx.clone();
        let mut builder = moka::sync::Cache::builder()
            .max_capacity(memory_bytes)
            .weigher(|_k: &String, v: &Arc<Object>| v.weight())
            .support_invalidation_closures();
        if disk_enabled {
            builder = builder.eviction_listener(move |_k, v: Arc<Object>, cause| {
                // Only objects pushed out for room move down; replaced or invalidated
                // ones are gone.
                if cause == moka::notification::RemovalCause::Size {
                    let _ = tx_for_listener.try_send(v);
                }
            });
        }
        let store = Arc::new(Store {
            memory: builder.build(),
            disk,
            disk_dir: disk_dir.filter(|_| disk_enabled),
            disk_limit: disk_bytes,
            max_memory_object: (memory_bytes / 8).max(1),
            memory_limit: memory_bytes,
            demote: disk_enabled.then_some(demote_tx),
            file_seq: Arc::new(AtomicU64::new(0)),
            key,
        });
        if disk_enabled {
            let weak = Arc::downgrade(&store);
            tokio::spawn(async move {
                while let Some(obj) = demote_rx.recv().await {
                    let Some(store) = weak.upgrade() else { return };
                    if let ObjectBody::Memory(bytes) = &obj.body {
                        match store.write_file(&obj.key, bytes).await {
                            Ok(file) => {
                                let len = bytes.len() as u64;
                                let moved = Object {
                                    body: ObjectBody::Disk {
                                        file,
                                        len,
                                        owner: obj.key.as_str().into(),
                                    },
                                    ..(*obj).clone()
                                };
                                store.disk_insert(Arc::new(moved));
                            }
                            Err(e) => tracing::warn!(error = %e, "cannot move an object to disk"),
                        }
                    }
                }
            });
        }
        Ok(store)
    }

    /// A new file name in the disk tier.
    pub fn new_file(&self) -> Option<PathBuf> {
        let dir = self.disk_dir.as_ref()?;
        let n = self.file_seq.fetch_add(1, Ordering::Relaxed);
        Some(dir.join(format!("{n:016x}")))
    }

    async fn write_file(&self, cache_key: &str, bytes: &Bytes) -> std::io::Result<PathBuf> {
        let file = self
            .new_file()
            .ok_or_else(|| std::io::Error::other("no disk tier"))?;
        match &self.key {
            None => tokio::fs::write(&file, bytes).await?,
            Some(key) => {
                // Sealing is CPU work (about a millisecond per MiB): off the runtime.
                let (key, path, owner, bytes) = (
                    key.clone(),
                    file.clone(),
                    cache_key.to_owned(),
                    bytes.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
                    sealed::seal_to(&key, &owner, &bytes, &mut out)
                        .map_err(std::io::Error::other)?;
                    std::io::Write::flush(&mut out)
                })
                .await
                .map_err(std::io::Error::other)??;
            }
        }
        Ok(file)
    }

    /// The size a disk object's file must have: a file of another size was cut or
    /// replaced, and is a miss.
    fn file_len_for(&self, len: u64) -> u64 {
        if self.key.is_some() {
            sealed::sealed_len(len)
        } else {
            len
        }
    }

    /// Drops every object stored in `file` (it failed authentication or went missing), so
    /// the next request for it is a miss.
    pub fn discard_file(&self, file: &Path) {
        let mut idx = self.disk.lock().unwrap_or_else(|p| p.into_inner());
        let doomed: Vec<String> = idx
            .entries
            .iter()
            .filter(|(_, e)| matches!(&e.obj.body, ObjectBody::Disk { file: f, .. } if f == file))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            if let Some(e) = idx.entries.remove(&k) {
                idx.lru.remove(&e.tick);
                idx.bytes -= e.len;
            }
        }
        let _ = std::fs::remove_file(file);
    }

    /// Reads `len` bytes at `offset` of a disk object as a stream of chunks, decrypting
    /// (and authenticating) only the records the range touches. A record that fails
    /// authentication ends the stream with an error before any of its bytes are yielded,
    /// and the object is discarded.
    pub fn disk_stream(
        self: &Arc<Self>,
        file: &Path,
        owner: &str,
        offset: u64,
        len: u64,
    ) -> DiskStream {
        let Some(key) = self.key.clone() else {
            return Box::pin(file_stream(file, offset, len));
        };
        let reader = SealedReader {
            key,
            path: file.to_owned(),
            owner: owner.to_owned(),
            store: Arc::downgrade(self),
        };
        Box::pin(futures_util::stream::unfold(
            (reader, None::<Opened>, offset, len),
            |(r, open, at, left)| async move {
                if left == 0 {
                    return None;
                }
                match r.next(open, at, left).await {
                    Ok((chunk, open)) => {
                        let n = chunk.len() as u64;
                        Some((Ok(chunk), (r, Some(open), at + n, left - n)))
                    }
                    Err(e) => {
                        r.refuse(&e);
                        Some((Err(std::io::Error::other(e)), (r, None, at, 0)))
                    }
                }
            },
        ))
    }

    /// A disk object's whole body (to compress it).
    pub async fn read_disk(
        self: &Arc<Self>,
        file: &Path,
        owner: &str,
        len: u64,
    ) -> std::io::Result<Bytes> {
        use futures_util::TryStreamExt;
        let mut out = Vec::with_capacity(len as usize);
        let mut s = self.disk_stream(file, owner, 0, len);
        while let Some(chunk) = s.try_next().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    }

    /// The largest body the cache takes: what fits the disk tier's quarter, else memory's.
    pub fn max_object(&self) -> u64 {
        if self.disk_dir.is_some() {
            (self.disk_limit / 4).max(self.max_memory_object)
        } else {
            self.max_memory_object
        }
    }

    pub fn has_disk(&self) -> bool {
        self.disk_dir.is_some()
    }

    /// The stored object for `key`, from memory or disk.
    pub fn get(&self, key: &str) -> Option<Arc<Object>> {
        if let Some(o) = self.memory.get(key) {
            return Some(o);
        }
        let mut idx = self.disk.lock().unwrap_or_else(|p| p.into_inner());
        idx.tick += 1;
        let tick = idx.tick;
        let entry = idx.entries.get_mut(key)?;
        if let ObjectBody::Disk { file, len, .. } = &entry.obj.body {
            // A stat per disk hit: a missing or cut file is a miss, not a broken response.
            let want = self.file_len_for(*len);
            if std::fs::metadata(file).map(|m| m.len()).ok() != Some(want) {
                let file = file.clone();
                drop(idx);
                tracing::warn!(file = %file.display(), "a disk cache file is missing or has the wrong size; dropped");
                self.discard_file(&file);
                return None;
            }
        }
        let old = std::mem::replace(&mut entry.tick, tick);
        let obj = entry.obj.clone();
        idx.lru.remove(&old);
        idx.lru.insert(tick, key.to_owned());
        Some(obj)
    }

    /// Stores an object: in memory when it fits, else on disk.
    pub fn put(&self, obj: Arc<Object>) {
        self.remove_from_disk(&obj.key);
        match obj.body {
            ObjectBody::Memory(ref b) if (b.len() as u64) <= self.max_memory_object => {
                self.memory.insert(obj.key.clone(), obj);
            }
            ObjectBody::Memory(_) => {
                // Too large for memory: keep it on disk (written in the background).
                self.memory.invalidate(&obj.key);
                if let Some(tx) = &self.demote {
                    let _ = tx.try_send(obj);
                }
            }
            ObjectBody::Disk { .. } => {
                self.memory.invalidate(&obj.key);
                self.disk_insert(obj);
            }
        }
    }

    fn disk_insert(&self, obj: Arc<Object>) {
        let len = obj.body.len();
        let mut idx = self.disk.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = idx.entries.remove(&obj.key) {
            idx.lru.remove(&old.tick);
            idx.bytes -= old.len;
            remove_file(&old.obj);
        }
        idx.tick += 1;
        let tick = idx.tick;
        idx.lru.insert(tick, obj.key.clone());
        idx.bytes += len;
        idx.entries
            .insert(obj.key.clone(), DiskEntry { obj, len, tick });
        while idx.bytes > self.disk_limit {
            let Some((&t, _)) = idx.lru.iter().next() else {
                break;
            };
            let Some(k) = idx.lru.remove(&t) else { break };
            if let Some(e) = idx.entries.remove(&k) {
                idx.bytes -= e.len;
                remove_file(&e.obj);
            }
        }
    }

    fn remove_from_disk(&self, key: &str) {
        let mut idx = self.disk.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = idx.entries.remove(key) {
            idx.lru.remove(&e.tick);
            idx.bytes -= e.len;
            remove_file(&e.obj);
        }
    }

    pub fn remove(&self, key: &str) {
        self.memory.invalidate(key);
        self.remove_from_disk(key);
    }

    /// Removes every object whose path `matches`, on every host (a distribution's
    /// invalidation); returns how many were on disk (memory removal is counted lazily by
    /// moka, so its count is not known here).
    pub fn invalidate(&self, matches: impl Fn(&str) -> bool + Send + Sync + 'static) -> usize {
        self.invalidate_objects(move |_key, path| matches(path))
    }

    /// Removes the objects that answer `path` on `host` (lower case), whatever their
    /// query and variant: what an unsafe request to that URI invalidates (RFC 9111 §4.4).
    /// Another host's objects of the same path stay.
    pub fn invalidate_uri(&self, host: String, path: String) -> usize {
        self.invalidate_objects(move |key, p| p == path && crate::key::host_of(key) == host)
    }

    /// Removes every object whose (key, path) `matches`.
    fn invalidate_objects(
        &self,
        matches: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
    ) -> usize {
        let matches = Arc::new(matches);
        let m = matches.clone();
        // Cannot fail: invalidation closures are enabled at build time.
        let _ = self
            .memory
            .invalidate_entries_if(move |k, v: &Arc<Object>| m(k, &v.path));
        let mut idx = self.disk.lock().unwrap_or_else(|p| p.into_inner());
        let doomed: Vec<String> = idx
            .entries
            .iter()
            .filter(|(k, e)| matches(k, &e.obj.path))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &doomed {
            if let Some(e) = idx.entries.remove(k) {
                idx.lru.remove(&e.tick);
                idx.bytes -= e.len;
                remove_file(&e.obj);
            }
        }
        doomed.len()
    }

    pub fn stats(&self) -> StoreStats {
        self.memory.run_pending_tasks();
        let idx = self.disk.lock().unwrap_or_else(|p| p.into_inner());
        StoreStats {
            memory_objects: self.memory.entry_count(),
            memory_bytes: self.memory.weighted_size(),
            disk_objects: idx.entries.len() as u64,
            disk_bytes: idx.bytes,
        }
    }
}

fn remove_file(obj: &Object) {
    if let ObjectBody::Disk { file, .. } = &obj.body {
        let _ = std::fs::remove_file(file);
    }
}

/// A disk object's bytes as they are read (Sync: a response body must be).
pub type DiskStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static>,
>;

/// A sealed file open for reading, with its checked header.
type Opened = (Arc<std::fs::File>, sealed::Header);

/// What one encrypted read needs between records.
struct SealedReader {
    key: Arc<DiskKey>,
    path: PathBuf,
    owner: String,
    store: std::sync::Weak<Store>,
}

impl SealedReader {
    /// The authenticated plaintext from `at` on (at most `left`), to the end of the
    /// records that make up [`DISK_READ`] bytes. One trip to the blocking pool per call: the
    /// positioned reads and their decryption together, so the runtime neither waits on the
    /// disk nor spends the AES time, and a 1 MiB object costs a few trips, not one a record.
    /// A record that fails authentication ends the stream with an error before any of its
    /// bytes are yielded; the authentic records read before it in the same call go out.
    async fn next(
        &self,
        open: Option<Opened>,
        at: u64,
        left: u64,
    ) -> Result<(Bytes, Opened), SealError> {
        let (key, path, owner) = (self.key.clone(), self.path.clone(), self.owner.clone());
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let (f, h) = match open {
                Some(o) => o,
                None => {
                    let f = std::fs::File::open(&path)?;
                    let mut head = [0u8; sealed::HEADER as usize];
                    f.read_exact_at(&mut head, 0)
                        .map_err(|_| SealError::Format)?;
                    let h = sealed::Header::parse(&head, f.metadata()?.len(), &owner)?;
                    (Arc::new(f), h)
                }
            };
            if at.checked_add(left).is_none_or(|end| end > h.len) {
                return Err(SealError::Format);
            }
            let first = at / sealed::RECORD;
            let from = (at - first * sealed::RECORD) as usize;
            let wanted = (from as u64 + left).min(DISK_READ) as usize;
            let mut out = Vec::with_capacity(wanted.max(from) + sealed::RECORD as usize);
            let mut record = Vec::new();
            let mut index = first;
            while out.len() < wanted.max(from + 1) {
                let (pos, size) = h.span(index);
                record.clear();
                record.resize(size as usize, 0);
                let opened = f
                    .read_exact_at(&mut record, pos)
                    .map_err(SealError::from)
                    .and_then(|()| h.open(&key, index, &mut record));
                match opened {
                    Ok(()) => out.extend_from_slice(&record),
                    // The records read and authenticated before it go out; the next call
                    // meets this one again and ends the stream with its error.
                    Err(_) if out.len() > from => break,
                    Err(e) => return Err(e),
                }
                index += 1;
            }
            let to = (from as u64 + left).min(out.len() as u64) as usize;
            Ok((Bytes::from(out).slice(from..to), (f, h)))
        })
        .await
        .map_err(|e| SealError::Io(std::io::Error::other(e)))?
    }

    /// A file that failed its checks is never read again.
    fn refuse(&self, e: &SealError) {
        if matches!(e, SealError::Authentication(_) | SealError::Format) {
            tracing::warn!(file = %self.path.display(), error = %e, "a disk cache file failed authentication; dropped");
            if let Some(store) = self.store.upgrade() {
                store.discard_file(&self.path);
            }
        }
    }
}

/// Bytes of a disk object one trip to the blocking pool reads for a hit: a 1 MiB object
/// takes four trips (a trip per 64 KiB cost more than the read), and a hit never holds
/// more than this of a large object at once.
const DISK_READ: u64 = 256 * 1024;

/// Reads `len` bytes at `offset` of an unencrypted disk object as a stream of chunks of
/// up to [`DISK_READ`], each a positioned read in the blocking pool.
pub fn file_stream(
    file: &Path,
    offset: u64,
    len: u64,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let file = file.to_owned();
    futures_util::stream::unfold(
        (None::<std::fs::File>, file, offset, len),
        |(f, path, at, left)| async move {
            if left == 0 {
                return None;
            }
            let want = left.min(DISK_READ) as usize;
            let read = tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                let f = match f {
                    Some(f) => f,
                    None => std::fs::File::open(&path)?,
                };
                let mut buf = vec![0u8; want];
                let mut n = 0;
                while n < want {
                    match f.read_at(&mut buf[n..], at + n as u64)? {
                        0 => break,
                        k => n += k,
                    }
                }
                buf.truncate(n);
                Ok::<_, std::io::Error>((f, path, buf))
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|read| read);
            let stop = (None, PathBuf::new(), at, 0);
            match read {
                Ok((_, _, buf)) if buf.is_empty() => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "cached file is shorter than recorded",
                    )),
                    stop,
                )),
                Ok((f, path, buf)) => {
                    let n = buf.len() as u64;
                    Some((Ok(Bytes::from(buf)), (Some(f), path, at + n, left - n)))
                }
                Err(e) => Some((Err(e), stop)),
            }
        },
    )
}

/// Stored headers without the ones that describe a connection rather than the object,
/// including those the response's own `Connection` names (RFC 9111 §3.1).
pub fn storable_headers(headers: &HeaderMap) -> HeaderMap {
    let mut h = headers.clone();
    for name in meridian_http::connection_fields(headers) {
        h.remove(name);
    }
    for name in [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "set-cookie",
    ] {
        h.remove(name);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn obj(key: &str, path: &str, body: &'static [u8]) -> Arc<Object> {
        Arc::new(Object {
            key: key.to_owned(),
            path: path.to_owned(),
            meta: Stored::new(
                200,
                HeaderMap::new(),
                Duration::ZERO,
                SystemTime::now(),
                Duration::from_secs(60),
            ),
            body: ObjectBody::Memory(Bytes::from_static(body)),
            vary: None,
            body_id: 1,
        })
    }

    #[tokio::test]
    async fn objects_pushed_out_of_memory_land_on_disk_and_disk_evicts_by_bytes() {
        let dir = std::env::temp_dir().join(format!("meridian-store-{}", std::process::id()));
        // Room in memory for only a few 2 KiB objects; disk for 6.
        let store = Store::new(8 * 1024, Some(dir.clone()), 6 * 2048 + 100, None).unwrap();
        static BODY: [u8; 2048] = [7u8; 2048];
        for i in 0..12 {
            store.put(obj(&format!("k{i}"), &format!("/p/{i}"), &BODY));
            store.memory.run_pending_tasks();
        }
        // Let the demotion task write files.
        for _ in 0..50 {
            if store.stats().disk_objects >= 6 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let s = store.stats();
        assert!(s.memory_bytes <= 8 * 1024, "{s:?}");
        assert!(
            s.disk_objects >= 1 && s.disk_bytes <= 6 * 2048 + 100,
            "{s:?}"
        );
        // Every object is somewhere unless the disk tier evicted it for room.
        let found = (0..12)
            .filter(|i| store.get(&format!("k{i}")).is_some())
            .count() as u64;
        assert_eq!(found, s.memory_objects + s.disk_objects, "{s:?}");
        // Disk objects read back whole.
        let on_disk = (0..12)
            .filter_map(|i| store.get(&format!("k{i}")))
            .find(|o| matches!(o.body, ObjectBody::Disk { .. }))
            .expect("an object on disk");
        if let ObjectBody::Disk { file, len, owner } = &on_disk.body {
            use futures_util::StreamExt;
            let chunks: Vec<_> = store.disk_stream(file, owner, 0, *len).collect().await;
            let total: usize = chunks.iter().map(|c| c.as_ref().unwrap().len()).sum();
            assert_eq!(total, 2048);
        }
        // Invalidation reaches both tiers.
        store.invalidate(|p| p.starts_with("/p/"));
        assert!((0..12).all(|i| store.get(&format!("k{i}")).is_none()));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn sealed_disk_objects_read_back_and_a_tampered_file_is_dropped_not_served() {
        use futures_util::StreamExt;
        let dir =
            std::env::temp_dir().join(format!("meridian-store-sealed-{}", std::process::id()));
        let key = Arc::new(DiskKey::from_hex(&"11".repeat(32)).unwrap());
        // 1 KiB objects skip memory (max_memory_object is 1/8 of it) and go to disk sealed.
        let store = Store::new(8 * 1024, Some(dir.clone()), 1 << 20, Some(key)).unwrap();
        static BODY: [u8; 200_000] = [b'Q'; 200_000];
        store.put(obj("big", "/big", &BODY));
        let mut found = None;
        for _ in 0..100 {
            found = store
                .get("big")
                .filter(|o| matches!(o.body, ObjectBody::Disk { .. }));
            if found.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let o = found.expect("the object reached the disk tier");
        let ObjectBody::Disk { file, len, owner } = o.body.clone() else {
            unreachable!()
        };
        let raw = std::fs::read(&file).unwrap();
        assert_eq!(raw.len() as u64, sealed::sealed_len(len));
        assert!(
            !raw.windows(64).any(|w| w.iter().all(|b| *b == b'Q')),
            "plaintext on disk"
        );
        let got: Vec<u8> = store
            .disk_stream(&file, &owner, 70_000, 100_000)
            .map(|c| c.unwrap())
            .collect::<Vec<_>>()
            .await
            .concat();
        assert_eq!(got, &BODY[70_000..170_000]);

        // One flipped byte in the second record: the read fails before that record's
        // bytes are yielded, and the object is gone (the next request is a miss).
        let mut bad = raw.clone();
        bad[(sealed::HEADER + sealed::RECORD + sealed::TAG + 5) as usize] ^= 0x40;
        std::fs::write(&file, &bad).unwrap();
        let pieces: Vec<_> = store.disk_stream(&file, &owner, 0, len).collect().await;
        let served: usize = pieces
            .iter()
            .filter_map(|p| p.as_ref().ok())
            .map(|b| b.len())
            .sum();
        assert_eq!(
            served as u64,
            sealed::RECORD,
            "only the first, authentic record"
        );
        assert!(pieces.last().unwrap().is_err());
        assert!(store.get("big").is_none());
        assert!(!file.exists());

        // A cut file is a miss at lookup.
        store.put(obj("big2", "/big2", &BODY));
        let mut f2 = None;
        for _ in 0..100 {
            f2 = store.get("big2").and_then(|o| match &o.body {
                ObjectBody::Disk { file, .. } => Some(file.clone()),
                _ => None,
            });
            if f2.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let f2 = f2.expect("on disk");
        let raw = std::fs::read(&f2).unwrap();
        std::fs::write(&f2, &raw[..raw.len() - 100]).unwrap();
        assert!(store.get("big2").is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
