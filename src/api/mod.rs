//! The `HttpsDelivery` custom resource: spec, status and the schema rules the API server enforces.

pub mod account;
pub mod conditions;
pub mod desired;
pub mod duration;
pub mod text;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

pub use conditions::{ConditionStatus, ConditionType, Reason, Verdict};
pub use desired::{Desired, DesiredCertificate};

/// The CRD of `kind` (`httpsdelivery`, `cdnaccount`, `clustercdnaccount`), for `make crds`.
pub fn crd_of(
    kind: &str,
) -> Option<
    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
> {
    use kube::CustomResourceExt;
    match kind {
        "httpsdelivery" => Some(HttpsDelivery::crd()),
        "cdnaccount" => Some(account::CdnAccount::crd()),
        "clustercdnaccount" => Some(account::ClusterCdnAccount::crd()),
        _ => None,
    }
}

/// A lower-case DNS name: labels of letters, digits and inner hyphens, at least two labels.
/// Written once here so that the CRD rule and the `check` command agree.
pub const HOSTNAME_RULE: &str =
    r"self.matches('^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\\.)+[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')";
/// A CEL message expression, so that the person sees the value that was refused.
pub const HOSTNAME_MESSAGE: &str = r#"'"' + self + '" must be a lower-case fully qualified DNS name such as www.shop.example: no upper-case letters, scheme (https://), port, path, wildcard (*) or trailing dot'"#;

/// Declared mode (no `cdn`) needs every field of steps 1 to 4.
pub const DECLARED_RULE: &str = "has(self.cdn) || (has(self.edgeCname) && has(self.origin) && has(self.certificate.platform) && has(self.certificate.targetCname))";
pub const DECLARED_MESSAGE: &str = "without spec.cdn (declared mode), spec.certificate.platform, spec.certificate.targetCname, spec.edgeCname and spec.origin are required";

/// The origin may be a DNS name or an IP address.
pub const ORIGIN_HOST_RULE: &str = r"isIP(self) || self.matches('^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\\.)+[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')";

/// The syntax of every duration field: Go durations ("30s", "10m", "1h30m"). The bounds of
/// each field follow in its own rule, with the same limits as `CheckSettings` (duration.rs
/// parses exactly this syntax).
macro_rules! duration_rule {
    ($bounds:literal) => {
        concat!(
            r"self.matches('^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$') && ",
            $bounds
        )
    };
}
pub const TIMEOUT_RULE: &str =
    duration_rule!("duration(self) >= duration('1s') && duration(self) <= duration('60s')");
pub const TIMEOUT_MESSAGE: &str =
    r#"'"' + self + '" must be a duration from 1s to 60s, such as 5s or 10s'"#;
pub const RECHECK_RULE: &str =
    duration_rule!("duration(self) >= duration('30s') && duration(self) <= duration('168h')");
pub const RECHECK_MESSAGE: &str =
    r#"'"' + self + '" must be a duration from 30s to 168h, such as 30s, 10m or 1h'"#;
pub const PROPAGATION_RULE: &str = duration_rule!("duration(self) <= duration('168h')");
pub const PROPAGATION_MESSAGE: &str =
    r#"'"' + self + '" must be a duration from 0s to 168h, such as 0s, 30m or 1h'"#;
pub const EXPIRY_WARNING_RULE: &str = duration_rule!("duration(self) <= duration('8760h')");
pub const EXPIRY_WARNING_MESSAGE: &str =
    r#"'"' + self + '" must be a duration from 0s to 8760h, such as 168h or 720h'"#;

/// The bounds of each `spec.checks` field: (minimum, maximum), the same as the CRD's rules.
pub mod bounds {
    use std::time::Duration;
    pub const TIMEOUT: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));
    pub const RECHECK_INTERVAL: (Duration, Duration) =
        (Duration::from_secs(30), Duration::from_secs(168 * 3600));
    pub const PROPAGATION_DELAY: (Duration, Duration) =
        (Duration::ZERO, Duration::from_secs(168 * 3600));
    pub const EXPIRY_WARNING: (Duration, Duration) =
        (Duration::ZERO, Duration::from_secs(8760 * 3600));
}

/// The platform of the CDN a certificate was submitted for, and that an edge CNAME lives on.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    schemars::JsonSchema,
    strum::Display,
)]
pub enum Platform {
    HttpLarge,
    HttpSmall,
    Adn,
}

/// The protocol a customer origin accepts from the CDN edge.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    schemars::JsonSchema,
    strum::Display,
)]
pub enum OriginProtocol {
    HttpOnly,
    HttpsOnly,
    MatchRequest,
}

/// One hostname delivered over HTTPS through the CDN, as declared by a platform team.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "httpsdelivery.dev",
    version = "v1alpha1",
    kind = "HttpsDelivery",
    plural = "httpsdeliveries",
    shortname = "hd",
    namespaced,
    status = "HttpsDeliveryStatus",
    printcolumn = r#"{"name":"Hostname","type":"string","jsonPath":".spec.hostname"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","format":"date-time","jsonPath":".status.certificate.notAfter"}"#,
    printcolumn = r#"{"name":"DNS","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"DnsHealthy\")].reason"}"#,
    printcolumn = r#"{"name":"HTTP","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"EdgeHttpOk\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(DECLARED_RULE).message(DECLARED_MESSAGE))]
pub struct HttpsDeliverySpec {
    /// The hostname delivered over HTTPS, e.g. www.shop.example.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(HOSTNAME_RULE).message(Message::Expression(HOSTNAME_MESSAGE.into())))]
    pub hostname: String,
    pub certificate: CertificateSpec,
    /// Step 2 as declared. Required without `cdn`; with it, the desired state that the CDN's
    /// edge CNAME is compared with (InSyncWithCdn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_cname: Option<EdgeCnameSpec>,
    /// Step 4 as declared. Required without `cdn`; with it, the desired state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<OriginSpec>,
    /// Provider mode: read steps 1 to 4 from the CDN's API through a CdnAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdn: Option<CdnSpec>,
    /// Tuning of how often and how patiently the checks run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<ChecksSpec>,
}

/// Step 1: the certificate requested through the CDN's Certificate Provisioning System.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    /// A kubernetes.io/tls Secret in the same namespace holding the certificate (and its key).
    /// Without it, the certificate served by the CDN edge is checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,
    /// The platform given when the certificate was submitted. Required without `spec.cdn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// The target CNAME from the certificate's welcome letter. Required without `spec.cdn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(HOSTNAME_RULE).message(Message::Expression(HOSTNAME_MESSAGE.into())))]
    pub target_cname: Option<String>,
    /// The CAA issuer domain of the CA that issues this certificate (e.g. `digicert.com`,
    /// `letsencrypt.org`), checked against the hostname's CAA records. Without it, the CA is
    /// recognised from the certificate's issuer when it is a well-known one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(HOSTNAME_RULE).message(Message::Expression(HOSTNAME_MESSAGE.into())))]
    pub issuer_domain: Option<String>,
}

/// Provider mode: where the CDN's own record of this delivery is read.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CdnSpec {
    pub account_ref: AccountReference,
    /// The certificate at the CDN: an Edgecast CPS certificate ID, an Akamai CPS enrollment ID.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+$')").message("must be the numeric ID of the certificate (Edgecast) or enrollment (Akamai)"))]
    pub certificate_id: String,
    /// The edge configuration: an Edgecast edge CNAME ID, an Akamai property ID (prp_...).
    /// Without it the Edgecast edge CNAME is found by hostname; Akamai needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub edge_cname_id: Option<String>,
}

/// A CdnAccount in the delivery's namespace, or a ClusterCdnAccount.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct AccountReference {
    /// CdnAccount (in the delivery's namespace, the default) or ClusterCdnAccount.
    #[serde(default)]
    pub kind: AccountKind,
    /// Name of the account.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// An account as the registries key it: (kind, namespace, name), the namespace empty for a
/// ClusterCdnAccount.
pub type AccountKey = (AccountKind, String, String);

impl AccountReference {
    /// The account this reference names from a delivery in `namespace`.
    pub fn key(&self, namespace: &str) -> AccountKey {
        let namespace = match self.kind {
            AccountKind::CdnAccount => namespace.to_string(),
            AccountKind::ClusterCdnAccount => String::new(),
        };
        (self.kind, namespace, self.name.clone())
    }
}

#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    schemars::JsonSchema,
    strum::Display,
)]
pub enum AccountKind {
    #[default]
    CdnAccount,
    ClusterCdnAccount,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretReference {
    /// Name of the Secret in the delivery's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Step 2: the edge CNAME configuration as set up at the CDN.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EdgeCnameSpec {
    /// The hostname the edge CNAME configuration is for: spec.hostname, a name of the
    /// certificate.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(HOSTNAME_RULE).message(Message::Expression(HOSTNAME_MESSAGE.into())))]
    pub hostname: String,
    pub platform: Platform,
    /// Name of the customer origin the edge CNAME points to.
    #[schemars(length(min = 1, max = 253))]
    pub origin: String,
    /// When the edge CNAME configuration was set up or last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub modified_at: Option<jiff::Timestamp>,
}

/// Step 4: the customer origin the edge CNAME should point to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OriginSpec {
    /// Name of the customer origin at the CDN (what the edge CNAME points to).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Host name or IP address the CDN edge connects to.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(ORIGIN_HOST_RULE).message(Message::Expression(r#"'"' + self + '" must be a lower-case host name or an IP address, without scheme, port or path'"#.into())))]
    pub host: String,
    /// HTTPS port the CDN edge connects to (default 443).
    #[serde(default = "default_https_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// The origin's protocol mode: HttpsOnly is what step 4 asks for.
    pub protocol: OriginProtocol,
    /// Whether the origin's HTTPS Edge Protocol option is on (step 4 asks for it).
    pub https_edge_protocol: bool,
    /// SNI name the edge sends to the origin; defaults to `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(HOSTNAME_RULE).message(Message::Expression(HOSTNAME_MESSAGE.into())))]
    pub sni_hostname: Option<String>,
}

fn default_https_port() -> u16 {
    443
}

/// Optional tuning; every field has a default.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ChecksSpec {
    /// How often the world is looked at again when nothing is due earlier (default 10m; 30s to
    /// 168h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(RECHECK_RULE).message(Message::Expression(RECHECK_MESSAGE.into())))]
    pub recheck_interval: Option<String>,
    /// Time the CDN needs after an edge CNAME change (default 1h; 0s to 168h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(PROPAGATION_RULE).message(Message::Expression(PROPAGATION_MESSAGE.into())))]
    pub propagation_delay: Option<String>,
    /// How long before notAfter the certificate is reported as ExpiringSoon (default 720h; 0s
    /// to 8760h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(EXPIRY_WARNING_RULE).message(Message::Expression(EXPIRY_WARNING_MESSAGE.into())))]
    pub expiry_warning: Option<String>,
    /// Timeout of each DNS query and TLS probe (default 10s; 1s to 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(TIMEOUT_RULE).message(Message::Expression(TIMEOUT_MESSAGE.into())))]
    pub timeout: Option<String>,
    /// The HTTP layer on the edge (EdgeHttpOk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpChecksSpec>,
}

/// What EdgeHttpOk asks of the edge; every field has a default.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HttpChecksSpec {
    /// Path of the GET sent to the edge (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("self.matches('^/[!-~]*$') && !self.contains('#')").message("must start with / and hold printable ASCII without spaces or #"))]
    pub path: Option<String>,
    /// Status codes that pass (default 200-399, 401 and 403).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub expected_statuses: Option<Vec<StatusRange>>,
    /// Check that `http://HOSTNAME` redirects to `https://HOSTNAME` (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_redirect: Option<bool>,
    /// Check the Strict-Transport-Security header (off by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<HstsSpec>,
    /// A response header that proves the edge routed to the right origin, e.g.
    /// `{name: x-origin, value: shop}` (WrongOrigin otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_header: Option<ExpectedHeader>,
}

/// A status code or an inclusive range of them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusRange {
    /// First status code of the range.
    #[schemars(range(min = 100, max = 599))]
    pub from: u16,
    /// Last status code of the range (default: `from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 599))]
    pub to: Option<u16>,
}

/// Strict-Transport-Security must be present with at least this `max-age`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HstsSpec {
    /// Smallest acceptable `max-age`, in seconds (default 15552000, 180 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 315_360_000))]
    pub min_max_age: Option<u64>,
}

/// A response header and the value it must have (compared exactly, name case-insensitively).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ExpectedHeader {
    /// Header name, e.g. `x-origin`.
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9!#$%&*+.^_|~-]+$')").message("must be an HTTP header name"))]
    pub name: String,
    /// The value it must have (the probe keeps 256 bytes of each header value).
    #[schemars(length(max = 256))]
    pub value: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn date_time_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "format": "date-time"})
}

/// Effective check settings, defaults applied and durations parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckSettings {
    pub recheck_interval: std::time::Duration,
    pub propagation_delay: std::time::Duration,
    pub expiry_warning: std::time::Duration,
    pub timeout: std::time::Duration,
}

impl Default for CheckSettings {
    fn default() -> Self {
        CheckSettings {
            recheck_interval: std::time::Duration::from_secs(600),
            propagation_delay: std::time::Duration::from_secs(3600),
            expiry_warning: std::time::Duration::from_secs(720 * 3600),
            timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// A duration field that does not parse; names the field so the error can say where.
#[derive(Debug, thiserror::Error)]
#[error("spec.checks.{field}: {value:?} {problem}")]
pub struct DurationError {
    pub field: &'static str,
    pub value: String,
    pub problem: String,
}

fn parse_duration(
    field: &'static str,
    value: &Option<String>,
    default: std::time::Duration,
    (min, max): (std::time::Duration, std::time::Duration),
) -> Result<std::time::Duration, DurationError> {
    let Some(text) = value else {
        return Ok(default);
    };
    let error = |problem: String| DurationError {
        field,
        value: text.chars().take(40).collect(),
        problem,
    };
    let parsed = duration::parse(text).map_err(|e| error(e.to_string()))?;
    if parsed < min || parsed > max {
        return Err(error(format!(
            "is outside {} to {}",
            kube::core::Duration::from(min),
            kube::core::Duration::from(max)
        )));
    }
    Ok(parsed)
}

impl HttpsDeliverySpec {
    /// The check settings with defaults applied.
    pub fn settings(&self) -> Result<CheckSettings, DurationError> {
        let d = CheckSettings::default();
        let Some(c) = &self.checks else {
            return Ok(d);
        };
        Ok(CheckSettings {
            recheck_interval: parse_duration(
                "recheckInterval",
                &c.recheck_interval,
                d.recheck_interval,
                bounds::RECHECK_INTERVAL,
            )?,
            propagation_delay: parse_duration(
                "propagationDelay",
                &c.propagation_delay,
                d.propagation_delay,
                bounds::PROPAGATION_DELAY,
            )?,
            expiry_warning: parse_duration(
                "expiryWarning",
                &c.expiry_warning,
                d.expiry_warning,
                bounds::EXPIRY_WARNING,
            )?,
            timeout: parse_duration("timeout", &c.timeout, d.timeout, bounds::TIMEOUT)?,
        })
    }
}

/// What the operator observed and concluded; written by the operator only.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpsDeliveryStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Evidence for step 1: the certificate that was checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateEvidence>,
    /// Evidence for steps 5 and 6 and DnsHealthy: what DNS answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsEvidence>,
    /// Evidence for EdgeHttpOk: what the edge answered over HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpEvidence>,
    /// Change tracking for step 3 when `spec.edgeCname.modifiedAt` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_cname: Option<EdgeCnameTracking>,
    /// Never serialized: in the operator's cache of objects, a digest of what
    /// [`compact`](Self::compact) dropped.
    #[serde(skip_deserializing, skip_serializing_if = "always")]
    #[schemars(skip)]
    pub compacted: Option<u64>,
}

/// For a field never written out (`skip` would leave the schema's copy of the struct a field
/// that nothing reads).
fn always<T>(_: &T) -> bool {
    true
}

impl HttpsDeliveryStatus {
    /// Drops what only people read (the messages of this operator's conditions, and the
    /// evidence) and keeps a digest of it instead: the operator's cache holds every delivery's
    /// status, only to keep transition times and to tell whether a new status differs. Another
    /// writer's conditions, the transition times and the change tracking stay as they are.
    pub fn compact(&mut self) {
        if self.compacted.is_some() {
            return;
        }
        let ours = |c: &Condition| ConditionType::is_ours(&c.type_);
        let messages: Vec<&str> = self
            .conditions
            .iter()
            .filter(|c| ours(c))
            .map(|c| c.message.as_str())
            .collect();
        let dropped = (&messages, &self.certificate, &self.dns, &self.http);
        // The JSON of equal values is equal: the digest changes with what it stands for.
        let Ok(bytes) = serde_json::to_vec(&dropped) else {
            return;
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hasher::write(&mut hasher, &bytes);
        for c in self.conditions.iter_mut().filter(|c| ours(c)) {
            c.message = String::new();
        }
        (self.certificate, self.dns, self.http) = (None, None, None);
        self.compacted = Some(std::hash::Hasher::finish(&hasher));
    }

    /// Whether `self` (as written, or [`compact`](Self::compact)ed in the cache) says what
    /// `new` says.
    pub fn same_as(&self, new: &HttpsDeliveryStatus) -> bool {
        if self.compacted.is_none() {
            return self == new;
        }
        let mut new = new.clone();
        new.compact();
        *self == new
    }
}

/// The certificate's identity, as shown by `openssl x509 -noout -text`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateEvidence {
    /// Where the certificate came from: `Secret/NAME` or `Edge/ADDRESS`.
    pub source: String,
    pub subject: String,
    /// The first DNS names of the certificate (at most 32 are listed).
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// How many more DNS names the certificate has than are listed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dns_names_omitted: u32,
    pub issuer: String,
    pub serial: String,
    pub sha256_fingerprint: String,
    #[schemars(schema_with = "date_time_schema")]
    pub not_before: jiff::Timestamp,
    #[schemars(schema_with = "date_time_schema")]
    pub not_after: jiff::Timestamp,
}

/// The hostname's CNAME chain as dig shows it, and the addresses it ends at.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DnsEvidence {
    /// Each CNAME record followed, as `name. CNAME target.`.
    #[serde(default)]
    pub chain: Vec<String>,
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Whether the resolver validated the hostname's answers with DNSSEC (its AD bit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dnssec_validated: Option<bool>,
    /// The relevant CAA record set, as `name. CAA flags tag "value"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caa: Vec<String>,
    /// What each authoritative server answered for the hostname's CNAME.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authoritative: Vec<String>,
    /// Each edge address probed and what it served (IPv4 and IPv6).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edge_addresses: Vec<String>,
}

/// What the edge answered over HTTP (EdgeHttpOk).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HttpEvidence {
    /// The request, e.g. `GET https://www.shop.example/ via 192.0.2.10:443`.
    pub request: String,
    /// `HTTP/2 200`, or what went wrong.
    pub response: String,
    /// The ALPN protocol the edge negotiated (`h2`, `http/1.1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    /// Whether the edge stapled an OCSP response to the handshake.
    #[serde(default)]
    pub ocsp_stapled: bool,
    /// What `http://HOSTNAME` answered, when checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_http: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<String>,
}

/// How the operator tracks edge CNAME changes on its own.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EdgeCnameTracking {
    /// SHA-256 of the edge CNAME configuration (hostname, platform, origin).
    pub config_hash: String,
    /// When the operator first saw this configuration.
    #[schemars(schema_with = "date_time_schema")]
    pub first_seen: jiff::Timestamp,
}

impl EdgeCnameSpec {
    /// A stable hash of the parts of the configuration whose change restarts propagation.
    pub fn config_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.hostname.as_bytes());
        h.update([0]);
        h.update(self.platform.to_string().as_bytes());
        h.update([0]);
        h.update(self.origin.as_bytes());
        format!("{:x}", h.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;
    use serde_json::json;

    fn object(spec_patch: impl FnOnce(&mut serde_json::Value)) -> serde_json::Value {
        let mut obj = json!({
            "apiVersion": "httpsdelivery.dev/v1alpha1",
            "kind": "HttpsDelivery",
            "metadata": {"name": "www", "namespace": "shop"},
            "spec": {
                "hostname": "www.shop.example",
                "certificate": {"platform": "HttpLarge", "targetCname": "cs1.wpc.cdn.example"},
                "edgeCname": {"hostname": "www.shop.example", "platform": "HttpLarge", "origin": "shop-origin"},
                "origin": {"name": "shop-origin", "host": "origin.shop.example", "port": 443,
                           "protocol": "HttpsOnly", "httpsEdgeProtocol": true},
                "checks": {"recheckInterval": "10m", "propagationDelay": "1h", "expiryWarning": "720h", "timeout": "10s"}
            }
        });
        spec_patch(&mut obj["spec"]);
        obj
    }

    fn problems(obj: &serde_json::Value) -> Vec<String> {
        let crd = HttpsDelivery::crd();
        let schema = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        match kube::core::cel::Validator::new().validate(&schema, obj, None) {
            Ok(()) => vec![],
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_good_object_passes_every_rule() {
        assert_eq!(problems(&object(|_| {})), Vec::<String>::new());
        assert_eq!(
            problems(&object(|s| s["origin"]["host"] = json!("192.0.2.7"))),
            Vec::<String>::new()
        );
        assert_eq!(
            problems(&object(|s| s["origin"]["host"] = json!("2001:db8::7"))),
            Vec::<String>::new()
        );
        assert_eq!(
            problems(&object(|s| s["checks"]["propagationDelay"] = json!("0s"))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn bad_hostnames_are_rejected_with_a_readable_message() {
        for bad in [
            "WWW.shop.example",
            "*.shop.example",
            "https://www.shop.example",
            "www.shop.example:443",
            "www.shop.example.",
            "localhost",
            "www_shop.example",
        ] {
            let p = problems(&object(|s| s["hostname"] = json!(bad)));
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert!(
                p[0].contains("spec.hostname")
                    && p[0].contains("lower-case fully qualified DNS name"),
                "{bad}: {p:?}"
            );
        }
        let p = problems(&object(|s| {
            s["certificate"]["targetCname"] = json!("CS1.example")
        }));
        assert!(p[0].contains("spec.certificate.targetCname"), "{p:?}");
    }

    #[test]
    fn bad_durations_are_rejected() {
        for (field, bad) in [
            ("recheckInterval", "10 minutes"),
            ("timeout", "0s"),
            ("expiryWarning", "30d"),
            ("propagationDelay", "-1h"),
        ] {
            let p = problems(&object(|s| s["checks"][field] = json!(bad)));
            assert_eq!(p.len(), 1, "{field}={bad}: {p:?}");
            assert!(p[0].contains(field) && p[0].contains("duration"), "{p:?}");
        }
    }

    /// The schema's rules and `settings()` agree on every bound, at and just past each edge.
    #[test]
    fn duration_bounds_are_the_same_in_the_schema_and_in_the_code() {
        let cases = [
            ("timeout", "1s", true),
            ("timeout", "999ms", false),
            ("timeout", "60s", true),
            ("timeout", "60001ms", false),
            ("timeout", "2562047h", false),
            ("recheckInterval", "30s", true),
            ("recheckInterval", "29s", false),
            ("recheckInterval", "1ms", false),
            ("recheckInterval", "168h", true),
            ("recheckInterval", "169h", false),
            ("propagationDelay", "0s", true),
            ("propagationDelay", "168h", true),
            ("propagationDelay", "168h1s", false),
            ("expiryWarning", "0s", true),
            ("expiryWarning", "8760h", true),
            ("expiryWarning", "8761h", false),
        ];
        for (field, value, ok) in cases {
            let obj = object(|s| s["checks"][field] = json!(value));
            let schema = problems(&obj);
            assert_eq!(schema.is_empty(), ok, "schema: {field}={value}: {schema:?}");
            let spec: HttpsDeliverySpec = serde_json::from_value(obj["spec"].clone()).unwrap();
            match spec.settings() {
                Ok(_) => assert!(ok, "code accepted {field}={value}"),
                Err(e) => {
                    assert!(!ok, "code refused {field}={value}: {e}");
                    assert!(
                        e.to_string().contains(&format!("spec.checks.{field}")),
                        "{e}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_overflowing_duration_is_an_error_not_a_panic() {
        for value in [
            "99999999999999999999h",
            "111111111111111111111111111111111h",
        ] {
            let obj = object(|s| s["checks"]["timeout"] = json!(value));
            let spec: HttpsDeliverySpec = serde_json::from_value(obj["spec"].clone()).unwrap();
            let e = spec.settings().expect_err(value);
            assert!(e.to_string().contains("too long"), "{e}");
            assert!(!problems(&obj).is_empty(), "the schema refuses {value} too");
        }
    }

    #[test]
    fn origin_host_with_port_or_scheme_is_rejected() {
        for bad in [
            "origin.shop.example:8443",
            "https://origin.shop.example",
            "Origin.shop.example",
        ] {
            let p = problems(&object(|s| s["origin"]["host"] = json!(bad)));
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
        }
    }

    #[test]
    fn the_edge_cname_hash_is_stable() {
        // Stored in status.edgeCname.configHash: a change of encoding would restart step 3's
        // propagation wait for every delivery. SHA-256 of "www.shop.example\0HttpLarge\0shop-origin".
        let edge = EdgeCnameSpec {
            hostname: "www.shop.example".into(),
            platform: Platform::HttpLarge,
            origin: "shop-origin".into(),
            modified_at: None,
        };
        assert_eq!(
            edge.config_hash(),
            "e3640fa808478c3c50d0346b79dc45a561c1b252e524b3b6c3da84291e3505ae"
        );
    }

    #[test]
    fn settings_apply_defaults_and_parse_go_durations() {
        let spec: HttpsDeliverySpec = serde_json::from_value(
            object(|s| {
                s["checks"] = json!({"recheckInterval": "1h30m", "timeout": "2500ms"});
            })["spec"]
                .clone(),
        )
        .unwrap();
        let s = spec.settings().unwrap();
        assert_eq!(s.recheck_interval, std::time::Duration::from_secs(5400));
        assert_eq!(s.timeout, std::time::Duration::from_millis(2500));
        assert_eq!(s.propagation_delay, std::time::Duration::from_secs(3600));
        assert_eq!(spec.origin.as_ref().map(|o| o.port), Some(443));
    }
}
