//! `[[edge]]`: the CDN's points of presence.

use crate::error::Diagnostics;
use crate::geo::{read_location, Coordinates};
use crate::read::Table;
use crate::units::ByteSize;
use serde::Serialize;

/// An edge point of presence: a caching proxy near viewers.
#[derive(Debug, Clone, Serialize)]
pub struct Pop {
    pub name: String,
    pub location: Coordinates,
    pub memory_cache: ByteSize,
    pub disk_cache: ByteSize,
    /// Seal the disk tier's files (AES-256-GCM) under the deployment's `disk-cache-key`;
    /// on by default whenever there is a disk tier.
    pub disk_encryption: bool,
}

pub(crate) fn read_pop(t: &Table, d: &mut Diagnostics, name: String) -> Option<Pop> {
    let location = read_location(t, d);
    let memory_cache = t.size(d, "memory_cache").unwrap_or(ByteSize(256 << 20));
    let disk_cache = t.size(d, "disk_cache").unwrap_or(ByteSize(1 << 30));
    let disk_encryption = t.bool(d, "disk_encryption").unwrap_or(true) && disk_cache.0 > 0;
    t.finish(d);
    Some(Pop {
        name,
        location: location?,
        memory_cache,
        disk_cache,
        disk_encryption,
    })
}
