//! Repositories of format version 1 (`fixtures/repos`, written by the version-1 writer) are
//! still read, checked and backed up into, under version 1's rules; new ones are version 2.

use std::path::Path;

use super::util::{assert_same_content, assert_same_tree, snapshot_ids, Install};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/repos");

/// The tree the fixtures were made from (fixtures/repos/README.md): a small file, an empty
/// one, a symlink, and a 3.6 MB file of several chunks.
fn fixture_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("hello.txt"), "hello from format version 1\n").unwrap();
    std::fs::write(root.join("empty"), "").unwrap();
    std::os::unix::fs::symlink("hello.txt", root.join("link")).unwrap();
    let lines: String = (0..400_000).map(|i| format!("{i:08}\n")).collect();
    std::fs::write(root.join("sub/lines.txt"), lines).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn version_1_repositories_restore_check_and_take_backups_by_version_1_rules() {
    for (fixture, encrypted) in [("v1-encrypted", true), ("v1-plain", false)] {
        let key_line = if encrypted {
            "\nkey_file = \"./repo.key\""
        } else {
            ""
        };
        let install = Install::new(&format!("url = \"file://./repo\"{key_line}"));
        copy_dir(&Path::new(FIXTURES).join(fixture), &install.path("repo"));
        if encrypted {
            std::fs::copy(
                Path::new(FIXTURES).join("v1-encrypted.key"),
                install.path("repo.key"),
            )
            .unwrap();
        }
        let config = || std::fs::read_to_string(install.path("repo/config")).unwrap();
        assert!(config().contains("\"version\": 1"), "{fixture}");
        fixture_tree(&install.path("src/compat"));

        install.ok(&["check", "--read-data"]);
        let old = snapshot_ids(&install, "compat");
        assert_eq!(old.len(), 1, "{fixture}");
        install.ok(&["restore", &old[0], "--to", "old"]);
        // The fixture's mtimes are its own: compare everything else.
        assert_same_content(&install.path("src/compat"), &install.path("old/compat"));

        // The same content backed up again names its chunks as version 1 does, so nothing
        // but the new tree (other mtimes) is added, and the repository stays version 1.
        install.files_policy("compat", &["./src/compat"], "");
        let backup = install.backup("compat");
        let added = backup["bytes_added"].as_u64().unwrap();
        assert!(added < 4096, "{fixture}: added {added} bytes: {backup}");
        assert!(config().contains("\"version\": 1"), "{fixture}");
        install.ok(&["check", "--read-data"]);
        let new = backup["snapshot_id"].as_str().unwrap();
        install.ok(&["restore", new, "--to", "new"]);
        assert_same_tree(&install.path("src/compat"), &install.path("new/compat"));
    }
}
