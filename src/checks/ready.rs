//! Ready: every step is True; otherwise the first failing step, in procedure order.

use crate::api::{ConditionStatus, ConditionType, Reason, Verdict};

pub fn evaluate(steps: &[Verdict], conflict: Option<&str>, hostname: &str) -> Verdict {
    if let Some(owner) = conflict {
        return Verdict::new(
            ConditionType::Ready,
            ConditionStatus::False,
            Reason::HostnameConflict,
            format!(
                "{hostname} is already claimed by HttpsDelivery {owner}, which was there first; delete one of the two or change this one's hostname."
            ),
        );
    }
    // DnsHealthy gates only with a finding that breaks delivery; its other findings are notes.
    let gates = |v: &&Verdict| v.type_ != ConditionType::DnsHealthy || v.reason.gates_ready();
    let first = |status| steps.iter().filter(gates).find(|v| v.status == status);
    if let Some(failed) = first(ConditionStatus::False) {
        return Verdict::new(
            ConditionType::Ready,
            ConditionStatus::False,
            failed.reason,
            format!(
                "{}: {} is False: {}",
                failed.type_.step(),
                failed.type_,
                failed.message
            ),
        );
    }
    if let Some(unknown) = first(ConditionStatus::Unknown) {
        return Verdict::new(
            ConditionType::Ready,
            ConditionStatus::Unknown,
            unknown.reason,
            format!(
                "{}: {} is Unknown: {}",
                unknown.type_.step(),
                unknown.type_,
                unknown.message
            ),
        );
    }
    let warning: String = steps
        .iter()
        .filter(|v| {
            v.reason == Reason::ExpiringSoon
                || (v.type_ == ConditionType::DnsHealthy && v.status == ConditionStatus::False)
        })
        .map(|v| format!(" Note: {}", v.message))
        .collect();
    Verdict::new(
        ConditionType::Ready,
        ConditionStatus::True,
        Reason::Verified,
        format!("{hostname} is delivered over HTTPS: every step of the procedure passes.{warning}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(t: ConditionType, s: ConditionStatus, r: Reason) -> Verdict {
        Verdict::new(t, s, r, format!("{t} says {r}"))
    }

    fn all_true() -> Vec<Verdict> {
        ConditionType::STEPS
            .iter()
            .map(|t| step(*t, ConditionStatus::True, Reason::Verified))
            .collect()
    }

    #[test]
    fn all_true_is_ready() {
        let v = evaluate(&all_true(), None, "www.shop.example");
        assert_eq!(
            (v.status, v.reason),
            (ConditionStatus::True, Reason::Verified)
        );
    }

    #[test]
    fn first_failing_step_in_procedure_order_wins() {
        let mut steps = all_true();
        steps[4] = step(
            ConditionType::DnsConfigured,
            ConditionStatus::False,
            Reason::NxDomain,
        );
        steps[1] = step(
            ConditionType::EdgeCnameConfigured,
            ConditionStatus::False,
            Reason::PlatformMismatch,
        );
        let v = evaluate(&steps, None, "www.shop.example");
        assert_eq!(
            (v.status, v.reason),
            (ConditionStatus::False, Reason::PlatformMismatch)
        );
        assert!(v.message.starts_with("step 2"), "{}", v.message);
    }

    #[test]
    fn false_outranks_unknown() {
        let mut steps = all_true();
        steps[0] = step(
            ConditionType::CertificateValid,
            ConditionStatus::Unknown,
            Reason::CertificateUnavailable,
        );
        steps[5] = step(
            ConditionType::EdgeServing,
            ConditionStatus::False,
            Reason::EdgeUnreachable,
        );
        let v = evaluate(&steps, None, "www.shop.example");
        assert_eq!(
            (v.status, v.reason),
            (ConditionStatus::False, Reason::EdgeUnreachable)
        );
        steps[5] = step(
            ConditionType::EdgeServing,
            ConditionStatus::True,
            Reason::Verified,
        );
        let v = evaluate(&steps, None, "www.shop.example");
        assert_eq!(
            (v.status, v.reason),
            (ConditionStatus::Unknown, Reason::CertificateUnavailable)
        );
    }

    #[test]
    fn conflict_overrides_everything() {
        let v = evaluate(&all_true(), Some("shop/www"), "www.shop.example");
        assert_eq!(
            (v.status, v.reason),
            (ConditionStatus::False, Reason::HostnameConflict)
        );
        assert!(v.message.contains("shop/www"));
    }

    #[test]
    fn expiring_soon_is_ready_with_a_note() {
        let mut steps = all_true();
        steps[0] = step(
            ConditionType::CertificateValid,
            ConditionStatus::True,
            Reason::ExpiringSoon,
        );
        let v = evaluate(&steps, None, "www.shop.example");
        assert_eq!(v.status, ConditionStatus::True);
        assert!(v.message.contains("ExpiringSoon"), "{}", v.message);
    }
}
