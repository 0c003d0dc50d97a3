//! One damaged repository per failure mode: `check --read-data` and `restore` both detect
//! it and name the object.

use super::util::{snapshot_ids, Install};

fn backed_up() -> (Install, String) {
    let install = Install::local();
    let src = install.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("a.bin"),
        backstop_testkit::noise(2 * 1024 * 1024, 1),
    )
    .unwrap();
    std::fs::write(src.join("b.txt"), "text ".repeat(10_000)).unwrap();
    install.files_policy("victim", &["./src"], "");
    install.backup("victim");
    let id = snapshot_ids(&install, "victim").remove(0);
    (install, id)
}

/// Runs a `check` that must find damage (exit 1); returns its report.
fn failing_check(install: &Install, args: &[&str]) -> String {
    let out = install.run(args);
    assert_eq!(out.status.code(), Some(1), "check should exit 1");
    String::from_utf8(out.stdout).unwrap()
}

fn objects(install: &Install, prefix: &str) -> Vec<String> {
    install
        .repo_objects()
        .into_iter()
        .filter(|k| k.starts_with(prefix))
        .collect()
}

#[test]
fn a_flipped_byte_in_a_pack_is_found_by_check_and_restore_naming_the_pack() {
    let (install, id) = backed_up();
    let pack = objects(&install, "data/").remove(0);
    let path = install.path(&format!("repo/{pack}"));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();

    // The structure is intact: only reading the data finds it.
    install.ok(&["check"]);
    let text = failing_check(&install, &["check", "--read-data"]);
    assert!(
        text.contains(&pack) && text.contains("does not match its id"),
        "{text}"
    );
    assert!(
        text.contains("src/a.bin"),
        "the affected file is named: {text}"
    );

    let err = install.fails(&["restore", &id[..8], "--to", "out"]);
    assert!(err.contains(&pack), "{err}");
    assert!(
        !install.path("out/src/a.bin").exists(),
        "no half-restored file is left looking whole"
    );
}

#[test]
fn a_deleted_pack_is_found_by_check_and_restore_naming_the_pack() {
    let (install, id) = backed_up();
    let pack = objects(&install, "data/").remove(0);
    std::fs::remove_file(install.path(&format!("repo/{pack}"))).unwrap();
    let text = failing_check(&install, &["check"]);
    assert!(
        text.contains(&pack) && text.contains("pack is missing"),
        "{text}"
    );
    let err = install.fails(&["restore", &id[..8], "--to", "out"]);
    assert!(err.contains(&pack), "{err}");
}

#[test]
fn a_deleted_index_object_is_found_by_check_and_restore() {
    let (install, id) = backed_up();
    let pack = objects(&install, "data/").remove(0);
    for index in objects(&install, "index/") {
        std::fs::remove_file(install.path(&format!("repo/{index}"))).unwrap();
    }
    let text = failing_check(&install, &["check", "--read-data"]);
    assert!(
        text.contains(&pack) && text.contains("no index lists this pack"),
        "{text}"
    );
    let err = install.fails(&["restore", &id[..8], "--to", "out"]);
    assert!(err.contains("is not in any index"), "{err}");
    // Prune refuses to delete anything while needed chunks are unindexed.
    let err = install.fails(&["prune"]);
    assert!(err.contains("prune deletes nothing"), "{err}");
    assert!(install.path(&format!("repo/{pack}")).exists());
}

#[test]
fn a_newer_repository_format_is_refused_clearly() {
    let (install, _) = backed_up();
    let config = install.path("repo/config");
    let mut stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let current = stored["version"].as_u64().unwrap();
    stored["version"] = (current + 1).into();
    std::fs::write(&config, stored.to_string()).unwrap();
    let err = install.fails(&["snapshots"]);
    let expected = format!(
        "has format version {}; this backstop reads up to version {current}",
        current + 1
    );
    assert!(
        err.contains(&expected) && err.contains("upgrade backstop"),
        "{err}"
    );
}
