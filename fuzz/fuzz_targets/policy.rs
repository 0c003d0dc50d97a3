//! A policy file: any text gives a policy or problems with locations inside the text.
#![no_main]

use std::path::Path;

use backstop_engine::{Config, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = Config::embedded(Path::new("/nonexistent"));
    if let Err(problems) = Policy::parse(Path::new("p.toml"), text, &config) {
        assert!(!problems.is_empty());
        let lines = text.lines().count().max(1);
        for p in &problems {
            assert!(p.location.line >= 1 && p.location.line <= lines + 1, "{p}");
        }
    }
});
