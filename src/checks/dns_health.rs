//! DnsHealthy: what the dig of steps 5 and 6 does not show. The CAA records that decide whether
//! the certificate can be renewed, DNSSEC validation, whether every authoritative server gives
//! the same answer (and the resolver's cached answer agrees), dangling CNAMEs, and whether IPv4
//! and IPv6 clients get the same edge. Pure: the probes gather, this module judges.

use crate::api::{CertificateEvidence, ConditionStatus, ConditionType, Desired, Reason, Verdict};
use crate::checks::caa::{self, CaaDecision, CaaRecord};
use crate::checks::dns::{DnsObservation, DnsOutcome};
use crate::checks::tls::{TlsObservation, TlsOutcome};
use crate::checks::x509::shown;
use std::net::IpAddr;

/// What one authoritative server answered, asked directly (no recursion) for a name's CNAME.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthoritativeAnswer {
    Cname {
        target: String,
        ttl: u32,
    },
    /// The name exists and has no CNAME.
    NoCname,
    NxDomain,
    /// No usable answer: a timeout, SERVFAIL, REFUSED, an answer without the AA bit.
    Failed(String),
    /// The target guard refused the server's address; nothing was sent.
    Forbidden(String),
    /// Asked twice, the server gave two answers (what they were): per-query answers of
    /// weighted or geographic DNS, not compared with the other servers.
    Varies(String),
}

impl AuthoritativeAnswer {
    /// An answer that speaks for the zone (a failure does not).
    pub fn is_answer(&self) -> bool {
        matches!(
            self,
            AuthoritativeAnswer::Cname { .. }
                | AuthoritativeAnswer::NoCname
                | AuthoritativeAnswer::NxDomain
        )
    }

    /// Equal answers, whatever the TTL.
    pub fn same(&self, other: &AuthoritativeAnswer) -> bool {
        match (self, other) {
            (
                AuthoritativeAnswer::Cname { target: a, .. },
                AuthoritativeAnswer::Cname { target: b, .. },
            ) => a == b,
            _ => self == other,
        }
    }
}

impl std::fmt::Display for AuthoritativeAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthoritativeAnswer::Cname { target, .. } => write!(f, "CNAME {target}."),
            AuthoritativeAnswer::NoCname => f.write_str("no CNAME"),
            AuthoritativeAnswer::NxDomain => f.write_str("NXDOMAIN"),
            AuthoritativeAnswer::Failed(detail) => write!(f, "no answer ({detail})"),
            AuthoritativeAnswer::Forbidden(reason) => write!(f, "not asked ({reason})"),
            AuthoritativeAnswer::Varies(answers) => {
                write!(f, "answers vary from one query to the next ({answers})")
            }
        }
    }
}

/// One authoritative server of the hostname's zone and its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthoritativeReply {
    /// The server's name (from the zone's NS set).
    pub server: String,
    pub address: IpAddr,
    pub answer: AuthoritativeAnswer,
}

impl std::fmt::Display for AuthoritativeReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.server, self.address, self.answer)
    }
}

/// The hostname's CAA record sets, in [`caa::climb`] order up to the first non-empty one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaaLookup {
    pub sets: Result<Vec<(String, Vec<CaaRecord>)>, DnsOutcome>,
    /// The resolver set the AD bit on the hostname's answer: it validated it with DNSSEC.
    pub validated: bool,
}

/// Everything DnsHealthy looks at besides the walks and probes of the steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsHealthObservation {
    pub caa: CaaLookup,
    /// The CAA sets for a wildcard certificate of the hostname's parent (`*.parent`): the
    /// climb from the parent.
    pub caa_wildcard: Option<CaaLookup>,
    /// When the hostname's walk met SERVFAIL and the same query with checking disabled (CD)
    /// answered: the zone whose DNSSEC validation fails.
    pub dnssec_bogus: Option<String>,
    /// Each authoritative server's answer for the hostname's CNAME, or why the zone's servers
    /// could not be found.
    pub authoritative: Result<Vec<AuthoritativeReply>, String>,
}

impl DnsHealthObservation {
    /// Nothing looked at: every lookup timed out (the operator's deadline ran out).
    pub fn timed_out(hostname: &str) -> Self {
        DnsHealthObservation {
            caa: CaaLookup {
                sets: Err(DnsOutcome::Timeout {
                    name: hostname.to_string(),
                }),
                validated: false,
            },
            caa_wildcard: None,
            dnssec_bogus: None,
            authoritative: Err("the lookups timed out".into()),
        }
    }
}

/// One finding; the condition's reason is the most severe one's, its message lists them all.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Finding {
    status: ConditionStatus,
    reason: Reason,
    text: String,
}

impl Finding {
    fn new(status: ConditionStatus, reason: Reason, text: String) -> Self {
        Finding {
            status,
            reason,
            text,
        }
    }

    /// Gating False first, then the other False, then Unknown.
    fn rank(&self) -> u8 {
        match self.status {
            ConditionStatus::False if self.reason.gates_ready() => 0,
            ConditionStatus::False => 1,
            _ => 2,
        }
    }
}

/// The evidence DnsHealthy adds to `status.dns`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsHealthEvidence {
    pub dnssec_validated: Option<bool>,
    pub caa: Vec<String>,
    pub authoritative: Vec<String>,
    pub edge_addresses: Vec<String>,
}

/// The inputs of [`evaluate`].
pub struct Inputs<'a> {
    pub spec: &'a Desired,
    pub hostname_dns: &'a DnsObservation,
    pub edge_probes: &'a [TlsObservation],
    pub health: &'a DnsHealthObservation,
    /// The certificate under test, when it could be read (its issuer names the CA).
    pub certificate: Option<&'a CertificateEvidence>,
}

/// The DnsHealthy verdict and its evidence.
pub fn evaluate(inputs: &Inputs<'_>) -> (Verdict, DnsHealthEvidence) {
    let host = &inputs.spec.hostname;
    let (caa_finding, caa_note) = caa_finding(inputs);
    let mut findings: Vec<Finding> = [
        dnssec_finding(inputs.health, host),
        dangling_finding(inputs.hostname_dns),
        authoritative_finding(inputs.health, inputs.hostname_dns, host),
        parity_finding(inputs.edge_probes),
        caa_finding,
    ]
    .into_iter()
    .flatten()
    .collect();
    findings.sort_by_key(Finding::rank);
    let evidence = evidence(inputs);
    let verdict = match findings.first() {
        Some(first) => {
            let gates = if first.status == ConditionStatus::False && first.reason.gates_ready() {
                "This breaks delivery for some clients: Ready is False until it is fixed."
            } else {
                "This finding alone does not make Ready False."
            };
            let all: Vec<String> = findings
                .iter()
                .map(|f| format!("{}: {}", f.reason, f.text))
                .collect();
            Verdict::new(
                ConditionType::DnsHealthy,
                first.status,
                first.reason,
                format!("{} {gates}", all.join(" ")),
            )
        }
        None => Verdict::new(
            ConditionType::DnsHealthy,
            ConditionStatus::True,
            Reason::Verified,
            healthy_message(inputs, &caa_note),
        ),
    };
    (verdict, evidence)
}

/// The resolver's AD bit on the hostname's own answers: its CNAME (the walk's first link) or
/// its CAA set; `None` when neither was answered. (A negative answer's AD bit is not known.)
fn resolver_validated(inputs: &Inputs<'_>) -> Option<bool> {
    let dns = inputs.hostname_dns;
    let link = dns
        .chain
        .first()
        .filter(|l| l.name == dns.name)
        .map(|l| l.validated);
    let caa = &inputs.health.caa;
    let set = caa.sets.is_ok().then_some(caa.validated);
    match (link, set) {
        (None, None) => None,
        (link, set) => Some(link.unwrap_or(false) || set.unwrap_or(false)),
    }
}

fn healthy_message(inputs: &Inputs<'_>, caa_note: &str) -> String {
    let dnssec = if resolver_validated(inputs) == Some(true) {
        "validated by the resolver (AD bit)"
    } else {
        "not validated by the resolver (no AD bit: the zone is unsigned or the resolver does not validate)"
    };
    let servers = match &inputs.health.authoritative {
        Ok(replies) if !replies.is_empty() => format!(
            "the {} authoritative servers agree and the resolver's answer is current",
            replies.len()
        ),
        _ => "no authoritative server found to compare with".to_string(),
    };
    format!(
        "{caa_note}; DNSSEC: {dnssec}; {servers}; no dangling CNAME; the edge serves IPv4 and IPv6 clients alike."
    )
}

fn dnssec_finding(health: &DnsHealthObservation, host: &str) -> Option<Finding> {
    let zone = health.dnssec_bogus.as_ref()?;
    Some(Finding::new(
        ConditionStatus::False,
        Reason::DnssecValidationFailed,
        format!(
            "the resolver answers SERVFAIL for {host}, and answers when asked with DNSSEC checking disabled (CD): the signatures of zone {zone} do not validate (an expired RRSIG, or a DS record at the parent that no longer matches the zone's DNSKEY after a key rollover). Clients behind validating resolvers cannot resolve {host}: re-sign the zone or fix the DS record at its parent."
        ),
    ))
}

fn dangling_finding(walk: &DnsObservation) -> Option<Finding> {
    let last = walk.chain.last()?;
    let why = match &walk.outcome {
        DnsOutcome::NxDomain { name } => format!("{name} does not exist (NXDOMAIN)"),
        DnsOutcome::NoData { name } => format!("{name} has no address (NODATA)"),
        _ => return None,
    };
    Some(Finding::new(
        ConditionStatus::False,
        Reason::DanglingCname,
        format!(
            "{} is a CNAME to {}, and {why}: a dangling CNAME. Whoever can claim that name at the CDN can serve content as {} (subdomain takeover); remove the CNAME record or restore the edge configuration it points to.",
            walk.name, last.target, walk.name
        ),
    ))
}

fn authoritative_finding(
    health: &DnsHealthObservation,
    recursive: &DnsObservation,
    host: &str,
) -> Option<Finding> {
    let replies = match &health.authoritative {
        Ok(replies) => replies,
        Err(detail) => {
            return Some(Finding::new(
                ConditionStatus::Unknown,
                Reason::AuthoritativeLookupFailed,
                format!("the authoritative servers of {host} could not be found: {detail}."),
            ));
        }
    };
    if replies
        .iter()
        .any(|r| matches!(r.answer, AuthoritativeAnswer::Varies(_)))
    {
        // Weighted or geographic answers: neither agreement nor a stale cache can be told.
        return None;
    }
    let answers: Vec<&AuthoritativeReply> =
        replies.iter().filter(|r| r.answer.is_answer()).collect();
    let Some(first) = answers.first() else {
        if replies.is_empty() {
            return None;
        }
        return Some(Finding::new(
            ConditionStatus::Unknown,
            Reason::AuthoritativeLookupFailed,
            format!(
                "no authoritative server of {host} answered ({}).",
                listed(replies)
            ),
        ));
    };
    if answers.iter().any(|r| !r.answer.same(&first.answer)) {
        return Some(Finding::new(
            ConditionStatus::False,
            Reason::AuthoritativeServersDisagree,
            format!(
                "the authoritative servers of {host} give different answers ({}). Resolvers get one or the other at random: make every server serve the same zone (a secondary that stopped transferring, or a change made at one DNS provider only).",
                listed(replies)
            ),
        ));
    }
    stale_finding(&first.answer, recursive, host)
}

/// The recursive answer against the authoritative one all servers agree on.
fn stale_finding(
    authoritative: &AuthoritativeAnswer,
    recursive: &DnsObservation,
    host: &str,
) -> Option<Finding> {
    if matches!(
        recursive.outcome,
        DnsOutcome::Timeout { .. } | DnsOutcome::ServerFailure { .. }
    ) {
        return None;
    }
    let link = recursive.chain.first().filter(|l| l.name == recursive.name);
    const NEGATIVE: &str = "it expires from the resolver's cache when its negative-caching TTL (the zone's SOA minimum) ends";
    const RECORDS: &str = "it expires from the resolver's cache when the old records' TTL ends";
    let (cached, wait) = match (authoritative, link, &recursive.outcome) {
        (AuthoritativeAnswer::Cname { target, .. }, Some(l), _) if *target == l.target => {
            return None;
        }
        (_, Some(l), _) => (
            format!("CNAME {}.", l.target),
            format!("it expires from the resolver's cache within {}s", l.ttl),
        ),
        (AuthoritativeAnswer::Cname { .. }, None, _) => (
            "no CNAME (a cached negative answer)".to_string(),
            NEGATIVE.to_string(),
        ),
        // The name is gone from the zone; the resolver still has its records.
        (AuthoritativeAnswer::NxDomain, None, DnsOutcome::Addresses { addresses, .. })
        | (AuthoritativeAnswer::NxDomain, None, DnsOutcome::ZoneApex { addresses, .. }) => (
            format!(
                "its old addresses ({})",
                list(addresses.iter().map(ToString::to_string))
            ),
            RECORDS.to_string(),
        ),
        (AuthoritativeAnswer::NxDomain, None, DnsOutcome::NoData { .. }) => (
            "that the name exists (NODATA)".to_string(),
            RECORDS.to_string(),
        ),
        // The name was added to the zone; the resolver still has the old NXDOMAIN.
        (AuthoritativeAnswer::NoCname, None, DnsOutcome::NxDomain { .. }) => (
            "NXDOMAIN (a cached negative answer)".to_string(),
            NEGATIVE.to_string(),
        ),
        _ => return None,
    };
    Some(Finding::new(
        ConditionStatus::False,
        Reason::RecursiveAnswerStale,
        format!(
            "the authoritative servers answer {authoritative} for {host}, but the resolver still answers {cached}: {wait}. Nothing to fix: wait."
        ),
    ))
}

/// Items listed in a message at most; the rest are counted.
const LISTED: usize = 8;

fn listed(replies: &[AuthoritativeReply]) -> String {
    list(replies.iter().map(ToString::to_string))
}

/// The first [`LISTED`] items, each bounded, then how many more there are.
fn list(items: impl ExactSizeIterator<Item = String>) -> String {
    let total = items.len();
    let mut shown_items: Vec<String> = items.take(LISTED).map(|i| shown(&i, 256)).collect();
    if total > LISTED {
        shown_items.push(format!("and {} more", total - LISTED));
    }
    shown_items.join("; ")
}

/// The CAA finding, and a note for the healthy message.
fn caa_finding(inputs: &Inputs<'_>) -> (Option<Finding>, String) {
    let spec = inputs.spec;
    let host = &spec.hostname;
    let issuer = spec.certificate.issuer_domain.clone().or_else(|| {
        inputs
            .certificate
            .and_then(|c| caa::issuer_domain_of(&c.issuer))
            .map(str::to_string)
    });
    let (lookup, wildcard) = applicable_caa(inputs);
    let sets = match &lookup.sets {
        Ok(sets) => sets,
        Err(outcome) => {
            let finding = Finding::new(
                ConditionStatus::Unknown,
                Reason::CaaLookupFailed,
                format!(
                    "the CAA records of {host} could not be read ({}); will retry.",
                    DnsObservation::ended(host.clone(), outcome.clone()).dig_summary()
                ),
            );
            return (Some(finding), String::new());
        }
    };
    let Some(issuer) = issuer else {
        let who = inputs
            .certificate
            .map(|c| {
                format!(
                    "the certificate's issuer {:?} is not a CA this operator knows",
                    shown(&c.issuer, 128)
                )
            })
            .unwrap_or_else(|| "the certificate could not be read".to_string());
        return (
            None,
            format!("CAA: not checked ({who}; set spec.certificate.issuerDomain)"),
        );
    };
    let renewal = inputs
        .certificate
        .map(|c| format!(" (it expires {})", c.not_after))
        .unwrap_or_default();
    let tag = if wildcard { "issuewild" } else { "issue" };
    match caa::decide(sets, &issuer, wildcard) {
        CaaDecision::NoPolicy => (
            None,
            format!("CAA: no record restricts issuance, {issuer} may issue"),
        ),
        CaaDecision::Allowed { at, record } => {
            (None, format!("CAA: {at}. {record} lets {issuer} issue"))
        }
        CaaDecision::Forbidden { at, records } => (
            Some(Finding::new(
                ConditionStatus::False,
                Reason::CaaForbidsIssuer,
                format!(
                    "the CAA records at {at} ({}) do not let {issuer} issue for {host}. The certificate in use keeps working, but its renewal will be refused by the CA{renewal}, silently, months from now: add `{at}. CAA 0 {tag} \"{issuer}\"`.",
                    list(records.into_iter())
                ),
            )),
            String::new(),
        ),
        CaaDecision::CriticalUnknown { at, tag } => (
            Some(Finding::new(
                ConditionStatus::False,
                Reason::CaaCriticalUnknown,
                format!(
                    "the CAA records at {at} have a critical property {tag:?} that CAs do not know: RFC 8659 makes every CA refuse to issue for {host}, so the certificate cannot be renewed{renewal}. Remove the critical flag (128) or the property."
                ),
            )),
            String::new(),
        ),
    }
}

/// The CAA lookup that applies to the certificate, and whether it is a wildcard one: a
/// wildcard certificate is issued for `*.parent`, so the parent's climb decides.
fn applicable_caa<'a>(inputs: &Inputs<'a>) -> (&'a CaaLookup, bool) {
    let wildcard = inputs
        .certificate
        .is_some_and(|c| is_wildcard_for(c, &inputs.spec.hostname));
    match (&inputs.health.caa_wildcard, wildcard) {
        (Some(parent), true) => (parent, true),
        _ => (&inputs.health.caa, wildcard),
    }
}

/// Whether the certificate covers `host` only through a wildcard name (`issuewild` applies).
fn is_wildcard_for(certificate: &CertificateEvidence, host: &str) -> bool {
    let exact = certificate
        .dns_names
        .iter()
        .any(|n| n.eq_ignore_ascii_case(host));
    let wildcard = host
        .split_once('.')
        .map(|(_, parent)| format!("*.{parent}"))
        .is_some_and(|w| {
            certificate
                .dns_names
                .iter()
                .any(|n| n.eq_ignore_ascii_case(&w))
        });
    !exact && wildcard
}

/// Whether a probe shows a working edge: a handshake whose chain verifies.
fn serves(probe: &TlsObservation) -> bool {
    matches!(
        probe.outcome,
        TlsOutcome::Handshake {
            verified: Ok(()),
            ..
        }
    )
}

/// The edge answered, and wrongly: refused the connection, spoke something else than TLS,
/// failed the handshake, or served a certificate that does not verify.
fn fails_definitely(probe: &TlsObservation) -> bool {
    matches!(
        probe.outcome,
        TlsOutcome::Refused
            | TlsOutcome::NotTls(_)
            | TlsOutcome::HandshakeFailed(_)
            | TlsOutcome::ChainTooLarge
            | TlsOutcome::Handshake {
                verified: Err(_),
                ..
            }
    )
}

fn parity_finding(probes: &[TlsObservation]) -> Option<Finding> {
    let family = |v4: bool| -> Vec<&TlsObservation> {
        probes
            .iter()
            .filter(|p| p.endpoint.address.is_ipv4() == v4)
            .collect()
    };
    let (v4, v6) = (family(true), family(false));
    if v4.is_empty() || v6.is_empty() {
        return None;
    }
    let all_ok = |ps: &[&TlsObservation]| ps.iter().all(|p| serves(p));
    let (good, bad, good_name, bad_name) = match (all_ok(&v4), all_ok(&v6)) {
        (true, false) => (&v4, &v6, "IPv4", "IPv6"),
        (false, true) => (&v6, &v4, "IPv6", "IPv4"),
        _ => return None,
    };
    // Only a definite failure says the family is broken: a timeout may pass, a refusal of the
    // guard or an unreachable network may be the operator's own (a cluster without IPv6).
    let failing: Vec<String> = bad
        .iter()
        .filter(|p| fails_definitely(p))
        .map(|p| format!("{}: {}", p.endpoint.address, p.outcome))
        .collect();
    if failing.is_empty() {
        return None;
    }
    Some(Finding::new(
        ConditionStatus::False,
        Reason::AddressFamilyMismatch,
        format!(
            "the edge serves a valid certificate over {good_name} ({}) but not over {bad_name} ({}): clients that use {bad_name} fail. Fix the edge's {bad_name} service or remove the {} records.",
            list(
                good.iter()
                    .map(|p| p.endpoint.address.to_string())
                    .collect::<Vec<_>>()
                    .into_iter()
            ),
            list(failing.into_iter()),
            if bad_name == "IPv6" { "AAAA" } else { "A" }
        ),
    ))
}

fn evidence(inputs: &Inputs<'_>) -> DnsHealthEvidence {
    let health = inputs.health;
    let caa = match &applicable_caa(inputs).0.sets {
        Ok(sets) => caa::relevant(sets)
            .map(|(at, records)| records.iter().map(|r| format!("{at}. {r}")).collect())
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let authoritative = match &health.authoritative {
        Ok(replies) => replies.iter().map(ToString::to_string).collect(),
        Err(_) => Vec::new(),
    };
    let edge_addresses = inputs
        .edge_probes
        .iter()
        .map(|p| {
            let result = if serves(p) {
                "valid certificate".to_string()
            } else {
                p.outcome.to_string()
            };
            format!("{}: {result}", p.endpoint.address)
        })
        .collect();
    DnsHealthEvidence {
        dnssec_validated: resolver_validated(inputs),
        caa,
        authoritative,
        edge_addresses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::{dns_ok, edge_ok, spec};

    fn certificate(names: &[&str], issuer: &str) -> CertificateEvidence {
        CertificateEvidence {
            dns_names: names.iter().map(|n| n.to_string()).collect(),
            issuer: issuer.into(),
            not_after: "2027-01-01T00:00:00Z".parse().expect("time"),
            ..CertificateEvidence::default()
        }
    }

    fn health(caa: &[(&str, bool, &str, &str)]) -> DnsHealthObservation {
        DnsHealthObservation {
            caa: CaaLookup {
                sets: Ok(vec![(
                    "shop.example".into(),
                    caa.iter()
                        .map(|(_, critical, tag, value)| CaaRecord {
                            critical: *critical,
                            tag: tag.to_string(),
                            value: value.to_string(),
                        })
                        .collect(),
                )]),
                validated: false,
            },
            caa_wildcard: None,
            dnssec_bogus: None,
            authoritative: Ok(Vec::new()),
        }
    }

    fn judge(health: &DnsHealthObservation, cert: Option<&CertificateEvidence>) -> Verdict {
        let spec = spec();
        let dns = dns_ok();
        let edge = edge_ok();
        evaluate(&Inputs {
            spec: &spec,
            hostname_dns: &dns,
            edge_probes: &edge.probes,
            health,
            certificate: cert,
        })
        .0
    }

    #[test]
    fn a_name_added_or_removed_without_a_cname_is_stale_too() {
        let recursive = |outcome: DnsOutcome| DnsObservation {
            name: "www.shop.example".into(),
            chain: Vec::new(),
            outcome,
        };
        let name = || "www.shop.example".to_string();
        // Removed from the zone; the resolver still has its addresses.
        let still = recursive(DnsOutcome::Addresses {
            name: name(),
            addresses: vec!["192.0.2.1".parse().expect("ip")],
        });
        let f = stale_finding(&AuthoritativeAnswer::NxDomain, &still, "www.shop.example")
            .expect("stale");
        assert_eq!(f.reason, Reason::RecursiveAnswerStale);
        assert!(
            f.text.contains("answer NXDOMAIN") && f.text.contains("its old addresses (192.0.2.1)"),
            "{f:?}"
        );
        // Added to the zone; the resolver still has the NXDOMAIN.
        let gone = recursive(DnsOutcome::NxDomain { name: name() });
        let f =
            stale_finding(&AuthoritativeAnswer::NoCname, &gone, "www.shop.example").expect("stale");
        assert!(f.text.contains("still answers NXDOMAIN"), "{f:?}");
        assert!(f.text.contains("negative-caching TTL"), "{f:?}");
        // Agreement either way is no finding.
        assert!(stale_finding(&AuthoritativeAnswer::NxDomain, &gone, "www.shop.example").is_none());
        assert!(stale_finding(&AuthoritativeAnswer::NoCname, &still, "www.shop.example").is_none());
    }

    #[test]
    fn a_wildcard_certificate_is_judged_by_issuewild() {
        let h = health(&[
            ("shop.example", false, "issue", "digicert.com"),
            ("shop.example", false, "issuewild", ";"),
        ]);
        let wildcard = certificate(
            &["*.shop.example"],
            "CN=DigiCert Global G2 TLS RSA SHA256 2020 CA1, O=DigiCert Inc",
        );
        let v = judge(&h, Some(&wildcard));
        assert_eq!(
            (v.status, v.reason),
            (ConditionStatus::False, Reason::CaaForbidsIssuer),
            "{v:?}"
        );
        assert!(
            v.message.contains("CAA 0 issuewild \"digicert.com\""),
            "{v:?}"
        );
        // The same records let the exact-name certificate through.
        let exact = certificate(
            &["www.shop.example"],
            "CN=DigiCert Global G2 TLS RSA SHA256 2020 CA1, O=DigiCert Inc",
        );
        let v = judge(&h, Some(&exact));
        assert_eq!(
            (v.status, v.reason),
            (ConditionStatus::True, Reason::Verified),
            "{v:?}"
        );
    }

    #[test]
    fn a_wildcard_certificate_is_judged_by_the_parents_set() {
        let digicert = "CN=DigiCert Global G2 TLS RSA SHA256 2020 CA1, O=DigiCert Inc";
        // The hostname's own set allows DigiCert; the parent's only Let's Encrypt.
        let mut h = health(&[("www.shop.example", false, "issue", "digicert.com")]);
        h.caa.sets = Ok(vec![(
            "www.shop.example".into(),
            vec![CaaRecord {
                critical: false,
                tag: "issue".into(),
                value: "digicert.com".into(),
            }],
        )]);
        let mut parent = health(&[("shop.example", false, "issue", "letsencrypt.org")]).caa;
        parent.validated = false;
        h.caa_wildcard = Some(parent);
        let v = judge(&h, Some(&certificate(&["*.shop.example"], digicert)));
        assert_eq!(
            (v.status, v.reason),
            (ConditionStatus::False, Reason::CaaForbidsIssuer),
            "{v:?}"
        );
        assert!(v.message.contains("at shop.example"), "{v:?}");
        let v = judge(&h, Some(&certificate(&["www.shop.example"], digicert)));
        assert_eq!(v.status, ConditionStatus::True, "{v:?}");
    }

    #[test]
    fn an_unknown_issuer_is_said_not_guessed() {
        let h = health(&[("shop.example", false, "issue", "letsencrypt.org")]);
        let v = judge(
            &h,
            Some(&certificate(&["www.shop.example"], "CN=Private CA")),
        );
        assert_eq!(v.status, ConditionStatus::True, "{v:?}");
        assert!(
            v.message.contains("CAA: not checked")
                && v.message.contains("spec.certificate.issuerDomain"),
            "{v:?}"
        );
    }

    #[test]
    fn a_failed_lookup_is_unknown_and_a_gating_finding_comes_first() {
        let mut h = health(&[]);
        h.caa.sets = Err(DnsOutcome::Timeout {
            name: "www.shop.example".into(),
        });
        let v = judge(&h, None);
        assert_eq!(
            (v.status, v.reason),
            (ConditionStatus::Unknown, Reason::CaaLookupFailed)
        );
        assert!(!v.reason.gates_ready());

        h.dnssec_bogus = Some("shop.example".into());
        let v = judge(&h, None);
        assert_eq!(
            (v.status, v.reason),
            (ConditionStatus::False, Reason::DnssecValidationFailed)
        );
        assert!(
            v.message.contains("CaaLookupFailed: "),
            "every finding is listed: {v:?}"
        );
        assert!(
            v.message.ends_with("Ready is False until it is fixed."),
            "{v:?}"
        );
    }

    #[test]
    fn servers_that_do_not_answer_are_unknown_not_a_disagreement() {
        let mut h = health(&[]);
        let reply = |server: &str, answer| AuthoritativeReply {
            server: server.into(),
            address: "192.0.2.53".parse().expect("ip"),
            answer,
        };
        h.authoritative = Ok(vec![
            reply(
                "ns1.shop.example",
                AuthoritativeAnswer::Failed("timed out".into()),
            ),
            reply(
                "ns2.shop.example",
                AuthoritativeAnswer::Forbidden("private".into()),
            ),
        ]);
        let v = judge(&h, None);
        assert_eq!(
            (v.status, v.reason),
            (ConditionStatus::Unknown, Reason::AuthoritativeLookupFailed)
        );
        // One server answering what the resolver says, one failing: no finding.
        h.authoritative = Ok(vec![
            reply(
                "ns1.shop.example",
                AuthoritativeAnswer::Cname {
                    target: dns_ok().chain[0].target.clone(),
                    ttl: 300,
                },
            ),
            reply(
                "ns2.shop.example",
                AuthoritativeAnswer::Failed("timed out".into()),
            ),
        ]);
        let v = judge(&h, None);
        assert_eq!(v.status, ConditionStatus::True, "{v:?}");

        // Answers that change from one query to the next (weighted DNS): nothing concluded.
        h.authoritative = Ok(vec![
            reply(
                "ns1.shop.example",
                AuthoritativeAnswer::Cname {
                    target: "a.cdn.example".into(),
                    ttl: 60,
                },
            ),
            reply(
                "ns2.shop.example",
                AuthoritativeAnswer::Varies(
                    "CNAME b.cdn.example. then CNAME a.cdn.example.".into(),
                ),
            ),
        ]);
        let v = judge(&h, None);
        assert_eq!(v.status, ConditionStatus::True, "{v:?}");
    }
}
