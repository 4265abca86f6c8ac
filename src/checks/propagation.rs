//! Step 3: an hour (the propagation delay) must have passed since the edge CNAME configuration
//! was set up or last changed.

use crate::api::{ConditionStatus, ConditionType, Desired, EdgeCnameTracking, Reason, Verdict};
use crate::checks::ago_or_in;
use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// The result of step 3, with the tracking record to store and when the verdict changes.
#[derive(Clone, Debug)]
pub struct PropagationFinding {
    pub verdict: Verdict,
    pub tracking: Option<EdgeCnameTracking>,
    pub changes_at: Option<Timestamp>,
}

/// `tracking` is what the operator recorded before (None in the `check` command, which has no
/// memory): it is used when `spec.edgeCname.modifiedAt` is absent, and restarted when the
/// configuration's hash changed.
pub fn evaluate(
    spec: &Desired,
    tracking: Option<&EdgeCnameTracking>,
    track_changes: bool,
    delay: Duration,
    now: Timestamp,
) -> PropagationFinding {
    let hash = spec.edge_cname.config_hash();
    let new_tracking = if track_changes {
        match tracking {
            Some(t) if t.config_hash == hash => Some(t.clone()),
            _ => Some(EdgeCnameTracking {
                config_hash: hash,
                first_seen: now,
            }),
        }
    } else {
        None
    };
    let (changed_at, how) = match (spec.edge_cname.modified_at, &new_tracking) {
        (Some(m), _) => (m, "was last changed (spec.edgeCname.modifiedAt)"),
        (None, Some(t)) => (t.first_seen, "was first seen in this form by the operator"),
        (None, None) => {
            return PropagationFinding {
                verdict: Verdict::new(
                    ConditionType::EdgeCnamePropagated,
                    ConditionStatus::Unknown,
                    Reason::ChangeTimeUnknown,
                    "spec.edgeCname.modifiedAt is not set, so it cannot be told whether the propagation delay has passed; set it to when the edge CNAME configuration was set up or last changed (step 3).",
                ),
                tracking: None,
                changes_at: None,
            };
        }
    };
    let signed = SignedDuration::try_from(delay).unwrap_or(SignedDuration::MAX);
    let ready_at = changed_at.checked_add(signed).unwrap_or(Timestamp::MAX);
    let verdict = if now >= ready_at {
        Verdict::new(
            ConditionType::EdgeCnamePropagated,
            ConditionStatus::True,
            Reason::Propagated,
            format!(
                "the edge CNAME configuration {how} at {changed_at}; the propagation delay of {} has passed.",
                human(delay)
            ),
        )
    } else {
        Verdict::new(
            ConditionType::EdgeCnamePropagated,
            ConditionStatus::False,
            Reason::Propagating,
            format!(
                "the edge CNAME configuration {how} at {changed_at}; the CDN needs {} to propagate it, so it is ready at {ready_at} ({}). Wait; nothing to fix (step 3).",
                human(delay),
                ago_or_in(ready_at, now)
            ),
        )
    };
    PropagationFinding {
        verdict,
        tracking: new_tracking,
        changes_at: (ready_at > now).then_some(ready_at),
    }
}

/// "1h", "1h30m", "45s": how a person writes a delay.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::{now, spec};

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn passed_delay_is_true() {
        let f = evaluate(&spec(), None, false, HOUR, now());
        assert_eq!(
            (f.verdict.status, f.verdict.reason),
            (ConditionStatus::True, Reason::Propagated)
        );
        assert_eq!(f.changes_at, None);
    }

    #[test]
    fn recent_change_is_propagating_and_says_how_long() {
        let mut s = spec();
        s.edge_cname.modified_at = Some("2026-11-29T11:40:00Z".parse().unwrap());
        let f = evaluate(&s, None, false, HOUR, now());
        assert_eq!(
            (f.verdict.status, f.verdict.reason),
            (ConditionStatus::False, Reason::Propagating)
        );
        assert!(
            f.verdict.message.contains("in 40 minutes"),
            "{}",
            f.verdict.message
        );
        assert_eq!(f.changes_at, Some("2026-11-29T12:40:00Z".parse().unwrap()));
    }

    #[test]
    fn without_modified_at_and_memory_it_is_unknown() {
        let mut s = spec();
        s.edge_cname.modified_at = None;
        let f = evaluate(&s, None, false, HOUR, now());
        assert_eq!(
            (f.verdict.status, f.verdict.reason),
            (ConditionStatus::Unknown, Reason::ChangeTimeUnknown)
        );
    }

    #[test]
    fn tracking_starts_the_clock_and_a_change_restarts_it() {
        let mut s = spec();
        s.edge_cname.modified_at = None;
        let first = evaluate(&s, None, true, HOUR, now());
        assert_eq!(first.verdict.reason, Reason::Propagating);
        let tracking = first.tracking.clone().unwrap();
        assert_eq!(tracking.first_seen, now());
        let later: Timestamp = "2026-11-29T13:00:01Z".parse().unwrap();
        let second = evaluate(&s, Some(&tracking), true, HOUR, later);
        assert_eq!(second.verdict.reason, Reason::Propagated);
        assert_eq!(
            second.tracking.as_ref(),
            Some(&tracking),
            "unchanged config keeps its first-seen time"
        );
        s.edge_cname.origin = "new-origin".into();
        let third = evaluate(&s, Some(&tracking), true, HOUR, later);
        assert_eq!(third.verdict.reason, Reason::Propagating);
        assert_eq!(third.tracking.unwrap().first_seen, later);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(HOUR), "1h");
        assert_eq!(human(Duration::from_secs(5400)), "1h30m");
        assert_eq!(human(Duration::from_millis(1500)), "1s");
    }
}
