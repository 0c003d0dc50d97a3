//! A pack's trailer and header: the length in its last 4 bytes, the header decoded
//! (decompressed, without encryption) and its blobs checked against the pack's body.
#![no_main]

use backstop_repo::format::crypto::Codec;
use backstop_repo::format::pack::{parse_header, PackHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let codec = Codec::new(None, 3);
    let _ = parse_header(&codec, data);
    let _ = serde_json::from_slice::<PackHeader>(data);
});
