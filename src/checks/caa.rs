//! CAA (RFC 8659), the pure half: which CAA record set is relevant for a hostname, and whether
//! it lets the CA that issues the CDN's certificate issue for it. The lookups (the hostname,
//! then each parent up to the TLD, each answer following CNAMEs as resolution does) are the
//! probe's; nothing here does I/O.
//!
//! Groundwork of issue 13 (the `DnsHealthy` condition): not wired into a condition yet.

/// One CAA record as DNS answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaaRecord {
    /// The issuer critical flag (bit 128 of the flags).
    pub critical: bool,
    /// `issue`, `issuewild`, `iodef`, or a tag this code does not know (kept, lower-cased).
    pub tag: String,
    /// The value, e.g. `digicert.com; cansignhttpexchanges=yes`, or `;` (nobody).
    pub value: String,
}

impl std::fmt::Display for CaaRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CAA {} {} {:?}",
            if self.critical { 128 } else { 0 },
            self.tag,
            self.value
        )
    }
}

/// What the relevant CAA record set says of one CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaaDecision {
    /// No CAA record from the hostname up to the TLD: any CA may issue.
    NoPolicy,
    /// The set at `at` names the CA in a property that applies.
    Allowed { at: String, record: String },
    /// The set at `at` has properties that apply, and none names the CA (or `;` forbids all).
    Forbidden { at: String, records: Vec<String> },
    /// The set at `at` has a critical property of a tag this code does not know: RFC 8659
    /// forbids issuance then.
    CriticalUnknown { at: String, tag: String },
}

/// The names whose CAA sets are looked at, in order: the hostname, then each parent up to and
/// including the TLD (RFC 8659 section 3). A wildcard's `*.` is dropped first.
pub fn climb(hostname: &str) -> Vec<String> {
    let name = hostname
        .trim_end_matches('.')
        .trim_start_matches("*.")
        .to_ascii_lowercase();
    let labels: Vec<&str> = name.split('.').filter(|l| !l.is_empty()).collect();
    (0..labels.len()).map(|i| labels[i..].join(".")).collect()
}

/// The relevant record set: the first non-empty one of `sets`, given in [`climb`] order as
/// (name, records); `None` when all are empty.
pub fn relevant(sets: &[(String, Vec<CaaRecord>)]) -> Option<(&str, &[CaaRecord])> {
    sets.iter()
        .find(|(_, records)| !records.is_empty())
        .map(|(name, records)| (name.as_str(), records.as_slice()))
}

/// The issuer domain of an `issue`/`issuewild` value: what precedes the first `;`, trimmed and
/// lower-cased; `None` for an empty one (`;` alone: nobody may issue).
fn issuer_of(value: &str) -> Option<String> {
    let domain = value.split(';').next().unwrap_or_default().trim();
    (!domain.is_empty()).then(|| domain.trim_end_matches('.').to_ascii_lowercase())
}

/// Whether the CA known by `issuer_domain` (e.g. `digicert.com`) may issue for the hostname,
/// after the sets of [`climb`]. `wildcard`: the certificate names `*.` of it, so `issuewild`
/// properties apply when there are any.
pub fn decide(
    sets: &[(String, Vec<CaaRecord>)],
    issuer_domain: &str,
    wildcard: bool,
) -> CaaDecision {
    let Some((at, records)) = relevant(sets) else {
        return CaaDecision::NoPolicy;
    };
    let at = at.to_string();
    if let Some(unknown) = records
        .iter()
        .find(|r| r.critical && !matches!(r.tag.as_str(), "issue" | "issuewild" | "iodef"))
    {
        return CaaDecision::CriticalUnknown {
            at,
            tag: unknown.tag.clone(),
        };
    }
    let of = |tag: &str| -> Vec<&CaaRecord> { records.iter().filter(|r| r.tag == tag).collect() };
    let applying = match (wildcard, of("issuewild")) {
        (true, wild) if !wild.is_empty() => wild,
        _ => of("issue"),
    };
    if applying.is_empty() {
        // Only iodef (or issuewild for a name that is not a wildcard): no restriction.
        return CaaDecision::NoPolicy;
    }
    let wanted = issuer_domain.trim_end_matches('.').to_ascii_lowercase();
    match applying
        .iter()
        .find(|r| issuer_of(&r.value).as_deref() == Some(wanted.as_str()))
    {
        Some(record) => CaaDecision::Allowed {
            at,
            record: record.to_string(),
        },
        None => CaaDecision::Forbidden {
            at,
            records: applying.iter().map(|r| r.to_string()).collect(),
        },
    }
}

/// The CAA issuer domain of well-known CAs, from the issuer's distinguished name (its O or CN);
/// `None` when it is not one of them (then `spec.certificate.issuerDomain` must say).
pub fn issuer_domain_of(issuer_dn: &str) -> Option<&'static str> {
    const KNOWN: &[(&str, &str)] = &[
        ("digicert", "digicert.com"),
        ("let's encrypt", "letsencrypt.org"),
        ("sectigo", "sectigo.com"),
        ("comodo", "sectigo.com"),
        ("globalsign", "globalsign.com"),
        ("google trust services", "pki.goog"),
        ("amazon", "amazon.com"),
        ("entrust", "entrust.net"),
        ("godaddy", "godaddy.com"),
    ];
    let dn = issuer_dn.to_ascii_lowercase();
    KNOWN
        .iter()
        .find(|(needle, _)| dn.contains(needle))
        .map(|(_, domain)| *domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caa(critical: bool, tag: &str, value: &str) -> CaaRecord {
        CaaRecord {
            critical,
            tag: tag.into(),
            value: value.into(),
        }
    }

    fn at(name: &str, records: Vec<CaaRecord>) -> (String, Vec<CaaRecord>) {
        (name.into(), records)
    }

    #[test]
    fn the_climb_goes_from_the_hostname_to_the_tld() {
        assert_eq!(
            climb("www.shop.example."),
            ["www.shop.example", "shop.example", "example"]
        );
        assert_eq!(climb("*.Shop.Example"), ["shop.example", "example"]);
    }

    #[test]
    fn no_record_anywhere_lets_any_ca_issue() {
        let sets = vec![at("www.shop.example", vec![]), at("shop.example", vec![])];
        assert_eq!(decide(&sets, "digicert.com", false), CaaDecision::NoPolicy);
    }

    #[test]
    fn the_first_set_up_the_tree_decides_and_names_its_place() {
        let sets = vec![
            at("www.shop.example", vec![]),
            at(
                "shop.example",
                vec![
                    caa(false, "issue", "letsencrypt.org"),
                    caa(false, "iodef", "mailto:x@shop.example"),
                ],
            ),
            at("example", vec![caa(false, "issue", "digicert.com")]),
        ];
        assert_eq!(
            decide(&sets, "digicert.com", false),
            CaaDecision::Forbidden {
                at: "shop.example".into(),
                records: vec![r#"CAA 0 issue "letsencrypt.org""#.into()],
            }
        );
        assert!(matches!(
            decide(&sets, "LetsEncrypt.org.", false),
            CaaDecision::Allowed { at, .. } if at == "shop.example"
        ));
    }

    #[test]
    fn parameters_after_the_issuer_and_an_empty_issuer() {
        let allowed = vec![at(
            "shop.example",
            vec![caa(
                false,
                "issue",
                "digicert.com; cansignhttpexchanges=yes",
            )],
        )];
        assert!(matches!(
            decide(&allowed, "digicert.com", false),
            CaaDecision::Allowed { .. }
        ));
        let nobody = vec![at("shop.example", vec![caa(false, "issue", ";")])];
        assert!(matches!(
            decide(&nobody, "digicert.com", false),
            CaaDecision::Forbidden { .. }
        ));
    }

    #[test]
    fn issuewild_applies_to_wildcards_only_and_issue_when_it_is_absent() {
        let sets = vec![at(
            "shop.example",
            vec![
                caa(false, "issue", "digicert.com"),
                caa(false, "issuewild", "letsencrypt.org"),
            ],
        )];
        assert!(matches!(
            decide(&sets, "digicert.com", false),
            CaaDecision::Allowed { .. }
        ));
        assert!(matches!(
            decide(&sets, "digicert.com", true),
            CaaDecision::Forbidden { .. }
        ));
        let issue_only = vec![at(
            "shop.example",
            vec![caa(false, "issue", "digicert.com")],
        )];
        assert!(matches!(
            decide(&issue_only, "digicert.com", true),
            CaaDecision::Allowed { .. }
        ));
        let iodef_only = vec![at(
            "shop.example",
            vec![caa(false, "iodef", "mailto:x@shop.example")],
        )];
        assert_eq!(
            decide(&iodef_only, "digicert.com", false),
            CaaDecision::NoPolicy
        );
    }

    #[test]
    fn a_critical_unknown_tag_forbids_issuance_and_an_unknown_tag_does_not() {
        let critical = vec![at(
            "shop.example",
            vec![caa(false, "issue", "digicert.com"), caa(true, "tbs", "x")],
        )];
        assert_eq!(
            decide(&critical, "digicert.com", false),
            CaaDecision::CriticalUnknown {
                at: "shop.example".into(),
                tag: "tbs".into()
            }
        );
        let harmless = vec![at(
            "shop.example",
            vec![caa(false, "issue", "digicert.com"), caa(false, "tbs", "x")],
        )];
        assert!(matches!(
            decide(&harmless, "digicert.com", false),
            CaaDecision::Allowed { .. }
        ));
    }

    #[test]
    fn well_known_issuers_map_to_their_caa_domain() {
        assert_eq!(
            issuer_domain_of("C=US, O=DigiCert Inc, CN=DigiCert Global G2 TLS RSA SHA256 2020 CA1"),
            Some("digicert.com")
        );
        assert_eq!(
            issuer_domain_of("C=US, O=Let's Encrypt, CN=R11"),
            Some("letsencrypt.org")
        );
        assert_eq!(issuer_domain_of("CN=Demo CDN Root CA"), None);
    }
}
