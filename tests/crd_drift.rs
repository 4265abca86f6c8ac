//! The committed CRD YAML is exactly what the Rust types generate.

use httpsdelivery_operator::api::HttpsDelivery;
use kube::CustomResourceExt;

#[test]
fn committed_crd_matches_the_rust_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/httpsdelivery.yaml");
    let committed = std::fs::read_to_string(path).expect("crds/httpsdelivery.yaml is readable");
    let generated = serde_yaml::to_string(&HttpsDelivery::crd()).expect("CRD renders");
    assert!(
        committed == generated,
        "crds/httpsdelivery.yaml is out of date with src/api; run `make crds` and commit the result"
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
    assert_eq!(columns, ["Hostname", "Ready", "Reason", "Expires", "Age"]);
}
