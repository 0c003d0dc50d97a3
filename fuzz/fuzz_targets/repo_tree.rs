//! A tree object's JSON lines: any bytes give entries or an error, never a panic, and what
//! parses writes back to what parses the same.
#![no_main]

use backstop_repo::format::tree::{from_jsonl, to_jsonl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = from_jsonl(data) {
        let again = from_jsonl(&to_jsonl(&entries)).expect("a written tree parses");
        assert_eq!(entries, again);
    }
});
