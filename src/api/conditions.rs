//! Condition types and reasons of the contract, and the API-convention rules for updating them.

use crate::api::text::{MAX_CONDITION_MESSAGE, escape_and_truncate};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::{Deserialize, Serialize};

/// The conditions the operator owns, in procedure order (Ready last).
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
)]
pub enum ConditionType {
    CertificateValid,
    EdgeCnameConfigured,
    EdgeCnamePropagated,
    OriginHttpsReady,
    DnsConfigured,
    EdgeServing,
    /// The HTTP layer on the edge connection: status, redirect to HTTPS, HSTS, origin header.
    EdgeHttpOk,
    /// DNS beyond the dig: CAA, DNSSEC, authoritative agreement, dangling CNAMEs, IPv4/IPv6
    /// parity. Gates Ready only with the reasons of [`Reason::gates_ready`].
    DnsHealthy,
    /// Provider mode only: what Git declares agrees with what the CDN has.
    InSyncWithCdn,
    Ready,
}

impl ConditionType {
    /// The checks beyond the procedure, after its steps (issue 13): judged on the same
    /// observations, each with its own reasons.
    pub const DEPTH: [ConditionType; 2] = [ConditionType::EdgeHttpOk, ConditionType::DnsHealthy];

    /// Every step condition in procedure order, without Ready.
    pub const STEPS: [ConditionType; 6] = [
        ConditionType::CertificateValid,
        ConditionType::EdgeCnameConfigured,
        ConditionType::EdgeCnamePropagated,
        ConditionType::OriginHttpsReady,
        ConditionType::DnsConfigured,
        ConditionType::EdgeServing,
    ];

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether a condition of type `type_` is one this operator writes (others belong to
    /// other writers and are left as they are).
    pub fn is_ours(type_: &str) -> bool {
        <ConditionType as strum::VariantArray>::VARIANTS
            .iter()
            .any(|t| t.as_str() == type_)
    }

    /// The procedure step a person should look at, as the documentation numbers it.
    pub fn step(self) -> &'static str {
        match self {
            ConditionType::CertificateValid => "step 1 (TLS certificate)",
            ConditionType::EdgeCnameConfigured => "step 2 (edge CNAME configuration)",
            ConditionType::EdgeCnamePropagated => "step 3 (propagation)",
            ConditionType::OriginHttpsReady => "step 4 (customer origin)",
            ConditionType::DnsConfigured => "steps 5 and 6 (DNS CNAME record, dig)",
            ConditionType::EdgeServing => "end to end (CDN edge serving)",
            ConditionType::EdgeHttpOk => "end to end (HTTP on the edge)",
            ConditionType::DnsHealthy => "DNS health (CAA, DNSSEC, authoritative servers)",
            ConditionType::InSyncWithCdn => "steps 1 to 4 (declared against the CDN's record)",
            ConditionType::Ready => "all steps",
        }
    }
}

#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::Display,
)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Every reason the operator writes. The names are the contract (DESIGN.md and the README's
/// troubleshooting table); a new reason is added here and documented there.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
)]
pub enum Reason {
    /// A step that cannot be decided because another one failed first.
    Blocked,
    Verified,
    // Step 1
    SecretNotFound,
    SecretNotAllowed,
    SecretInvalid,
    CertificateUnparsable,
    CertificateUnavailable,
    HostnameNotCovered,
    NotYetValid,
    Expired,
    ExpiringSoon,
    KeyMismatch,
    ChainUntrusted,
    WeakKey,
    // Step 2
    PlatformMismatch,
    HostnameMismatch,
    OriginMismatch,
    // Step 3
    Propagating,
    Propagated,
    ChangeTimeUnknown,
    // Step 4
    OriginNotHttpsOnly,
    HttpsEdgeProtocolDisabled,
    OriginUnreachable,
    OriginTlsFailed,
    OriginCertificateInvalid,
    ProbeTimeout,
    TargetForbidden,
    // Steps 5 and 6
    NoCnameRecord,
    CnameTargetMismatch,
    NxDomain,
    ZoneApex,
    CnameLoop,
    DnsTimeout,
    DnsServerFailure,
    // End to end
    EdgeUnreachable,
    EdgeTlsFailed,
    EdgeCertificateMismatch,
    // EdgeHttpOk
    HttpStatusUnexpected,
    HttpRequestFailed,
    HttpTimeout,
    NoHttpsRedirect,
    HstsMissing,
    HstsTooShort,
    WrongOrigin,
    // DnsHealthy
    CaaForbidsIssuer,
    CaaCriticalUnknown,
    CaaLookupFailed,
    DnssecValidationFailed,
    AuthoritativeServersDisagree,
    RecursiveAnswerStale,
    AuthoritativeLookupFailed,
    DanglingCname,
    AddressFamilyMismatch,
    // Ready
    HostnameConflict,
    InvalidSpec,
    // Provider mode: steps 1 to 4 as the CDN's API has them
    CertificateNotFound,
    CertificatePending,
    DomainValidationPending,
    CertificateNeedsAttention,
    NotDeployedOnPlatform,
    EdgeCnameNotFound,
    PropagationFailed,
    OriginNotFound,
    UnrecognizedCdnValue,
    ProviderUnavailable,
    ProviderUnauthorized,
    InSync,
    DeclaredDiffersFromCdn,
    // CdnAccount and ClusterCdnAccount Ready
    Unauthorized,
    Forbidden,
    Unreachable,
}

impl Reason {
    pub const ALL: &'static [Reason] = <Reason as strum::VariantArray>::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether a False `DnsHealthy` with this reason gates Ready: the findings that break
    /// delivery for some clients now. The others (CAA, a stale recursive answer) are warnings:
    /// Ready stays True and names them.
    pub fn gates_ready(self) -> bool {
        matches!(
            self,
            Reason::DnssecValidationFailed
                | Reason::AuthoritativeServersDisagree
                | Reason::DanglingCname
                | Reason::AddressFamilyMismatch
        )
    }
}

/// One verdict of the check engine, before it becomes a `metav1.Condition`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    #[serde(rename = "type")]
    pub type_: ConditionType,
    pub status: ConditionStatus,
    pub reason: Reason,
    pub message: String,
}

impl Verdict {
    pub fn new(
        type_: ConditionType,
        status: ConditionStatus,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        Verdict {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }
}

/// Builds the new condition list from verdicts, keeping `lastTransitionTime` from `existing`
/// when the status did not change, and keeping conditions of other owners untouched. A
/// condition of the operator's that no verdict gives any more (`InSyncWithCdn` once a delivery
/// leaves provider mode) is dropped rather than left stale.
pub fn merge_conditions(
    existing: &[Condition],
    verdicts: &[Verdict],
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = existing
        .iter()
        .filter(|c| !ConditionType::is_ours(&c.type_))
        .cloned()
        .collect();
    for v in verdicts {
        let previous = existing.iter().find(|c| c.type_ == v.type_.as_str());
        let last_transition_time = match previous {
            Some(p) if p.status == v.status.as_str() => p.last_transition_time.clone(),
            _ => Time(now),
        };
        out.push(Condition {
            type_: v.type_.as_str().to_string(),
            status: v.status.as_str().to_string(),
            reason: v.reason.as_str().to_string(),
            // Names in messages come from manifests, certificates and DNS: escaped so that
            // `kubectl describe` cannot be made to print terminal controls, then cut to fit.
            message: escape_and_truncate(&v.message, MAX_CONDITION_MESSAGE),
            observed_generation: generation,
            last_transition_time,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn transition_time_moves_only_with_status() {
        let t0 = ts("2026-01-01T00:00:00Z");
        let t1 = ts("2026-01-01T01:00:00Z");
        let v = |status, reason, msg: &str| {
            Verdict::new(ConditionType::DnsConfigured, status, reason, msg)
        };
        let first = merge_conditions(
            &[],
            &[v(ConditionStatus::False, Reason::NxDomain, "a")],
            Some(1),
            t0,
        );
        assert_eq!(first[0].last_transition_time, Time(t0));
        // Same status, new reason and message: the time stays.
        let second = merge_conditions(
            &first,
            &[v(ConditionStatus::False, Reason::NoCnameRecord, "b")],
            Some(2),
            t1,
        );
        assert_eq!(second[0].last_transition_time, Time(t0));
        assert_eq!(second[0].reason, "NoCnameRecord");
        assert_eq!(second[0].observed_generation, Some(2));
        // Status changes: the time moves.
        let third = merge_conditions(
            &second,
            &[v(ConditionStatus::True, Reason::Verified, "c")],
            Some(2),
            t1,
        );
        assert_eq!(third[0].last_transition_time, Time(t1));
    }

    #[test]
    fn a_condition_of_ours_that_no_verdict_gives_is_dropped() {
        let now = ts("2026-01-01T00:00:00Z");
        let existing = merge_conditions(
            &[],
            &[
                Verdict::new(
                    ConditionType::InSyncWithCdn,
                    ConditionStatus::False,
                    Reason::DeclaredDiffersFromCdn,
                    "x",
                ),
                Verdict::new(
                    ConditionType::Ready,
                    ConditionStatus::False,
                    Reason::DeclaredDiffersFromCdn,
                    "x",
                ),
            ],
            Some(1),
            now,
        );
        let merged = merge_conditions(
            &existing,
            &[Verdict::new(
                ConditionType::Ready,
                ConditionStatus::True,
                Reason::Verified,
                "ok",
            )],
            Some(2),
            now,
        );
        let types: Vec<&str> = merged.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Ready"]);
    }

    #[test]
    fn foreign_conditions_are_kept() {
        let foreign = Condition {
            type_: "Audited".into(),
            status: "True".into(),
            reason: "ByHand".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(ts("2025-01-01T00:00:00Z")),
        };
        let out = merge_conditions(
            std::slice::from_ref(&foreign),
            &[Verdict::new(
                ConditionType::Ready,
                ConditionStatus::True,
                Reason::Verified,
                "ok",
            )],
            Some(1),
            ts("2026-01-01T00:00:00Z"),
        );
        assert!(out.contains(&foreign));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn long_messages_fit_the_api_limit() {
        let v = Verdict::new(
            ConditionType::DnsConfigured,
            ConditionStatus::False,
            Reason::NxDomain,
            "é".repeat(MAX_CONDITION_MESSAGE),
        );
        let out = merge_conditions(&[], &[v], Some(1), ts("2026-01-01T00:00:00Z"));
        assert!(out[0].message.len() <= MAX_CONDITION_MESSAGE);
        assert!(out[0].message.ends_with("..."));
    }

    #[test]
    fn control_characters_in_messages_are_escaped_before_the_cut() {
        let v = |message: String| {
            Verdict::new(
                ConditionType::CertificateValid,
                ConditionStatus::False,
                Reason::HostnameNotCovered,
                message,
            )
        };
        let now = ts("2026-01-01T00:00:00Z");
        let out = merge_conditions(
            &[],
            &[v(
                "subject CN=evil\x1b]0;pwned\x07\r\nstatus: True \u{202e}moc.elpmaxe".into(),
            )],
            Some(1),
            now,
        );
        assert_eq!(
            out[0].message,
            "subject CN=evil\\x1b]0;pwned\\x07\\r\\nstatus: True \\u{202e}moc.elpmaxe"
        );
        // Escaping makes a control four to ten bytes long: the limit holds for what is written.
        let out = merge_conditions(
            &[],
            &[v("\u{9b}".repeat(MAX_CONDITION_MESSAGE))],
            Some(1),
            now,
        );
        assert!(out[0].message.len() <= MAX_CONDITION_MESSAGE);
        assert!(
            out[0].message.ends_with("\\u{9b}..."),
            "no escape cut in two"
        );
        assert!(!out[0].message.chars().any(crate::api::text::is_hostile));
    }
}
