//! Output formats of `check`: a table for a person, JSON and YAML for machines.

use crate::api::{CertificateEvidence, ConditionStatus, ConditionType, DnsEvidence, Reason};
use crate::checks::inventory::{self, CertificateUse};
use crate::cli::Checked;
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    deliveries: Vec<DeliveryReport<'a>>,
    certificates: Vec<CertificateUse>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryReport<'a> {
    namespace: &'a str,
    name: &'a str,
    hostname: &'a str,
    ready: bool,
    conditions: Vec<ConditionReport<'a>>,
    certificate: serde_json::Value,
    dns: &'a DnsEvidence,
}

#[derive(Serialize)]
struct ConditionReport<'a> {
    #[serde(rename = "type")]
    type_: &'static str,
    status: &'static str,
    reason: &'static str,
    message: &'a str,
}

fn report(results: &[Checked]) -> Report<'_> {
    let deliveries = results
        .iter()
        .map(|r| DeliveryReport {
            namespace: &r.delivery.namespace,
            name: &r.delivery.name,
            hostname: &r.delivery.delivery.spec.hostname,
            ready: r.evaluation.ready().status == ConditionStatus::True,
            conditions: r
                .evaluation
                .verdicts
                .iter()
                .map(|v| ConditionReport {
                    type_: v.type_.as_str(),
                    status: v.status.as_str(),
                    reason: v.reason.as_str(),
                    message: &v.message,
                })
                .collect(),
            certificate: r
                .evaluation
                .certificate
                .as_ref()
                .and_then(|c| serde_json::to_value(c).ok())
                .unwrap_or_else(|| serde_json::json!({})),
            dns: &r.evaluation.dns,
        })
        .collect();
    Report {
        deliveries,
        certificates: certificate_inventory(results),
    }
}

/// Which hostnames and target CNAMEs belong to each certificate.
pub fn certificate_inventory(results: &[Checked]) -> Vec<CertificateUse> {
    inventory::certificates(results.iter().filter_map(|r| {
        let c: &CertificateEvidence = r.evaluation.certificate.as_ref()?;
        let spec = &r.delivery.delivery.spec;
        Some((
            c.sha256_fingerprint.as_str(),
            c.dns_names.as_slice(),
            spec.hostname.as_str(),
            spec.certificate.target_cname.as_str(),
        ))
    }))
}

pub fn json(results: &[Checked]) -> String {
    let mut s = serde_json::to_string_pretty(&report(results))
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

pub fn yaml(results: &[Checked]) -> String {
    // Long strings stay on one line (serde-saphyr folds them at 80 columns by default), so a
    // message can be found with grep; multi-line strings are literal blocks.
    let options = serde_saphyr::ser_options! { folded_wrap_chars: usize::MAX };
    serde_saphyr::to_string_with_options(&report(results), options)
        .unwrap_or_else(|e| format!("error: {e}\n"))
}

/// One line per delivery with its verdict, then for each delivery that is not ready the failing
/// steps, what was seen and the fix, then the certificate inventory.
pub fn table(results: &[Checked]) -> String {
    let mut out = summary_table(results);
    let not_ready: Vec<&Checked> = results
        .iter()
        .filter(|r| r.evaluation.ready().status != ConditionStatus::True)
        .collect();
    for r in &not_ready {
        out.push_str(&failing_steps(r));
    }
    out.push_str(&inventory_section(&certificate_inventory(results)));
    out.push_str(&format!(
        "\n{} deliveries: {} ready, {} not ready.\n",
        results.len(),
        results.len() - not_ready.len(),
        not_ready.len()
    ));
    out
}

/// NAMESPACE NAME HOSTNAME READY REASON, in aligned columns.
fn summary_table(results: &[Checked]) -> String {
    let header = ["NAMESPACE", "NAME", "HOSTNAME", "READY", "REASON"].map(str::to_string);
    let rows: Vec<[String; 5]> = results
        .iter()
        .map(|r| {
            let ready = r.evaluation.ready();
            [
                r.delivery.namespace.clone(),
                r.delivery.name.clone(),
                r.delivery.delivery.spec.hostname.clone(),
                ready.status.to_string(),
                ready.reason.to_string(),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    std::iter::once(&header)
        .chain(&rows)
        .map(|cells| {
            let line: String = cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}   "))
                .collect();
            line.trim_end().to_string() + "\n"
        })
        .collect()
}

/// The steps of one delivery that are not True: what was seen and the fix.
fn failing_steps(r: &Checked) -> String {
    let mut out = format!(
        "\n{}/{} ({}) is not ready:\n",
        r.delivery.namespace, r.delivery.name, r.delivery.delivery.spec.hostname
    );
    let steps = r
        .evaluation
        .verdicts
        .iter()
        .filter(|v| v.type_ != ConditionType::Ready && v.status != ConditionStatus::True);
    for v in steps {
        let tag = if v.status == ConditionStatus::False {
            "FAIL"
        } else {
            "UNKNOWN"
        };
        out.push_str(&format!(
            "  {tag:<7} {}: {}={} {}\n          {}\n",
            v.type_.step(),
            v.type_,
            v.status,
            v.reason,
            v.message
        ));
    }
    let ready = r.evaluation.ready();
    if ready.reason == Reason::HostnameConflict {
        out.push_str(&format!("  FAIL    {}\n", ready.message));
    }
    out
}

fn inventory_section(inventory: &[CertificateUse]) -> String {
    if inventory.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nCertificates:\n");
    for c in inventory {
        out.push_str(&format!(
            "  {}\n    DNS names: {}\n    hostnames: {}\n    target CNAMEs: {}\n",
            c.sha256_fingerprint,
            c.dns_names.join(", "),
            c.hostnames.join(", "),
            c.target_cnames.join(", ")
        ));
    }
    out
}
