//! A repository's `config` object.
#![no_main]

use backstop_repo::format::config::{peek_version, RepoConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = peek_version(data);
    let _ = serde_json::from_slice::<RepoConfig>(data);
});
