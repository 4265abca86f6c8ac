//! `CdnAccount` (namespaced) and `ClusterCdnAccount` (cluster-scoped): how the operator reaches
//! a CDN's API in provider mode, like cert-manager's Issuer and ClusterIssuer. The credentials
//! stay in a Secret; a ClusterCdnAccount's Secret is read from the operator's namespace only.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Which CDN's API the account reads.
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
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Provider {
    Akamai,
    Edgecast,
}

/// A CDN account in this namespace, for the deliveries of this namespace.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "httpsdelivery.dev",
    version = "v1alpha1",
    kind = "CdnAccount",
    plural = "cdnaccounts",
    shortname = "cdna",
    namespaced,
    status = "CdnAccountStatus",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.provider"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[kube(derive = "PartialEq")]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(SETTINGS_RULE).message(SETTINGS_MESSAGE))]
pub struct CdnAccountSpec {
    pub provider: Provider,
    /// Edgecast settings; `accountNumber` is required for provider edgecast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edgecast: Option<EdgecastSettings>,
    /// Akamai settings; `contractId` and `groupId` are required for provider akamai.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub akamai: Option<AkamaiSettings>,
    /// The Secret holding the credentials (a CdnAccount's in its own namespace, a
    /// ClusterCdnAccount's in the operator's namespace). Akamai (EdgeGrid): keys `host`,
    /// `client_token`, `client_secret`, `access_token`. Edgecast: `rest_token` and/or
    /// `client_id` and `client_secret` (OAuth2).
    pub credentials_secret_ref: CredentialsReference,
    /// Requests per second the operator sends to this account at most (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub requests_per_second: Option<u32>,
}

/// Both account kinds need either provider's settings for their provider.
pub const SETTINGS_RULE: &str = "(self.provider == 'edgecast' && has(self.edgecast)) || (self.provider == 'akamai' && has(self.akamai))";
pub const SETTINGS_MESSAGE: &str =
    "provider edgecast needs spec.edgecast, provider akamai needs spec.akamai";

/// A CDN account for the deliveries of every namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "httpsdelivery.dev",
    version = "v1alpha1",
    kind = "ClusterCdnAccount",
    plural = "clustercdnaccounts",
    shortname = "ccdna",
    status = "CdnAccountStatus",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.provider"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterCdnAccountSpec {
    #[serde(flatten)]
    pub account: CdnAccountSpec,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EdgecastSettings {
    /// The customer account number (the `{AN}` of the MCC API's paths), e.g. 0001.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9A-Za-z]+$')").message("must be the account number, letters and digits only"))]
    pub account_number: String,
    /// The base URL of CPS and Origins (default https://api.vdms.io).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(BASE_URL_RULE).message(BASE_URL_MESSAGE))]
    pub base_url: Option<String>,
    /// The base URL of the MCC API (edge CNAMEs, customer origins): default baseUrl when that
    /// is set (one host serving both), else https://api.edgecast.com.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(BASE_URL_RULE).message(BASE_URL_MESSAGE))]
    pub mcc_base_url: Option<String>,
    /// The OAuth2 token endpoint (default https://id.vdms.io/connect/token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(BASE_URL_RULE).message(BASE_URL_MESSAGE))]
    pub token_url: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AkamaiSettings {
    /// The contract PAPI reads properties under, e.g. ctr_C-0000.
    #[schemars(length(min = 1, max = 64))]
    pub contract_id: String,
    /// The group PAPI reads properties under, e.g. grp_12345.
    #[schemars(length(min = 1, max = 64))]
    pub group_id: String,
    /// Overrides the API's base URL (default https://{host} of the credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(BASE_URL_RULE).message(BASE_URL_MESSAGE))]
    pub base_url: Option<String>,
}

pub const BASE_URL_RULE: &str = "self.startsWith('https://') || self.startsWith('http://127.') || self.startsWith('http://[::1]')";
pub const BASE_URL_MESSAGE: &str =
    "must be an https:// URL (plain http only to a loopback address, for tests)";

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct CredentialsReference {
    /// Name of the Secret holding the credentials.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Whether the account's API answered an authenticated read.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CdnAccountStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}
