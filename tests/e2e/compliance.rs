//! Compliance (issue 18, item 6): one policy that meets its `[requirements]` and one that
//! does not, each reported correctly by `backstop compliance` and in the evidence.

use backstop_testkit::S3Server;

use super::util::Install;

fn by_requirement(policy: &serde_json::Value) -> std::collections::BTreeMap<String, bool> {
    policy["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["requirement"].as_str().unwrap().to_string(),
                r["met"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn compliance_reports_a_policy_that_meets_its_requirements_and_one_that_does_not() {
    let server = S3Server::start(&["compliance-e2e"]);
    let mut install = Install::new(&format!(
        "url = \"file://./repo\"\n\n\
         [repositories.offsite]\nurl = \"s3://compliance-e2e/copies\"\nendpoint = \"{}\"\n\
         region = \"us-east-1\"\npath_style = true",
        server.endpoint()
    ));
    install.use_s3(server.env());
    std::fs::create_dir_all(install.path("src")).unwrap();
    std::fs::write(install.path("src/a.txt"), "kept").unwrap();
    let requirements = "frequency = \"1h\"\nretention = \"90d\"\noffsite = true\ndrill_every = \"30d\"\ncopies = 2\n";
    install.files_policy(
        "kept",
        &["./src"],
        &format!(
            "copies = [\"offsite\"]\n[retention]\ndaily = 7\nweekly = 4\nmonthly = 12\n[requirements]\n{requirements}"
        ),
    );
    // The same requirements, held to a policy that backs up rarely (a second, here), keeps a
    // week, stays on this machine and is never drilled.
    install.files_policy(
        "lapsed",
        &["./src"],
        "[retention]\ndaily = 7\n[requirements]\nfrequency = \"1s\"\nretention = \"90d\"\noffsite = true\ndrill_every = \"1s\"\ncopies = 2\n",
    );
    let backup = install.backup("kept");
    assert_eq!(backup["copies"][0]["repository"], "offsite", "{backup:#}");
    install.ok(&["drill", "kept"]);
    install.backup("lapsed");
    std::thread::sleep(std::time::Duration::from_millis(2100));

    let out = install.run(&["--json", "compliance"]);
    assert_eq!(out.status.code(), Some(1), "a requirement not met exits 1");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["met"], false);
    let policies = report["policies"].as_array().unwrap();
    let kept = policies.iter().find(|p| p["policy"] == "kept").unwrap();
    let lapsed = policies.iter().find(|p| p["policy"] == "lapsed").unwrap();
    assert_eq!(kept["met"], true, "{kept:#}");
    assert!(by_requirement(kept).values().all(|met| *met), "{kept:#}");
    assert_eq!(
        by_requirement(kept).keys().cloned().collect::<Vec<_>>(),
        ["copies", "drill_every", "frequency", "offsite", "retention"]
    );
    assert_eq!(lapsed["met"], false);
    assert!(
        by_requirement(lapsed).values().all(|met| !*met),
        "every requirement of lapsed is missed: {lapsed:#}"
    );
    let achieved = |p: &serde_json::Value, name: &str| -> String {
        p["requirements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["requirement"] == name)
            .unwrap()["achieved"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        achieved(lapsed, "copies").contains("held by 1 (main)"),
        "{lapsed:#}"
    );
    assert!(
        achieved(kept, "copies").contains("held by 2 (main, offsite)"),
        "{kept:#}"
    );
    assert!(
        achieved(lapsed, "retention").contains("about 7d"),
        "{lapsed:#}"
    );
    assert_eq!(
        lapsed["requirements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["requirement"] == "retention")
            .unwrap()["required"],
        "90d"
    );
    assert!(
        achieved(lapsed, "offsite").starts_with("no off-site"),
        "{lapsed:#}"
    );

    // One policy alone: met, exit 0; the human report says so.
    let met = install.json(&["compliance", "--policy", "kept"]);
    assert_eq!(met["met"], true);
    let text = install.ok(&["compliance", "--policy", "kept"]);
    assert!(text.contains("kept: every requirement met"), "{text}");
    let text = String::from_utf8(install.run(&["compliance"]).stdout).unwrap();
    assert!(text.contains("lapsed: NOT MET"), "{text}");

    // The evidence carries the same verdicts, in JSON and on the page.
    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    let evidence = install.evidence(&today, &today, "pack");
    let section = |name: &str| {
        evidence["policies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["policy"] == name)
            .unwrap()["compliance"]
            .clone()
    };
    assert_eq!(section("kept")["met"], true);
    assert_eq!(section("lapsed")["met"], false);
    let html = std::fs::read_to_string(install.path("pack/evidence.html")).unwrap();
    assert!(html.contains("<h3>Requirements</h3>") && html.contains("not met"));
}
