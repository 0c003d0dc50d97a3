//! Issue 17, item 5: a read-data check of a local repository reads each pack in pieces of
//! whole chunks, hashing and decoding each piece as it comes. What it finds must be what a
//! whole read finds: damage in any piece, and a trailer that places the header among the
//! chunks (which sends the pack to a whole read).

mod common;

use std::sync::Arc;

use backstop_repo::checker::{check, CheckReport, ReadData};
use backstop_repo::format::layout;
use backstop_repo::storage::{MemoryStorage, Storage};
use backstop_repo::{EntryKind, InitOptions, Repository, SnapshotWriter, SourceFacts};
use bytes::Bytes;
use common::{entry, meta};

/// Enough incompressible data for one pack of several pieces.
const DATA: usize = 12 << 20;

async fn backed_up() -> (Arc<MemoryStorage>, Arc<Repository>) {
    let storage = Arc::new(MemoryStorage::new());
    let repo = Arc::new(
        Repository::init(storage.clone(), InitOptions::default())
            .await
            .unwrap(),
    );
    let mut writer = SnapshotWriter::start(repo.clone()).await.unwrap();
    writer
        .add_stream(
            entry("data.bin", EntryKind::File),
            std::io::Cursor::new(backstop_testkit::noise(DATA, 17)),
        )
        .await
        .unwrap();
    writer
        .commit(meta("pieces"), SourceFacts::default())
        .await
        .unwrap();
    (storage, repo)
}

fn errors_about<'a>(report: &'a CheckReport, key: &str) -> Vec<&'a str> {
    report
        .errors()
        .filter(|f| f.object == key)
        .map(|f| f.message.as_str())
        .collect()
}

#[tokio::test]
async fn a_check_in_pieces_finds_damage_anywhere_in_a_pack() {
    let (storage, repo) = backed_up().await;
    let clean = check(repo.clone(), ReadData::All).await.unwrap();
    assert_eq!(clean.errors().count(), 0, "{:?}", clean.findings);
    assert!(
        clean.chunks_verified > 3,
        "{} chunks",
        clean.chunks_verified
    );

    // The largest pack: several pieces of 2 MiB.
    let mut packs = storage.list(layout::DATA_PREFIX).await.unwrap();
    packs.sort_by_key(|o| o.size);
    let pack = packs.pop().expect("a pack");
    assert!(pack.size > 8 << 20, "a pack of {} bytes", pack.size);
    let original = storage.get(&pack.key).await.unwrap();

    // A byte in the first piece, in a middle one, and in the last chunks (the header takes
    // far less than the last 64 KiB).
    for at in [200, original.len() / 2, original.len() - (64 << 10)] {
        let mut damaged = original.to_vec();
        damaged[at] ^= 0x40;
        storage.put(&pack.key, Bytes::from(damaged)).await.unwrap();
        let report = check(repo.clone(), ReadData::All).await.unwrap();
        let found = errors_about(&report, &pack.key);
        assert!(
            found
                .iter()
                .any(|m| m.contains("does not match its id (SHA-256)")),
            "byte {at}: {found:?}"
        );
        assert!(
            found.iter().any(|m| m.starts_with("chunk ")),
            "byte {at}: the damaged chunk is named: {found:?}"
        );
        let finding = report
            .errors()
            .find(|f| f.object == pack.key)
            .expect("a finding");
        assert!(
            finding.affected.len() == 1 && finding.affected[0].ends_with(":data.bin"),
            "byte {at}: {:?}",
            finding.affected
        );
        assert_eq!(
            report.chunks_verified,
            clean.chunks_verified - 1,
            "byte {at}"
        );
    }

    // A trailer whose header would start among the chunks: read whole, the header refused.
    let mut damaged = original.to_vec();
    let claimed = (damaged.len() - 4 - 1000) as u32;
    let end = damaged.len();
    damaged[end - 4..].copy_from_slice(&claimed.to_le_bytes());
    storage.put(&pack.key, Bytes::from(damaged)).await.unwrap();
    let report = check(repo.clone(), ReadData::All).await.unwrap();
    let found = errors_about(&report, &pack.key);
    assert!(
        found.iter().any(|m| m.starts_with("pack header:")),
        "{found:?}"
    );
    assert_eq!(report.chunks_verified, clean.chunks_verified, "{found:?}");

    storage.put(&pack.key, original).await.unwrap();
    let again = check(repo, ReadData::All).await.unwrap();
    assert_eq!(again.errors().count(), 0, "{:?}", again.findings);
}
