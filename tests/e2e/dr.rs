//! Disaster recovery from nothing (issue 16): the example estate (the project's own
//! `policies/`: files, config, SQLite, PostgreSQL, MariaDB) is backed up, the data directory
//! is deleted, and `backstop dr` with only the configuration, the policies, the repository
//! and its key rebuilds the catalog, restores every asset into its scratch target, runs its
//! checks, and ends in one report and an evidence pack that verifies. No scratch database is
//! left behind.

use std::path::Path;

use backstop_testkit::db::{my_databases, pg_databases, MyDb, PgDb, MY_SERVER, PG_SERVER};

use super::util::Install;

fn project(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The example estate in a scratch installation: the project's policies and fixtures, one
/// encrypted repository `local` outside the data directory, and databases of its own.
fn example_estate(pg: &PgDb, my: &MyDb) -> Install {
    let mut install = Install::local();
    std::fs::write(
        install.path("backstop.toml"),
        "data_dir = \"./data\"\npolicies = \"./policies\"\n\n[repositories.local]\n\
         url = \"file://./repo\"\nkey_file = \"./estate.key\"\n",
    )
    .unwrap();
    for dir in ["policies", "fixtures"] {
        let status = std::process::Command::new("cp")
            .arg("-r")
            .arg(project(dir))
            .arg(install.path("."))
            .status()
            .unwrap();
        assert!(status.success());
    }
    pg.seed(&project("fixtures/databases/postgres.sql"));
    my.seed(&project("fixtures/databases/mysql.sql"));
    let sqlite = install.path("backstop-data/example/orders.sqlite");
    std::fs::create_dir_all(sqlite.parent().unwrap()).unwrap();
    backstop_testkit::db::sqlite_seed(&sqlite, &project("fixtures/databases/sqlite.sql"));
    install.env.extend([
        ("ORDERS_PG_URL".to_string(), pg.url()),
        (
            "SCRATCH_PG_URL".to_string(),
            format!("{PG_SERVER}/postgres"),
        ),
        ("ORDERS_MYSQL_URL".to_string(), my.url()),
        ("SCRATCH_MYSQL_URL".to_string(), format!("{MY_SERVER}/")),
    ]);
    install
}

#[test]
fn dr_from_an_empty_data_directory_recovers_the_example_estate_and_verifies_its_evidence() {
    let pg = PgDb::create("backstop_e2e_dr_pg");
    let my = MyDb::create("backstop_e2e_dr_my");
    let install = example_estate(&pg, &my);
    let policies = [
        "app-config",
        "app-files",
        "orders-mariadb",
        "orders-pg",
        "orders-sqlite",
    ];
    for policy in policies {
        install.backup(policy);
    }

    std::fs::remove_dir_all(install.path("data")).unwrap();
    let report = install.json(&["dr", "--out", "dr-evidence"]);
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["evidence_verified"], true);
    assert_eq!(report["snapshots"]["local"], 5, "{report}");
    let assets = report["assets"].as_array().unwrap();
    let names: Vec<&str> = assets
        .iter()
        .map(|a| a["policy"].as_str().unwrap())
        .collect();
    assert_eq!(names, policies);
    for asset in assets {
        assert_eq!(asset["status"], "recovered", "{asset}");
        assert_eq!(asset["repository"], "local");
        assert!(asset["rto_seconds"].as_f64().unwrap() > 0.0, "{asset}");
        assert!(asset["rpo_seconds"].as_f64().is_some(), "{asset}");
        assert!(asset["checks_passed"].as_u64().unwrap() >= 1, "{asset}");
        assert_eq!(asset["checks_failed"], 0);
    }
    let slowest = assets
        .iter()
        .map(|a| a["rto_seconds"].as_f64().unwrap())
        .fold(0.0, f64::max);
    let estate = report["estate_rto_seconds"].as_f64().unwrap();
    assert!(estate >= slowest, "the estate's RTO covers every asset's");
    assert!(report["estate_rpo_seconds"].as_f64().is_some());

    // The pack verifies on its own too, and holds the recovery's drills.
    install.ok(&["evidence", "verify", "dr-evidence"]);
    let evidence: serde_json::Value =
        serde_json::from_slice(&std::fs::read(install.path("dr-evidence/evidence.json")).unwrap())
            .unwrap();
    for policy in evidence["policies"].as_array().unwrap() {
        assert_eq!(policy["drills"].as_array().unwrap().len(), 1, "{policy}");
        assert_eq!(policy["drills"][0]["status"], "passed");
    }
    assert_eq!(evidence["audit"]["status"], "intact");
    install.ok(&["audit", "verify"]);
    // Every scratch database was removed.
    for asset in assets {
        let shown = install.json(&["drill", "show", asset["drill_id"].as_str().unwrap()]);
        let scratch = shown["scratch"].as_str().unwrap();
        match asset["source_kind"].as_str().unwrap() {
            "postgres" => assert!(pg_databases(scratch).is_empty(), "{scratch} left behind"),
            "mysql" => assert!(my_databases(scratch).is_empty(), "{scratch} left behind"),
            _ => {}
        }
    }

    // Text output: one report, every asset and the estate.
    let text = install.ok(&["dr", "--out", "dr-again", "--policy", "app-config"]);
    assert!(
        text.contains("app-config") && text.contains("recovered") && text.contains("estate: RTO"),
        "{text}"
    );
    assert!(text.contains("written and verified"), "{text}");

    // Targets the operator names: the assets are recovered there, checked, and kept.
    let mut install = install;
    install
        .env
        .push(("RECOVERY_PG_URL".into(), format!("{PG_SERVER}/postgres")));
    let kept = install.json(&[
        "dr",
        "--out",
        "dr-kept",
        "--policy",
        "app-files",
        "--policy",
        "orders-pg",
        "--target",
        "app-files=recovered",
        "--target",
        "orders-pg=env:RECOVERY_PG_URL",
    ]);
    assert_eq!(kept["ok"], true, "{kept:#}");
    let files = kept["assets"][0]["kept_as"].as_str().unwrap();
    // The policy leaves out *.tmp and logs/; the rest is there, byte for byte.
    for file in [
        "customers.csv",
        "home.html",
        "static/index.html",
        "static/site.css",
    ] {
        assert_eq!(
            std::fs::read(install.path(&format!("recovered/{files}/app/{file}"))).unwrap(),
            std::fs::read(project(&format!("fixtures/files/app/{file}"))).unwrap(),
            "{file}"
        );
    }
    let database = kept["assets"][1]["kept_as"].as_str().unwrap().to_string();
    let recovered = PgDb::adopt(&database);
    assert_eq!(
        recovered.sql("SELECT count(*) FROM orders"),
        pg.sql("SELECT count(*) FROM orders"),
        "the recovered database holds the orders"
    );
    drop(recovered);
    let refused = install.fails(&[
        "dr",
        "--out",
        "dr-refused",
        "--target",
        "orders-pg=/srv/somewhere",
    ]);
    assert!(refused.contains("env:VAR"), "{refused}");
}
