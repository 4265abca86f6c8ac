//! The committed CRD YAML is exactly what the Rust types generate.

use httpsdelivery_operator::api::HttpsDelivery;
use kube::CustomResourceExt;
use std::process::Command;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/httpsdelivery.yaml");

fn committed() -> String {
    std::fs::read_to_string(COMMITTED).expect("crds/httpsdelivery.yaml is readable")
}

/// Each account CRD file is byte for byte what `crd KIND` prints.
#[test]
fn committed_account_crds_are_what_the_crd_command_prints() {
    for kind in ["cdnaccount", "clustercdnaccount"] {
        let out = Command::new(env!("CARGO_BIN_EXE_httpsdelivery-operator"))
            .args(["crd", kind])
            .output()
            .expect("run `httpsdelivery-operator crd KIND`");
        testkit::process::assert_success("httpsdelivery-operator crd KIND", &out);
        let path = format!("{}/crds/{kind}.yaml", env!("CARGO_MANIFEST_DIR"));
        let committed = std::fs::read(&path).expect("the committed CRD");
        assert!(
            committed == out.stdout,
            "crds/{kind}.yaml is out of date with src/api; run `make crds` and commit the result"
        );
    }
    let unknown = Command::new(env!("CARGO_BIN_EXE_httpsdelivery-operator"))
        .args(["crd", "nosuchkind"])
        .output()
        .expect("run crd with an unknown kind");
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nosuchkind"));
}

/// Byte for byte what `make crds` writes: the `crd` subcommand's output.
#[test]
fn committed_crd_is_what_the_crd_command_prints() {
    let out = Command::new(env!("CARGO_BIN_EXE_httpsdelivery-operator"))
        .arg("crd")
        .output()
        .expect("run `httpsdelivery-operator crd`");
    testkit::process::assert_success("httpsdelivery-operator crd", &out);
    assert!(
        committed().as_bytes() == out.stdout,
        "crds/httpsdelivery.yaml is out of date with src/api; run `make crds` and commit the result"
    );
}

/// Read back, the committed YAML is the CRD of the Rust types, whatever wrote it.
#[test]
fn committed_crd_matches_the_rust_types() {
    let committed: serde_json::Value =
        serde_saphyr::from_str(&committed()).expect("crds/httpsdelivery.yaml is YAML");
    let generated = serde_json::to_value(HttpsDelivery::crd()).expect("the CRD serializes");
    assert!(
        committed == generated,
        "crds/httpsdelivery.yaml differs from the Rust types; run `make crds` and commit the result"
    );
}

#[test]
fn crd_has_the_contract_names() {
    let crd = HttpsDelivery::crd();
    assert_eq!(crd.spec.group, "httpsdelivery.dev");
    assert_eq!(crd.spec.names.plural, "httpsdeliveries");
    assert_eq!(
        crd.spec.names.short_names.as_deref(),
        Some(&["hd".to_string()][..])
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    assert!(
        v.subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some(),
        "status subresource"
    );
    let columns: Vec<&str> = v
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Hostname", "Ready", "Reason", "Expires", "DNS", "HTTP", "Age"
        ]
    );
    // DnsHealthy's and EdgeHttpOk's reasons only in `kubectl get hd -o wide`.
    let wide: Vec<&str> = v
        .additional_printer_columns
        .iter()
        .flatten()
        .filter(|c| c.priority == Some(1))
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(wide, ["DNS", "HTTP"]);
}

/// `kubectl explain` documents every field of every spec: each property has a description.
#[test]
fn every_spec_field_has_a_description() {
    fn walk(node: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
        for (key, field) in node["properties"].as_object().into_iter().flatten() {
            let path = format!("{path}.{key}");
            if field.get("description").is_none() {
                missing.push(path.clone());
            }
            walk(field, &path, missing);
            walk(&field["items"], &format!("{path}[]"), missing);
        }
    }
    for kind in ["httpsdelivery", "cdnaccount", "clustercdnaccount"] {
        let crd = httpsdelivery_operator::api::crd_of(kind).expect("a CRD");
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).expect("schema");
        let mut missing = Vec::new();
        walk(
            &schema["openAPIV3Schema"]["properties"]["spec"],
            "spec",
            &mut missing,
        );
        assert!(
            missing.is_empty(),
            "{kind}: fields without a description: {missing:?}"
        );
    }
}
