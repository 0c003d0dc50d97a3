//! The pg_dump custom-format archive checker: any bytes, split anywhere, give the same
//! verdict, and never a panic.
#![no_main]

use backstop_sources::pg_archive::ArchiveChecker;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let mut whole = ArchiveChecker::default();
    whole.feed(stream);
    let at = usize::from(split) * stream.len() / 256;
    let mut pieces = ArchiveChecker::default();
    pieces.feed(&stream[..at]);
    pieces.feed(&stream[at..]);
    assert_eq!(whole.finish(), pieces.finish());
});
