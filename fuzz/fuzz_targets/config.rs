//! The configuration file.
#![no_main]

use std::path::Path;

use backstop_engine::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::parse(Path::new("/nonexistent/backstop.toml"), text);
    }
});
