//! Output formats of `check`: a table for a person, JSON and YAML for machines.
//!
//! Names in manifests, certificates and DNS answers may hold terminal controls (ESC, CR, C1
//! controls, bidi overrides): every string from them is escaped with [`escape_controls`] before
//! it is printed, in the table and in JSON and YAML as well (serde_json writes C1 controls and
//! bidi overrides as they are, serde-saphyr writes bidi overrides as they are). Messages read
//! as the status would show them.

use crate::api::text::escape_controls;
use crate::api::{CertificateEvidence, ConditionStatus, ConditionType, DnsEvidence, Reason};
use crate::checks::inventory::{self, CertificateUse};
use crate::cli::Checked;
use serde::Serialize;
use std::borrow::Cow;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    deliveries: Vec<DeliveryReport<'a>>,
    certificates: Vec<CertificateUse>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryReport<'a> {
    namespace: Cow<'a, str>,
    name: Cow<'a, str>,
    hostname: Cow<'a, str>,
    ready: bool,
    conditions: Vec<ConditionReport<'a>>,
    certificate: serde_json::Value,
    dns: DnsEvidence,
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct ConditionReport<'a> {
    #[serde(rename = "type")]
    type_: &'static str,
    status: &'static str,
    reason: &'static str,
    message: Cow<'a, str>,
}

fn report(results: &[Checked]) -> Report<'_> {
    let deliveries = results
        .iter()
        .map(|r| DeliveryReport {
            namespace: escape_controls(&r.delivery.namespace),
            name: escape_controls(&r.delivery.name),
            hostname: escape_controls(&r.delivery.delivery.spec.hostname),
            ready: r.evaluation.ready().status == ConditionStatus::True,
            conditions: r
                .evaluation
                .verdicts
                .iter()
                .map(|v| ConditionReport {
                    type_: v.type_.as_str(),
                    status: v.status.as_str(),
                    reason: v.reason.as_str(),
                    message: escape_controls(&v.message),
                })
                .collect(),
            certificate: r
                .evaluation
                .certificate
                .as_ref()
                .and_then(|c| serde_json::to_value(c).ok())
                .map(escape_value)
                .unwrap_or_else(|| serde_json::json!({})),
            dns: DnsEvidence {
                chain: escape_all(&r.evaluation.dns.chain),
                addresses: escape_all(&r.evaluation.dns.addresses),
                dnssec_validated: r.evaluation.dns.dnssec_validated,
                caa: escape_all(&r.evaluation.dns.caa),
                authoritative: escape_all(&r.evaluation.dns.authoritative),
                edge_addresses: escape_all(&r.evaluation.dns.edge_addresses),
            },
            http: r
                .evaluation
                .http
                .as_ref()
                .and_then(|h| serde_json::to_value(h).ok())
                .map(escape_value),
        })
        .collect();
    let certificates = certificate_inventory(results)
        .into_iter()
        .map(|c| CertificateUse {
            sha256_fingerprint: escape_controls(&c.sha256_fingerprint).into_owned(),
            dns_names: escape_all(&c.dns_names),
            hostnames: escape_all(&c.hostnames),
            target_cnames: escape_all(&c.target_cnames),
        })
        .collect();
    Report {
        deliveries,
        certificates,
    }
}

fn escape_all(items: &[String]) -> Vec<String> {
    items
        .iter()
        .map(|i| escape_controls(i).into_owned())
        .collect()
}

/// Every string in `value` escaped (evidence is escaped where it is built; this is the sink).
fn escape_value(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(escape_controls(&s).into_owned()),
        Value::Array(items) => Value::Array(items.into_iter().map(escape_value).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (escape_controls(&k).into_owned(), escape_value(v)))
                .collect(),
        ),
        other => other,
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
            spec.certificate.target_cname.as_deref().unwrap_or_default(),
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
                escape_controls(&r.delivery.namespace).into_owned(),
                escape_controls(&r.delivery.name).into_owned(),
                escape_controls(&r.delivery.delivery.spec.hostname).into_owned(),
                ready.status.to_string(),
                ready.reason.to_string(),
            ]
        })
        .collect();
    // Widths in characters: `{:<w$}` pads to characters, not bytes.
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
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
        escape_controls(&r.delivery.namespace),
        escape_controls(&r.delivery.name),
        escape_controls(&r.delivery.delivery.spec.hostname)
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
            escape_controls(&v.message)
        ));
    }
    let ready = r.evaluation.ready();
    if ready.reason == Reason::HostnameConflict {
        out.push_str(&format!("  FAIL    {}\n", escape_controls(&ready.message)));
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
            escape_controls(&c.sha256_fingerprint),
            escape_controls(&c.dns_names.join(", ")),
            escape_controls(&c.hostnames.join(", ")),
            escape_controls(&c.target_cnames.join(", "))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::text::is_hostile;
    use crate::api::{HttpEvidence, HttpsDelivery, Verdict};
    use crate::checks::Evaluation;
    use crate::checks::fixtures;
    use crate::cli::input::LoadedDelivery;

    /// Everything a hostile certificate, manifest or DNS answer can put in front of a terminal.
    const HOSTILE: &str =
        "CN=evil\x1b]0;owned\x07\x1b[2J\r\nREADY True\u{9b}31m \u{202e}moc.elpmaxe\x7f\0";

    fn hostile_result() -> Checked {
        let spec = fixtures::crd_spec();
        let mut verdicts: Vec<Verdict> = ConditionType::STEPS
            .iter()
            .map(|t| Verdict::new(*t, ConditionStatus::True, Reason::Verified, "ok"))
            .collect();
        verdicts[0] = Verdict::new(
            ConditionType::CertificateValid,
            ConditionStatus::False,
            Reason::HostnameNotCovered,
            format!("certificate (subject {HOSTILE}) does not cover www.shop.example"),
        );
        verdicts.push(Verdict::new(
            ConditionType::Ready,
            ConditionStatus::False,
            Reason::HostnameNotCovered,
            format!("step 1: {HOSTILE}"),
        ));
        Checked {
            delivery: LoadedDelivery {
                namespace: "shop".into(),
                name: format!("www{HOSTILE}"),
                delivery: HttpsDelivery::new("www", spec),
                origin: "deliveries.yaml".into(),
            },
            evaluation: Evaluation {
                verdicts,
                certificate: Some(CertificateEvidence {
                    source: "Secret/www-tls".into(),
                    subject: HOSTILE.into(),
                    dns_names: vec![format!("www.shop.example{HOSTILE}")],
                    dns_names_omitted: 0,
                    issuer: "CN=Test Root".into(),
                    serial: "01".into(),
                    sha256_fingerprint: "AA:BB".into(),
                    not_before: fixtures::now(),
                    not_after: fixtures::now(),
                }),
                dns: DnsEvidence::default(),
                http: Some(HttpEvidence {
                    request: format!("GET https://www.shop.example/{HOSTILE}"),
                    response: format!("HTTP/2 200{HOSTILE}"),
                    ..HttpEvidence::default()
                }),
                edge_tracking: None,
                next_change: None,
            },
        }
    }

    /// No terminal control in `out`, other than the line feeds that end its own lines.
    fn assert_clean(out: &str) {
        for (i, line) in out.split('\n').enumerate() {
            assert!(
                !line.chars().any(is_hostile),
                "line {} holds a control character: {line:?}",
                i + 1
            );
        }
    }

    #[test]
    fn the_table_escapes_every_cell_and_message() {
        let out = table(&[hostile_result()]);
        assert_clean(&out);
        let escaped = escape_controls(HOSTILE).into_owned();
        assert!(
            escaped.contains("\\x1b]0;owned\\x07\\x1b[2J\\r\\nREADY True\\u{9b}31m \\u{202e}moc")
        );
        assert!(out.contains(&format!("www{escaped}")), "{out}");
        assert!(
            out.contains(&format!("certificate (subject {escaped}) does not cover")),
            "{out}"
        );
        assert!(out.contains(&format!("www.shop.example{escaped}")), "{out}");
        // The summary's columns stay aligned: the header and the row put READY at one column.
        let mut lines = out.lines();
        let (header, row) = (lines.next().unwrap(), lines.next().unwrap());
        let column = |l: &str, word: &str| l.find(word).map(|b| l[..b].chars().count());
        assert_eq!(
            column(header, "READY"),
            column(row, "   False").map(|c| c + 3)
        );
    }

    #[test]
    fn json_and_yaml_hold_no_raw_controls_and_read_back_escaped() {
        let results = [hostile_result()];
        let escaped = escape_controls(HOSTILE).into_owned();
        let expected = format!("certificate (subject {escaped}) does not cover www.shop.example");

        let json_out = json(&results);
        // serde_json escapes C0 controls itself, but writes DEL, C1 controls and bidi
        // overrides as they are: they are escaped before it sees them.
        assert_clean(&json_out);
        let parsed: serde_json::Value = serde_json::from_str(&json_out).unwrap();
        assert_eq!(
            parsed["deliveries"][0]["conditions"][0]["message"],
            expected
        );
        assert_eq!(
            parsed["deliveries"][0]["name"],
            format!("www{escaped}").as_str()
        );

        let yaml_out = yaml(&results);
        // serde-saphyr escapes C0 and C1 controls in double-quoted scalars, but writes U+202E
        // as it is: checked here so that a change of either stays visible.
        assert_clean(&yaml_out);
        let parsed: serde_json::Value = serde_saphyr::from_str(&yaml_out).unwrap();
        assert_eq!(
            parsed["deliveries"][0]["conditions"][0]["message"],
            expected
        );
    }

    #[test]
    fn serde_saphyr_itself_escapes_controls_but_not_bidi_overrides() {
        // What the YAML serializer does with raw text (why `report` escapes first).
        let options = serde_saphyr::ser_options! { folded_wrap_chars: usize::MAX };
        let raw = serde_saphyr::to_string_with_options(
            &serde_json::json!({"m": "a\x1b[31mb\r\u{9b}c\x7f"}),
            options,
        )
        .unwrap();
        assert_clean(&raw);
        let options = serde_saphyr::ser_options! { folded_wrap_chars: usize::MAX };
        let bidi =
            serde_saphyr::to_string_with_options(&serde_json::json!({"m": "a\u{202e}b"}), options)
                .unwrap();
        assert!(
            bidi.contains('\u{202e}'),
            "serde-saphyr now escapes it: {bidi:?}"
        );
    }
}
