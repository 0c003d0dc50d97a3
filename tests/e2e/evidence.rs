//! Evidence packs through the binary: exported for a period, verified offline against the
//! installation's key, a changed byte named, and the page rendered in headless Chromium
//! with its charts on screen.

use std::path::Path;

use super::util::Install;

fn installation() -> Install {
    let install = Install::local();
    std::fs::write(
        install.path("backstop.toml"),
        "data_dir = \"./data\"\npolicies = \"./policies\"\nprincipal = \"owner@example.com\"\n\n[repositories.main]\nurl = \"file://./repo\"\n",
    )
    .unwrap();
    backstop_testkit::db::sqlite_seed(
        &install.path("orders.sqlite"),
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/databases/sqlite.sql"),
    );
    install.policy(
        "orders",
        "[source]\nkind = \"sqlite\"\npath = \"./orders.sqlite\"\n\n[[drill.checks]]\nsql = \"SELECT count(*) FROM orders\"\nexpect = \">= 1\"\n\n[owners]\nrecovery = \"owner@example.com\"\n",
    );
    install
}

#[test]
fn an_evidence_pack_verifies_offline_and_a_changed_byte_is_named() {
    let install = installation();
    let from = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(5);
    install.backup("orders");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    install.backup("orders");
    let drill = install.json(&["drill", "orders"]);
    let id = drill["drill_id"].as_str().unwrap();
    install.ok(&["signoff", id, "--comment", "counts reviewed"]);

    let to = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60);
    let out = install.path("pack");
    let exported = install.json(&[
        "evidence",
        "export",
        "--from",
        &from.to_string(),
        "--to",
        &to.to_string(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(exported["audit"], "intact");
    let key = install.ok(&["evidence", "public-key"]);
    std::fs::write(install.path("installation.pub"), &key).unwrap();

    let evidence: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("evidence.json")).unwrap()).unwrap();
    assert_eq!(evidence["schema"], "backstop.evidence/v1");
    let orders = &evidence["policies"][0];
    assert_eq!(orders["policy"], "orders");
    assert_eq!(orders["backups"]["runs"]["succeeded"], 2);
    assert_eq!(orders["backups"]["snapshots"], 2);
    assert_eq!(orders["drills"][0]["drill_id"], id);
    assert_eq!(orders["drills"][0]["status"], "passed");
    assert_eq!(
        orders["drills"][0]["signoff"]["principal"],
        "owner@example.com"
    );
    assert!(orders["rpo"]["series"].as_array().unwrap().len() >= 4);
    assert_eq!(evidence["audit"]["status"], "intact");
    let html = std::fs::read_to_string(out.join("evidence.html")).unwrap();
    assert!(html.contains("<svg class=\"rpo-chart\"") && html.contains("<polyline"));
    // Self-contained: nothing is loaded from elsewhere (the SVG namespace is a name, not a
    // fetch, and is the only URL allowed).
    let lower = html.to_ascii_lowercase();
    for reference in ["src=", "href=", "@import", "url(", "<link", "<script src"] {
        for (at, _) in lower.match_indices(reference) {
            let rest = &lower[at + reference.len()..];
            let rest = rest.trim_start_matches(['"', '\'', ' ']);
            assert!(
                !rest.starts_with("http") && !rest.starts_with("//"),
                "an external asset at {reference}: {}",
                &lower[at..(at + 80).min(lower.len())]
            );
        }
    }
    let urls = lower.matches("http://").count() + lower.matches("https://").count();
    let namespaces = lower.matches("http://www.w3.org/2000/svg").count();
    assert_eq!(urls, namespaces, "no URL but the SVG namespace");

    // Offline: only the pack and the key, in a directory with no configuration.
    let offline = tempfile::tempdir().unwrap();
    let verify = |dir: &Path| {
        std::process::Command::new(super::util::bin())
            .current_dir(offline.path())
            .env_remove("BACKSTOP_CONFIG")
            .args(["evidence", "verify"])
            .arg(dir)
            .arg("--public-key")
            .arg(install.path("installation.pub"))
            .output()
            .unwrap()
    };
    let ok = verify(&out);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("verified: 2 file(s)"));

    // The exported pack is itself an audited event.
    let events = install.json(&["audit", "list"]);
    assert!(events
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "evidence.exported"));

    let mut bytes = std::fs::read(out.join("evidence.json")).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(out.join("evidence.json"), bytes).unwrap();
    let bad = verify(&out);
    assert_eq!(bad.status.code(), Some(1));
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(
        text.contains("evidence.json: content does not match its SHA-256"),
        "{text}"
    );

    // A manifest rewritten to match the changed file no longer matches its signature.
    let manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    std::fs::write(
        out.join("manifest.json"),
        manifest.replacen("\"evidence.json\": \"", "\"evidence.json\": \"0", 1),
    )
    .unwrap();
    let text = String::from_utf8_lossy(&verify(&out).stdout).into_owned();
    assert!(text.contains("manifest.json: the signature"), "{text}");
}

/// Pixels within a small distance of `rgb`.
pub fn count_color(png_path: &Path, rgb: [u8; 3]) -> usize {
    let decoder = png::Decoder::new(std::fs::File::open(png_path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    buf[..info.buffer_size()]
        .chunks(channels)
        .filter(|px| {
            px.len() >= 3
                && px[..3]
                    .iter()
                    .zip(rgb)
                    .all(|(a, b)| (i16::from(*a) - i16::from(b)).abs() <= 24)
        })
        .count()
}

#[test]
fn the_evidence_page_renders_its_charts_in_headless_chromium() {
    let install = installation();
    let from = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(2);
    for _ in 0..3 {
        install.backup("orders");
        std::thread::sleep(std::time::Duration::from_millis(700));
    }
    install.json(&["drill", "orders"]);
    let out = install.path("pack");
    install.ok(&[
        "evidence",
        "export",
        "--from",
        &from.to_string(),
        "--to",
        &(jiff::Timestamp::now() + jiff::SignedDuration::from_secs(30)).to_string(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let shot = install.path("evidence.png");
    super::util::screenshot(
        &format!("file://{}", out.join("evidence.html").display()),
        &shot,
    );
    // The RPO line (#1d4ed8) and the passed drill's RTO bar (#16a34a) are on screen.
    let line = count_color(&shot, [0x1d, 0x4e, 0xd8]);
    let bar = count_color(&shot, [0x16, 0xa3, 0x4a]);
    assert!(
        line > 100,
        "the RPO exposure line is not in the screenshot ({line} pixels)"
    );
    assert!(
        bar > 100,
        "the RTO bar is not in the screenshot ({bar} pixels)"
    );
}
