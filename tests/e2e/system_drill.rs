//! Full-system drills (issue 18, item 2): files + config + PostgreSQL restored together at a
//! common point, each member checked on its own, then a workflow script that reads the
//! restored database and the restored files; one system RTO and each member's; a failing
//! member fails the system drill; the system's recovery owner signs it off.

use backstop_testkit::db::{PgDb, PG_SERVER};

use super::util::Install;

const WORKFLOW: &str = r#"#!/bin/sh
# The shop's smoke test: its page, its configuration and its orders, all restored.
set -e
grep -q "Shop" "$BACKSTOP_APP_FILES_SCRATCH_DIR/www/index.html"
grep -q "port = 8080" "$BACKSTOP_APP_CONFIG_SCRATCH_DIR/etc/app.toml"
orders=$(psql "$BACKSTOP_ORDERS_PG_SCRATCH_URL" -Atc "SELECT count(*) FROM orders")
test "$orders" -gt 0
echo "page, configuration and $orders orders restored for $BACKSTOP_SYSTEM"
"#;

fn system_install(db: &PgDb) -> Install {
    let mut install = Install::local();
    install.env.push(("ORDERS_PG_URL".into(), db.url()));
    install
        .env
        .push(("SCRATCH_PG_URL".into(), format!("{PG_SERVER}/postgres")));
    for (path, body) in [
        ("src/www/index.html", "<h1>Shop</h1>"),
        ("src/etc/app.toml", "port = 8080\n"),
    ] {
        let path = install.path(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    install.files_policy("app-files", &["./src/www"], "");
    std::fs::write(
        install.path("policies/app-config.toml"),
        "name = \"app-config\"\nrepository = \"main\"\n[source]\nkind = \"config\"\npaths = [\"./src/etc\"]\n\n\
         [[drill.checks]]\nfile = \"etc/app.toml\"\nparses_as = \"toml\"\n",
    )
    .unwrap();
    install.policy(
        "orders-pg",
        "[source]\nkind = \"postgres\"\nurl_env = \"ORDERS_PG_URL\"\n\n\
         [drill]\ntarget = { kind = \"postgres\", url_env = \"SCRATCH_PG_URL\" }\n",
    );
    std::fs::create_dir_all(install.path("checks")).unwrap();
    let script = install.path("checks/shop.sh");
    std::fs::write(&script, WORKFLOW).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(install.path("systems")).unwrap();
    std::fs::write(
        install.path("systems/shop.toml"),
        "name = \"shop\"\nmembers = [\"app-files\", \"app-config\", \"orders-pg\"]\n\n\
         [objectives]\nrto = \"10m\"\n\n[[drill.checks]]\nname = \"shop workflow\"\ncommand = [\"./checks/shop.sh\"]\n\n\
         [owners]\nrecovery = \"cto@example.com\"\n",
    )
    .unwrap();
    install
}

#[test]
fn a_system_drill_restores_every_member_and_checks_them_together() {
    let db = PgDb::create("backstop_e2e_system");
    db.seed(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/databases/postgres.sql"),
    );
    let install = system_install(&db);
    for policy in ["app-files", "app-config", "orders-pg"] {
        install.backup(policy);
    }

    let report = install.json(&["drill", "--system", "shop"]);
    assert_eq!(report["status"], "passed", "{report:#}");
    let members = report["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    for m in members {
        assert_eq!(m["drill"]["status"], "passed", "{m:#}");
        assert!(m["drill"]["rto_seconds"].as_f64().unwrap() > 0.0, "{m:#}");
    }
    let system_rto = report["rto_seconds"].as_f64().unwrap();
    let slowest_member = members
        .iter()
        .map(|m| m["drill"]["rto_seconds"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(
        system_rto >= slowest_member,
        "the system's RTO covers its members'"
    );
    let workflow = &report["checks"][0];
    assert_eq!(workflow["status"], "passed", "{workflow:#}");
    assert!(
        workflow["output"]
            .as_str()
            .unwrap()
            .contains("page, configuration and"),
        "{workflow:#}"
    );
    // The RPO is the oldest member's: app-files was backed up first.
    let oldest = members
        .iter()
        .map(|m| {
            m["drill"]["data_point"]
                .as_str()
                .unwrap()
                .parse::<jiff::Timestamp>()
                .unwrap()
        })
        .min()
        .unwrap();
    let started: jiff::Timestamp = report["started_at"].as_str().unwrap().parse().unwrap();
    let rpo = report["rpo_seconds"].as_f64().unwrap();
    assert!(
        (rpo - started.duration_since(oldest).as_secs_f64()).abs() < 0.01,
        "{report:#}"
    );
    // Nothing left behind: the scratch database was dropped.
    let scratch = members[2]["drill"]["scratch"].as_str().unwrap();
    assert!(backstop_testkit::db::pg_databases(scratch).is_empty());

    // Signed off by the system's recovery owner, and only by them.
    let id = report["drill_id"].as_str().unwrap();
    let mut other = install.command(&["signoff", id, "--comment", "looked fine"]);
    let refused = other
        .env("BACKSTOP_PRINCIPAL", "dba@example.com")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("only the recovery owner of system `shop`"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    install.ok_as(
        "cto@example.com",
        &[
            "signoff",
            id,
            "--comment",
            "quarterly full restore reviewed",
        ],
    );

    // A failing member fails the system drill (its target was restored, so the system's
    // checks still ran, and say what they saw).
    std::fs::write(
        install.path("policies/app-config.toml"),
        "name = \"app-config\"\nrepository = \"main\"\n[source]\nkind = \"config\"\npaths = [\"./src/etc\"]\n\n\
         [[drill.checks]]\nfile = \"etc/missing.toml\"\n",
    )
    .unwrap();
    let out = install.run(&["--json", "drill", "--system", "shop"]);
    assert_eq!(out.status.code(), Some(1));
    let failed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("member `app-config` failed"),
        "{failed:#}"
    );
    assert_eq!(failed["checks"][0]["status"], "passed", "{failed:#}");
    let text = String::from_utf8(install.run(&["drill", "--system", "shop"]).stdout).unwrap();
    assert!(
        text.contains("system drill") && text.contains("FAILED"),
        "{text}"
    );
    assert!(text.contains("member orders-pg: passed"), "{text}");

    // The evidence carries the system drills: the system's RTO, its members, its sign-off.
    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    let evidence = install.evidence(&today, &today, "pack");
    let systems = evidence["systems"]
        .as_array()
        .expect("systems in the evidence");
    let signed = systems.iter().find(|s| s["drill_id"] == id).unwrap();
    assert_eq!(signed["status"], "passed");
    assert_eq!(signed["members"].as_array().unwrap().len(), 3);
    assert_eq!(signed["signoff"]["principal"], "cto@example.com");
    assert!(systems.iter().any(|s| s["status"] == "failed"));
    let html = std::fs::read_to_string(install.path("pack/evidence.html")).unwrap();
    assert!(html.contains("<h2>System shop</h2>"), "{html}");

    // On a schedule: the daemon runs the system drill as one job.
    std::fs::write(
        install.path("policies/app-config.toml"),
        "name = \"app-config\"\nrepository = \"main\"\n[source]\nkind = \"config\"\npaths = [\"./src/etc\"]\n",
    )
    .unwrap();
    let port = super::util::free_port();
    std::fs::write(
        install.path("backstop.toml"),
        format!("data_dir = \"./data\"\npolicies = \"./policies\"\n\n[repositories.main]\nurl = \"file://./repo\"\n\n[api]\nlisten = \"127.0.0.1:{port}\"\n\n[daemon]\njitter = \"0s\"\n"),
    )
    .unwrap();
    let system = std::fs::read_to_string(install.path("systems/shop.toml")).unwrap();
    std::fs::write(
        install.path("systems/shop.toml"),
        system.replace(
            "[objectives]",
            "[schedule]\ndrill = \"*/3 * * * * *\"\n\n[objectives]",
        ),
    )
    .unwrap();
    let count = || {
        super::daemon::catalog(
            &install,
            "SELECT count(*) FROM drills WHERE policy = 'system:shop' AND status = 'passed'",
        )
        .parse::<u32>()
        .unwrap_or(0)
    };
    let before = count();
    let daemon = install.daemon(Some("daemon.log"));
    super::daemon::wait_until(
        "a scheduled system drill",
        std::time::Duration::from_secs(30),
        || count() > before,
    );
    daemon.stop();
}

/// A system drill interrupted (Ctrl-C) while its check runs closes every member's run as
/// cancelled with it, rather than leaving them `running` until a reconciliation.
#[test]
fn an_interrupted_system_drill_cancels_its_members_runs() {
    backstop_testkit::require_tool("sqlite3");
    let install = Install::local();
    std::fs::create_dir_all(install.path("www")).unwrap();
    std::fs::write(install.path("www/index.html"), "<h1>Shop</h1>").unwrap();
    install.files_policy("site", &["./www"], "");
    install.files_policy("assets", &["./www"], "");
    let marker = format!("sleep {}", 4000 + std::process::id() % 997);
    let (program, seconds) = marker.split_once(' ').unwrap();
    std::fs::create_dir_all(install.path("systems")).unwrap();
    std::fs::write(
        install.path("systems/web.toml"),
        format!(
            "name = \"web\"\nmembers = [\"site\", \"assets\"]\n\n\
             [[drill.checks]]\nname = \"slow\"\ncommand = [\"{program}\", \"{seconds}\"]\n"
        ),
    )
    .unwrap();
    install.backup("site");
    install.backup("assets");
    let mut drill = install
        .command(&["drill", "--system", "web"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ended = super::util::interrupt_once_running(&mut drill, &marker);
    assert!(!ended.success(), "an interrupted drill");
    let runs = super::daemon::catalog(
        &install,
        "SELECT policy, status FROM runs WHERE kind = 'drill' ORDER BY policy",
    );
    assert_eq!(
        runs,
        "assets|cancelled\nsite|cancelled\nsystem:web|cancelled"
    );
    assert!(
        super::util::processes_with(&marker).is_empty(),
        "the check was stopped with the drill"
    );
}
