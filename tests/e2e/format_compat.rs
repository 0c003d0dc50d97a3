//! Repositories of older format versions (`fixtures/repos`, each written by that version's
//! writer) are still read, checked and backed up into, under their own version's rules.

use std::path::Path;

use super::util::{assert_same_content, assert_same_tree, snapshot_ids, Install};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/repos");

/// The tree the fixtures were made from (fixtures/repos/README.md): a small file naming the
/// version, an empty one, a symlink, and a 3.6 MB file of several chunks.
fn fixture_tree(root: &Path, version: u32) {
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(
        root.join("hello.txt"),
        format!("hello from format version {version}\n"),
    )
    .unwrap();
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
fn older_repositories_restore_check_and_take_backups_by_their_own_version_rules() {
    for (fixture, version, encrypted) in [
        ("v1-encrypted", 1, true),
        ("v1-plain", 1, false),
        ("v2-encrypted", 2, true),
        ("v3-encrypted", 3, true),
    ] {
        let key_line = if encrypted {
            "\nkey_file = \"./repo.key\""
        } else {
            ""
        };
        let install = Install::new(&format!("url = \"file://./repo\"{key_line}"));
        copy_dir(&Path::new(FIXTURES).join(fixture), &install.path("repo"));
        if encrypted {
            std::fs::copy(
                Path::new(FIXTURES).join(format!("{fixture}.key")),
                install.path("repo.key"),
            )
            .unwrap();
        }
        let config = || std::fs::read_to_string(install.path("repo/config")).unwrap();
        let stated_version = format!("\"version\": {version},");
        assert!(config().contains(&stated_version), "{fixture}");
        fixture_tree(&install.path("src/compat"), version);

        install.ok(&["check", "--read-data"]);
        let old = snapshot_ids(&install, "compat");
        assert_eq!(old.len(), 1, "{fixture}");
        install.ok(&["restore", &old[0], "--to", "old"]);
        // The fixture's mtimes are its own: compare everything else.
        assert_same_content(&install.path("src/compat"), &install.path("old/compat"));

        // The same content backed up again names its chunks as the fixture's version does, so
        // nothing but the new tree (other mtimes) is added, and the version stays.
        install.files_policy("compat", &["./src/compat"], "");
        let backup = install.backup("compat");
        let added = backup["bytes_added"].as_u64().unwrap();
        assert!(added < 4096, "{fixture}: added {added} bytes: {backup}");
        assert!(config().contains(&stated_version), "{fixture}");
        install.ok(&["check", "--read-data"]);
        let new = backup["snapshot_id"].as_str().unwrap();
        install.ok(&["restore", new, "--to", "new"]);
        assert_same_tree(&install.path("src/compat"), &install.path("new/compat"));
    }
}
