//! What an export refuses or fails at, as the CLI prints it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{file}: `{key}`: {problem}\n  fix: {fix}")]
    CannotPlace {
        file: String,
        key: String,
        problem: String,
        fix: String,
    },
    #[error("{0}")]
    Range(String),
    #[error("the exported config does not read back (a bug in the export): {0}")]
    ExportedConfig(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
