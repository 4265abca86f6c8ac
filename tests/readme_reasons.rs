//! Every reason the operator can write is explained in the README's troubleshooting table, and
//! its first row there carries the anchor the alerts' `runbook_url`s point at.

use httpsdelivery_operator::api::Reason;

/// The README's "Troubleshooting" section, up to the next section.
fn troubleshooting_table() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    readme
        .split("## Troubleshooting")
        .nth(1)
        .expect("a Troubleshooting section")
        .split("\n## ")
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn every_reason_is_in_the_troubleshooting_table() {
    let table = troubleshooting_table();
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

/// Whether the reason cell (the second) of the table row `line` names `reason`, with the
/// reason's anchor before it when `anchor` is set.
fn names(line: &str, reason: &str, anchor: Option<&str>) -> bool {
    let Some(cell) = line.split('|').nth(2) else {
        return false;
    };
    match anchor {
        None => cell.contains(&format!("`{reason}`")),
        Some(anchor) => cell.contains(&format!("<a id=\"{anchor}\"></a>`{reason}`")),
    }
}

/// Every reason's first row in the table carries `<a id="reason-<lower case>">`, once in the
/// README: the anchor `runbook_url` is built with (`#reason-{{ ... | toLower }}`).
#[test]
fn every_reason_has_its_runbook_anchor_on_its_first_row() {
    let table = troubleshooting_table();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| ")).collect();
    let mut wrong = Vec::new();
    for reason in Reason::ALL.iter().map(|r| r.as_str()) {
        let anchor = format!("reason-{}", reason.to_lowercase());
        let first = rows.iter().find(|l| names(l, reason, None));
        let anchored = first.is_some_and(|l| names(l, reason, Some(&anchor)));
        let once = readme.matches(&format!("<a id=\"{anchor}\">")).count() == 1;
        if !(anchored && once) {
            wrong.push(anchor);
        }
    }
    assert!(
        wrong.is_empty(),
        "anchors missing (or not once, on the reason's first row of the troubleshooting table): {wrong:?}"
    );
}

#[test]
fn an_anchor_counts_only_before_the_reason_in_the_reason_cell() {
    let row =
        "| DnsConfigured | <a id=\"reason-nxdomain\"></a>`NxDomain` | False | see `ZoneApex` |";
    assert!(names(row, "NxDomain", Some("reason-nxdomain")));
    assert!(!names(row, "NxDomain", Some("reason-zoneapex")));
    assert!(!names(row, "ZoneApex", None), "the reason cell only");
    assert!(!names(
        "| DnsConfigured | `NxDomain` | False |",
        "NxDomain",
        Some("reason-nxdomain")
    ));
}
