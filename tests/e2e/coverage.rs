//! Verification coverage (issue 18, item 5): `check --read-data-subset` rotates through the
//! repository, so that after ⌈100 / p⌉ checks every pack has been read; the catalog's record
//! of it reaches `check`, `status` and the evidence; an egress budget caps a check's reads.

use super::util::Install;

/// A repository of `files` files of 600 KiB of incompressible bytes, in packs of about
/// 1 MiB, backed up once by the policy `blobs`.
fn install_with_packs(files: u64, seed: u64) -> Install {
    let install = Install::new("url = \"file://./repo\"\npack_size_mib = 1");
    std::fs::create_dir_all(install.path("src")).unwrap();
    for i in 0..files {
        let bytes = backstop_testkit::noise(600 * 1024, seed + i);
        std::fs::write(install.path(&format!("src/{i}.bin")), bytes).unwrap();
    }
    install.files_policy("blobs", &["./src"], "");
    install.backup("blobs");
    install
}

fn coverage(install: &Install, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    let out = install.json(&all);
    assert_eq!(out["ok"], true, "{out:#}");
    out["repositories"][0].clone()
}

#[test]
fn a_rotating_subset_reads_every_pack_within_its_window_and_says_so() {
    let install = install_with_packs(20, 1);

    let mut never_read = Vec::new();
    let mut packs = 0;
    for _ in 0..4 {
        let repo = coverage(&install, &["--read-data-subset", "25%"]);
        packs = repo["coverage"]["packs"].as_u64().unwrap();
        assert!(packs >= 4, "the test needs several packs: {repo:#}");
        let read = repo["report"]["packs_read"].as_u64().unwrap();
        assert_eq!(
            read,
            packs.div_ceil(4),
            "a quarter of the packs per check: {repo:#}"
        );
        never_read.push(repo["coverage"]["packs_never_read"].as_u64().unwrap());
    }
    // Each check read packs the others had not: the count never read falls by a quarter of
    // the packs each time, to zero within four checks (a random pick would repeat packs).
    let quarter = packs.div_ceil(4);
    assert_eq!(
        never_read,
        (1..=4u64)
            .map(|n| packs.saturating_sub(n * quarter))
            .collect::<Vec<_>>(),
        "packs never read after each check"
    );
    let last = coverage(&install, &["--read-data-subset", "25%"]);
    let within = last["coverage"]["every_pack_read_within_seconds"]
        .as_u64()
        .expect("every pack read");
    assert!(within < 600, "{last:#}");
    let text = install.ok(&["check", "--read-data-subset", "25%"]);
    assert!(
        text.contains("coverage: every pack read within the last"),
        "{text}"
    );

    let status = install.json(&["status"]);
    let verification = &status[0]["verification"];
    assert_eq!(verification["repository"], "main");
    assert_eq!(verification["packs"], packs);
    assert_eq!(verification["packs_never_read"], 0);
    assert!(
        verification["every_pack_read_within_seconds"].is_u64(),
        "{status:#}"
    );
    let text = install.ok(&["status"]);
    assert!(
        text.contains("verified: every pack read within the last"),
        "{text}"
    );

    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    let evidence = install.evidence(&today, &today, "pack");
    let verification = &evidence["policies"][0]["verification"];
    assert_eq!(verification["packs_never_read"], 0, "{evidence:#}");
    let html = std::fs::read_to_string(install.path("pack/evidence.html")).unwrap();
    assert!(
        html.contains("Verification: every pack read within"),
        "{html}"
    );
}

#[test]
fn an_egress_budget_caps_the_bytes_a_check_reads() {
    let install = install_with_packs(12, 40);
    // Packs are about 1.5 MB here: 4000 KiB takes two or so, and leaves the rest.
    let repo = coverage(
        &install,
        &["--read-data-subset", "100%", "--egress-budget", "4000KiB"],
    );
    let report = &repo["report"];
    let packs = repo["coverage"]["packs"].as_u64().unwrap();
    let read = report["packs_read"].as_u64().unwrap();
    // Within the budget, except that the first pack is read even when it alone is larger.
    assert!(
        report["bytes_read"].as_u64().unwrap() <= 4000 * 1024 || read == 1,
        "{repo:#}"
    );
    assert!(read >= 1 && read < packs, "{repo:#}");
    assert_eq!(
        report["packs_read"].as_u64().unwrap() + report["packs_over_budget"].as_u64().unwrap(),
        packs
    );
    assert!(repo["coverage"]["packs_never_read"].as_u64().unwrap() > 0);
    let text = install.ok(&[
        "check",
        "--read-data-subset",
        "100%",
        "--egress-budget",
        "4000KiB",
    ]);
    assert!(
        text.contains("left for the next check by the egress budget"),
        "{text}"
    );
    // A budget needs a subset to cap.
    let err = install.fails(&["check", "--egress-budget", "1GiB"]);
    assert!(err.contains("--read-data-subset"), "{err}");
}
