//! A snapshot object's JSON.
#![no_main]

use backstop_repo::Snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(snapshot) = serde_json::from_slice::<Snapshot>(data) {
        let written = serde_json::to_vec(&snapshot).expect("a snapshot serialises");
        let again: Snapshot = serde_json::from_slice(&written).expect("and parses back");
        assert_eq!(snapshot, again);
    }
});
