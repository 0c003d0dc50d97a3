//! A scratch installation: a config, policies and a repository in a temp dir, and the
//! binary run against them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Install {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

/// The binary under test: this build's, or another given in `BACKSTOP_E2E_BINARY` (an
/// earlier commit's, to watch a regression test fail on the code it was written against).
pub fn bin() -> std::ffi::OsString {
    std::env::var_os("BACKSTOP_E2E_BINARY").unwrap_or_else(|| env!("CARGO_BIN_EXE_backstop").into())
}

impl Install {
    /// `repo_section` is the body of `[repositories.main]`.
    pub fn new(repo_section: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("policies")).unwrap();
        std::fs::write(
            dir.path().join("backstop.toml"),
            format!("data_dir = \"./data\"\npolicies = \"./policies\"\n\n[repositories.main]\n{repo_section}\n"),
        )
        .unwrap();
        Self { dir, env: vec![] }
    }

    /// Gives the binary the credentials of an S3 test server (its `env()`).
    pub fn use_s3(&mut self, env: Vec<(&'static str, String)>) {
        self.env = env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    }

    pub fn local() -> Self {
        Self::new("url = \"file://./repo\"")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A files policy named `name` backing up `paths` (relative to the install).
    pub fn files_policy(&self, name: &str, paths: &[&str], extra: &str) {
        let paths: Vec<String> = paths.iter().map(|p| format!("\"{p}\"")).collect();
        std::fs::write(
            self.path(&format!("policies/{name}.toml")),
            format!(
                "name = \"{name}\"\nrepository = \"main\"\n{extra}\n[source]\nkind = \"files\"\npaths = [{}]\n",
                paths.join(", ")
            ),
        )
        .unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.current_dir(self.dir.path())
            .args(args)
            .env_remove("BACKSTOP_CONFIG")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// `backstop daemon` in this installation: stdout discarded, stderr into the file `log`
    /// under the installation (kept for a failing test to show), or discarded.
    pub fn daemon(&self, log: Option<&str>) -> super::Daemon {
        let stderr = match log {
            Some(log) => std::process::Stdio::from(std::fs::File::create(self.path(log)).unwrap()),
            None => std::process::Stdio::null(),
        };
        super::Daemon(
            self.command(&["daemon"])
                .stdout(std::process::Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap(),
        )
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "backstop {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs, asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "backstop {args:?} should have failed:\nstdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// Runs `args` as `principal` (BACKSTOP_PRINCIPAL, as on the daemon's host) and returns
    /// its stdout; it must succeed.
    pub fn ok_as(&self, principal: &str, args: &[&str]) -> String {
        let out = self
            .command(args)
            .env("BACKSTOP_PRINCIPAL", principal)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "backstop {args:?} as {principal} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// Exports the evidence for `[from, to]` into `out` (under the installation), checks that
    /// it verifies, and returns `evidence.json`.
    pub fn evidence(&self, from: &str, to: &str, out: &str) -> serde_json::Value {
        let dir = self.path(out);
        let dir = dir.to_str().unwrap();
        self.ok(&[
            "evidence", "export", "--from", from, "--to", to, "--out", dir,
        ]);
        self.ok(&["evidence", "verify", dir]);
        serde_json::from_slice(&std::fs::read(self.path(out).join("evidence.json")).unwrap())
            .unwrap()
    }

    pub fn backup(&self, policy: &str) -> serde_json::Value {
        self.json(&["backup", policy])
    }

    /// Flips one bit in the middle of the largest pack; returns its path.
    pub fn corrupt_largest_pack(&self) -> PathBuf {
        let mut packs: Vec<PathBuf> = self
            .repo_objects()
            .into_iter()
            .filter(|o| o.starts_with("data/"))
            .map(|o| self.path(&format!("repo/{o}")))
            .collect();
        packs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
        let largest = packs.pop().expect("a pack");
        let mut bytes = std::fs::read(&largest).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(&largest, bytes).unwrap();
        largest
    }

    /// Every object key in the local repository.
    pub fn repo_objects(&self) -> Vec<String> {
        let root = self.path("repo");
        let mut out = Vec::new();
        walk_files(&root, &root, &mut out);
        out.sort();
        out
    }
}

/// A port on 127.0.0.1 free a moment ago, for a daemon's API to listen on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Break-glass: restores snapshot `id` from the S3 repository `url` into `restored/` of a
/// fresh directory, with nothing but the URL, the key file and the server's credentials (no
/// configuration, no catalog); returns that directory.
pub fn restore_from_nothing(
    server: &backstop_testkit::S3Server,
    url: &str,
    key: &Path,
    id: &str,
) -> tempfile::TempDir {
    let fresh = tempfile::tempdir().unwrap();
    std::fs::copy(key, fresh.path().join("key")).unwrap();
    let mut cmd = Command::new(bin());
    cmd.current_dir(fresh.path())
        .env_remove("BACKSTOP_CONFIG")
        .args([
            "restore",
            id,
            "--to",
            "restored",
            "--repo",
            url,
            "--endpoint",
            &server.endpoint(),
            "--path-style",
            "--key-file",
            "key",
        ]);
    for (k, v) in server.env() {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !fresh.path().join("backstop.toml").exists() && !fresh.path().join("data").exists(),
        "a break-glass restore writes no configuration and no catalog"
    );
    fresh
}

pub fn walk_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk_files(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
        }
    }
}

/// Asserts two trees are equal: names, types, content, mode, mtime, symlink targets.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    use std::os::unix::fs::MetadataExt;
    for rel in assert_same_content(expected, actual) {
        let (ma, mb) = (
            std::fs::symlink_metadata(expected.join(&rel)).unwrap(),
            std::fs::symlink_metadata(actual.join(&rel)).unwrap(),
        );
        assert_eq!(ma.mode(), mb.mode(), "{rel}: mode");
        assert_eq!(ma.uid(), mb.uid(), "{rel}: uid");
        assert_eq!(ma.gid(), mb.gid(), "{rel}: gid");
        assert_eq!(
            (ma.mtime(), ma.mtime_nsec()),
            (mb.mtime(), mb.mtime_nsec()),
            "{rel}: mtime"
        );
    }
}

/// Asserts two trees hold the same names, types, contents and symlink targets (metadata
/// aside); returns the paths compared.
pub fn assert_same_content(expected: &Path, actual: &Path) -> Vec<String> {
    let mut a = Vec::new();
    let mut b = Vec::new();
    list_all(expected, expected, &mut a);
    list_all(actual, actual, &mut b);
    assert_eq!(a, b, "the restored tree lists other paths");
    for rel in &a {
        let (pa, pb) = (expected.join(rel), actual.join(rel));
        let kind = std::fs::symlink_metadata(&pa).unwrap().file_type();
        assert_eq!(
            kind,
            std::fs::symlink_metadata(&pb).unwrap().file_type(),
            "{rel}: type"
        );
        if kind.is_symlink() {
            assert_eq!(
                std::fs::read_link(&pa).unwrap(),
                std::fs::read_link(&pb).unwrap(),
                "{rel}: target"
            );
        } else if kind.is_file() {
            assert!(
                std::fs::read(&pa).unwrap() == std::fs::read(&pb).unwrap(),
                "{rel}: content differs"
            );
        }
    }
    a
}

fn list_all(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            list_all(root, &p, out);
        }
    }
}

/// A tree with the edge cases: empty files and directories, long and non-ASCII names,
/// symlinks (dangling too), odd modes, incompressible data, and optionally a file over
/// 100 MiB.
pub fn edge_case_tree(root: &Path, huge: bool) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    std::fs::create_dir_all(root.join("nested/deeper/deepest")).unwrap();
    std::fs::write(root.join("empty-file"), b"").unwrap();
    std::fs::write(root.join("nested/deeper/deepest/leaf.txt"), b"leaf\n").unwrap();
    std::fs::write(
        root.join("Zoë — naïve café 東京 🚀.txt"),
        "non-ASCII name\n",
    )
    .unwrap();
    std::fs::write(root.join("x".repeat(200)), b"long name").unwrap();
    std::fs::write(
        root.join("text.log"),
        "a repeated line of text\n".repeat(50_000),
    )
    .unwrap();
    std::fs::write(
        root.join("noise.bin"),
        backstop_testkit::noise(3 * 1024 * 1024 + 17, 9),
    )
    .unwrap();
    std::fs::write(root.join("script.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(
        root.join("script.sh"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    std::fs::write(root.join("secret.txt"), b"0600").unwrap();
    std::fs::set_permissions(
        root.join("secret.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("nested/deeper/deepest/leaf.txt", root.join("link-to-leaf"))
        .unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("dangling-link")).unwrap();
    std::os::unix::fs::symlink("nested", root.join("link-to-dir")).unwrap();
    if huge {
        let mut big = backstop_testkit::noise(64 * 1024 * 1024, 3);
        big.extend(std::iter::repeat_n(b'z', 44 * 1024 * 1024));
        std::fs::write(root.join("huge.bin"), big).unwrap();
    }
    // Directory mtimes last, so the files above do not change them afterwards.
    let t = filetime_of(1_600_000_000);
    for d in ["empty-dir", "nested/deeper", "nested"] {
        set_mtime(&root.join(d), t);
    }
}

fn filetime_of(secs: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

fn set_mtime(path: &Path, t: std::time::SystemTime) {
    std::fs::File::open(path)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_modified(t))
        .unwrap();
}

pub fn snapshot_ids(install: &Install, policy: &str) -> Vec<String> {
    install
        .json(&["snapshots", policy])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

impl Install {
    /// Writes `policies/{name}.toml` with the given body (name and repository are added).
    pub fn policy(&self, name: &str, body: &str) {
        std::fs::write(
            self.path(&format!("policies/{name}.toml")),
            format!("name = \"{name}\"\nrepository = \"main\"\n{body}\n"),
        )
        .unwrap();
    }
}

/// A screenshot of `url` taken by headless Chromium into `shot` (the test fails when
/// Chromium is missing: scripts/test installs it).
pub fn screenshot(url: &str, shot: &Path) {
    let chromium = backstop_testkit::require_tool("chromium");
    let profile = tempfile::tempdir().unwrap();
    // Without the networking flags Chromium tries to reach Google's hosts at start.
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            // Tall enough for a whole evidence page: what a test looks for is never below
            // the window's edge because a table above it wrapped onto more lines.
            "--window-size=1100,4000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(url)
        .output()
        .unwrap();
    assert!(
        shot.is_file(),
        "no screenshot of {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Processes whose command line contains `marker`, found in /proc.
pub fn processes_with(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(marker)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Interrupts `child` (SIGINT, as Ctrl-C) once a process whose command line holds `marker`
/// runs, and returns how it exited; it must stop within 30 s.
pub fn interrupt_once_running(
    child: &mut std::process::Child,
    marker: &str,
) -> std::process::ExitStatus {
    super::daemon::wait_until(
        &format!("`{marker}` to run"),
        std::time::Duration::from_secs(60),
        || !processes_with(marker).is_empty(),
    );
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    super::daemon::wait_until(
        "backstop to stop after Ctrl-C",
        std::time::Duration::from_secs(30),
        || child.try_wait().unwrap().is_some(),
    );
    child.wait().unwrap()
}
