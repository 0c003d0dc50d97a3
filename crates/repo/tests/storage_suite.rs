//! One conformance suite for the `Storage` contract, run on every implementation: memory,
//! a local directory, and S3 over HTTP (s3s-fs on 127.0.0.1:0, multipart included).

use backstop_repo::storage::{
    LocalStorage, MemoryStorage, RetryPolicy, RetryStorage, S3Options, S3Storage, Storage,
};
use backstop_testkit::{noise, S3Server};
use bytes::Bytes;

async fn suite(s: &dyn Storage, large: usize) {
    // put / get round trip, including an empty object and a large one.
    s.put("data/ab/one", Bytes::from_static(b"hello"))
        .await
        .unwrap();
    assert_eq!(&s.get("data/ab/one").await.unwrap()[..], b"hello");
    s.put("index/empty", Bytes::new()).await.unwrap();
    assert!(s.get("index/empty").await.unwrap().is_empty());
    let big = Bytes::from(noise(large, 1));
    s.put("data/cd/big", big.clone()).await.unwrap();
    assert_eq!(s.get("data/cd/big").await.unwrap(), big);

    // A second put replaces the object whole.
    s.put("data/ab/one", Bytes::from_static(b"bye"))
        .await
        .unwrap();
    assert_eq!(&s.get("data/ab/one").await.unwrap()[..], b"bye");

    // Ranges: exact, and an error past the end (never a short read).
    assert_eq!(
        s.get_range("data/cd/big", 10, 100).await.unwrap(),
        big.slice(10..110)
    );
    assert_eq!(
        s.get_range("data/cd/big", large as u64 - 5, 5)
            .await
            .unwrap(),
        big.slice(large - 5..)
    );
    assert!(s
        .get_range("data/cd/big", large as u64 - 5, 10)
        .await
        .is_err());
    assert!(s.get_range("data/ab/one", 100, 1).await.is_err());
    // Into a reused buffer: its old content is replaced, however long it was.
    let reused = s
        .get_range_into("data/cd/big", 20, 50, vec![7; 4096])
        .await
        .unwrap();
    assert_eq!(reused, big.slice(20..70));
    let reused = s.get_range_into("data/cd/big", 0, 3, reused).await.unwrap();
    assert_eq!(reused, big.slice(0..3));
    assert!(s
        .get_range_into("data/ab/one", 1, 10, Vec::new())
        .await
        .is_err());

    // Read back to confirm: the whole object's SHA-256 and length (a local object of
    // several read blocks, an S3 body of several pieces), and NotFound for a missing key.
    use sha2::Digest;
    let (digest, length) = s.sha256("data/cd/big").await.unwrap();
    assert_eq!(digest, <[u8; 32]>::from(sha2::Sha256::digest(&big)));
    assert_eq!(length, large as u64);
    let (digest, length) = s.sha256("index/empty").await.unwrap();
    assert_eq!(digest, <[u8; 32]>::from(sha2::Sha256::digest(b"")));
    assert_eq!(length, 0);
    assert!(s
        .sha256("snapshots/missing")
        .await
        .unwrap_err()
        .is_not_found());

    // Missing keys are NotFound, naming the key.
    let err = s.get("snapshots/missing").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(err.key(), "snapshots/missing");
    assert!(s
        .get_range("snapshots/missing", 0, 1)
        .await
        .unwrap_err()
        .is_not_found());

    // Listing is complete, sorted, with sizes, and filtered by prefix.
    for i in 0..25 {
        s.put(&format!("snapshots/{i:03}"), Bytes::from(vec![b'x'; i]))
            .await
            .unwrap();
    }
    let listed = s.list("snapshots/").await.unwrap();
    assert_eq!(listed.len(), 25);
    assert!(listed.windows(2).all(|w| w[0].key < w[1].key));
    assert_eq!(listed[7].key, "snapshots/007");
    assert_eq!(listed[7].size, 7);
    let data = s.list("data/").await.unwrap();
    assert_eq!(
        data.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
        ["data/ab/one", "data/cd/big"]
    );
    assert_eq!(data[1].size, large as u64);
    assert!(s.list("nothing/").await.unwrap().is_empty());

    // put_file: the file's content becomes the object (a large one in parts, on S3), and
    // the file is left as it was; a file that cannot be read is a permanent error naming
    // the key and the file, and leaves no object.
    let spool = tempfile::tempdir().unwrap();
    let (large_file, small_file) = (spool.path().join("large"), spool.path().join("small"));
    std::fs::write(&large_file, &big).unwrap();
    std::fs::write(&small_file, b"spooled").unwrap();
    s.put_file("data/ef/large", &large_file).await.unwrap();
    assert_eq!(s.get("data/ef/large").await.unwrap(), big);
    assert_eq!(std::fs::read(&large_file).unwrap(), big);
    s.put_file("index/small", &small_file).await.unwrap();
    assert_eq!(&s.get("index/small").await.unwrap()[..], b"spooled");
    let missing = spool.path().join("missing-spool");
    let err = s.put_file("data/ef/none", &missing).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert_eq!(err.key(), "data/ef/none");
    assert!(err.to_string().contains("missing-spool"), "{err}");
    assert!(s.get("data/ef/none").await.unwrap_err().is_not_found());
    s.delete("data/ef/large").await.unwrap();

    // Delete, and delete of a missing key, both succeed.
    s.delete("data/ab/one").await.unwrap();
    s.delete("data/ab/one").await.unwrap();
    assert!(s.get("data/ab/one").await.unwrap_err().is_not_found());

    // Finished puts leave nothing behind.
    assert!(s.leftovers("").await.unwrap().is_empty());

    // Keys that could escape the store are refused.
    assert!(s.put("../escape", Bytes::new()).await.is_err());
    assert!(s.put("/abs", Bytes::new()).await.is_err());
}

#[tokio::test]
async fn memory_storage_passes_the_suite() {
    suite(&MemoryStorage::new(), 3 * 1024 * 1024).await;
}

#[tokio::test]
async fn local_storage_passes_the_suite_and_never_lists_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let s = LocalStorage::new(dir.path());
    // Not a multiple of the page size: a large object is written with direct I/O, its last
    // block padded and then cut.
    suite(&s, 3 * 1024 * 1024 + 1234).await;
    // A crash mid-put leaves a temporary file; it is not an object.
    std::fs::create_dir_all(dir.path().join("index")).unwrap();
    std::fs::write(
        dir.path().join("index/abc.tmp-0123456789abcdef"),
        b"partial",
    )
    .unwrap();
    assert!(s
        .list("index/")
        .await
        .unwrap()
        .iter()
        .all(|o| !o.key.contains("tmp")));
    // It is a leftover, named so that `delete` removes it, through the retry wrapper too.
    let retrying = RetryStorage::new(s, RetryPolicy::default());
    let leftovers = retrying.leftovers("index/").await.unwrap();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    assert_eq!(leftovers[0].key, "index/abc.tmp-0123456789abcdef");
    assert_eq!(leftovers[0].size, 7);
    assert!(retrying.leftovers("data/").await.unwrap().is_empty());
    retrying.delete(&leftovers[0].key).await.unwrap();
    assert!(retrying.leftovers("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_storage_passes_the_suite_with_multipart() {
    let server = S3Server::start(&["backstop-suite"]);
    server.set_process_env();
    let mut options = S3Options::new("backstop-suite", "some/prefix");
    options.endpoint = Some(server.endpoint());
    options.region = Some("us-east-1".into());
    options.path_style = true;
    options.multipart_threshold = 5 * 1024 * 1024;
    options.part_size = 5 * 1024 * 1024;
    let s = S3Storage::connect(options).await;
    // 12 MiB: three parts of a multipart upload.
    suite(&s, 12 * 1024 * 1024).await;
    assert!(server
        .root()
        .join("backstop-suite/some/prefix/data/cd/big")
        .is_file());
    // Readers keep more requests in flight on object storage, through the retry wrapper too.
    assert!(s.is_remote());
    assert!(RetryStorage::new(s, RetryPolicy::default()).is_remote());
    assert!(!LocalStorage::new(server.root()).is_remote());
    assert!(!MemoryStorage::new().is_remote());
}
