//! What the CDN has for one delivery, as its API said: provider-neutral, pure data. Each
//! provider's reader fills a [`CdnView`]; the check engine judges steps 1 to 4 (and takes the
//! target CNAME of step 5) from it. A value a provider sends that the operator does not know
//! is kept raw ([`Raw`]) and reported as such, never guessed into a known one.

use crate::api::{OriginProtocol, Platform};

/// A value of the provider's that the operator does not know, kept as it was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Raw {
    /// Where it was, as the provider names it (`status`, `MediaTypeId`, `protocol_type_id`).
    pub field: String,
    pub value: String,
}

impl std::fmt::Display for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.field, self.value)
    }
}

/// Everything read for one delivery. `None` parts were not found at the CDN.
#[derive(Clone, Debug, PartialEq)]
pub struct CdnView {
    /// Which provider answered: `edgecast` or `akamai`.
    pub provider: &'static str,
    pub certificate: Option<CdnCertificate>,
    /// The edge CNAME (Edgecast) or property hostname (Akamai) for the delivery's hostname.
    pub edge: Option<CdnEdge>,
    /// How far the edge configuration's last change has reached; `None` with no edge.
    pub propagation: Option<CdnPropagation>,
    /// The customer origin the edge points at; `None` when it could not be found.
    pub origin: Option<CdnOrigin>,
}

/// Step 1 at the CDN: the certificate (Edgecast CPS certificate, Akamai CPS enrollment).
#[derive(Clone, Debug, PartialEq)]
pub struct CdnCertificate {
    /// The provider's handle: an Edgecast certificate ID, an Akamai enrollment ID.
    pub id: String,
    pub state: CertificateState,
    /// The names the certificate is (to be) issued for.
    pub domains: Vec<String>,
    /// Where it is deployed, with the target CNAME of each deployment.
    pub deployments: Vec<CdnDeployment>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum CertificateState {
    /// Issued and deployed.
    Active,
    /// The CA waits for domain control validation of these domains.
    DomainValidationPending {
        domains: Vec<String>,
    },
    /// In progress at another stage, named as the provider names it (Processing,
    /// OtherValidation, Deployment, an Akamai change's status).
    Pending {
        stage: String,
    },
    /// The provider flags the certificate for attention, with its own message.
    NeedsAttention {
        message: String,
    },
    Deleted,
    Unrecognized(Raw),
}

/// One deployment of the certificate.
#[derive(Clone, Debug, PartialEq)]
pub struct CdnDeployment {
    /// Edgecast's platform; `None` where the provider has no platforms (Akamai).
    pub platform: Option<Result<Platform, Raw>>,
    /// The target CNAME the hostname's DNS record must point at (Edgecast `hex_url`, Akamai's
    /// edge hostname).
    pub target_cname: String,
}

/// Step 2 at the CDN.
#[derive(Clone, Debug, PartialEq)]
pub struct CdnEdge {
    /// The provider's handle: an Edgecast edge CNAME ID, an Akamai property ID.
    pub id: String,
    pub hostname: String,
    /// Edgecast's platform (`MediaTypeId`); `None` where the provider has no platforms.
    pub platform: Option<Result<Platform, Raw>>,
    /// The name of the customer origin it points at, when it points at one.
    pub origin: Option<String>,
    /// What the provider's own data says is wrong with it (an Akamai edge hostname that is not
    /// secure or carries another enrollment's certificate), one sentence each.
    pub problems: Vec<String>,
}

/// Step 3 at the CDN.
#[derive(Clone, Debug, PartialEq)]
pub enum CdnPropagation {
    Done,
    /// Still spreading; the percentage where the provider gives one.
    InProgress {
        state: String,
        percent: Option<f64>,
    },
    /// The change did not reach the network (an Akamai activation FAILED, ABORTED...).
    Failed {
        state: String,
    },
    Unrecognized(Raw),
}

/// Step 4 at the CDN.
#[derive(Clone, Debug, PartialEq)]
pub struct CdnOrigin {
    pub name: String,
    /// The host the edge connects to, and its port.
    pub host: Option<String>,
    pub port: Option<u16>,
    pub protocol: Result<OriginProtocol, Raw>,
    /// Whether the edge may speak HTTPS to it (Edgecast's HTTPS Edge Protocol).
    pub https_edge_protocol: bool,
    pub sni_hostname: Option<String>,
    /// Whether the API says which SNI name the edge sends (Edgecast's MCC v2 origins do not):
    /// when not, a declared `sniHostname` is used as is and not compared.
    pub sni_reported: bool,
}

/// Why the provider could not be read. Never a verdict of False: the steps it feeds are
/// Unknown until it answers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// 401: the credentials are wrong or expired.
    #[error("the CDN refused the credentials: {0}")]
    Unauthorized(String),
    /// 403: the credentials lack a grant or scope.
    #[error("the credentials may not read this: {0}")]
    Forbidden(String),
    /// Timeouts, connection failures, 5xx, 429.
    #[error("the CDN API is unavailable: {0}")]
    Unavailable(String),
    /// 404: the handle names nothing at the CDN.
    #[error("not found at the CDN: {0}")]
    NotFound(String),
    /// An answer of a shape the operator does not know (names the JSON path).
    #[error("the CDN API answered in an unexpected shape: {0}")]
    Unexpected(String),
    /// The account or its Secret cannot be used (not found, a key missing).
    #[error("{0}")]
    Account(String),
    /// The delivery's `spec.cdn` cannot be used with its provider (a handle it needs is
    /// missing): the delivery's spec is invalid, nothing is wrong with the CDN.
    #[error("{0}")]
    Spec(String),
}

/// An answer that may be a 404: `None` then (the handle names nothing at the CDN), every other
/// failure kept.
pub fn found<T>(answer: Result<T, ProviderError>) -> Result<Option<T>, ProviderError> {
    match answer {
        Ok(value) => Ok(Some(value)),
        Err(ProviderError::NotFound(_)) => Ok(None),
        Err(error) => Err(error),
    }
}

impl CdnView {
    /// The target CNAME of the deployment on the edge's platform (or the only deployment where
    /// the provider has no platforms); `None` when the certificate is not deployed there.
    pub fn target_cname(&self) -> Option<&str> {
        let cert = self.certificate.as_ref()?;
        let platform = self.edge.as_ref().and_then(|e| e.platform.clone());
        cert.deployments
            .iter()
            .find(|d| match (&platform, &d.platform) {
                (Some(Ok(edge)), Some(Ok(deployed))) => edge == deployed,
                (Some(_), Some(_)) => false,
                _ => true,
            })
            .map(|d| d.target_cname.as_str())
    }
}

/// What a delivery names at the CDN (`spec.cdn`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Handles {
    /// An Edgecast CPS certificate ID, an Akamai CPS enrollment ID.
    pub certificate_id: String,
    /// An Edgecast edge CNAME ID, an Akamai property ID; else found by hostname.
    pub edge_id: Option<String>,
}
