//! Any text as a config file: it is read or refused with errors, never a panic.
//! Run: RUSTC_BOOTSTRAP=1 cargo fuzz run config -- -max_total_time=60
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = meridian_config::Config::parse(text, "fuzz.toml");
    }
});
