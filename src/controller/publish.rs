//! Publishing: the new status (only when something other than timestamps changed), the Events
//! of transitions, and when to look again. Pure: the reconciler does the I/O.

use crate::api::text::{MAX_EVENT_NOTE, escape_and_truncate};
use crate::api::{
    ConditionStatus, ConditionType, HttpsDeliveryStatus, Reason, Verdict,
    conditions::merge_conditions,
};
use crate::checks::Evaluation;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use std::time::Duration;

/// An Event to publish about the delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub warning: bool,
    /// The condition's reason.
    pub reason: String,
    pub note: String,
}

/// What a reconcile should write.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The status to apply, or None when it would not change.
    pub status: Option<HttpsDeliveryStatus>,
    pub events: Vec<Transition>,
}

/// Builds the status from an evaluation, keeping transition times, and compares it with `old`.
pub fn plan(
    old: Option<&HttpsDeliveryStatus>,
    evaluation: &Evaluation,
    generation: Option<i64>,
    now: Timestamp,
) -> Plan {
    let old_conditions: &[Condition] = old.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let conditions = merge_conditions(old_conditions, &evaluation.verdicts, generation, now);
    let new = HttpsDeliveryStatus {
        observed_generation: generation,
        conditions,
        certificate: evaluation.certificate.clone(),
        dns: Some(evaluation.dns.clone()),
        http: evaluation.http.clone(),
        edge_cname: evaluation.edge_tracking.clone(),
        compacted: None,
    };
    let events = transitions(old_conditions, &evaluation.verdicts);
    let unchanged = old.is_some_and(|old| old.same_as(&new));
    let status = if unchanged { None } else { Some(new) };
    Plan { status, events }
}

/// Warning when a step condition leaves True (or first appears False), Normal when it returns
/// to True. Ready is left out, since it repeats the first failing step, except when it turns to
/// InvalidSpec: then no step was checked, and one Warning names the field instead of six.
pub fn transitions(old: &[Condition], verdicts: &[Verdict]) -> Vec<Transition> {
    let before = |t: ConditionType| old.iter().find(|c| c.type_ == t.as_str());
    // A CDN API going away (or coming back) moves every condition it feeds at once: that is
    // one Event each way, not one per condition.
    let outage = |reason: &str| {
        reason == Reason::ProviderUnavailable.as_str()
            || reason == Reason::ProviderUnauthorized.as_str()
    };
    let (mut went, mut came_back) = (false, false);
    let mut events: Vec<Transition> = verdicts
        .iter()
        .filter(|v| v.type_ != ConditionType::Ready && v.reason != Reason::InvalidSpec)
        .filter_map(|v| {
            let old = before(v.type_);
            let warning = match (old.map(|c| c.status.as_str()), v.status) {
                (Some("True"), ConditionStatus::False | ConditionStatus::Unknown) => true,
                (None, ConditionStatus::False) => true,
                // A takeover risk is worth its own Warning whatever DnsHealthy said before.
                (Some(_), ConditionStatus::False)
                    if v.reason == Reason::DanglingCname
                        && old.is_some_and(|c| c.reason != Reason::DanglingCname.as_str()) =>
                {
                    true
                }
                (Some("False" | "Unknown"), ConditionStatus::True) => false,
                _ => return None,
            };
            let seen = match (warning, old) {
                (true, _) if outage(v.reason.as_str()) => &mut went,
                (false, Some(c)) if outage(&c.reason) => &mut came_back,
                _ => return Some(event(warning, v)),
            };
            (!std::mem::replace(seen, true)).then(|| event(warning, v))
        })
        .collect();
    if let Some(ready) = verdicts
        .iter()
        .find(|v| v.type_ == ConditionType::Ready && v.reason == Reason::InvalidSpec)
        && before(ConditionType::Ready).is_none_or(|c| c.reason != Reason::InvalidSpec.as_str())
    {
        events.push(event(true, ready));
    }
    events
}

fn event(warning: bool, v: &Verdict) -> Transition {
    Transition {
        warning,
        reason: v.reason.as_str().to_string(),
        // Escaped (names come from the outside world) before the cut, so the limit holds.
        note: escape_and_truncate(&format!("{}: {}", v.type_, v.message), MAX_EVENT_NOTE),
    }
}

/// When to look again: at the next moment a verdict changes by the clock (plus a second so the
/// moment has passed), or after the recheck interval with up to 10% jitter so that objects
/// created together do not probe together forever.
pub fn next_check(
    evaluation: &Evaluation,
    recheck: Duration,
    now: Timestamp,
    jitter: f64,
) -> Duration {
    let jitter = jitter.clamp(0.0, 1.0);
    let recheck = recheck.mul_f64(1.0 - 0.1 * jitter);
    match evaluation.next_change {
        Some(at) if at > now => {
            let until =
                Duration::from_secs((at.as_second() - now.as_second()).max(0).unsigned_abs())
                    + Duration::from_secs(1);
            until.min(recheck)
        }
        _ => recheck,
    }
}

/// Exponential backoff after failed reconciles: 5s, 10s, 20s ... capped at 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << failures.min(6));
    Duration::from_secs(secs.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DnsEvidence, Reason};

    fn evaluation(verdicts: Vec<Verdict>) -> Evaluation {
        Evaluation {
            verdicts,
            certificate: None,
            dns: DnsEvidence::default(),
            http: None,
            edge_tracking: None,
            next_change: None,
        }
    }

    fn all(status: ConditionStatus, reason: Reason) -> Vec<Verdict> {
        ConditionType::STEPS
            .iter()
            .chain([ConditionType::Ready].iter())
            .map(|t| Verdict::new(*t, status, reason, format!("{t} is {status}")))
            .collect()
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn nothing_changed_means_no_write_and_no_event() {
        let e = evaluation(all(ConditionStatus::True, Reason::Verified));
        let first = plan(None, &e, Some(1), t("2026-01-01T00:00:00Z"));
        let written = first.status.clone().expect("first status is written");
        let second = plan(Some(&written), &e, Some(1), t("2026-01-01T00:10:00Z"));
        assert_eq!(second.status, None, "only timestamps would differ");
        assert!(second.events.is_empty());
    }

    #[test]
    fn a_compacted_status_in_the_cache_still_tells_what_changed() {
        let e = evaluation(all(ConditionStatus::True, Reason::Verified));
        let mut written = plan(None, &e, Some(1), t("2026-01-01T00:00:00Z"))
            .status
            .expect("written");
        // Another writer's condition, as the API server would hand it back.
        let foreign = Condition {
            type_: "Synced".into(),
            status: "True".into(),
            reason: "Argo".into(),
            message: "synced by argo".into(),
            observed_generation: None,
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(
                "2026-01-01T00:00:00Z",
            )),
        };
        written.conditions.insert(0, foreign.clone());
        let mut cached = written.clone();
        cached.compact();
        assert!(cached.conditions.contains(&foreign), "kept whole");
        assert!(
            cached
                .conditions
                .iter()
                .filter(|c| c.type_ != "Synced")
                .all(|c| c.message.is_empty()
                    && c.last_transition_time == foreign.last_transition_time)
        );
        assert!(cached.same_as(&written));

        // The same world: no write, no Event.
        let again = plan(Some(&cached), &e, Some(1), t("2026-01-01T00:10:00Z"));
        assert_eq!(again.status, None);
        assert!(again.events.is_empty());
        // Only a message changed: written, with the transition times kept.
        let mut worded = all(ConditionStatus::True, Reason::Verified);
        worded[0].message = "another wording".into();
        let next = plan(
            Some(&cached),
            &evaluation(worded),
            Some(1),
            t("2026-01-01T00:20:00Z"),
        );
        let s = next.status.expect("the message changed");
        let first = &s.conditions[1];
        assert_eq!(first.message, "another wording");
        assert_eq!(first.last_transition_time, foreign.last_transition_time);
        assert!(
            s.conditions.contains(&foreign),
            "another writer's condition intact"
        );
        // Only the evidence changed: written.
        let mut evidenced = evaluation(all(ConditionStatus::True, Reason::Verified));
        evidenced.dns.chain = vec!["www.shop.example. IN CNAME other.example.".into()];
        assert!(
            plan(
                Some(&cached),
                &evidenced,
                Some(1),
                t("2026-01-01T00:30:00Z")
            )
            .status
            .is_some()
        );
    }

    #[test]
    fn a_new_generation_is_written() {
        let e = evaluation(all(ConditionStatus::True, Reason::Verified));
        let written = plan(None, &e, Some(1), t("2026-01-01T00:00:00Z"))
            .status
            .unwrap();
        let next = plan(Some(&written), &e, Some(2), t("2026-01-01T00:10:00Z"));
        let s = next.status.expect("observedGeneration moved");
        assert_eq!(s.observed_generation, Some(2));
        assert!(
            s.conditions
                .iter()
                .all(|c| c.observed_generation == Some(2))
        );
    }

    #[test]
    fn a_dangling_cname_is_a_warning_even_after_another_dns_health_finding() {
        let health = |reason, message: &str| {
            let mut v = all(ConditionStatus::True, Reason::Verified);
            v.insert(
                6,
                Verdict::new(
                    ConditionType::DnsHealthy,
                    ConditionStatus::False,
                    reason,
                    message,
                ),
            );
            evaluation(v)
        };
        let caa = health(Reason::CaaForbidsIssuer, "renewal");
        let s0 = plan(None, &caa, Some(1), t("2026-01-01T00:00:00Z"))
            .status
            .unwrap();
        let dangling = health(Reason::DanglingCname, "takeover");
        let p1 = plan(Some(&s0), &dangling, Some(1), t("2026-01-01T00:10:00Z"));
        assert_eq!(
            p1.events,
            vec![Transition {
                warning: true,
                reason: "DanglingCname".into(),
                note: "DnsHealthy: takeover".into()
            }]
        );
        // Still dangling at the next look: no second Event.
        let s1 = p1.status.unwrap();
        let p2 = plan(Some(&s1), &dangling, Some(1), t("2026-01-01T00:20:00Z"));
        assert!(p2.events.is_empty(), "{:?}", p2.events);
        // Another finding replacing CAA's is no Event (the status stays False).
        let other = health(Reason::RecursiveAnswerStale, "wait");
        let p3 = plan(Some(&s0), &other, Some(1), t("2026-01-01T00:20:00Z"));
        assert!(p3.events.is_empty(), "{:?}", p3.events);
    }

    #[test]
    fn leaving_true_is_one_warning_and_returning_is_one_normal() {
        let ok = evaluation(all(ConditionStatus::True, Reason::Verified));
        let mut broken_v = all(ConditionStatus::True, Reason::Verified);
        broken_v[4] = Verdict::new(
            ConditionType::DnsConfigured,
            ConditionStatus::False,
            Reason::CnameTargetMismatch,
            "wrong",
        );
        broken_v[6] = Verdict::new(
            ConditionType::Ready,
            ConditionStatus::False,
            Reason::CnameTargetMismatch,
            "wrong",
        );
        let broken = evaluation(broken_v);
        let s0 = plan(None, &ok, Some(1), t("2026-01-01T00:00:00Z"))
            .status
            .unwrap();
        let p1 = plan(Some(&s0), &broken, Some(1), t("2026-01-01T00:10:00Z"));
        assert_eq!(
            p1.events,
            vec![Transition {
                warning: true,
                reason: "CnameTargetMismatch".into(),
                note: "DnsConfigured: wrong".into()
            }]
        );
        let s1 = p1.status.unwrap();
        let dns = s1
            .conditions
            .iter()
            .find(|c| c.type_ == "DnsConfigured")
            .unwrap();
        assert_eq!(dns.last_transition_time.0, t("2026-01-01T00:10:00Z"));
        let p2 = plan(Some(&s1), &broken, Some(1), t("2026-01-01T00:20:00Z"));
        assert!(
            p2.events.is_empty() && p2.status.is_none(),
            "still broken: no duplicate"
        );
        let p3 = plan(Some(&s1), &ok, Some(1), t("2026-01-01T00:30:00Z"));
        assert_eq!(p3.events.len(), 1);
        assert!(!p3.events[0].warning);
        assert_eq!(p3.events[0].reason, "Verified");
    }

    #[test]
    fn a_cdn_api_outage_is_one_warning_and_its_end_one_normal() {
        let ok = evaluation(all(ConditionStatus::True, Reason::Verified));
        let down = evaluation(all(ConditionStatus::Unknown, Reason::ProviderUnavailable));
        let s0 = plan(None, &ok, Some(1), t("2026-01-01T00:00:00Z"))
            .status
            .unwrap();
        let p1 = plan(Some(&s0), &down, Some(1), t("2026-01-01T00:10:00Z"));
        assert_eq!(p1.events.len(), 1, "{:?}", p1.events);
        assert!(p1.events[0].warning);
        assert_eq!(p1.events[0].reason, "ProviderUnavailable");
        let p2 = plan(p1.status.as_ref(), &ok, Some(1), t("2026-01-01T00:20:00Z"));
        assert_eq!(p2.events.len(), 1, "{:?}", p2.events);
        assert!(!p2.events[0].warning);
        // Another failure at the same time still has its own Event.
        let mut mixed = all(ConditionStatus::Unknown, Reason::ProviderUnavailable);
        mixed[4] = Verdict::new(
            ConditionType::DnsConfigured,
            ConditionStatus::False,
            Reason::NxDomain,
            "gone",
        );
        let p3 = plan(
            Some(&s0),
            &evaluation(mixed),
            Some(1),
            t("2026-01-01T00:30:00Z"),
        );
        let reasons: Vec<&str> = p3.events.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(reasons, ["ProviderUnavailable", "NxDomain"]);
    }

    #[test]
    fn first_sight_of_a_broken_step_warns_once() {
        let mut v = all(ConditionStatus::True, Reason::Verified);
        v[0] = Verdict::new(
            ConditionType::CertificateValid,
            ConditionStatus::False,
            Reason::Expired,
            "expired",
        );
        v[2] = Verdict::new(
            ConditionType::EdgeCnamePropagated,
            ConditionStatus::Unknown,
            Reason::ChangeTimeUnknown,
            "?",
        );
        let p = plan(None, &evaluation(v), Some(1), t("2026-01-01T00:00:00Z"));
        assert_eq!(
            p.events.len(),
            1,
            "False warns, Unknown and True do not: {:?}",
            p.events
        );
        assert_eq!(p.events[0].reason, "Expired");
    }

    #[test]
    fn an_invalid_spec_is_one_warning_until_it_is_fixed() {
        let ok = evaluation(all(ConditionStatus::True, Reason::Verified));
        let s0 = plan(None, &ok, Some(1), t("2026-01-01T00:00:00Z"))
            .status
            .unwrap();
        let memory = crate::checks::Memory::default();
        let invalid = crate::checks::evaluate_invalid(
            "spec.checks.timeout: \"10 minutes\" is not a duration",
            &memory,
        );
        let p1 = plan(Some(&s0), &invalid, Some(2), t("2026-01-01T00:10:00Z"));
        assert_eq!(p1.events.len(), 1, "{:?}", p1.events);
        assert!(p1.events[0].warning);
        assert_eq!(p1.events[0].reason, "InvalidSpec");
        assert!(
            p1.events[0].note.contains("spec.checks.timeout"),
            "{:?}",
            p1.events
        );
        let s1 = p1.status.expect("written");
        let ready = s1.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InvalidSpec")
        );
        let p2 = plan(Some(&s1), &invalid, Some(2), t("2026-01-01T00:20:00Z"));
        assert!(p2.events.is_empty() && p2.status.is_none(), "no duplicate");
        let p3 = plan(Some(&s1), &ok, Some(3), t("2026-01-01T00:30:00Z"));
        assert!(p3.events.iter().all(|e| !e.warning), "{:?}", p3.events);
    }

    #[test]
    fn notes_are_truncated_to_the_api_limit() {
        let long = "x".repeat(5000);
        let v = vec![Verdict::new(
            ConditionType::DnsConfigured,
            ConditionStatus::False,
            Reason::NxDomain,
            long,
        )];
        let events = transitions(&[], &v);
        assert!(events[0].note.len() <= MAX_EVENT_NOTE);
    }

    #[test]
    fn notes_escape_control_characters_and_still_fit() {
        let v = |message: String| {
            vec![Verdict::new(
                ConditionType::DnsConfigured,
                ConditionStatus::False,
                Reason::CnameTargetMismatch,
                message,
            )]
        };
        let events = transitions(
            &[],
            &v("dig www\x1b[2J\r\n.shop.example \u{202e}elif".into()),
        );
        assert_eq!(
            events[0].note,
            "DnsConfigured: dig www\\x1b[2J\\r\\n.shop.example \\u{202e}elif"
        );
        // 1,000 ESC characters are 1,000 bytes, but 4,000 once escaped: cut after escaping.
        let events = transitions(&[], &v("\x1b".repeat(1000)));
        let note = &events[0].note;
        assert!(note.len() <= MAX_EVENT_NOTE, "{} bytes", note.len());
        assert!(note.ends_with("\\x1b..."), "{note}");
        assert!(!note.chars().any(crate::api::text::is_hostile));
    }

    #[test]
    fn next_check_is_the_earliest_clock_change_or_the_jittered_recheck() {
        let now = t("2026-01-01T00:00:00Z");
        let mut e = evaluation(vec![]);
        let ten = Duration::from_secs(600);
        assert_eq!(next_check(&e, ten, now, 0.0), ten);
        assert_eq!(next_check(&e, ten, now, 1.0), Duration::from_secs(540));
        e.next_change = Some(t("2026-01-01T00:00:30Z"));
        assert_eq!(next_check(&e, ten, now, 0.5), Duration::from_secs(31));
        e.next_change = Some(t("2026-01-02T00:00:00Z"));
        assert_eq!(next_check(&e, ten, now, 0.0), ten);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_secs(5));
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(3), Duration::from_secs(40));
        assert_eq!(backoff(30), Duration::from_secs(300));
    }
}
