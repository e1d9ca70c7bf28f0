//! Encryption at rest of the disk tier: AES-256-GCM in 64 KiB records, so a stolen disk or
//! a backup of the state dir reveals no cached response, and a file altered on disk is
//! never served.
//!
//! A sealed file is a 28-byte header (magic `MRDSEAL1`, record size u32, plaintext length
//! u64, an 8-byte random nonce prefix; big-endian) followed by records: each is up to 64
//! KiB of ciphertext and its 16-byte tag. Record `i` is sealed with nonce `prefix || i`
//! (u32) and associated data `header || i (u64) || last (u8) || SHA-256(cache key)`, so a
//! record can't move to another index, the file can't be cut at a record boundary, the
//! header's length can't change, and one object's file can't stand in for another's. A
//! zero-length body is one empty last record. Each file has its own random prefix under
//! the deployment's key: nonces repeat only if two files draw the same 64-bit prefix.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Plaintext bytes per record.
pub const RECORD: u64 = 64 * 1024;
/// The tag each record carries.
pub const TAG: u64 = 16;
/// The header's size.
pub const HEADER: u64 = 28;
const MAGIC: &[u8; 8] = b"MRDSEAL1";

/// Why a sealed file could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("the disk cache key must be 32 bytes as 64 hex digits")]
    BadKey,
    #[error("the cached file is not a sealed object of this format")]
    Format,
    #[error("record {0} of the cached file failed authentication (altered, reordered, truncated or another key)")]
    Authentication(u64),
    #[error("the cached body is too large to seal ({0} records)")]
    TooLarge(u64),
}

/// The disk tier's key (`disk-cache-key` in the state dir).
pub struct DiskKey(LessSafeKey);

impl std::fmt::Debug for DiskKey {
    /// Never the key itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiskKey(..)")
    }
}

impl DiskKey {
    pub fn from_bytes(key: &[u8]) -> Result<DiskKey, SealError> {
        let k = UnboundKey::new(&AES_256_GCM, key).map_err(|_| SealError::BadKey)?;
        Ok(DiskKey(LessSafeKey::new(k)))
    }

    /// The key from its hex form (as the secret file keeps it).
    pub fn from_hex(text: &str) -> Result<DiskKey, SealError> {
        let bytes = hex::decode(text.trim()).map_err(|_| SealError::BadKey)?;
        DiskKey::from_bytes(&bytes)
    }
}

/// How many records a body of `len` bytes takes (at least one).
pub fn records(len: u64) -> u64 {
    len.div_ceil(RECORD).max(1)
}

/// The size of the sealed file of a body of `len` bytes.
pub fn sealed_len(len: u64) -> u64 {
    HEADER + records(len) * TAG + len
}

fn header(len: u64, prefix: [u8; 8]) -> [u8; HEADER as usize] {
    let mut h = [0u8; HEADER as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&(RECORD as u32).to_be_bytes());
    h[12..20].copy_from_slice(&len.to_be_bytes());
    h[20..28].copy_from_slice(&prefix);
    h
}

fn nonce(prefix: &[u8; 8], index: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(prefix);
    // Cannot truncate: `seal_to` refuses bodies with more than u32::MAX records.
    n[8..].copy_from_slice(&(index as u32).to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn aad(header: &[u8], index: u64, last: bool, owner: &[u8; 32]) -> Vec<u8> {
    let mut a = Vec::with_capacity(header.len() + 9 + 32);
    a.extend_from_slice(header);
    a.extend_from_slice(&index.to_be_bytes());
    a.push(last as u8);
    a.extend_from_slice(owner);
    a
}

/// What binds a file to the object it stores.
pub fn owner(cache_key: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, cache_key.as_bytes());
    let mut o = [0u8; 32];
    o.copy_from_slice(d.as_ref());
    o
}

/// Writes `body` sealed for the object `cache_key` to `out`.
pub fn seal_to(
    key: &DiskKey,
    cache_key: &str,
    body: &[u8],
    out: &mut impl Write,
) -> Result<(), SealError> {
    let len = body.len() as u64;
    let n = records(len);
    if n > u32::MAX as u64 {
        return Err(SealError::TooLarge(n));
    }
    let prefix: [u8; 8] = rand::random();
    let head = header(len, prefix);
    let who = owner(cache_key);
    out.write_all(&head)?;
    let mut buf = Vec::with_capacity((RECORD + TAG) as usize);
    for i in 0..n {
        let start = (i * RECORD) as usize;
        let end = ((i + 1) * RECORD).min(len) as usize;
        buf.clear();
        buf.extend_from_slice(&body[start..end]);
        let ad = aad(&head, i, i + 1 == n, &who);
        key.0
            .seal_in_place_append_tag(nonce(&prefix, i), Aad::from(&ad), &mut buf)
            .map_err(|_| SealError::Format)?;
        out.write_all(&buf)?;
    }
    Ok(())
}

/// A sealed file's header, checked: what is needed to open its records.
#[derive(Clone)]
pub struct Header {
    head: [u8; HEADER as usize],
    prefix: [u8; 8],
    owner: [u8; 32],
    /// The plaintext length the header states (checked against the file's size).
    pub len: u64,
}

impl Header {
    /// Parses the header of the sealed file of `cache_key`, whose size is `file_len`; a
    /// file whose size is not the one the header implies is refused before any record is
    /// read (a cut file).
    pub fn parse(head: &[u8], file_len: u64, cache_key: &str) -> Result<Header, SealError> {
        let head: [u8; HEADER as usize] = head.try_into().map_err(|_| SealError::Format)?;
        if &head[..8] != MAGIC || head[8..12] != (RECORD as u32).to_be_bytes() {
            return Err(SealError::Format);
        }
        let mut l = [0u8; 8];
        l.copy_from_slice(&head[12..20]);
        let len = u64::from_be_bytes(l);
        if len > u64::MAX / 2 || file_len != sealed_len(len) {
            return Err(SealError::Format);
        }
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&head[20..28]);
        Ok(Header {
            head,
            prefix,
            owner: owner(cache_key),
            len,
        })
    }

    /// Where record `index` starts in the file and how many bytes it takes there.
    pub fn span(&self, index: u64) -> (u64, u64) {
        let plain = self.len.saturating_sub(index * RECORD).min(RECORD);
        (HEADER + index * (RECORD + TAG), plain + TAG)
    }

    /// Decrypts record `index` (read whole into `buf`) in place, leaving the plaintext.
    pub fn open(&self, key: &DiskKey, index: u64, buf: &mut Vec<u8>) -> Result<(), SealError> {
        let n = records(self.len);
        if index >= n || buf.len() as u64 != self.span(index).1 {
            return Err(SealError::Format);
        }
        let ad = aad(&self.head, index, index + 1 == n, &self.owner);
        let m = key
            .0
            .open_in_place(nonce(&self.prefix, index), Aad::from(&ad), buf)
            .map_err(|_| SealError::Authentication(index))?
            .len();
        buf.truncate(m);
        Ok(())
    }
}

/// Reads `len` plaintext bytes at `offset` of a sealed file, decrypting only the records
/// they touch (blocking I/O: for tools and tests; the edge reads asynchronously).
pub fn read_range(
    key: &DiskKey,
    path: &Path,
    cache_key: &str,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, SealError> {
    let mut file = std::fs::File::open(path)?;
    let mut head = [0u8; HEADER as usize];
    file.read_exact(&mut head).map_err(|_| SealError::Format)?;
    let h = Header::parse(&head, file.metadata()?.len(), cache_key)?;
    let end = offset
        .checked_add(len)
        .filter(|e| *e <= h.len)
        .ok_or(SealError::Format)?;
    let mut out = Vec::with_capacity(len as usize);
    let mut at = offset;
    while at < end {
        let index = at / RECORD;
        let (pos, size) = h.span(index);
        let mut buf = vec![0u8; size as usize];
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut buf)?;
        h.open(key, index, &mut buf)?;
        let from = (at - index * RECORD) as usize;
        let to = (end - index * RECORD).min(buf.len() as u64) as usize;
        out.extend_from_slice(&buf[from..to]);
        at = index * RECORD + to as u64;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DiskKey {
        DiskKey::from_hex(&"2a".repeat(32)).unwrap()
    }

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    struct Tmp(std::path::PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn sealed(name: &str, cache_key: &str, plain: &[u8]) -> Tmp {
        let p = std::env::temp_dir().join(format!("meridian-sealed-{}-{name}", std::process::id()));
        let mut f = std::fs::File::create(&p).unwrap();
        seal_to(&key(), cache_key, plain, &mut f).unwrap();
        Tmp(p)
    }

    fn read(path: &Path, cache_key: &str, offset: u64, len: u64) -> Result<Vec<u8>, SealError> {
        read_range(&key(), path, cache_key, offset, len)
    }

    #[test]
    fn round_trips_around_record_boundaries_and_serves_ranges() {
        let r = RECORD as usize;
        for len in [0, 1, r - 1, r, r + 1, 2 * r, 3 * r + 7] {
            let plain = body(len);
            let f = sealed(&format!("rt{len}"), "k", &plain);
            assert_eq!(
                std::fs::metadata(&f.0).unwrap().len(),
                sealed_len(len as u64)
            );
            assert_eq!(read(&f.0, "k", 0, len as u64).unwrap(), plain, "len {len}");
            for (off, n) in [(0, 1), (r - 1, 2), (r, 1), (1, r), (r / 2, 2 * r)] {
                if off + n <= len {
                    let got = read(&f.0, "k", off as u64, n as u64).unwrap();
                    assert_eq!(got, &plain[off..off + n], "len {len} range {off}+{n}");
                }
            }
            assert!(read(&f.0, "k", 0, len as u64 + 1).is_err(), "past the end");
        }
    }

    #[test]
    fn the_file_does_not_hold_the_plaintext() {
        let plain = b"ACCOUNT-NUMBER-0042 ".repeat(5000);
        let f = sealed("plain", "k", &plain);
        let on_disk = std::fs::read(&f.0).unwrap();
        assert!(!on_disk.windows(19).any(|w| w == b"ACCOUNT-NUMBER-0042"));
    }

    #[test]
    fn a_flipped_byte_a_cut_file_swapped_records_or_another_owner_are_refused() {
        let plain = body(3 * RECORD as usize + 100);
        let len = plain.len() as u64;
        let f = sealed("tamper", "k", &plain);
        let good = std::fs::read(&f.0).unwrap();
        let rec = (RECORD + TAG) as usize;
        let h = HEADER as usize;

        let mut flipped = good.clone();
        flipped[h + rec + 10] ^= 1;
        std::fs::write(&f.0, &flipped).unwrap();
        assert!(matches!(
            read(&f.0, "k", 0, len),
            Err(SealError::Authentication(1))
        ));

        // Cut at a record boundary, with the header's length fixed up to match.
        let mut cut = good[..h + 2 * rec].to_vec();
        cut[12..20].copy_from_slice(&(2 * RECORD).to_be_bytes());
        std::fs::write(&f.0, &cut).unwrap();
        assert!(read(&f.0, "k", 0, 2 * RECORD).is_err());
        // Cut without fixing the header: refused at open.
        std::fs::write(&f.0, &good[..good.len() - 1]).unwrap();
        assert!(matches!(read(&f.0, "k", 0, 1), Err(SealError::Format)));

        let mut swapped = good.clone();
        swapped[h..h + rec].copy_from_slice(&good[h + rec..h + 2 * rec]);
        swapped[h + rec..h + 2 * rec].copy_from_slice(&good[h..h + rec]);
        std::fs::write(&f.0, &swapped).unwrap();
        assert!(matches!(
            read(&f.0, "k", 0, len),
            Err(SealError::Authentication(0))
        ));

        std::fs::write(&f.0, &good).unwrap();
        assert!(read(&f.0, "other-key", 0, len).is_err());
        assert_eq!(read(&f.0, "k", 0, len).unwrap(), plain);
    }

    #[test]
    fn a_malformed_key_is_refused() {
        assert!(DiskKey::from_hex("00").is_err());
        assert!(DiskKey::from_hex(&"zz".repeat(32)).is_err());
        assert!(DiskKey::from_hex(&"é".repeat(32)).is_err());
    }
}
