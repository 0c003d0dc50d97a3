//! A generic `command` source (issue 18, item 7): a backup and a drill round trip with a
//! small script pair (an export to stdout, an import from stdin into the scratch
//! directory), facts from `facts_command`, and a failing export that stores nothing and
//! says why, as a dump tool's failure does.

use super::util::Install;

fn script(install: &Install, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = install.path(&format!("bin/{name}"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, format!("#!/bin/sh\nset -e\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_command_source_backs_up_and_drills_through_its_scripts() {
    let install = Install::local();
    // The "store": an application's data that only its own tools export and import.
    std::fs::create_dir_all(install.path("store")).unwrap();
    std::fs::write(install.path("store/users.kv"), "alice=1\nbob=2\ncarol=3\n").unwrap();
    script(&install, "export.sh", "tar -C ./store -cf - .\n");
    script(
        &install,
        "import.sh",
        "tar -C \"$BACKSTOP_SCRATCH_DIR\" -xf -\n",
    );
    script(
        &install,
        "facts.sh",
        "n=$(wc -l < ./store/users.kv)\nprintf '{\"tables\": {\"users\": %d}, \"format\": \"tar\"}' \"$n\"\n",
    );
    install.policy(
        "kv",
        "[source]\nkind = \"command\"\nbackup_command = [\"./bin/export.sh\"]\n\
         restore_command = [\"./bin/import.sh\"]\nfacts_command = [\"./bin/facts.sh\"]\n\n\
         [[drill.checks]]\nname = \"users restored\"\ncommand = [\"sh\", \"-c\", \"grep -q carol=3 \\\"$BACKSTOP_SCRATCH_DIR/users.kv\\\"\"]\n\n\
         [[drill.checks]]\nfile = \"users.kv\"\nmin_size = 10\n",
    );
    install.ok(&["policy", "check"]);

    let backup = install.backup("kv");
    let id = backup["snapshot_id"].as_str().unwrap().to_string();
    let listed = install.json(&["snapshots", "kv"]);
    assert_eq!(listed[0]["source_kind"], "command", "{listed:#}");
    let facts = &backup["facts"];
    assert_eq!(facts["tables"]["users"], 3, "{backup:#}");
    assert_eq!(facts["extra"]["format"], "tar", "{backup:#}");

    // The stored export restores as it was written.
    install.ok(&["restore", &id[..12], "--to", "raw"]);
    let stored = std::fs::read(install.path("raw/command.out")).unwrap();
    assert!(stored.windows(7).any(|w| w == b"carol=3"));

    let drill = install.json(&["drill", "kv"]);
    assert_eq!(drill["status"], "passed", "{drill:#}");
    let status = |name: &str| {
        drill["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}: {drill:#}"))["status"]
            .clone()
    };
    assert_eq!(status("restore"), "passed");
    assert_eq!(status("users restored"), "passed");
    assert_eq!(status("fidelity"), "skipped");
    assert!(drill["rto_seconds"].as_f64().unwrap() > 0.0);

    // An export that fails stores nothing, and its error carries the command's stderr.
    script(
        &install,
        "export.sh",
        "echo 'cannot reach the store' >&2\nexit 3\n",
    );
    let err = install.fails(&["backup", "kv"]);
    assert!(
        err.contains("backup_command exited with status 3")
            && err.contains("cannot reach the store"),
        "{err}"
    );
    assert_eq!(
        install.json(&["snapshots", "kv"]).as_array().unwrap().len(),
        1
    );
}

#[test]
fn a_command_source_without_a_program_is_an_error_at_its_key() {
    let install = Install::local();
    install.policy("kv", "[source]\nkind = \"command\"\nbackup_command = []\n");
    let err = install.fails(&["policy", "check"]);
    assert!(
        err.contains("[source] backup_command must name a program"),
        "{err}"
    );
}

/// A backup interrupted (Ctrl-C) while its export script's child still holds the stream
/// open stops at once and takes the script's children with it: none is left running, and
/// backstop does not wait for them to close the stream.
#[test]
fn an_interrupted_command_backup_stops_its_scripts_children() {
    let install = Install::local();
    // A number no other test sleeps for, to find this script's child by.
    let marker = format!("sleep {}", 3000 + std::process::id() % 997);
    script(
        &install,
        "export.sh",
        &format!("head -c 100000 /dev/urandom\n{marker}\n"),
    );
    install.policy(
        "kv",
        "[source]\nkind = \"command\"\nbackup_command = [\"./bin/export.sh\"]\nrestore_command = [\"true\"]\n",
    );
    let mut backup = install
        .command(&["backup", "kv"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ended = super::util::interrupt_once_running(&mut backup, &marker);
    assert!(!ended.success(), "an interrupted backup");
    super::daemon::wait_until(
        "the script's child to be gone",
        std::time::Duration::from_secs(10),
        || super::util::processes_with(&marker).is_empty(),
    );
    let listed = install.json(&["snapshots", "kv"]);
    assert_eq!(listed.as_array().unwrap().len(), 0, "{listed:#}");
}
