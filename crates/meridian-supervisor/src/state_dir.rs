//! Where a deployment keeps its state (token, certificates, data, logs): what `up` uses and
//! tells its children, and what a node run on its own falls back to. Its own module so `up`
//! and `run` both use it without using each other.

use std::path::{Path, PathBuf};

/// How `up` tells its children where the state dir is.
pub const STATE_DIR_ENV: &str = "MERIDIAN_STATE_DIR";

/// The state dir to use when none is given.
pub fn default_state_dir() -> &'static Path {
    Path::new(".meridian")
}

/// Where a node keeps its state (admin token, development certificate, disk cache, access
/// log): the state dir of the `meridian up` that started it, else `.meridian`.
pub fn state_dir() -> PathBuf {
    std::env::var_os(STATE_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| default_state_dir().to_owned())
}
