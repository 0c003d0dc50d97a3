//! Restore drills through the binary: a passing drill for every source kind (against the
//! local PostgreSQL and MariaDB servers) and from an S3 repository; every failure a failed
//! drill naming its cause, with no scratch target left behind; records, sign-off, status.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use backstop_testkit::db::{my_databases, pg_databases, MyDb, PgDb, MY_SERVER, PG_SERVER};
use backstop_testkit::S3Server;
use serde_json::Value;

use super::util::Install;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn script(install: &Install, name: &str, body: &str) {
    let path = install.path(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs a drill that must fail; returns its JSON report.
fn failed_drill(install: &Install, policy: &str) -> Value {
    let out = install.run(&["--json", "drill", policy]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed drill exits 1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "failed", "{report:#}");
    report
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check `{name}` in {report:#}"))
}

fn statuses(report: &Value) -> Vec<(String, String)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn assert_rto_adds_up(report: &Value) {
    let b = &report["rto_breakdown"];
    let parts: f64 = [
        "fetch_seconds",
        "decode_seconds",
        "load_seconds",
        "checks_seconds",
    ]
    .iter()
    .map(|k| b[k].as_f64().unwrap())
    .sum();
    let rto = report["rto_seconds"].as_f64().unwrap();
    assert!(rto > 0.0, "{report:#}");
    assert!((parts - rto).abs() < 0.01, "{parts} vs {rto}");
}

fn empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).map_or(true, |mut d| d.next().is_none())
}

#[test]
fn postgres_drill_passes_every_check_and_is_signed_off_by_the_recovery_owner() {
    let db = PgDb::create("backstop_e2e_drill_pg");
    db.seed(&fixture("databases/postgres.sql"));
    let mut install = Install::local();
    install.env.push(("ORDERS_PG_URL".into(), db.url()));
    install
        .env
        .push(("SCRATCH_PG_URL".into(), format!("{PG_SERVER}/postgres")));
    script(
        &install,
        "checks/smoke.sh",
        "set -e\necho \"checking $PGDATABASE\"\nn=$(psql \"$BACKSTOP_SCRATCH_URL\" -tAc 'SELECT count(*) FROM orders')\ntest \"$n\" = 2000",
    );
    install.policy(
        "orders",
        r#"
[source]
kind = "postgres"
url_env = "ORDERS_PG_URL"

[objectives]
rpo = "4h"
rto = "30m"

[drill]
target = { kind = "postgres", url_env = "SCRATCH_PG_URL" }
signoff_within = "7d"

[[drill.checks]]
name = "orders"
sql = "SELECT count(*) FROM orders"
expect = ">= 1000"

[[drill.checks]]
name = "no orphans"
sql = "SELECT NOT EXISTS (SELECT 1 FROM orders o LEFT JOIN customers c ON c.id = o.customer_id WHERE c.id IS NULL)"
expect = "true"

[[drill.checks]]
name = "scratch"
sql = "SELECT current_database()"
expect = "/^backstop_drill_/"

[[drill.checks]]
name = "smoke"
command = ["./checks/smoke.sh"]

[owners]
recovery = "dba@example.com"
"#,
    );
    let backup = install.backup("orders");
    let report = install.json(&["drill", "orders"]);
    assert_eq!(report["status"], "passed", "{report:#}");
    assert_eq!(report["snapshot_id"], backup["snapshot_id"]);
    let names: Vec<(String, String)> = statuses(&report);
    let expected: Vec<(String, String)> = [
        "integrity",
        "restore",
        "fidelity",
        "native",
        "orders",
        "no orphans",
        "scratch",
        "smoke",
    ]
    .iter()
    .map(|n| (n.to_string(), "passed".to_string()))
    .collect();
    assert_eq!(names, expected, "{report:#}");
    assert!(
        check(&report, "native")["detail"]
            .as_str()
            .unwrap()
            .contains("amcheck"),
        "{report:#}"
    );
    assert!(check(&report, "smoke")["output"]
        .as_str()
        .unwrap()
        .contains("checking backstop_drill_"));
    assert!(check(&report, "fidelity")["detail"]
        .as_str()
        .unwrap()
        .contains("5 table(s)"));
    assert_rto_adds_up(&report);
    assert!(report["rpo_seconds"].as_f64().unwrap() < 600.0);
    assert_eq!(report["rto_breached"], false);
    let scratch = report["scratch"].as_str().unwrap();
    assert!(pg_databases(scratch).is_empty(), "{scratch} was dropped");

    // Recorded: listed, shown, awaiting sign-off by the recovery owner alone.
    let id = report["drill_id"].as_str().unwrap();
    let listed = install.json(&["drills", "orders"]);
    assert_eq!(listed[0]["drill_id"], id);
    assert_eq!(listed[0]["status"], "passed");
    assert_eq!(listed[0]["signed_off_by"], Value::Null);
    let shown = install.json(&["drill", "show", &id[..17]]);
    assert_eq!(shown["checks"], report["checks"]);
    let status = install.json(&["status"]);
    assert_eq!(status[0]["pending_signoffs"], serde_json::json!([id]));
    assert_eq!(status[0]["last_drill_status"], "passed");
    assert_eq!(status[0]["overdue_signoffs"], serde_json::json!([]));

    let err = install.fails(&["signoff", id, "--comment", "looks fine"]);
    assert!(err.contains("no principal"), "{err}");
    let err = install
        .command(&["signoff", id, "--comment", "looks fine"])
        .env("BACKSTOP_PRINCIPAL", "intern@example.com")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(
        !err.status.success()
            && stderr.contains("only the recovery owner")
            && stderr.contains("dba@example.com"),
        "{stderr}"
    );
    install.ok_as(
        "dba@example.com",
        &[
            "--json",
            "signoff",
            id,
            "--comment",
            "counts and smoke test reviewed",
        ],
    );
    let again = install
        .command(&["signoff", id, "--comment", "twice"])
        .env("BACKSTOP_PRINCIPAL", "dba@example.com")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stderr).contains("already signed off"));
    assert_eq!(
        install.json(&["drills"])[0]["signed_off_by"],
        "dba@example.com"
    );
    assert_eq!(
        install.json(&["status"])[0]["pending_signoffs"],
        serde_json::json!([])
    );
    let human = install.ok(&["drill", "show", id]);
    assert!(human.contains("signed off by dba@example.com"), "{human}");
}

#[test]
fn mariadb_drill_passes_with_check_table() {
    let db = MyDb::create("backstop_e2e_drill_my");
    db.seed(&fixture("databases/mysql.sql"));
    let mut install = Install::local();
    install.env.push(("ORDERS_MYSQL_URL".into(), db.url()));
    install
        .env
        .push(("SCRATCH_MYSQL_URL".into(), format!("{MY_SERVER}/")));
    install.policy(
        "orders",
        r#"
[source]
kind = "mysql"
url_env = "ORDERS_MYSQL_URL"

[drill]
target = { kind = "mysql", url_env = "SCRATCH_MYSQL_URL" }

[[drill.checks]]
sql = "SELECT count(*) FROM orders"
expect = "= 2000"
"#,
    );
    install.backup("orders");
    let report = install.json(&["drill", "orders"]);
    assert_eq!(report["status"], "passed", "{report:#}");
    assert!(check(&report, "native")["detail"]
        .as_str()
        .unwrap()
        .contains("CHECK TABLE: 5 table(s) OK"));
    assert_eq!(
        check(&report, "sql: SELECT count(*) FROM orders")["status"],
        "passed"
    );
    assert_rto_adds_up(&report);
    assert!(my_databases(report["scratch"].as_str().unwrap()).is_empty());
}

#[test]
fn sqlite_files_and_config_drills_pass_into_their_own_scratch_directory() {
    let install = Install::local();
    backstop_testkit::db::sqlite_seed(
        &install.path("orders.sqlite"),
        &fixture("databases/sqlite.sql"),
    );
    let scratch = install.path("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    install.policy(
        "orders",
        r#"
[source]
kind = "sqlite"
path = "./orders.sqlite"

[drill]
target = { kind = "sqlite", path = "./scratch" }

[[drill.checks]]
sql = "SELECT count(*) FROM orders"
expect = ">= 2000"

[[drill.checks]]
command = ["sh", "-c", "test -s \"$BACKSTOP_SCRATCH_PATH\" && echo \"$BACKSTOP_SCRATCH_PATH\""]
"#,
    );
    std::fs::create_dir_all(install.path("conf")).unwrap();
    for name in ["app.toml", "features.json", "logging.yaml"] {
        std::fs::copy(
            fixture("config/app-config").join(name),
            install.path("conf").join(name),
        )
        .unwrap();
    }
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(
            std::fs::read(install.path("conf/features.json")).unwrap(),
        ))
    };
    install.policy(
        "conf",
        &format!(
            r#"
[source]
kind = "config"
paths = ["./conf"]

[drill]
target = {{ kind = "directory", path = "./scratch" }}

[[drill.checks]]
file = "conf/features.json"
parses_as = "json"
digest = "sha256:{digest}"

[[drill.checks]]
file = "conf/app.toml"
parses_as = "toml"
min_size = 10

[[drill.checks]]
file = "conf/logging.yaml"
parses_as = "yaml"
max_size = 4096

[[drill.checks]]
file = "conf/secrets.env"
exists = false
"#
        ),
    );
    std::fs::create_dir_all(install.path("tree/a")).unwrap();
    std::fs::write(install.path("tree/a/one.txt"), "one").unwrap();
    std::os::unix::fs::symlink("a/one.txt", install.path("tree/link")).unwrap();
    install.files_policy(
        "tree",
        &["./tree"],
        "[drill]\ntarget = { kind = \"directory\", path = \"./scratch\" }\n",
    );

    // Before the first backup (no repository yet) a drill fails saying there is nothing to
    // drill, not which object is missing.
    let early = install.run(&["drill", "tree"]);
    let stderr = String::from_utf8_lossy(&early.stderr);
    assert!(!early.status.success(), "{stderr}");
    assert!(
        stderr.contains("policy `tree` has no snapshot") && stderr.contains("run a backup first"),
        "{stderr}"
    );
    for policy in ["orders", "conf", "tree"] {
        install.backup(policy);
        let report = install.json(&["drill", policy]);
        assert_eq!(report["status"], "passed", "{policy}: {report:#}");
        assert!(
            statuses(&report).iter().all(|(_, s)| s == "passed"),
            "{report:#}"
        );
        assert_rto_adds_up(&report);
        assert!(
            empty_dir(&scratch),
            "{policy} left {:?}",
            std::fs::read_dir(&scratch).unwrap().collect::<Vec<_>>()
        );
    }
    let listed = install.json(&["drills"]);
    assert_eq!(listed.as_array().unwrap().len(), 3);
    let human = install.ok(&["drills"]);
    assert!(human.contains("pending"), "{human}");

    // --random drills one of the policy's snapshots, and only the policy's.
    std::fs::write(install.path("tree/a/two.txt"), "two").unwrap();
    install.backup("tree");
    let mine: Vec<String> = install
        .json(&["snapshots", "tree"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(mine.len(), 2);
    let report = install.json(&["drill", "tree", "--random"]);
    assert_eq!(report["status"], "passed", "{report:#}");
    let drilled = report["snapshot_id"].as_str().unwrap();
    assert!(
        mine.iter().any(|id| id == drilled),
        "{drilled} not in {mine:?}"
    );
}

#[test]
fn a_drill_from_an_s3_repository_end_to_end() {
    let server = S3Server::start(&["backstop-drills"]);
    let mut install = Install::new(&format!(
        "url = \"s3://backstop-drills/offsite\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\npath_style = true\nkey_file = \"./repo.key\"",
        server.endpoint()
    ));
    install.use_s3(server.env());
    std::fs::create_dir_all(install.path("src/data")).unwrap();
    std::fs::write(
        install.path("src/data/big.bin"),
        backstop_testkit::noise(6 << 20, 7),
    )
    .unwrap();
    std::fs::write(install.path("src/readme.txt"), "hello").unwrap();
    install.files_policy("offsite", &["./src"], "[objectives]\nrto = \"10m\"\n");
    install.backup("offsite");
    let report = install.json(&["drill", "offsite"]);
    assert_eq!(report["status"], "passed", "{report:#}");
    assert!(check(&report, "fidelity")["detail"]
        .as_str()
        .unwrap()
        .contains("2 file(s)"));
    assert!(report["rto_breakdown"]["fetch_seconds"].as_f64().unwrap() > 0.0);
    assert_rto_adds_up(&report);
}

/// A seeded database and a policy that drills it on the local server.
fn postgres_drill(prefix: &str) -> (PgDb, Install) {
    let db = PgDb::create(prefix);
    db.seed(&fixture("databases/postgres.sql"));
    let mut install = Install::local();
    install.env.push(("ORDERS_PG_URL".into(), db.url()));
    install
        .env
        .push(("SCRATCH_PG_URL".into(), format!("{PG_SERVER}/postgres")));
    install.policy(
        "orders",
        "[source]\nkind = \"postgres\"\nurl_env = \"ORDERS_PG_URL\"\n[drill]\ntarget = { kind = \"postgres\", url_env = \"SCRATCH_PG_URL\" }\n",
    );
    (db, install)
}

#[test]
fn a_corrupt_chunk_fails_the_drill_and_drops_the_half_loaded_database() {
    let (_db, install) = postgres_drill("backstop_e2e_drill_corrupt");
    install.backup("orders");
    let largest = install.corrupt_largest_pack();

    let report = failed_drill(&install, "orders");
    let integrity = check(&report, "integrity");
    assert_eq!(integrity["status"], "failed");
    let pack_name = largest.file_name().unwrap().to_str().unwrap();
    assert!(
        integrity["detail"].as_str().unwrap().contains(pack_name),
        "{integrity:#}"
    );
    assert!(
        report["error"].as_str().unwrap().contains("corrupt"),
        "{report:#}"
    );
    assert!(pg_databases(report["scratch"].as_str().unwrap()).is_empty());
    let listed = install.json(&["drills"]);
    assert_eq!(listed[0]["status"], "failed");
}

#[test]
fn a_table_missing_from_the_dump_fails_fidelity_by_table() {
    let (_db, install) = postgres_drill("backstop_e2e_drill_missing");
    // A dump tool that silently leaves one table's rows out: the facts (counted by
    // Backstop in the dump's own snapshot) still say 2000 rows.
    let real = backstop_testkit::require_tool("pg_dump");
    script(
        &install,
        "bin/pg_dump",
        &format!(
            "exec {} \"$@\" --exclude-table-data=public.audit_log",
            real.display()
        ),
    );
    let path = format!(
        "{}:{}",
        install.path("bin").display(),
        std::env::var("PATH").unwrap()
    );
    let out = install
        .command(&["backup", "orders"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let report = failed_drill(&install, "orders");
    assert_eq!(check(&report, "fidelity")["status"], "failed");
    assert_eq!(
        report["differences"],
        serde_json::json!([{"object": "table public.audit_log", "expected": "2000 rows", "actual": "0 rows"}])
    );
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("public.audit_log"),
        "{report:#}"
    );
    assert!(pg_databases(report["scratch"].as_str().unwrap()).is_empty());
}

#[test]
fn failed_checks_a_tight_rto_and_an_unreachable_scratch_server_are_failed_drills() {
    let mut install = Install::local();
    backstop_testkit::db::sqlite_seed(
        &install.path("orders.sqlite"),
        &fixture("databases/sqlite.sql"),
    );
    let scratch = install.path("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    script(
        &install,
        "checks/fails.sh",
        "echo \"workflow: order 17 not found\"\nexit 1",
    );
    let policy = |name: &str, extra: &str| {
        install.policy(
            name,
            &format!(
                "[source]\nkind = \"sqlite\"\npath = \"./orders.sqlite\"\n{extra}\n[drill]\ntarget = {{ kind = \"sqlite\", path = \"./scratch\" }}\n"
            ),
        );
    };
    policy("false-sql", "");
    policy("command-fails", "");
    policy("slow", "[objectives]\nrto = \"1ms\"\n");
    let add = |name: &str, checks: &str| {
        let path = install.path(&format!("policies/{name}.toml"));
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(checks);
        std::fs::write(path, text).unwrap();
    };
    add(
        "false-sql",
        "\n[[drill.checks]]\nsql = \"SELECT count(*) FROM orders\"\nexpect = \"= 0\"\n\n[[drill.checks]]\nsql = \"SELECT count(*) FROM no_such_table\"\nexpect = \">= 1\"\n",
    );
    add(
        "command-fails",
        "\n[[drill.checks]]\nname = \"workflow\"\ncommand = [\"./checks/fails.sh\"]\n\n[[drill.checks]]\nname = \"hangs\"\ncommand = [\"sh\", \"-c\", \"echo started; sleep 600\"]\ntimeout = \"1s\"\n",
    );
    for name in ["false-sql", "command-fails", "slow"] {
        install.backup(name);
    }

    let report = failed_drill(&install, "false-sql");
    let sql = check(&report, "sql: SELECT count(*) FROM orders");
    assert_eq!(sql["status"], "failed");
    assert_eq!(sql["detail"], "got 2000, expected = 0");
    // A query that fails is a failed check that shows the error.
    let broken = check(&report, "sql: SELECT count(*) FROM no_such_table");
    assert_eq!(broken["status"], "failed");
    assert!(
        broken["detail"].as_str().unwrap().contains("no such table"),
        "{broken}"
    );
    assert!(empty_dir(&scratch));

    let report = failed_drill(&install, "command-fails");
    let workflow = check(&report, "workflow");
    assert_eq!(workflow["detail"], "exited 1");
    assert!(workflow["output"]
        .as_str()
        .unwrap()
        .contains("order 17 not found"));
    assert!(report["error"]
        .as_str()
        .unwrap()
        .contains("check `workflow` failed"));
    // A command past its own timeout is killed and fails, its output kept.
    let hangs = check(&report, "hangs");
    assert_eq!(hangs["status"], "failed");
    assert!(
        hangs["detail"]
            .as_str()
            .unwrap()
            .contains("timed out after 1s"),
        "{hangs}"
    );
    assert!(hangs["output"].as_str().unwrap().contains("started"));
    assert!(empty_dir(&scratch));

    let report = failed_drill(&install, "slow");
    assert!(
        statuses(&report).iter().all(|(_, s)| s == "passed"),
        "the checks passed: {report:#}"
    );
    assert_eq!(report["rto_breached"], true);
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("RTO objective breached"),
        "{report:#}"
    );
    assert!(empty_dir(&scratch));
    let status = install.json(&["status"]);
    let slow = status
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["policy"] == "slow")
        .unwrap();
    assert_eq!(slow["rto_breached"], true);
    assert_eq!(
        slow["pending_signoffs"],
        serde_json::json!([]),
        "a failed drill awaits no sign-off"
    );

    // A scratch server that does not answer.
    let db = PgDb::create("backstop_e2e_drill_unreachable");
    db.seed(&fixture("databases/postgres.sql"));
    install.env.push(("ORDERS_PG_URL".into(), db.url()));
    install.env.push((
        "SCRATCH_PG_URL".into(),
        "postgres://postgres:hunter2@127.0.0.1:1/postgres".into(),
    ));
    install.policy(
        "pg",
        "[source]\nkind = \"postgres\"\nurl_env = \"ORDERS_PG_URL\"\n[drill]\ntarget = { kind = \"postgres\", url_env = \"SCRATCH_PG_URL\" }\n",
    );
    install.backup("pg");
    let out = install.run(&["drill", "pg"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAILED")
            && stdout.contains("cannot connect to postgres://postgres:***@127.0.0.1:1"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("hunter2") && !String::from_utf8_lossy(&out.stderr).contains("hunter2")
    );
}

#[test]
fn a_drill_stopped_by_sigterm_is_recorded_cancelled_and_leaves_no_scratch_target() {
    let install = Install::local();
    backstop_testkit::db::sqlite_seed(
        &install.path("orders.sqlite"),
        &fixture("databases/sqlite.sql"),
    );
    let scratch = install.path("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    script(
        &install,
        "checks/slow.sh",
        "echo started > \"$BACKSTOP_SCRATCH_DIR/../../started\"\nsleep 3123\necho never",
    );
    install.policy(
        "orders",
        "[source]\nkind = \"sqlite\"\npath = \"./orders.sqlite\"\n[drill]\ntarget = { kind = \"sqlite\", path = \"./scratch\" }\n[[drill.checks]]\ncommand = [\"./checks/slow.sh\"]\n",
    );
    install.backup("orders");
    let drill = install
        .command(&["drill", "orders"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !install.path("started").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the check never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        !empty_dir(&scratch),
        "the scratch target exists while the check runs"
    );
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(drill.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let out = drill.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cancelled"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(empty_dir(&scratch), "the scratch target was removed");
    let leftover = std::process::Command::new("pgrep")
        .args(["-f", "sleep 3123"])
        .output()
        .unwrap();
    assert!(
        leftover.stdout.is_empty(),
        "the check and its children were killed"
    );
    assert_eq!(
        install.json(&["drills"]),
        serde_json::json!([]),
        "no drill record"
    );
}

/// Issue 15: a drill whose restore ran out of room was reported as a failed `integrity`
/// check ("reading …: No space left on device") with an RTO of 0.0 s, "met". A restore
/// that cannot write fails the `restore` step with "writing PATH: …", the integrity check
/// is not run, and there is no RTO to meet. (The room runs out by a file size limit, which
/// any user can set: the restore's writes fail as they would on a full disk.)
#[test]
fn a_restore_that_cannot_write_fails_the_restore_step_and_has_no_rto() {
    let install = Install::local();
    std::fs::create_dir_all(install.path("src")).unwrap();
    std::fs::write(
        install.path("src/big.bin"),
        backstop_testkit::noise(4 * 1024 * 1024, 77),
    )
    .unwrap();
    std::fs::write(install.path("src/small.txt"), "fits").unwrap();
    install.files_policy("tight", &["./src"], "[objectives]\nrto = \"1h\"\n");
    install.backup("tight");

    // Writes past 1 MiB fail (EFBIG) instead of killing the process (SIGXFSZ ignored).
    let mut drill = Command::new("sh");
    drill
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 2048; exec \"$0\" \"$@\"")
        .arg(super::util::bin())
        .args(["--json", "drill", "tight"])
        .current_dir(install.path(""))
        .env_remove("BACKSTOP_CONFIG");
    let out = drill.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let restore = check(&report, "restore");
    assert_eq!(restore["status"], "failed", "{report:#}");
    let detail = restore["detail"].as_str().unwrap();
    assert!(
        detail.contains("writing ") && detail.contains("big.bin"),
        "{detail}"
    );
    assert!(!detail.contains("reading "), "{detail}");
    assert_eq!(
        check(&report, "integrity")["status"],
        "skipped",
        "{report:#}"
    );
    assert!(report["rto_seconds"].is_null(), "{report:#}");
    assert_eq!(report["rto_breached"], false);
    let listed = install.json(&["drills"]);
    assert!(listed[0]["rto_seconds"].is_null(), "{listed:#}");
}

/// Issue 15: `status` computed RPO exposure from any snapshot, the evidence only from those
/// no drill disproved, so the two disagreed for one policy. Now both measure from the newest
/// good snapshot: here the first one, as the second's only drill failed.
#[test]
fn status_and_evidence_agree_on_rpo_exposure() {
    let install = Install::local();
    std::fs::create_dir_all(install.path("site")).unwrap();
    std::fs::write(install.path("site/a.txt"), "a").unwrap();
    // Every drill of this policy fails its check.
    install.files_policy(
        "site",
        &["./site"],
        "[objectives]\nrpo = \"1h\"\n\n[[drill.checks]]\nfile = \"site/missing.txt\"\n",
    );
    let first = install.backup("site");
    std::thread::sleep(std::time::Duration::from_secs(4));
    std::fs::write(install.path("site/a.txt"), "b").unwrap();
    let second = install.backup("site")["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let drill = install.run(&["--json", "drill", "site", "--snapshot", &second]);
    assert_eq!(drill.status.code(), Some(1), "the drill fails its check");

    let status = install.json(&["status"]);
    let exposure = status[0]["rpo_exposure_seconds"].as_u64().unwrap();
    let to = jiff::Timestamp::now();
    let out = install.path("evidence");
    let today = to.strftime("%Y-%m-%d").to_string();
    install.ok(&[
        "evidence",
        "export",
        "--from",
        &today,
        "--to",
        &to.to_string(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let evidence: Value =
        serde_json::from_slice(&std::fs::read(out.join("evidence.json")).unwrap()).unwrap();
    let worst = &evidence["policies"][0]["rpo"]["worst"];
    let first_point: jiff::Timestamp = install.json(&["snapshots", "site"])[0]["data_point"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        worst["since"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap(),
        first_point,
        "the evidence measures from the first snapshot: {worst}"
    );
    let evidence_exposure = worst["exposure"]["secs"].as_u64().unwrap();
    assert!(
        exposure >= 4 && evidence_exposure.abs_diff(exposure) <= 2,
        "status {exposure}s, evidence {evidence_exposure}s (first snapshot {first:?})"
    );
}
