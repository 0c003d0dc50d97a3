//! The mariadb-dump stream's row counter: any bytes, split anywhere, count the same.
#![no_main]

use backstop_sources::dump_rows::RowCounter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let mut whole = RowCounter::default();
    whole.feed(stream);
    let at = usize::from(split) * stream.len() / 256;
    let mut pieces = RowCounter::default();
    pieces.feed(&stream[..at]);
    pieces.feed(&stream[at..]);
    assert_eq!(whole.tables(), pieces.tables());
    assert_eq!(whole.completed(), pieces.completed());
});
