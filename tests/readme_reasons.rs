//! Every reason the operator can write is explained in the README's troubleshooting table.

use httpsdelivery_operator::api::Reason;

#[test]
fn every_reason_is_in_the_troubleshooting_table() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = readme
        .split("## Troubleshooting")
        .nth(1)
        .expect("a Troubleshooting section")
        .split("\n## ")
        .next()
        .unwrap_or_default();
    let missing: Vec<&str> = Reason::ALL
        .iter()
        .map(|r| r.as_str())
        .filter(|r| !table.contains(&format!("`{r}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "reasons missing from the README's troubleshooting table: {missing:?}"
    );
}
