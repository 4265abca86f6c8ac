//! The delivery the checks judge: every field of steps 1 to 4 known. In declared mode it is
//! the spec itself (the schema requires those fields there); in provider mode it is what the
//! CDN has, with the declared fields as the desired state beside it.

use super::{EdgeCnameSpec, HttpsDeliverySpec, OriginSpec, Platform, SecretReference};

#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub hostname: String,
    pub certificate: DesiredCertificate,
    pub edge_cname: EdgeCnameSpec,
    pub origin: OriginSpec,
    /// What EdgeHttpOk asks of the edge (`spec.checks.http`, defaults applied by the checks).
    pub http: crate::api::HttpChecksSpec,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DesiredCertificate {
    pub secret_ref: Option<SecretReference>,
    pub platform: Platform,
    pub target_cname: String,
    /// `spec.certificate.issuerDomain`: the CAA issuer domain of the certificate's CA.
    pub issuer_domain: Option<String>,
}

impl Desired {
    /// The SNI name sent to the origin.
    pub fn origin_sni(&self) -> &str {
        self.origin
            .sni_hostname
            .as_deref()
            .unwrap_or(&self.origin.host)
    }
}

impl HttpsDeliverySpec {
    /// The declared delivery, or the fields declared mode needs that are missing (the schema
    /// refuses such an object, so only a manifest that skipped it gets here).
    pub fn declared(&self) -> Result<Desired, String> {
        let missing: Vec<&str> = [
            (
                "spec.certificate.platform",
                self.certificate.platform.is_none(),
            ),
            (
                "spec.certificate.targetCname",
                self.certificate.target_cname.is_none(),
            ),
            ("spec.edgeCname", self.edge_cname.is_none()),
            ("spec.origin", self.origin.is_none()),
        ]
        .into_iter()
        .filter_map(|(field, absent)| absent.then_some(field))
        .collect();
        match (
            self.certificate.platform,
            &self.certificate.target_cname,
            &self.edge_cname,
            &self.origin,
        ) {
            (Some(platform), Some(target_cname), Some(edge_cname), Some(origin)) => Ok(Desired {
                hostname: self.hostname.clone(),
                certificate: DesiredCertificate {
                    secret_ref: self.certificate.secret_ref.clone(),
                    platform,
                    target_cname: target_cname.clone(),
                    issuer_domain: self.certificate.issuer_domain.clone(),
                },
                edge_cname: edge_cname.clone(),
                origin: origin.clone(),
                http: self.http_checks(),
            }),
            _ => Err(format!(
                "{} required without spec.cdn (declared mode)",
                match missing.len() {
                    1 => format!("{} is", missing[0]),
                    _ => format!("{} are", missing.join(", ")),
                }
            )),
        }
    }
}

impl HttpsDeliverySpec {
    /// `spec.checks.http`, or the defaults when absent.
    pub fn http_checks(&self) -> crate::api::HttpChecksSpec {
        self.checks
            .as_ref()
            .and_then(|c| c.http.clone())
            .unwrap_or_default()
    }
}
