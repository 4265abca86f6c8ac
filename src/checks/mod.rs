//! Evaluation: pure functions from observations to the conditions of the contract. One module
//! per step of the procedure; nothing here does I/O.

pub mod caa;
pub mod cdn;
pub mod certificate;
pub mod dns;
pub mod dns_health;
pub mod edge_cname;
pub mod edge_http;
pub mod edge_serving;
pub mod inventory;
pub mod names;
pub mod origin;
pub mod propagation;
pub mod ready;
pub mod secret;
pub mod tls;
pub mod x509;

use crate::api::{
    CertificateEvidence, CheckSettings, ConditionStatus, ConditionType, Desired, DnsEvidence,
    EdgeCnameTracking, HttpEvidence, Reason, Verdict,
};
use jiff::Timestamp;

/// What the observer must look at for one delivery. Deciding what is worth probing is a
/// judgement (an origin whose settings already fail step 4 is not probed), so it is made here;
/// the probes only carry it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Targets {
    pub hostname: String,
    pub target_cname: String,
    /// The Secret named by `spec.certificate.secretRef`, if any.
    pub secret: Option<String>,
    pub origin: Option<OriginTarget>,
    /// EdgeHttpOk's GET path, and whether `http://hostname` is asked for its redirect.
    pub http_path: String,
    pub http_redirect: bool,
}

/// The customer origin's live TLS endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginTarget {
    pub host: String,
    pub port: u16,
    pub sni: String,
}

impl Targets {
    pub fn of(spec: &Desired) -> Targets {
        Targets {
            hostname: spec.hostname.clone(),
            target_cname: spec.certificate.target_cname.clone(),
            secret: spec.certificate.secret_ref.as_ref().map(|r| r.name.clone()),
            origin: origin::settings_ok(spec).then(|| OriginTarget {
                host: spec.origin.host.clone(),
                port: spec.origin.port,
                sni: spec.origin_sni().to_string(),
            }),
            http_path: edge_http::path(&spec.http).to_string(),
            http_redirect: edge_http::checks_redirect(&spec.http),
        }
    }
}

/// The delivery the checks judge: the spec's own (declared mode), or the CDN's record with the
/// spec beside it (provider mode, `cdn` being what the CDN's API answered).
pub fn desired_of(
    spec: &crate::api::HttpsDeliverySpec,
    cdn: Option<&cdn::CdnObserved>,
) -> Result<Desired, String> {
    match cdn {
        None => spec.declared(),
        Some(Err(crate::provider::view::ProviderError::Spec(problem))) => Err(problem.clone()),
        Some(observed) => Ok(cdn::desired(spec, observed)),
    }
}

impl Targets {
    /// The targets of `desired`; in provider mode an origin the CDN does not have is not probed.
    pub fn of_mode(desired: &Desired, cdn: Option<&cdn::CdnObserved>) -> Targets {
        let mut targets = Targets::of(desired);
        if cdn.is_some_and(|o| !cdn::origin_known(o)) {
            targets.origin = None;
        }
        targets
    }
}

/// Everything the observer saw for one delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observations {
    pub certificate: certificate::CertificateInput,
    /// Chain verification of the certificate under test for `spec.hostname` at `now`.
    pub chain_verified: Option<Result<(), tls::ChainProblem>>,
    pub dns: dns::DnsObservation,
    /// What DnsHealthy looks at besides the walks and probes.
    pub dns_health: dns_health::DnsHealthObservation,
    /// The HTTP exchanges with the edge (EdgeHttpOk).
    pub http: edge_http::HttpObservation,
    pub origin: Option<origin::OriginObservation>,
    pub edge: edge_serving::EdgeObservation,
}

/// State the controller remembers between reconciles (the `check` command remembers nothing).
#[derive(Clone, Debug, Default)]
pub struct Memory {
    /// Track edge CNAME changes when `modifiedAt` is absent.
    pub track_edge_changes: bool,
    pub edge_tracking: Option<EdgeCnameTracking>,
}

/// The verdicts for one delivery, its evidence, and when they can change without outside help.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// The six step conditions in procedure order, then Ready.
    pub verdicts: Vec<Verdict>,
    pub certificate: Option<CertificateEvidence>,
    pub dns: DnsEvidence,
    /// What the edge answered over HTTP, when it was asked.
    pub http: Option<HttpEvidence>,
    pub edge_tracking: Option<EdgeCnameTracking>,
    /// The earliest future moment at which a verdict changes by the clock alone (end of
    /// propagation, expiry warning, expiry, notBefore).
    pub next_change: Option<Timestamp>,
}

impl Evaluation {
    pub fn ready(&self) -> &Verdict {
        // Ready is always last; `evaluate` guarantees it.
        &self.verdicts[self.verdicts.len() - 1]
    }
}

/// Runs every step's evaluation. `conflict` names the delivery that already claims the hostname.
pub fn evaluate(
    spec: &Desired,
    settings: &CheckSettings,
    observed: &Observations,
    memory: &Memory,
    conflict: Option<&str>,
    now: Timestamp,
) -> Evaluation {
    let cert = certificate::evaluate(
        &observed.certificate,
        observed.chain_verified.as_ref(),
        &spec.hostname,
        settings.expiry_warning,
        now,
    );
    let edge_cname = edge_cname::evaluate(spec, cert.dns_names.as_deref());
    let propagation = propagation::evaluate(
        spec,
        memory.edge_tracking.as_ref(),
        memory.track_edge_changes,
        settings.propagation_delay,
        now,
    );
    let origin = origin::evaluate(spec, observed.origin.as_ref());
    let dns_verdict = dns::evaluate(spec, &observed.dns);
    let edge = edge_serving::evaluate(spec, &observed.edge);
    let (http, http_evidence) = edge_http::evaluate(spec, &edge, &observed.http);
    let (dns_health, health_evidence) = dns_health::evaluate(&dns_health::Inputs {
        spec,
        hostname_dns: &observed.dns,
        edge_probes: &observed.edge.probes,
        health: &observed.dns_health,
        certificate: cert.evidence.as_ref(),
    });
    let steps = vec![
        cert.verdict.clone(),
        edge_cname,
        propagation.verdict.clone(),
        origin,
        dns_verdict,
        edge,
        http,
        dns_health,
    ];
    let ready = ready::evaluate(&steps, conflict, &spec.hostname);
    let mut verdicts = steps;
    verdicts.push(ready);
    let next_change = cert
        .changes_at
        .iter()
        .copied()
        .chain(propagation.changes_at)
        .filter(|t| *t > now)
        .min();
    Evaluation {
        verdicts,
        certificate: cert.evidence,
        dns: DnsEvidence {
            chain: bounded_evidence(
                observed
                    .dns
                    .dig_lines()
                    .into_iter()
                    .filter(|l| l.contains(" CNAME ")),
            ),
            addresses: bounded_evidence(observed.dns.addresses().iter().map(|a| a.to_string())),
            dnssec_validated: health_evidence.dnssec_validated,
            caa: bounded_evidence(health_evidence.caa.into_iter()),
            authoritative: bounded_evidence(health_evidence.authoritative.into_iter()),
            edge_addresses: bounded_evidence(health_evidence.edge_addresses.into_iter()),
        },
        http: http_evidence,
        edge_tracking: propagation.tracking,
        next_change,
    }
}

/// The verdicts when the operator's own reconcile deadline cut the observation short.
/// `offline` holds what needs no network (the Secret, the spec) and timeouts for the rest: the
/// steps that need no probe are judged as usual, the others are Unknown `ProbeTimeout`.
pub fn evaluate_timed_out(
    spec: &Desired,
    settings: &CheckSettings,
    offline: &Observations,
    memory: &Memory,
    conflict: Option<&str>,
    now: Timestamp,
    deadline: std::time::Duration,
) -> Evaluation {
    let mut evaluation = evaluate(spec, settings, offline, memory, conflict, now);
    let message = format!(
        "not decided: the probes did not finish within the operator's reconcile deadline of {}s; will retry.",
        deadline.as_secs()
    );
    let mut steps: Vec<Verdict> = evaluation
        .verdicts
        .iter()
        .filter(|v| v.type_ != ConditionType::Ready)
        .cloned()
        .map(|mut v| {
            if v.status == ConditionStatus::Unknown {
                v.reason = Reason::ProbeTimeout;
                v.message.clone_from(&message);
            }
            v
        })
        .collect();
    let ready = ready::evaluate(&steps, conflict, &spec.hostname);
    steps.push(ready);
    evaluation.verdicts = steps;
    evaluation
}

/// The verdicts for a delivery whose spec cannot be used (a `spec.checks` value that does not
/// parse, say from an object stored before the schema rule): no step is checked, and Ready
/// names the field. What the controller remembers is kept.
pub fn evaluate_invalid(problem: &str, memory: &Memory) -> Evaluation {
    let mut verdicts: Vec<Verdict> = ConditionType::STEPS
        .iter()
        .chain(&ConditionType::DEPTH)
        .map(|t| {
            Verdict::new(
                *t,
                ConditionStatus::Unknown,
                Reason::InvalidSpec,
                format!("not checked: the spec is invalid ({problem})."),
            )
        })
        .collect();
    verdicts.push(Verdict::new(
        ConditionType::Ready,
        ConditionStatus::False,
        Reason::InvalidSpec,
        format!("the spec is invalid: {problem}; fix the field and apply the object again."),
    ));
    Evaluation {
        verdicts,
        certificate: None,
        dns: DnsEvidence::default(),
        http: None,
        edge_tracking: memory.edge_tracking.clone(),
        next_change: None,
    }
}

/// Entries of a list in status evidence: the first [`x509::MAX_EVIDENCE_NAMES`], each escaped
/// and bounded, so that status stays small whatever DNS answered (the messages count the rest).
fn bounded_evidence(items: impl Iterator<Item = String>) -> Vec<String> {
    items
        .take(x509::MAX_EVIDENCE_NAMES)
        .map(|item| x509::shown(&item, 2 * x509::MAX_NAME_BYTES))
        .collect()
}

/// "in 3 days" or "5 hours ago": how far `t` is from `now`, for messages. Coarse on purpose: a
/// message that changed at every reconcile would mean a status write at every reconcile.
pub(crate) fn ago_or_in(t: Timestamp, now: Timestamp) -> String {
    let secs = t.as_second() - now.as_second();
    let abs = secs.unsigned_abs();
    let (n, unit) = if abs >= 86_400 {
        (abs / 86_400, "day")
    } else if abs >= 3600 {
        (abs / 3600, "hour")
    } else if abs >= 60 {
        (abs / 60, "minute")
    } else {
        (abs, "second")
    };
    let span = format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if secs >= 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// How a DNS walk that produced no usable address reads in a verdict of another step:
/// timeouts and server failures are Unknown, everything else is `false_reason`.
pub(crate) fn dns_failure(
    observed: &dns::DnsObservation,
    false_reason: Reason,
) -> (ConditionStatus, Reason, String) {
    let dig = observed.dig_summary();
    match &observed.outcome {
        dns::DnsOutcome::Timeout { .. } => (
            ConditionStatus::Unknown,
            Reason::DnsTimeout,
            format!("DNS query timed out ({dig})"),
        ),
        dns::DnsOutcome::ServerFailure { .. } => (
            ConditionStatus::Unknown,
            Reason::DnsServerFailure,
            format!("DNS server failure ({dig})"),
        ),
        _ => (
            ConditionStatus::False,
            false_reason,
            format!("no address to connect to ({dig})"),
        ),
    }
}

/// Classifies each TLS probe and returns the worst, with the endpoint and what it answered.
pub(crate) fn worst_probe<Fix: std::fmt::Display>(
    probes: &[tls::TlsObservation],
    classify: impl Fn(&tls::TlsOutcome) -> (ConditionStatus, Reason, Fix),
) -> Option<(ConditionStatus, Reason, String)> {
    let classified: Vec<(ConditionStatus, Reason, String)> = probes
        .iter()
        .map(|p| {
            let (status, reason, fix) = classify(&p.outcome);
            (
                status,
                reason,
                format!("{}: {}{fix}", p.endpoint, p.outcome),
            )
        })
        .collect();
    worst(&classified)
}

/// The first False of a list of classified probe results, else the first Unknown, else None.
pub(crate) fn worst(
    classified: &[(ConditionStatus, Reason, String)],
) -> Option<(ConditionStatus, Reason, String)> {
    classified
        .iter()
        .find(|c| c.0 == ConditionStatus::False)
        .or_else(|| classified.iter().find(|c| c.0 == ConditionStatus::Unknown))
        .cloned()
}

#[cfg(test)]
pub(crate) mod fixtures;
