//! Command-line values that several subcommands parse the same way.

use std::time::Duration;

/// A duration given on the command line, or the message naming the flag and the fix.
pub(crate) fn duration_flag(flag: &str, value: &str) -> Result<Duration, String> {
    meridian_config::units::parse_duration(value)
        .map_err(|e| format!("--{flag}: {}\n  = fix: {}", e.problem, e.fix))
}
