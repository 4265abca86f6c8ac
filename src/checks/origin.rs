//! Step 4: the customer origin is in HTTPS Only mode with the HTTPS Edge Protocol on, and
//! answers a live TLS handshake for its SNI name with a valid certificate.

use crate::api::{ConditionStatus, ConditionType, Desired, OriginProtocol, Reason, Verdict};
use crate::checks::dns::DnsObservation;
use crate::checks::tls::CHAIN_TOO_LARGE_FIX;
use crate::checks::tls::{TlsObservation, TlsOutcome};
use crate::checks::{dns_failure, worst_probe};

/// What the live probe of the origin saw; absent when the settings already fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginObservation {
    /// Resolution of `origin.host`; None when it is an IP address.
    pub dns: Option<DnsObservation>,
    /// One TLS probe per address of the origin.
    pub probes: Vec<TlsObservation>,
}

/// Whether the origin's settings allow HTTPS delivery; the observer probes only then.
pub fn settings_ok(spec: &Desired) -> bool {
    spec.origin.protocol == OriginProtocol::HttpsOnly && spec.origin.https_edge_protocol
}

pub fn evaluate(spec: &Desired, observed: Option<&OriginObservation>) -> Verdict {
    let o = &spec.origin;
    let v = |status, reason, message: String| {
        Verdict::new(ConditionType::OriginHttpsReady, status, reason, message)
    };
    if o.protocol != OriginProtocol::HttpsOnly {
        return v(
            ConditionStatus::False,
            Reason::OriginNotHttpsOnly,
            format!(
                "origin {:?} is in {} mode; set it to HTTPS Only (step 4).",
                o.name, o.protocol
            ),
        );
    }
    if !o.https_edge_protocol {
        return v(
            ConditionStatus::False,
            Reason::HttpsEdgeProtocolDisabled,
            format!(
                "origin {:?} does not have the HTTPS Edge Protocol option enabled; enable it (step 4).",
                o.name
            ),
        );
    }
    let Some(observed) = observed else {
        return v(
            ConditionStatus::Unknown,
            Reason::Blocked,
            format!("origin {:?} was not probed.", o.name),
        );
    };
    let target = format!("{}:{}", o.host, o.port);
    if let Some(dns) = &observed.dns
        && observed.probes.is_empty()
    {
        let (status, reason, detail) = dns_failure(dns, Reason::OriginUnreachable);
        return v(
            status,
            reason,
            format!(
                "origin {:?} host {}: {detail}; publish an address for the origin host or fix spec.origin.host (step 4).",
                o.name, o.host
            ),
        );
    }
    match worst_probe(&observed.probes, classify) {
        Some((status, reason, detail)) => v(
            status,
            reason,
            format!("origin {:?} at {target}: {detail} (step 4).", o.name),
        ),
        None => v(
            ConditionStatus::True,
            Reason::Verified,
            format!(
                "origin {:?} is HTTPS Only with the HTTPS Edge Protocol on, and {target} completed a verified TLS handshake for SNI {}.",
                o.name,
                spec.origin_sni()
            ),
        ),
    }
}

fn classify(outcome: &TlsOutcome) -> (ConditionStatus, Reason, &'static str) {
    match outcome {
        TlsOutcome::Handshake {
            verified: Ok(()), ..
        } => (ConditionStatus::True, Reason::Verified, ""),
        TlsOutcome::Handshake {
            verified: Err(problem),
            ..
        } if problem.is_untrusted() => (
            ConditionStatus::False,
            Reason::OriginCertificateInvalid,
            "; have the origin serve a certificate issued by a trusted CA, followed by its intermediate certificates, or pass a private CA with --ca-file",
        ),
        TlsOutcome::Handshake {
            verified: Err(_), ..
        } => (
            ConditionStatus::False,
            Reason::OriginCertificateInvalid,
            "; install a certificate on the origin that is valid for its SNI name and issued by a trusted CA",
        ),
        TlsOutcome::Refused | TlsOutcome::Unreachable(_) => (
            ConditionStatus::False,
            Reason::OriginUnreachable,
            "; make the origin listen for HTTPS on that port, or fix spec.origin.host and port",
        ),
        TlsOutcome::ChainTooLarge => (
            ConditionStatus::False,
            Reason::OriginTlsFailed,
            CHAIN_TOO_LARGE_FIX,
        ),
        TlsOutcome::NotTls(_) | TlsOutcome::HandshakeFailed(_) => (
            ConditionStatus::False,
            Reason::OriginTlsFailed,
            "; serve TLS on the origin's HTTPS port",
        ),
        TlsOutcome::ConnectTimeout | TlsOutcome::HandshakeTimeout => (
            ConditionStatus::Unknown,
            Reason::ProbeTimeout,
            "; will retry",
        ),
        TlsOutcome::Forbidden(_) => (ConditionStatus::Unknown, Reason::TargetForbidden, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::dns::DnsOutcome;
    use crate::checks::fixtures::{origin_ok, probe, spec};
    use crate::checks::tls::ChainProblem;

    fn with(outcome: TlsOutcome) -> OriginObservation {
        let mut o = origin_ok();
        o.probes = vec![probe("192.0.2.20:443", "origin.shop.example", outcome)];
        o
    }

    fn check(o: &OriginObservation) -> (ConditionStatus, Reason) {
        let v = evaluate(&spec(), Some(o));
        (v.status, v.reason)
    }

    #[test]
    fn settings_come_first() {
        let mut s = spec();
        s.origin.protocol = OriginProtocol::MatchRequest;
        let v = evaluate(&s, None);
        assert_eq!(
            (v.status, v.reason),
            (ConditionStatus::False, Reason::OriginNotHttpsOnly)
        );
        assert!(v.message.contains("MatchRequest"));
        let mut s = spec();
        s.origin.https_edge_protocol = false;
        assert_eq!(evaluate(&s, None).reason, Reason::HttpsEdgeProtocolDisabled);
        assert!(!settings_ok(&s));
    }

    #[test]
    fn every_probe_outcome_has_its_reason() {
        assert_eq!(
            check(&origin_ok()),
            (ConditionStatus::True, Reason::Verified)
        );
        assert_eq!(
            check(&with(TlsOutcome::Refused)),
            (ConditionStatus::False, Reason::OriginUnreachable)
        );
        assert_eq!(
            check(&with(TlsOutcome::Unreachable("no route".into()))),
            (ConditionStatus::False, Reason::OriginUnreachable)
        );
        assert_eq!(
            check(&with(TlsOutcome::NotTls("HTTP/1.1 400".into()))),
            (ConditionStatus::False, Reason::OriginTlsFailed)
        );
        assert_eq!(
            check(&with(TlsOutcome::HandshakeFailed("alert".into()))),
            (ConditionStatus::False, Reason::OriginTlsFailed)
        );
        let bad_cert = TlsOutcome::Handshake {
            protocol_version: "TLSv1.3".into(),
            chain: vec![],
            verified: Err(ChainProblem::Untrusted("self-signed".into())),
        };
        assert_eq!(
            check(&with(bad_cert)),
            (ConditionStatus::False, Reason::OriginCertificateInvalid)
        );
        assert_eq!(
            check(&with(TlsOutcome::HandshakeTimeout)),
            (ConditionStatus::Unknown, Reason::ProbeTimeout)
        );
        assert_eq!(
            check(&with(TlsOutcome::ConnectTimeout)),
            (ConditionStatus::Unknown, Reason::ProbeTimeout)
        );
        assert_eq!(
            check(&with(TlsOutcome::Forbidden("loopback".into()))),
            (ConditionStatus::Unknown, Reason::TargetForbidden)
        );
    }

    #[test]
    fn unresolvable_origin_host() {
        let o = OriginObservation {
            dns: Some(DnsObservation {
                name: "origin.shop.example".into(),
                chain: vec![],
                outcome: DnsOutcome::NxDomain {
                    name: "origin.shop.example".into(),
                },
            }),
            probes: vec![],
        };
        assert_eq!(
            check(&o),
            (ConditionStatus::False, Reason::OriginUnreachable)
        );
        let o = OriginObservation {
            dns: Some(DnsObservation {
                name: "origin.shop.example".into(),
                chain: vec![],
                outcome: DnsOutcome::Timeout {
                    name: "origin.shop.example".into(),
                },
            }),
            probes: vec![],
        };
        assert_eq!(check(&o), (ConditionStatus::Unknown, Reason::DnsTimeout));
    }
}
