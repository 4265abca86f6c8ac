//! Provider mode: steps 1 to 4 judged from what the CDN's API has (a [`CdnView`]), and the
//! `InSyncWithCdn` condition comparing it with what the spec declares. The live probes still
//! run, on the CDN's values: [`desired`] builds the delivery they check, [`apply`] then puts
//! the CDN's own verdicts over the steps it decides.

use super::{Evaluation, ready};
use crate::api::{
    ConditionStatus as S, ConditionType as T, Desired, DesiredCertificate, EdgeCnameSpec,
    HttpsDeliverySpec, OriginProtocol, OriginSpec, Platform, Reason, Verdict,
};
use crate::checks::x509::{MAX_NAME_BYTES, shown};
use crate::provider::view::{CdnPropagation, CdnView, CertificateState, ProviderError, Raw};
use jiff::Timestamp;
use std::time::Duration;

/// What reading the CDN produced for one delivery.
pub type CdnObserved = Result<CdnView, ProviderError>;

/// Values shown in messages are cut to this many bytes.
const SHOWN: usize = MAX_NAME_BYTES;

/// The delivery the probes check: the CDN's values, else the declared ones, else placeholders
/// for parts the CDN does not have (their steps are decided by [`apply`], not by the probes).
pub fn desired(spec: &HttpsDeliverySpec, observed: &CdnObserved) -> Desired {
    let view = observed.as_ref().ok();
    let edge = view.and_then(|v| v.edge.as_ref());
    let cdn_origin = view.and_then(|v| v.origin.as_ref());
    let declared_edge = spec.edge_cname.as_ref();
    let declared_origin = spec.origin.as_ref();
    let known = |p: &Option<Result<Platform, Raw>>| p.as_ref().and_then(|p| p.clone().ok());
    // Where the provider has no platforms, both sides take the same one, so that step 2's
    // platform rule holds; the CDN's own certificate placement decides instead.
    let platform = edge
        .and_then(|e| known(&e.platform))
        .or(spec.certificate.platform)
        .or_else(|| declared_edge.map(|e| e.platform))
        .unwrap_or(Platform::HttpLarge);
    let origin_name = cdn_origin
        .map(|o| o.name.clone())
        .or_else(|| edge.and_then(|e| e.origin.clone()))
        .or_else(|| declared_origin.map(|o| o.name.clone()))
        .unwrap_or_default();
    let origin = match cdn_origin {
        Some(o) => OriginSpec {
            name: origin_name.clone(),
            host: o.host.clone().unwrap_or_default(),
            port: o.port.unwrap_or(443),
            protocol: o.protocol.clone().unwrap_or(OriginProtocol::HttpOnly),
            https_edge_protocol: o.https_edge_protocol,
            sni_hostname: match o.sni_reported {
                true => o.sni_hostname.clone(),
                false => declared_origin.and_then(|d| d.sni_hostname.clone()),
            },
        },
        None => declared_origin.cloned().unwrap_or(OriginSpec {
            name: origin_name.clone(),
            host: String::new(),
            port: 443,
            protocol: OriginProtocol::HttpOnly,
            https_edge_protocol: false,
            sni_hostname: None,
        }),
    };
    Desired {
        hostname: spec.hostname.clone(),
        certificate: DesiredCertificate {
            secret_ref: spec.certificate.secret_ref.clone(),
            platform,
            target_cname: view
                .and_then(|v| v.target_cname().map(str::to_string))
                .or_else(|| spec.certificate.target_cname.clone())
                .unwrap_or_default(),
            issuer_domain: spec.certificate.issuer_domain.clone(),
        },
        edge_cname: EdgeCnameSpec {
            hostname: edge
                .map(|e| e.hostname.clone())
                .unwrap_or_else(|| spec.hostname.clone()),
            platform,
            origin: edge
                .and_then(|e| e.origin.clone())
                .unwrap_or_else(|| origin_name.clone()),
            modified_at: None,
        },
        origin,
        http: spec.http_checks(),
    }
}

/// Whether the probes should look at the origin: only one the CDN has.
pub fn origin_known(observed: &CdnObserved) -> bool {
    observed.as_ref().is_ok_and(|v| {
        v.origin
            .as_ref()
            .is_some_and(|o| o.host.is_some() && o.protocol.is_ok())
    })
}

/// Puts the CDN's verdicts over steps 1 to 4 (and 5 and 6 when there is no target CNAME to
/// check), adds InSyncWithCdn before Ready and decides Ready again. While the CDN is in flux
/// (propagating, certificate pending, API unavailable) the next look is at most `poll` away.
pub fn apply(
    evaluation: &mut Evaluation,
    spec: &HttpsDeliverySpec,
    observed: &CdnObserved,
    conflict: Option<&str>,
    now: Timestamp,
    poll: Duration,
) {
    let mut steps: Vec<Verdict> = evaluation
        .verdicts
        .iter()
        .filter(|v| v.type_ != T::Ready)
        .cloned()
        .collect();
    let overrides = match observed {
        Err(error) => unavailable(error),
        Ok(view) => from_view(view, &steps),
    };
    for o in overrides {
        if let Some(step) = steps.iter_mut().find(|s| s.type_ == o.type_) {
            *step = o;
        }
    }
    steps.push(in_sync(spec, observed));
    let in_flux = steps.iter().any(|v| {
        matches!(
            v.reason,
            Reason::Propagating
                | Reason::CertificatePending
                | Reason::DomainValidationPending
                | Reason::ProviderUnavailable
                | Reason::ProviderUnauthorized
        )
    });
    steps.push(ready::evaluate(&steps, conflict, &spec.hostname));
    evaluation.verdicts = steps;
    evaluation.edge_tracking = None;
    if in_flux {
        let soon = now
            .checked_add(jiff::SignedDuration::try_from(poll).unwrap_or(jiff::SignedDuration::ZERO))
            .unwrap_or(now);
        evaluation.next_change = Some(evaluation.next_change.map_or(soon, |t| t.min(soon)));
    }
}

/// The hostname's DNS still points at the CDN (step 5 passed: its CNAME reaches the target)
/// while the CDN has no edge configuration for it: whoever configures the hostname at the CDN
/// serves it. DnsHealthy says so, over whatever else it found.
fn dangling(view: &CdnView, steps: &[Verdict]) -> Option<Verdict> {
    let dns = steps.iter().find(|v| v.type_ == T::DnsConfigured)?;
    if !dns.is_true() {
        return None;
    }
    let target = view.target_cname().unwrap_or("the CDN's target CNAME");
    Some(verdict(
        T::DnsHealthy,
        S::False,
        Reason::DanglingCname,
        format!(
            "DanglingCname: the hostname's CNAME still points at {target}, but {} has no edge configuration for it: a dangling CNAME. Whoever can add this hostname to an edge configuration at the CDN can serve content as it (subdomain takeover); remove the CNAME record or restore the edge configuration. This breaks delivery for some clients: Ready is False until it is fixed.",
            view.provider
        ),
    ))
}

fn verdict(type_: T, status: S, reason: Reason, message: String) -> Verdict {
    Verdict::new(type_, status, reason, message)
}

/// Every step the CDN feeds is Unknown while it cannot be read.
fn unavailable(error: &ProviderError) -> Vec<Verdict> {
    let reason = provider_reason(error);
    let message = format!(
        "not checked: {}; will retry.",
        shown(&error.to_string(), 2 * SHOWN)
    );
    T::STEPS
        .into_iter()
        .map(|t| verdict(t, S::Unknown, reason, message.clone()))
        .collect()
}

fn provider_reason(error: &ProviderError) -> Reason {
    match error {
        ProviderError::Unauthorized(_)
        | ProviderError::Forbidden(_)
        | ProviderError::Account(_) => Reason::ProviderUnauthorized,
        ProviderError::Spec(_) => Reason::InvalidSpec,
        _ => Reason::ProviderUnavailable,
    }
}

fn unrecognized(type_: T, raw: &Raw, provider: &str) -> Verdict {
    verdict(
        type_,
        S::Unknown,
        Reason::UnrecognizedCdnValue,
        format!(
            "{provider} answered {} {:?}, a value the operator does not know; it is reported as is and not guessed. Check it in the provider's console.",
            shown(&raw.field, SHOWN),
            shown(&raw.value, SHOWN)
        ),
    )
}

/// The verdicts the CDN's record decides by itself.
fn from_view(view: &CdnView, steps: &[Verdict]) -> Vec<Verdict> {
    let mut out = Vec::new();
    let p = view.provider;
    let certificate_active = certificate_verdict(view, &mut out);
    let Some(edge) = &view.edge else {
        out.push(verdict(
            T::EdgeCnameConfigured,
            S::False,
            Reason::EdgeCnameNotFound,
            format!("{p} has no edge CNAME configuration for this hostname (step 2); create one on the certificate's platform, pointing at the customer origin, or fix spec.cdn.edgeCnameId."),
        ));
        for t in [T::EdgeCnamePropagated, T::OriginHttpsReady] {
            out.push(blocked(
                t,
                "there is no edge CNAME configuration at the CDN (step 2)",
            ));
        }
        if view.target_cname().is_none() {
            for t in [T::DnsConfigured, T::EdgeServing] {
                out.push(blocked(t, "there is no target CNAME at the CDN to check"));
            }
        }
        out.extend(dangling(view, steps));
        return out;
    };
    if let Some(Err(raw)) = &edge.platform {
        out.push(unrecognized(T::EdgeCnameConfigured, raw, p));
    } else if let Some(problem) = edge.problems.first() {
        out.push(verdict(
            T::EdgeCnameConfigured,
            S::False,
            Reason::NotDeployedOnPlatform,
            shown(problem, 4 * SHOWN),
        ));
    } else if certificate_active && view.target_cname().is_none() {
        out.push(verdict(
            T::EdgeCnameConfigured,
            S::False,
            Reason::NotDeployedOnPlatform,
            format!("the certificate is not deployed on the platform of edge CNAME {} (step 2: the edge CNAME must be on the same platform as the certificate); deploy it there or move the edge CNAME.", shown(&edge.hostname, SHOWN)),
        ));
    }
    if view.target_cname().is_none() {
        for t in [T::DnsConfigured, T::EdgeServing] {
            if steps.iter().any(|s| s.type_ == t) {
                out.push(blocked(t, "the CDN has no deployment of the certificate on the edge's platform, so there is no target CNAME to check"));
            }
        }
    }
    out.push(propagation_verdict(view));
    out.extend(origin_verdict(view));
    out
}

fn blocked(type_: T, why: &str) -> Verdict {
    verdict(
        type_,
        S::Unknown,
        Reason::Blocked,
        format!("not checked: {why}."),
    )
}

/// Step 1 from the CDN's certificate; true when it is Active (then the x509 checks stand).
fn certificate_verdict(view: &CdnView, out: &mut Vec<Verdict>) -> bool {
    let p = view.provider;
    let Some(cert) = &view.certificate else {
        out.push(verdict(
            T::CertificateValid,
            S::False,
            Reason::CertificateNotFound,
            format!("{p} has no certificate with the ID in spec.cdn.certificateId; request one through the Certificate Provisioning System (step 1) or fix the ID."),
        ));
        return false;
    };
    let id = shown(&cert.id, SHOWN);
    let (status, reason, message) = match &cert.state {
        CertificateState::Active => return true,
        CertificateState::DomainValidationPending { domains } => (
            S::False,
            Reason::DomainValidationPending,
            format!(
                "certificate {id} waits for domain control validation of {}; publish the validation token the CA asked for (step 1).",
                listed(domains)
            ),
        ),
        CertificateState::Pending { stage } => (
            S::False,
            Reason::CertificatePending,
            format!(
                "certificate {id} is not issued yet: {p} reports it at {:?}; wait for it to become Active (step 1).",
                shown(stage, SHOWN)
            ),
        ),
        CertificateState::NeedsAttention { message } => (
            S::False,
            Reason::CertificateNeedsAttention,
            format!(
                "certificate {id} needs attention: {p} says {:?} (step 1).",
                shown(message, 2 * SHOWN)
            ),
        ),
        CertificateState::Deleted => (
            S::False,
            Reason::CertificateNotFound,
            format!("certificate {id} was deleted at {p}; request a new one (step 1)."),
        ),
        CertificateState::Unrecognized(raw) => {
            out.push(unrecognized(T::CertificateValid, raw, p));
            return false;
        }
    };
    out.push(verdict(T::CertificateValid, status, reason, message));
    false
}

fn listed(items: &[String]) -> String {
    let shown_items: Vec<String> = items.iter().take(8).map(|d| shown(d, SHOWN)).collect();
    let more = items.len().saturating_sub(8);
    match more {
        0 => shown_items.join(", "),
        n => format!("{} and {n} more", shown_items.join(", ")),
    }
}

fn propagation_verdict(view: &CdnView) -> Verdict {
    let p = view.provider;
    match &view.propagation {
        Some(CdnPropagation::Done) => verdict(
            T::EdgeCnamePropagated,
            S::True,
            Reason::Propagated,
            format!("{p} reports the edge configuration propagated to every POP."),
        ),
        Some(CdnPropagation::InProgress { state, percent }) => verdict(
            T::EdgeCnamePropagated,
            S::False,
            Reason::Propagating,
            match percent {
                Some(pc) => format!(
                    "{p} reports the edge configuration {:?}, {pc:.0}% propagated; wait for it to reach every POP (step 3).",
                    shown(state, SHOWN)
                ),
                None => format!(
                    "{p} reports the edge configuration {:?}; wait for it to reach every POP (step 3).",
                    shown(state, SHOWN)
                ),
            },
        ),
        Some(CdnPropagation::Failed { state }) => verdict(
            T::EdgeCnamePropagated,
            S::False,
            Reason::PropagationFailed,
            format!(
                "{p} reports the last change of the edge configuration {:?}: it did not reach the network; activate it again (step 3).",
                shown(state, SHOWN)
            ),
        ),
        Some(CdnPropagation::Unrecognized(raw)) => unrecognized(T::EdgeCnamePropagated, raw, p),
        None => blocked(T::EdgeCnamePropagated, "the CDN gave no propagation status"),
    }
}

fn origin_verdict(view: &CdnView) -> Option<Verdict> {
    let p = view.provider;
    let Some(origin) = &view.origin else {
        return Some(verdict(
            T::OriginHttpsReady,
            S::False,
            Reason::OriginNotFound,
            format!(
                "{p} has no customer origin for the edge CNAME to point at (step 4); create it or point the edge CNAME at an existing one."
            ),
        ));
    };
    match (&origin.protocol, &origin.host) {
        (Err(raw), _) => Some(unrecognized(T::OriginHttpsReady, raw, p)),
        (Ok(_), None) => Some(verdict(
            T::OriginHttpsReady,
            S::False,
            Reason::OriginNotFound,
            format!(
                "customer origin {:?} at {p} has no HTTPS hostname (step 4); add one.",
                shown(&origin.name, SHOWN)
            ),
        )),
        // The settings and the live probe are judged by the origin step as usual.
        _ => None,
    }
}

/// Each declared field against the CDN's value, side by side.
pub fn differences(spec: &HttpsDeliverySpec, view: &CdnView) -> Vec<String> {
    let mut diff = Differences::default();
    let edge = view.edge.as_ref();
    let platform_of = |p: &Option<Result<Platform, Raw>>| match p {
        Some(Ok(p)) => Some(p.to_string()),
        Some(Err(raw)) => Some(raw.value.clone()),
        None => None,
    };
    let edge_platform = edge.and_then(|e| platform_of(&e.platform));
    if edge_platform.is_some() {
        diff.compare(
            "spec.certificate.platform",
            spec.certificate.platform.map(|p| p.to_string()),
            edge_platform.clone(),
        );
    }
    diff.compare(
        "spec.certificate.targetCname",
        spec.certificate.target_cname.clone(),
        view.target_cname().map(str::to_string),
    );
    if let Some(d) = &spec.edge_cname {
        diff.compare(
            "spec.edgeCname.hostname",
            Some(d.hostname.clone()),
            edge.map(|e| e.hostname.clone()),
        );
        if edge_platform.is_some() || edge.is_none() {
            diff.compare(
                "spec.edgeCname.platform",
                Some(d.platform.to_string()),
                edge_platform,
            );
        }
        diff.compare(
            "spec.edgeCname.origin",
            Some(d.origin.clone()),
            edge.and_then(|e| e.origin.clone()),
        );
    }
    if let Some(d) = &spec.origin {
        diff.origin(d, view.origin.as_ref());
    }
    diff.0
}

/// The differences found so far, one sentence each.
#[derive(Default)]
struct Differences(Vec<String>);

impl Differences {
    /// Notes `field` when it is declared and the CDN has another value (or none).
    fn compare(&mut self, field: &str, declared: Option<String>, cdn: Option<String>) {
        if let Some(d) = declared
            && Some(&d) != cdn.as_ref()
        {
            self.0.push(format!(
                "{field}: declared {:?}, the CDN has {}",
                shown(&d, SHOWN),
                cdn.map_or("none".to_string(), |c| format!("{:?}", shown(&c, SHOWN)))
            ));
        }
    }

    fn origin(&mut self, d: &OriginSpec, origin: Option<&crate::provider::view::CdnOrigin>) {
        self.compare(
            "spec.origin.name",
            Some(d.name.clone()),
            origin.map(|o| o.name.clone()),
        );
        self.compare(
            "spec.origin.host",
            Some(d.host.clone()),
            origin.and_then(|o| o.host.clone()),
        );
        self.compare(
            "spec.origin.port",
            Some(d.port.to_string()),
            origin.and_then(|o| o.port).map(|p| p.to_string()),
        );
        self.compare(
            "spec.origin.protocol",
            Some(d.protocol.to_string()),
            origin.map(|o| match &o.protocol {
                Ok(p) => p.to_string(),
                Err(raw) => raw.value.clone(),
            }),
        );
        self.compare(
            "spec.origin.httpsEdgeProtocol",
            Some(d.https_edge_protocol.to_string()),
            origin.map(|o| o.https_edge_protocol.to_string()),
        );
        if d.sni_hostname.is_some() && origin.is_none_or(|o| o.sni_reported) {
            self.compare(
                "spec.origin.sniHostname",
                d.sni_hostname.clone(),
                origin.and_then(|o| o.sni_hostname.clone()),
            );
        }
    }
}

fn in_sync(spec: &HttpsDeliverySpec, observed: &CdnObserved) -> Verdict {
    let view = match observed {
        Err(error) => {
            return verdict(
                T::InSyncWithCdn,
                S::Unknown,
                provider_reason(error),
                format!(
                    "not compared: {}; will retry.",
                    shown(&error.to_string(), 2 * SHOWN)
                ),
            );
        }
        Ok(view) => view,
    };
    let diffs = differences(spec, view);
    if diffs.is_empty() {
        return verdict(
            T::InSyncWithCdn,
            S::True,
            Reason::InSync,
            format!(
                "every field the spec declares matches what {} has.",
                view.provider
            ),
        );
    }
    verdict(
        T::InSyncWithCdn,
        S::False,
        Reason::DeclaredDiffersFromCdn,
        format!(
            "the spec and {} disagree: {}. Change the spec or the CDN so that they agree.",
            view.provider,
            diffs.join("; ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ConditionType, DnsEvidence};
    use crate::checks::fixtures;
    use crate::provider::view::{CdnCertificate, CdnDeployment, CdnEdge, CdnOrigin};

    const POLL: Duration = Duration::from_secs(30);

    /// What a healthy Edgecast account has for the fixture's delivery.
    fn view() -> CdnView {
        CdnView {
            provider: "edgecast",
            certificate: Some(CdnCertificate {
                id: "1234".into(),
                state: CertificateState::Active,
                domains: vec!["www.shop.example".into()],
                deployments: vec![CdnDeployment {
                    platform: Some(Ok(Platform::HttpLarge)),
                    target_cname: "cs1.wpc.cdn.example".into(),
                }],
            }),
            edge: Some(CdnEdge {
                id: "1001".into(),
                hostname: "www.shop.example".into(),
                platform: Some(Ok(Platform::HttpLarge)),
                origin: Some("shop-origin".into()),
                problems: vec![],
            }),
            propagation: Some(CdnPropagation::Done),
            origin: Some(CdnOrigin {
                name: "shop-origin".into(),
                host: Some("origin.shop.example".into()),
                port: Some(443),
                protocol: Ok(OriginProtocol::HttpsOnly),
                https_edge_protocol: true,
                sni_hostname: None,
                sni_reported: true,
            }),
        }
    }

    /// Every step True, as the probes would have it for a healthy delivery.
    fn all_true() -> Evaluation {
        let mut verdicts: Vec<Verdict> = ConditionType::STEPS
            .iter()
            .chain(&[T::DnsHealthy])
            .map(|t| Verdict::new(*t, S::True, Reason::Verified, "ok"))
            .collect();
        verdicts.push(Verdict::new(T::Ready, S::True, Reason::Verified, "ok"));
        Evaluation {
            verdicts,
            certificate: None,
            dns: DnsEvidence::default(),
            http: None,
            edge_tracking: None,
            next_change: None,
        }
    }

    fn applied(spec: &HttpsDeliverySpec, observed: &CdnObserved) -> Evaluation {
        let mut e = all_true();
        apply(&mut e, spec, observed, None, fixtures::now(), POLL);
        e
    }

    fn get(e: &Evaluation, t: T) -> &Verdict {
        e.verdicts
            .iter()
            .find(|v| v.type_ == t)
            .expect("the condition")
    }

    #[test]
    fn the_cdns_truth_agreeing_with_the_spec_is_ready_and_in_sync() {
        let e = applied(&fixtures::crd_spec(), &Ok(view()));
        let types: Vec<T> = e.verdicts.iter().map(|v| v.type_).collect();
        assert_eq!(types.last(), Some(&T::Ready));
        assert_eq!(types[types.len() - 2], T::InSyncWithCdn);
        assert_eq!(get(&e, T::InSyncWithCdn).reason, Reason::InSync);
        let propagated = get(&e, T::EdgeCnamePropagated);
        assert_eq!(
            (propagated.status, propagated.reason),
            (S::True, Reason::Propagated)
        );
        assert!(e.ready().is_true(), "{:?}", e.ready());
        assert_eq!(e.next_change, None, "nothing in flux");
    }

    #[test]
    fn the_probes_check_the_cdns_values_not_the_declared_ones() {
        let mut spec = fixtures::crd_spec();
        spec.origin.as_mut().expect("declared").host = "old-origin.shop.example".into();
        spec.certificate.target_cname = None;
        let mut cdn = view();
        if let Some(o) = cdn.origin.as_mut() {
            o.port = Some(8443);
        }
        let desired = desired(&spec, &Ok(cdn));
        assert_eq!(desired.origin.host, "origin.shop.example");
        assert_eq!(desired.origin.port, 8443);
        assert_eq!(desired.certificate.target_cname, "cs1.wpc.cdn.example");
        // With no spec fields at all, everything comes from the CDN.
        spec.edge_cname = None;
        spec.origin = None;
        spec.certificate.platform = None;
        let desired = super::desired(&spec, &Ok(view()));
        assert_eq!(desired.edge_cname.origin, "shop-origin");
        assert_eq!(desired.origin.name, "shop-origin");
        assert!(origin_known(&Ok(view())));
    }

    #[test]
    fn drift_is_listed_field_by_field_side_by_side_and_gates_ready() {
        let mut spec = fixtures::crd_spec();
        spec.origin.as_mut().expect("declared").host = "old-origin.shop.example".into();
        spec.edge_cname.as_mut().expect("declared").platform = Platform::Adn;
        let e = applied(&spec, &Ok(view()));
        let sync = get(&e, T::InSyncWithCdn);
        assert_eq!(
            (sync.status, sync.reason),
            (S::False, Reason::DeclaredDiffersFromCdn)
        );
        assert!(
            sync.message.contains(r#"spec.origin.host: declared "old-origin.shop.example", the CDN has "origin.shop.example""#),
            "{}",
            sync.message
        );
        assert!(
            sync.message
                .contains(r#"spec.edgeCname.platform: declared "Adn", the CDN has "HttpLarge""#),
            "{}",
            sync.message
        );
        assert_eq!(e.ready().status, S::False);
        assert_eq!(e.ready().reason, Reason::DeclaredDiffersFromCdn);
    }

    #[test]
    fn an_unreachable_provider_is_unknown_never_false_and_looked_at_again_soon() {
        for (error, reason) in [
            (
                ProviderError::Unavailable("api answered HTTP 503".into()),
                Reason::ProviderUnavailable,
            ),
            (
                ProviderError::Unauthorized("HTTP 401".into()),
                Reason::ProviderUnauthorized,
            ),
            (
                ProviderError::Forbidden("HTTP 403".into()),
                Reason::ProviderUnauthorized,
            ),
        ] {
            let e = applied(&fixtures::crd_spec(), &Err(error));
            // DnsHealthy and EdgeHttpOk look at DNS and the edge only: the CDN's API does not
            // feed them.
            let fed = e
                .verdicts
                .iter()
                .filter(|v| !ConditionType::DEPTH.contains(&v.type_));
            for v in fed {
                assert_eq!(v.status, S::Unknown, "{v:?}");
                assert_eq!(v.reason, reason, "{v:?}");
            }
            let soon = fixtures::now()
                .checked_add(jiff::SignedDuration::from_secs(30))
                .expect("time");
            assert_eq!(e.next_change, Some(soon));
        }
    }

    #[test]
    fn each_certificate_state_has_its_reason_and_says_what_the_ca_waits_for() {
        let cases = [
            (
                CertificateState::DomainValidationPending {
                    domains: vec!["www.shop.example".into()],
                },
                S::False,
                Reason::DomainValidationPending,
                "www.shop.example",
            ),
            (
                CertificateState::Pending {
                    stage: "OtherValidation".into(),
                },
                S::False,
                Reason::CertificatePending,
                "OtherValidation",
            ),
            (
                CertificateState::NeedsAttention {
                    message: "CAA record forbids DigiCert".into(),
                },
                S::False,
                Reason::CertificateNeedsAttention,
                "CAA record forbids DigiCert",
            ),
            (
                CertificateState::Deleted,
                S::False,
                Reason::CertificateNotFound,
                "deleted",
            ),
            (
                CertificateState::Unrecognized(Raw {
                    field: "status".into(),
                    value: "Frozen".into(),
                }),
                S::Unknown,
                Reason::UnrecognizedCdnValue,
                "Frozen",
            ),
        ];
        for (state, status, reason, says) in cases {
            let mut cdn = view();
            if let Some(c) = cdn.certificate.as_mut() {
                c.state = state;
            }
            let e = applied(&fixtures::crd_spec(), &Ok(cdn));
            let v = get(&e, T::CertificateValid);
            assert_eq!((v.status, v.reason), (status, reason), "{v:?}");
            assert!(v.message.contains(says), "{}", v.message);
            assert_eq!(e.ready().reason, reason);
        }
        let mut cdn = view();
        cdn.certificate = None;
        let v = get(
            &applied(&fixtures::crd_spec(), &Ok(cdn)),
            T::CertificateValid,
        )
        .clone();
        assert_eq!(
            (v.status, v.reason),
            (S::False, Reason::CertificateNotFound)
        );
    }

    #[test]
    fn propagation_follows_the_cdn_not_the_clock() {
        let mut cdn = view();
        cdn.propagation = Some(CdnPropagation::InProgress {
            state: "propagating".into(),
            percent: Some(50.0),
        });
        let e = applied(&fixtures::crd_spec(), &Ok(cdn.clone()));
        let v = get(&e, T::EdgeCnamePropagated);
        assert_eq!((v.status, v.reason), (S::False, Reason::Propagating));
        assert!(v.message.contains("50% propagated"), "{}", v.message);
        assert!(e.next_change.is_some(), "followed until it is done");
        cdn.propagation = Some(CdnPropagation::Failed {
            state: "FAILED".into(),
        });
        let v = get(
            &applied(&fixtures::crd_spec(), &Ok(cdn.clone())),
            T::EdgeCnamePropagated,
        )
        .clone();
        assert_eq!((v.status, v.reason), (S::False, Reason::PropagationFailed));
        cdn.propagation = Some(CdnPropagation::Unrecognized(Raw {
            field: "status".into(),
            value: "Paused".into(),
        }));
        let v = get(
            &applied(&fixtures::crd_spec(), &Ok(cdn)),
            T::EdgeCnamePropagated,
        )
        .clone();
        assert_eq!(
            (v.status, v.reason),
            (S::Unknown, Reason::UnrecognizedCdnValue)
        );
        assert!(v.message.contains("\"Paused\""), "{}", v.message);
    }

    #[test]
    fn a_missing_edge_cname_and_a_certificate_on_another_platform_are_step_2() {
        let mut cdn = view();
        cdn.edge = None;
        cdn.propagation = None;
        let e = applied(&fixtures::crd_spec(), &Ok(cdn));
        let v = get(&e, T::EdgeCnameConfigured);
        assert_eq!((v.status, v.reason), (S::False, Reason::EdgeCnameNotFound));
        assert_eq!(get(&e, T::EdgeCnamePropagated).reason, Reason::Blocked);
        assert_eq!(e.ready().reason, Reason::EdgeCnameNotFound);
        // DNS still points at the CDN (step 5 passed): a dangling CNAME.
        let v = get(&e, T::DnsHealthy);
        assert_eq!((v.status, v.reason), (S::False, Reason::DanglingCname));
        assert!(v.message.contains("subdomain takeover"), "{}", v.message);
        // A hostname whose DNS does not point at the CDN is not dangling.
        let mut unpointed = view();
        unpointed.edge = None;
        unpointed.propagation = None;
        let mut e = all_true();
        if let Some(dns) = e.verdicts.iter_mut().find(|v| v.type_ == T::DnsConfigured) {
            *dns = Verdict::new(T::DnsConfigured, S::False, Reason::NoCnameRecord, "no");
        }
        apply(
            &mut e,
            &fixtures::crd_spec(),
            &Ok(unpointed),
            None,
            fixtures::now(),
            POLL,
        );
        assert_eq!(get(&e, T::DnsHealthy).reason, Reason::Verified);

        let mut cdn = view();
        if let Some(edge) = cdn.edge.as_mut() {
            edge.platform = Some(Ok(Platform::Adn));
        }
        let e = applied(&fixtures::crd_spec(), &Ok(cdn));
        let v = get(&e, T::EdgeCnameConfigured);
        assert_eq!(
            (v.status, v.reason),
            (S::False, Reason::NotDeployedOnPlatform)
        );
        assert_eq!(
            get(&e, T::DnsConfigured).reason,
            Reason::Blocked,
            "no target CNAME to check"
        );
    }

    /// Edgecast's MCC v2 origins do not say which SNI name the edge sends: a declared one is
    /// what the probe uses, and it is not called a difference.
    #[test]
    fn a_declared_sni_name_the_api_does_not_report_is_used_not_compared() {
        let mut spec = fixtures::crd_spec();
        spec.origin.as_mut().expect("declared").sni_hostname = Some("sni.shop.example".into());
        let mut cdn = view();
        if let Some(o) = cdn.origin.as_mut() {
            o.sni_reported = false;
        }
        assert_eq!(
            desired(&spec, &Ok(cdn.clone())).origin_sni(),
            "sni.shop.example"
        );
        let e = applied(&spec, &Ok(cdn.clone()));
        assert_eq!(get(&e, T::InSyncWithCdn).reason, Reason::InSync);
        // Where the API reports it, a different one is a difference.
        if let Some(o) = cdn.origin.as_mut() {
            o.sni_reported = true;
        }
        let e = applied(&spec, &Ok(cdn));
        assert_eq!(
            get(&e, T::InSyncWithCdn).reason,
            Reason::DeclaredDiffersFromCdn
        );
    }

    #[test]
    fn an_origin_the_cdn_lacks_or_names_oddly_is_step_4() {
        let mut cdn = view();
        cdn.origin = None;
        assert!(!origin_known(&Ok(cdn.clone())), "not probed");
        let v = get(
            &applied(&fixtures::crd_spec(), &Ok(cdn)),
            T::OriginHttpsReady,
        )
        .clone();
        assert_eq!((v.status, v.reason), (S::False, Reason::OriginNotFound));
        let mut cdn = view();
        if let Some(o) = cdn.origin.as_mut() {
            o.protocol = Err(Raw {
                field: "protocol_type_id".into(),
                value: "7".into(),
            });
        }
        let v = get(
            &applied(&fixtures::crd_spec(), &Ok(cdn)),
            T::OriginHttpsReady,
        )
        .clone();
        assert_eq!(
            (v.status, v.reason),
            (S::Unknown, Reason::UnrecognizedCdnValue)
        );
    }
}
