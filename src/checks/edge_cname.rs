//! Step 2: the edge CNAME configuration: same platform as the certificate, the certificate's
//! hostname, pointing at the desired origin.

use crate::api::{ConditionStatus, ConditionType, Desired, Reason, Verdict};
use crate::checks::names::{covers, describe_names};

/// `certificate_names` are the DNS names of the certificate under test, when it could be read.
pub fn evaluate(spec: &Desired, certificate_names: Option<&[String]>) -> Verdict {
    let edge = &spec.edge_cname;
    let v = |status, reason, message: String| {
        Verdict::new(ConditionType::EdgeCnameConfigured, status, reason, message)
    };
    if edge.platform != spec.certificate.platform {
        return v(
            ConditionStatus::False,
            Reason::PlatformMismatch,
            format!(
                "the edge CNAME configuration for {} is on platform {} but the certificate was submitted for platform {}; create the edge CNAME configuration on {} (step 2).",
                edge.hostname, edge.platform, spec.certificate.platform, spec.certificate.platform
            ),
        );
    }
    if edge.hostname != spec.hostname {
        return v(
            ConditionStatus::False,
            Reason::HostnameMismatch,
            format!(
                "the edge CNAME configuration is for {} but this delivery is for {}; set the edge CNAME hostname to {} (step 2).",
                edge.hostname, spec.hostname, spec.hostname
            ),
        );
    }
    if let Some(names) = certificate_names
        && !covers(names, &edge.hostname)
    {
        return v(
            ConditionStatus::False,
            Reason::HostnameMismatch,
            format!(
                "the edge CNAME hostname {} is not a hostname of the certificate (DNS names {}); the edge CNAME must use a hostname defined in the certificate (step 2).",
                edge.hostname,
                describe_names(names)
            ),
        );
    }
    if edge.origin != spec.origin.name {
        return v(
            ConditionStatus::False,
            Reason::OriginMismatch,
            format!(
                "the edge CNAME for {} points to origin {:?} but the desired origin is {:?}; point the edge CNAME configuration at {:?} (step 2).",
                edge.hostname, edge.origin, spec.origin.name, spec.origin.name
            ),
        );
    }
    v(
        ConditionStatus::True,
        Reason::Verified,
        format!(
            "the edge CNAME configuration for {} is on platform {} like the certificate and points to origin {:?}.",
            edge.hostname, edge.platform, edge.origin
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Platform;
    use crate::checks::fixtures::spec;

    #[test]
    fn healthy_is_true() {
        let v = evaluate(&spec(), Some(&["www.shop.example".to_string()]));
        assert_eq!(
            (v.status, v.reason),
            (ConditionStatus::True, Reason::Verified)
        );
    }

    #[test]
    fn platform_mismatch_names_both_platforms() {
        let mut s = spec();
        s.edge_cname.platform = Platform::HttpSmall;
        let v = evaluate(&s, None);
        assert_eq!(
            (v.status, v.reason),
            (ConditionStatus::False, Reason::PlatformMismatch)
        );
        assert!(
            v.message.contains("HttpSmall") && v.message.contains("HttpLarge"),
            "{}",
            v.message
        );
    }

    #[test]
    fn hostname_mismatch() {
        let mut s = spec();
        s.edge_cname.hostname = "shop.example".into();
        let v = evaluate(&s, None);
        assert_eq!(
            (v.status, v.reason),
            (ConditionStatus::False, Reason::HostnameMismatch)
        );
    }

    #[test]
    fn edge_hostname_must_be_a_certificate_hostname() {
        let v = evaluate(&spec(), Some(&["api.shop.example".to_string()]));
        assert_eq!(
            (v.status, v.reason),
            (ConditionStatus::False, Reason::HostnameMismatch)
        );
        assert!(v.message.contains("api.shop.example"), "{}", v.message);
        let v = evaluate(&spec(), Some(&["*.shop.example".to_string()]));
        assert_eq!(v.status, ConditionStatus::True, "a wildcard covers it");
    }

    #[test]
    fn origin_mismatch() {
        let mut s = spec();
        s.edge_cname.origin = "old-origin".into();
        let v = evaluate(&s, None);
        assert_eq!(
            (v.status, v.reason),
            (ConditionStatus::False, Reason::OriginMismatch)
        );
        assert!(v.message.contains("old-origin") && v.message.contains("shop-origin"));
    }
}
