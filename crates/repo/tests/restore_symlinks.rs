//! Issue 15: a restore into a target that already holds symlinks (`--force`) replaces them
//! and never writes through them. A symlink where the snapshot has a file (a small one and a
//! larger one), a directory or a symlink points outside the target; afterwards the outside
//! is untouched and the restored paths are what the snapshot holds.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;

use backstop_repo::storage::MemoryStorage;
mod common;

use backstop_repo::{
    EntryKind, FileStatus, InitOptions, Repository, SnapshotReader, SnapshotWriter, SourceFacts,
};
use common::{entry, meta};

async fn snapshot(source: &Path) -> SnapshotReader {
    let storage = Arc::new(MemoryStorage::default());
    let options = InitOptions {
        // As in restore_runs.rs: small packs, and the large file in several chunks.
        pack_size: 1 << 20,
        ..InitOptions::default()
    };
    Repository::init(storage.clone(), options).await.unwrap();
    let repo = Arc::new(Repository::open(storage.clone(), None).await.unwrap());
    let mut writer = SnapshotWriter::start(repo).await.unwrap();
    // In path order, as the writer takes them.
    let mut link = entry("app/link", EntryKind::Symlink);
    link.target = Some("small.txt".into());
    writer
        .add_entry(entry("app", EntryKind::Dir))
        .await
        .unwrap();
    for path in [
        "app/big.bin",
        "app/link",
        "app/small.txt",
        "app/sub",
        "app/sub/inner.txt",
    ] {
        match path {
            "app/link" => writer.add_entry(link.clone()).await.unwrap(),
            "app/sub" => writer.add_entry(entry(path, EntryKind::Dir)).await.unwrap(),
            _ => {
                let mut file = entry(path, EntryKind::File);
                file.size = std::fs::metadata(source.join(path)).unwrap().len();
                writer
                    .add_file(file, FileStatus::New, source.join(path), |_| None)
                    .await
                    .unwrap();
            }
        }
    }
    let id = writer
        .commit(meta("p"), SourceFacts::default())
        .await
        .unwrap()
        .0;
    // Opened again, as a restore does: with the index the backup wrote.
    let repo = Arc::new(Repository::open(storage, None).await.unwrap());
    SnapshotReader::open(repo, id).await.unwrap()
}

#[tokio::test]
async fn issue_15_restore_replaces_symlinks_in_the_target_instead_of_following_them() {
    let source = tempfile::tempdir().unwrap();
    let big = backstop_testkit::noise(3 << 20, 7);
    std::fs::create_dir_all(source.path().join("app/sub")).unwrap();
    std::fs::write(source.path().join("app/small.txt"), b"restored small").unwrap();
    std::fs::write(source.path().join("app/big.bin"), &big).unwrap();
    std::fs::write(source.path().join("app/sub/inner.txt"), b"restored inner").unwrap();
    let reader = snapshot(source.path()).await;
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim.txt");
    let victim_big = outside.path().join("victim-big.bin");
    let victim_dir = outside.path().join("victim-dir");
    std::fs::write(&victim, b"outside, untouched").unwrap();
    std::fs::write(&victim_big, b"outside big, untouched").unwrap();
    std::fs::create_dir(&victim_dir).unwrap();

    let target = tempfile::tempdir().unwrap();
    let app = target.path().join("app");
    std::fs::create_dir(&app).unwrap();
    symlink(&victim, app.join("small.txt")).unwrap();
    symlink(&victim_big, app.join("big.bin")).unwrap();
    symlink(&victim_dir, app.join("sub")).unwrap();
    symlink(&victim, app.join("link")).unwrap();

    let restored = reader.restore_to(target.path()).await;

    assert_eq!(
        String::from_utf8_lossy(&std::fs::read(&victim).unwrap()),
        "outside, untouched"
    );
    assert_eq!(
        String::from_utf8_lossy(&std::fs::read(&victim_big).unwrap()),
        "outside big, untouched"
    );
    assert_eq!(
        std::fs::read_dir(&victim_dir).unwrap().count(),
        0,
        "the outside directory received nothing"
    );
    for (path, content) in [
        ("small.txt", b"restored small".to_vec()),
        ("big.bin", big),
        ("sub/inner.txt", b"restored inner".to_vec()),
    ] {
        let path = app.join(path);
        assert!(
            std::fs::symlink_metadata(&path).unwrap().is_file(),
            "{path:?} is a regular file"
        );
        assert!(std::fs::read(&path).unwrap() == content, "{path:?}");
    }
    assert_eq!(restored.unwrap().files, 3);
    assert!(std::fs::symlink_metadata(app.join("sub")).unwrap().is_dir());
    assert_eq!(
        std::fs::read_link(app.join("link")).unwrap(),
        Path::new("small.txt")
    );
}
