//! Shared by the database source tests: a repository in a temp directory (so tests can
//! corrupt its packs), a backup through the real snapshot writer, and URL files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backstop_repo::storage::local::LocalStorage;
use backstop_repo::{
    Id, InitOptions, Repository, Snapshot, SnapshotMeta, SnapshotReader, SnapshotWriter,
};
use backstop_sources::{mysql, postgres, sqlite, SourceContext, SourceError, SourceSpec, Tools};

pub struct TestRepo {
    pub dir: tempfile::TempDir,
    pub repo: Arc<Repository>,
}

impl TestRepo {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(LocalStorage::new(dir.path().join("repo")));
        let repo = Repository::init(storage, InitOptions::default())
            .await
            .unwrap();
        Self {
            dir,
            repo: Arc::new(repo),
        }
    }

    /// Backs `spec` up with `tools`; nothing is committed unless the source succeeds.
    pub async fn back_up(
        &self,
        spec: &SourceSpec,
        tools: &Tools,
    ) -> Result<(Id, Snapshot), SourceError> {
        let repo = Arc::new(
            Repository::open(self.repo.storage().clone(), None)
                .await
                .unwrap(),
        );
        let mut writer = SnapshotWriter::start(repo).await?;
        let ctx = SourceContext {
            base: self.dir.path(),
            tools,
        };
        let time = jiff::Timestamp::now();
        let backed = match spec {
            SourceSpec::Postgres(s) => postgres::back_up(s, ctx, &mut writer).await?,
            SourceSpec::Mysql(s) => mysql::back_up(s, ctx, &mut writer).await?,
            SourceSpec::Sqlite(s) => sqlite::back_up(s, ctx, &mut writer).await?,
            other => panic!("not a database source: {}", other.kind()),
        };
        let meta = SnapshotMeta {
            policy: "test".into(),
            source_kind: spec.kind().into(),
            time,
            data_point: backed.data_point,
            roots: backed.roots,
            parent: None,
        };
        Ok(writer.commit(meta, backed.facts).await?)
    }

    pub async fn reader(&self, id: Id) -> SnapshotReader {
        let repo = Arc::new(
            Repository::open(self.repo.storage().clone(), None)
                .await
                .unwrap(),
        );
        SnapshotReader::open(repo, id).await.unwrap()
    }

    pub async fn snapshot_count(&self) -> usize {
        let repo = Repository::open(self.repo.storage().clone(), None)
            .await
            .unwrap();
        repo.snapshot_ids().await.unwrap().len()
    }

    /// Flips one byte in the middle of the largest pack.
    pub fn corrupt_largest_pack(&self) -> PathBuf {
        let mut packs = Vec::new();
        collect_files(&self.dir.path().join("repo/data"), &mut packs);
        let largest = packs
            .into_iter()
            .max_by_key(|p| std::fs::metadata(p).unwrap().len())
            .expect("a pack");
        let mut bytes = std::fs::read(&largest).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(&largest, bytes).unwrap();
        largest
    }

    /// Writes `url` to a file and returns its name, relative to the repository's directory
    /// (how a policy names `url_file`).
    pub fn url_file(&self, name: &str, url: &str) -> PathBuf {
        std::fs::write(self.dir.path().join(name), url).unwrap();
        PathBuf::from(name)
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/databases")
        .join(name)
}

/// A shell script standing in for a tool, in its own directory.
pub fn fake_tool(dir: &Path, name: &str, script: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

pub fn real_tool(name: &str) -> PathBuf {
    backstop_testkit::require_tool(name)
}

/// Log lines, kept for a test to read.
#[derive(Clone, Default)]
struct Logged(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logged {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `work` with its log (debug and up) kept, and returns its outcome and the log.
pub async fn logged<T>(work: impl std::future::Future<Output = T>) -> (T, String) {
    let kept = Logged::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer({
            let kept = kept.clone();
            move || kept.clone()
        })
        .finish();
    let outcome = {
        let _logging = tracing::subscriber::set_default(subscriber);
        work.await
    };
    let log = String::from_utf8(kept.0.lock().unwrap().clone()).unwrap();
    (outcome, log)
}
