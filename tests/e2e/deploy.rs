//! The Kubernetes manifests' configuration is a working one: the `backstop.toml` and the
//! policies in `deploy/kubernetes/configmap.yaml` pass `backstop policy check` as the pods
//! would read them (the schemas and the manifests' cross-references are checked by
//! `scripts/lint-deploy`).

use super::util::Install;

#[test]
fn the_kubernetes_configmaps_hold_a_valid_configuration() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/configmap.yaml"),
    )
    .unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap();
    let data_of = |name: &str| {
        let doc = docs
            .iter()
            .find(|d| d["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("configmap.yaml has no ConfigMap {name}"));
        doc["data"]
            .as_hash()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().unwrap().to_string(),
                    v.as_str().unwrap().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };

    let mut install = Install::local();
    // The pods' paths, moved into this installation.
    let root = install.dir.path().display().to_string();
    let config = data_of("backstop-config")
        .into_iter()
        .find(|(k, _)| k == "backstop.toml")
        .expect("backstop-config has backstop.toml")
        .1
        .replace("/etc/backstop/policies", &format!("{root}/policies"))
        .replace("/etc/backstop/secrets", &format!("{root}/secrets"))
        .replace("/var/lib/backstop", &format!("{root}/data"));
    std::fs::write(install.path("backstop.toml"), config).unwrap();
    let policies = data_of("backstop-policies");
    assert!(!policies.is_empty());
    for (file, body) in &policies {
        std::fs::write(install.path(&format!("policies/{file}")), body).unwrap();
    }
    // The Secret's environment.
    install.env = vec![
        (
            "ORDERS_PG_URL".into(),
            "postgres://backup@orders-db:5432/orders".into(),
        ),
        (
            "SCRATCH_PG_URL".into(),
            "postgres://drill@scratch-db:5432/postgres".into(),
        ),
    ];
    let out = install.ok(&["policy", "check"]);
    for (file, _) in &policies {
        let name = file.trim_end_matches(".toml");
        assert!(
            out.contains(name),
            "policy check does not name {name}: {out}"
        );
    }
}
