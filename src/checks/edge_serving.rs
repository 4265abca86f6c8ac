//! End to end: the CDN edge, reached at the target CNAME's addresses with SNI set to the
//! hostname, serves a certificate valid for the hostname.

use crate::api::{ConditionStatus, ConditionType, Desired, Reason, Verdict};
use crate::checks::dns::DnsObservation;
use crate::checks::tls::CHAIN_TOO_LARGE_FIX;
use crate::checks::tls::{TlsObservation, TlsOutcome};
use crate::checks::{dns_failure, worst_probe};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeObservation {
    /// Resolution of the certificate's target CNAME.
    pub target_dns: DnsObservation,
    /// One probe per address of the target CNAME, on the edge HTTPS port, SNI = hostname.
    pub probes: Vec<TlsObservation>,
}

pub fn evaluate(spec: &Desired, observed: &EdgeObservation) -> Verdict {
    let target = &spec.certificate.target_cname;
    let v = |status, reason, message: String| {
        Verdict::new(ConditionType::EdgeServing, status, reason, message)
    };
    if observed.probes.is_empty() {
        let (status, reason, detail) = dns_failure(&observed.target_dns, Reason::EdgeUnreachable);
        let reason = if status == ConditionStatus::False {
            Reason::EdgeUnreachable
        } else {
            reason
        };
        return v(
            status,
            reason,
            format!(
                "target CNAME {target}: {detail}; check spec.certificate.targetCname against the certificate's welcome letter."
            ),
        );
    }
    match worst_probe(&observed.probes, |o| classify(o, &spec.hostname)) {
        Some((status, reason, detail)) => v(
            status,
            reason,
            format!("CDN edge at target CNAME {target}, {detail}."),
        ),
        None => v(
            ConditionStatus::True,
            Reason::Verified,
            format!(
                "the CDN edge at {target} ({}) serves a certificate valid for {} with SNI {}.",
                observed
                    .probes
                    .iter()
                    .map(|p| p.endpoint.address.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                spec.hostname,
                spec.hostname
            ),
        ),
    }
}

fn classify(outcome: &TlsOutcome, hostname: &str) -> (ConditionStatus, Reason, String) {
    match outcome {
        TlsOutcome::Handshake {
            verified: Ok(()), ..
        } => (ConditionStatus::True, Reason::Verified, String::new()),
        TlsOutcome::Handshake {
            verified: Err(_), ..
        } => (
            ConditionStatus::False,
            Reason::EdgeCertificateMismatch,
            format!(
                "; the edge does not serve a valid certificate for {hostname}: check that the hostname belongs to this certificate and target CNAME (steps 1 and 5)"
            ),
        ),
        TlsOutcome::Refused | TlsOutcome::Unreachable(_) => (
            ConditionStatus::False,
            Reason::EdgeUnreachable,
            "; check spec.certificate.targetCname against the welcome letter".to_string(),
        ),
        TlsOutcome::ChainTooLarge => (
            ConditionStatus::False,
            Reason::EdgeTlsFailed,
            CHAIN_TOO_LARGE_FIX.to_string(),
        ),
        TlsOutcome::NotTls(_) | TlsOutcome::HandshakeFailed(_) => (
            ConditionStatus::False,
            Reason::EdgeTlsFailed,
            format!(
                "; the edge has no certificate deployed for {hostname} yet, or the edge CNAME has not propagated (steps 1 to 3)"
            ),
        ),
        TlsOutcome::ConnectTimeout | TlsOutcome::HandshakeTimeout => (
            ConditionStatus::Unknown,
            Reason::ProbeTimeout,
            "; will retry".to_string(),
        ),
        TlsOutcome::Forbidden(_) => (
            ConditionStatus::Unknown,
            Reason::TargetForbidden,
            String::new(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::dns::DnsOutcome;
    use crate::checks::fixtures::{edge_ok, probe, spec};
    use crate::checks::tls::ChainProblem;

    fn with(outcomes: Vec<TlsOutcome>) -> EdgeObservation {
        let mut e = edge_ok();
        e.probes = outcomes
            .into_iter()
            .enumerate()
            .map(|(i, o)| probe(&format!("192.0.2.{}:443", 10 + i), "www.shop.example", o))
            .collect();
        e
    }

    fn check(e: &EdgeObservation) -> (ConditionStatus, Reason) {
        let v = evaluate(&spec(), e);
        (v.status, v.reason)
    }

    fn ok() -> TlsOutcome {
        TlsOutcome::Handshake {
            protocol_version: "TLSv1.3".into(),
            chain: vec![],
            verified: Ok(()),
        }
    }

    #[test]
    fn every_outcome_has_its_reason() {
        assert_eq!(check(&edge_ok()), (ConditionStatus::True, Reason::Verified));
        assert_eq!(
            check(&with(vec![TlsOutcome::Refused])),
            (ConditionStatus::False, Reason::EdgeUnreachable)
        );
        assert_eq!(
            check(&with(vec![TlsOutcome::HandshakeFailed(
                "unrecognised name".into()
            )])),
            (ConditionStatus::False, Reason::EdgeTlsFailed)
        );
        let wrong = TlsOutcome::Handshake {
            protocol_version: "TLSv1.3".into(),
            chain: vec![],
            verified: Err(ChainProblem::WrongName("api.shop.example".into())),
        };
        assert_eq!(
            check(&with(vec![wrong])),
            (ConditionStatus::False, Reason::EdgeCertificateMismatch)
        );
        assert_eq!(
            check(&with(vec![TlsOutcome::HandshakeTimeout])),
            (ConditionStatus::Unknown, Reason::ProbeTimeout)
        );
    }

    #[test]
    fn one_bad_address_among_good_ones_fails_and_is_named() {
        let e = with(vec![ok(), TlsOutcome::Refused]);
        let v = evaluate(&spec(), &e);
        assert_eq!(
            (v.status, v.reason),
            (ConditionStatus::False, Reason::EdgeUnreachable)
        );
        assert!(v.message.contains("192.0.2.11:443"), "{}", v.message);
    }

    #[test]
    fn a_false_wins_over_an_unknown() {
        let e = with(vec![TlsOutcome::HandshakeTimeout, TlsOutcome::Refused]);
        assert_eq!(check(&e).0, ConditionStatus::False);
    }

    #[test]
    fn target_cname_that_does_not_resolve() {
        let mut e = edge_ok();
        e.probes.clear();
        e.target_dns.outcome = DnsOutcome::NxDomain {
            name: "cs1.wpc.cdn.example".into(),
        };
        assert_eq!(check(&e), (ConditionStatus::False, Reason::EdgeUnreachable));
        e.target_dns.outcome = DnsOutcome::ServerFailure {
            name: "cs1.wpc.cdn.example".into(),
            detail: "SERVFAIL".into(),
        };
        assert_eq!(
            check(&e),
            (ConditionStatus::Unknown, Reason::DnsServerFailure)
        );
    }
}
