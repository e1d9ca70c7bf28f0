//! Errors: compiling a function, and running one.

use thiserror::Error;

/// The function could not be accepted: too large, a syntax error, or it failed to initialise.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum CompileError {
    /// Source is over the size limit for its kind.
    #[error(
        "function {name}: code is {size} bytes, the limit for {kind} functions is {limit} bytes"
    )]
    TooLarge {
        name: String,
        kind: crate::limits::Kind,
        size: usize,
        limit: usize,
    },
    /// The JavaScript does not parse. Line and column are 1-based, in the user's source.
    #[error("function {name}: SyntaxError: {message} (line {line}, column {column})")]
    Syntax {
        name: String,
        message: String,
        line: u32,
        column: u32,
    },
    /// Top-level code threw, or the entry point (`handler` / `exports.handler`) is missing.
    #[error("function {name}: {message}")]
    Init { name: String, message: String },
    /// The JS runtime itself could not be created.
    #[error("function {name}: runtime: {message}")]
    Runtime { name: String, message: String },
}

/// Why an invocation failed. CloudFront reports all of these as a function error (HTTP 503 at
/// the edge); the kind lets the edge count them separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The handler threw or its promise rejected.
    Exception,
    /// The CPU budget ran out and the interrupt handler stopped the code.
    Timeout,
    /// The memory limit was hit; the engine is rebuilt before the next invocation.
    Memory,
    /// The handler returned something that is not a valid request or response.
    InvalidOutput,
    /// The event given to the engine was malformed (a bug in the caller).
    InvalidEvent,
    /// Anything else from the engine.
    Internal,
}

impl ErrorKind {
    /// Its name in metrics, logs and `functions test` output (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Exception => "exception",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Memory => "memory",
            ErrorKind::InvalidOutput => "invalid-output",
            ErrorKind::InvalidEvent => "invalid-event",
            ErrorKind::Internal => "internal",
        }
    }
}

/// An invocation failed. Carries what the function logged before failing, like CloudFront's
/// test output does, and how much of the budget it burned.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{kind:?}: {message}")]
pub struct ExecutionError {
    pub kind: ErrorKind,
    pub message: String,
    pub logs: Vec<String>,
    pub compute_utilization: u8,
}

impl ExecutionError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ExecutionError {
            kind,
            message: message.into(),
            logs: Vec::new(),
            compute_utilization: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorKind;

    #[test]
    fn error_kind_names_are_the_serialised_ones() {
        for k in [
            ErrorKind::Exception,
            ErrorKind::Timeout,
            ErrorKind::Memory,
            ErrorKind::InvalidOutput,
            ErrorKind::InvalidEvent,
            ErrorKind::Internal,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }
}
