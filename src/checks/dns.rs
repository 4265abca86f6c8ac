//! Steps 5 and 6: the DNS CNAME record from the hostname to the target CNAME, proven by a dig.

use std::net::IpAddr;

/// One CNAME record followed while walking a name's chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CnameLink {
    /// Owner name, lower-case, without the trailing dot.
    pub name: String,
    /// Canonical name it points to, lower-case, without the trailing dot.
    pub target: String,
    pub ttl: u32,
    /// The resolver set the AD bit on this answer: it validated it with DNSSEC.
    pub validated: bool,
}

/// How a walk of a name's CNAME chain ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsOutcome {
    /// The last name of the chain has these A/AAAA addresses.
    Addresses {
        name: String,
        addresses: Vec<IpAddr>,
    },
    /// The last name exists but has neither CNAME nor A/AAAA records (NODATA).
    NoData { name: String },
    /// The last name does not exist.
    NxDomain { name: String },
    /// The queried name (chain empty) is the apex of a zone: it owns an SOA record, and a CNAME
    /// cannot live there. `addresses` are whatever A/AAAA records it has.
    ZoneApex {
        name: String,
        addresses: Vec<IpAddr>,
    },
    /// The chain comes back to `name`, a name already visited.
    Loop { name: String },
    /// The chain is longer than the walker's depth limit.
    TooLong { limit: usize },
    /// A query for `name` got no answer in time.
    Timeout { name: String },
    /// A query for `name` failed on the server side (SERVFAIL, REFUSED, malformed answer...).
    ServerFailure { name: String, detail: String },
}

/// The result of walking one name: the CNAME links followed, in order, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsObservation {
    pub name: String,
    pub chain: Vec<CnameLink>,
    pub outcome: DnsOutcome,
}

impl DnsObservation {
    /// A walk that ended at `name` itself, before any CNAME: how is `outcome`.
    pub fn ended(name: String, outcome: DnsOutcome) -> Self {
        DnsObservation {
            name,
            chain: Vec::new(),
            outcome,
        }
    }

    /// A walk of `name` that got no answer in time.
    pub fn timed_out(name: &str) -> Self {
        Self::ended(
            name.to_string(),
            DnsOutcome::Timeout {
                name: name.to_string(),
            },
        )
    }

    /// The chain as dig prints it, one `name. IN CNAME target.` line per link. TTLs are left out:
    /// through a caching resolver they count down, and status must not change when nothing did.
    pub fn dig_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .chain
            .iter()
            .map(|l| format!("{}. IN CNAME {}.", l.name, l.target))
            .collect();
        match &self.outcome {
            DnsOutcome::Addresses { name, addresses }
            | DnsOutcome::ZoneApex { name, addresses } => {
                for a in addresses {
                    let kind = if a.is_ipv4() { "A" } else { "AAAA" };
                    lines.push(format!("{name}. IN {kind} {a}"));
                }
            }
            _ => {}
        }
        lines
    }

    /// Final addresses, if the walk ended on any.
    pub fn addresses(&self) -> &[IpAddr] {
        match &self.outcome {
            DnsOutcome::Addresses { addresses, .. } | DnsOutcome::ZoneApex { addresses, .. } => {
                addresses
            }
            _ => &[],
        }
    }
}

use crate::api::text::truncate;
use crate::api::{ConditionStatus, ConditionType, Desired, Reason, Verdict};

/// Records of a dig shown in a message: beyond this, the first and last few with a count of the
/// rest between them (a long CNAME chain, an RRset of hundreds of addresses).
pub const SUMMARY_RECORDS: usize = 12;
/// Longest server-failure detail quoted in a message.
const MAX_DETAIL_BYTES: usize = 256;

impl DnsObservation {
    /// The dig answer in one line, for messages: at most [`SUMMARY_RECORDS`] records, the start
    /// and the end of the answer, where the chain begins and where it ends up.
    pub fn dig_summary(&self) -> String {
        let lines = self.dig_lines();
        let ending = match &self.outcome {
            DnsOutcome::Addresses { .. } | DnsOutcome::ZoneApex { .. } => String::new(),
            DnsOutcome::NoData { name } => format!("{name}. has no A/AAAA records"),
            DnsOutcome::NxDomain { name } => format!("{name}. NXDOMAIN"),
            DnsOutcome::Loop { name } => format!("loops back to {name}."),
            DnsOutcome::TooLong { limit } => format!("longer than {limit} CNAMEs"),
            DnsOutcome::Timeout { name } => format!("{name}. query timed out"),
            DnsOutcome::ServerFailure { name, detail } => {
                format!("{name}. {}", truncate(detail, MAX_DETAIL_BYTES))
            }
        };
        let mut all = lines;
        if all.len() > SUMMARY_RECORDS {
            let (head, tail) = (SUMMARY_RECORDS / 2, SUMMARY_RECORDS / 2 - 1);
            let omitted = all.len() - head - tail;
            all.splice(
                head..all.len() - tail,
                [format!("... {omitted} more records ...")],
            );
        }
        if !ending.is_empty() {
            all.push(ending);
        }
        if all.is_empty() {
            "no answer".into()
        } else {
            all.join("; ")
        }
    }

    /// Whether some CNAME of the chain points at `target`.
    pub fn reaches(&self, target: &str) -> bool {
        self.chain
            .iter()
            .any(|l| l.target.eq_ignore_ascii_case(target))
    }
}

/// Evaluates steps 5 and 6 from the dig of `spec.hostname`.
pub fn evaluate(spec: &Desired, observed: &DnsObservation) -> Verdict {
    let host = &spec.hostname;
    let target = &spec.certificate.target_cname;
    let dig = observed.dig_summary();
    let v = |status, reason, message: String| {
        Verdict::new(ConditionType::DnsConfigured, status, reason, message)
    };
    let fix =
        format!("create a CNAME record {host}. CNAME {target}. at your DNS provider (step 5)");
    if observed.reaches(target) {
        return v(
            ConditionStatus::True,
            Reason::Verified,
            format!("dig {host} reaches the target CNAME {target}: {dig}."),
        );
    }
    match &observed.outcome {
        DnsOutcome::Timeout { name } => v(
            ConditionStatus::Unknown,
            Reason::DnsTimeout,
            format!(
                "dig {host}: the query for {name} timed out ({dig}); cannot tell whether the CNAME is set; will retry."
            ),
        ),
        DnsOutcome::ServerFailure { name, detail } => v(
            ConditionStatus::Unknown,
            Reason::DnsServerFailure,
            format!(
                "dig {host}: the DNS server failed for {name} ({}); cannot tell whether the CNAME is set; will retry.",
                truncate(detail, MAX_DETAIL_BYTES)
            ),
        ),
        DnsOutcome::Loop { name } => v(
            ConditionStatus::False,
            Reason::CnameLoop,
            format!("dig {host}: the CNAME chain loops back to {name}: {dig}; {fix}."),
        ),
        _ if !observed.chain.is_empty() => v(
            ConditionStatus::False,
            Reason::CnameTargetMismatch,
            format!(
                "dig {host}: the CNAME chain does not reach the target CNAME {target}: {dig}; point the CNAME at the target CNAME from the certificate's welcome letter ({fix})."
            ),
        ),
        DnsOutcome::NxDomain { .. } => v(
            ConditionStatus::False,
            Reason::NxDomain,
            format!("dig {host}: NXDOMAIN, the name does not exist; {fix}."),
        ),
        DnsOutcome::ZoneApex { .. } => v(
            ConditionStatus::False,
            Reason::ZoneApex,
            format!(
                "dig {host}: {host} is the apex of its DNS zone, where a CNAME record cannot exist ({dig}); deliver a subdomain such as www.{host} instead, or use your DNS provider's CNAME flattening (ALIAS/ANAME) to {target}."
            ),
        ),
        DnsOutcome::Addresses { .. } => v(
            ConditionStatus::False,
            Reason::NoCnameRecord,
            format!("dig {host}: address records without a CNAME ({dig}); replace them: {fix}."),
        ),
        DnsOutcome::NoData { .. } | DnsOutcome::TooLong { .. } => v(
            ConditionStatus::False,
            Reason::NoCnameRecord,
            format!("dig {host}: no CNAME record ({dig}); {fix}."),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::{addresses, dns_ok, link, spec};

    fn obs(chain: Vec<CnameLink>, outcome: DnsOutcome) -> DnsObservation {
        DnsObservation {
            name: "www.shop.example".into(),
            chain,
            outcome,
        }
    }

    fn check(o: &DnsObservation) -> (ConditionStatus, Reason, String) {
        let v = evaluate(&spec(), o);
        (v.status, v.reason, v.message)
    }

    #[test]
    fn direct_cname_is_true_and_shows_the_dig() {
        let (s, r, m) = check(&dns_ok());
        assert_eq!((s, r), (ConditionStatus::True, Reason::Verified));
        assert!(
            m.contains("www.shop.example. IN CNAME cs1.wpc.cdn.example."),
            "{m}"
        );
    }

    #[test]
    fn cname_through_an_intermediate_name_is_true() {
        let o = obs(
            vec![
                link("www.shop.example", "www.shop.example.edge.example"),
                link("www.shop.example.edge.example", "cs1.wpc.cdn.example"),
            ],
            addresses("cs1.wpc.cdn.example", &["192.0.2.10"]),
        );
        assert_eq!(check(&o).0, ConditionStatus::True);
    }

    #[test]
    fn wrong_target_is_a_mismatch_showing_the_chain() {
        let o = obs(
            vec![link("www.shop.example", "cs2.wpc.cdn.example")],
            addresses("cs2.wpc.cdn.example", &["192.0.2.11"]),
        );
        let (s, r, m) = check(&o);
        assert_eq!(
            (s, r),
            (ConditionStatus::False, Reason::CnameTargetMismatch)
        );
        assert!(
            m.contains("CNAME cs2.wpc.cdn.example.") && m.contains("cs1.wpc.cdn.example"),
            "{m}"
        );
    }

    #[test]
    fn address_records_without_cname() {
        let o = obs(vec![], addresses("www.shop.example", &["192.0.2.1"]));
        let (s, r, m) = check(&o);
        assert_eq!((s, r), (ConditionStatus::False, Reason::NoCnameRecord));
        assert!(m.contains("IN A 192.0.2.1"), "{m}");
    }

    #[test]
    fn nodata_is_no_cname() {
        let o = obs(
            vec![],
            DnsOutcome::NoData {
                name: "www.shop.example".into(),
            },
        );
        assert_eq!(check(&o).1, Reason::NoCnameRecord);
    }

    #[test]
    fn nxdomain() {
        let o = obs(
            vec![],
            DnsOutcome::NxDomain {
                name: "www.shop.example".into(),
            },
        );
        assert_eq!(check(&o).1, Reason::NxDomain);
    }

    #[test]
    fn dangling_cname_is_a_mismatch_not_nxdomain() {
        let o = obs(
            vec![link("www.shop.example", "gone.example")],
            DnsOutcome::NxDomain {
                name: "gone.example".into(),
            },
        );
        assert_eq!(check(&o).1, Reason::CnameTargetMismatch);
    }

    #[test]
    fn zone_apex() {
        let o = obs(
            vec![],
            DnsOutcome::ZoneApex {
                name: "www.shop.example".into(),
                addresses: vec![],
            },
        );
        assert_eq!(check(&o).1, Reason::ZoneApex);
    }

    #[test]
    fn cname_loop() {
        let o = obs(
            vec![
                link("www.shop.example", "a.example"),
                link("a.example", "www.shop.example"),
            ],
            DnsOutcome::Loop {
                name: "www.shop.example".into(),
            },
        );
        let (s, r, _) = check(&o);
        assert_eq!((s, r), (ConditionStatus::False, Reason::CnameLoop));
    }

    #[test]
    fn timeout_and_servfail_are_unknown_never_false() {
        let o = obs(
            vec![],
            DnsOutcome::Timeout {
                name: "www.shop.example".into(),
            },
        );
        let (s, r, _) = check(&o);
        assert_eq!((s, r), (ConditionStatus::Unknown, Reason::DnsTimeout));
        let o = obs(
            vec![],
            DnsOutcome::ServerFailure {
                name: "www.shop.example".into(),
                detail: "SERVFAIL".into(),
            },
        );
        let (s, r, _) = check(&o);
        assert_eq!((s, r), (ConditionStatus::Unknown, Reason::DnsServerFailure));
    }

    #[test]
    fn long_answers_are_summarised_with_both_ends_and_a_count() {
        // 16 CNAMEs (the walker's limit) ending at 2,000 addresses: a dig a person can read.
        let names: Vec<String> = (0..=16).map(|i| format!("c{i}.example")).collect();
        let chain = names.windows(2).map(|w| link(&w[0], &w[1])).collect();
        let ips: Vec<String> = (0..2000)
            .map(|i| format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256))
            .collect();
        let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
        let o = obs(chain, addresses("c16.example", &ips));
        let summary = o.dig_summary();
        assert_eq!(summary.split("; ").count(), SUMMARY_RECORDS, "{summary}");
        assert!(
            summary.starts_with("c0.example. IN CNAME c1.example.; "),
            "{summary}"
        );
        assert!(
            summary.contains("; ... 2005 more records ...; "),
            "{summary}"
        );
        assert!(
            summary.ends_with("c16.example. IN A 10.0.7.207"),
            "{summary}"
        );
        let (s, r, m) = check(&o);
        assert_eq!(
            (s, r),
            (ConditionStatus::False, Reason::CnameTargetMismatch)
        );
        assert!(m.len() < 2048, "{} bytes: {m}", m.len());
        // A short answer is shown whole.
        let (_, _, m) = check(&dns_ok());
        assert!(!m.contains("more records"), "{m}");
    }

    #[test]
    fn server_failure_details_are_bounded() {
        let o = obs(
            vec![],
            DnsOutcome::ServerFailure {
                name: "www.shop.example".into(),
                detail: "x".repeat(100_000),
            },
        );
        let (_, _, m) = check(&o);
        assert!(m.len() < 2 * MAX_DETAIL_BYTES + 512, "{} bytes", m.len());
    }
}
