//! An index object's JSON.
#![no_main]

use backstop_repo::format::index::{IndexFile, MasterIndex};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = serde_json::from_slice::<IndexFile>(data) {
        let mut master = MasterIndex::default();
        for pack in &index.packs {
            master.add(pack);
        }
        let _ = master.len();
    }
});
