//! A loopback fake of the read-only parts of two CDN APIs, Edgecast (Edgio) and Akamai, as
//! described in `docs/design/provider-apis.md`: plain HTTP on `127.0.0.1`, state the test sets
//! and changes while it runs, the real authentication schemes (Edgecast `TOK:` and OAuth2
//! client credentials, Akamai EdgeGrid with signature verification), switches for failures,
//! and a log of every request.
//!
//! One server answers for every host of both providers (the Edgecast legacy MCC, API and
//! identity hosts, and the Akamai API client host): their paths do not overlap, so the
//! operator under test points all its base URLs at [`FakeCdn::base_url`].
//!
//! Payloads are `serde_json::Value`s with the wire names of the doc; the typed helpers
//! ([`EdgecastCertificate`], [`Enrollment`], …) build the common ones, and tests may store any
//! JSON they like in [`CdnState`] to model odd answers.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use jiff::Timestamp;
use ring::{digest, hmac};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Placeholder Edgecast REST API token accepted by [`CdnConfig::default`].
pub const EDGECAST_REST_TOKEN: &str = "ec-rest-token-xxx";
/// Placeholder Edgecast customer account number (the `{account_number}` of MCC paths).
pub const EDGECAST_ACCOUNT: &str = "0000";
/// Placeholder Edgecast OAuth2 client ID and secret.
pub const EDGECAST_CLIENT_ID: &str = "ec-client-id-xxx";
pub const EDGECAST_CLIENT_SECRET: &str = "ec-client-secret-xxx";
/// OAuth2 scopes of the Edgecast APIs (doc A.2).
pub const SCOPE_CPS: &str = "sec.cps.certificates";
pub const SCOPE_ORIGINS: &str = "cdn.origins";

/// Largest request body the fake reads.
const MAX_REQUEST_BODY: usize = 1 << 20;

/// Akamai EdgeGrid API client credentials (the `.edgerc` keys, doc B.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeGridCredentials {
    pub client_token: String,
    pub client_secret: String,
    pub access_token: String,
}

impl EdgeGridCredentials {
    /// The placeholder credentials of the doc's test vectors (B.2).
    pub fn placeholder() -> EdgeGridCredentials {
        EdgeGridCredentials {
            client_token: "akab-client-token-xxx-xxxxxxxxxxxxxxxx".into(),
            client_secret: "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx=".into(),
            access_token: "akab-access-token-xxx-xxxxxxxxxxxxxxxx".into(),
        }
    }
}

/// The signing options a client and the server must agree on (`max_body`, `headers_to_sign`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeGridSettings {
    /// A POST body is truncated to this many bytes before hashing.
    pub max_body: usize,
    /// Canonical (Go-style, case-sensitive) names of the headers that are signed, e.g. `X-Test1`.
    pub headers_to_sign: Vec<String>,
}

impl Default for EdgeGridSettings {
    fn default() -> EdgeGridSettings {
        EdgeGridSettings {
            max_body: 131_072,
            headers_to_sign: Vec::new(),
        }
    }
}

/// An Edgecast OAuth2 client of the token endpoint, with the scopes it may ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: String,
    pub scopes: Vec<String>,
}

/// Who the fake accepts and how strict it is. [`Default`] uses the placeholder constants.
#[derive(Clone, Debug)]
pub struct CdnConfig {
    /// The Edgecast REST token (`Authorization: TOK:<token>`).
    pub edgecast_rest_token: String,
    /// The one Edgecast account the REST token may read; MCC paths of other accounts get 403.
    pub edgecast_account: String,
    pub oauth_clients: Vec<OAuthClient>,
    /// `expires_in` of the Bearer tokens issued; they are rejected after it.
    pub token_lifetime: Duration,
    /// Whether CPS and Origins v3 also accept the REST token. The SDK falls back to it, but
    /// does not show whether the API accepts it (doc A.2, Part D).
    pub oauth_apis_accept_rest_token: bool,
    pub akamai_credentials: Vec<EdgeGridCredentials>,
    pub edgegrid: EdgeGridSettings,
    /// How far an EdgeGrid `timestamp` may be from now.
    pub max_clock_skew: Duration,
    /// Whether Akamai CPS answers 406 to a request without its versioned `Accept` (doc B.4).
    pub strict_cps_accept: bool,
    /// `accountId` in Akamai PAPI answers.
    pub akamai_account_id: String,
}

impl Default for CdnConfig {
    fn default() -> CdnConfig {
        CdnConfig {
            edgecast_rest_token: EDGECAST_REST_TOKEN.into(),
            edgecast_account: EDGECAST_ACCOUNT.into(),
            oauth_clients: vec![OAuthClient {
                client_id: EDGECAST_CLIENT_ID.into(),
                client_secret: EDGECAST_CLIENT_SECRET.into(),
                scopes: vec![SCOPE_CPS.into(), SCOPE_ORIGINS.into()],
            }],
            token_lifetime: Duration::from_secs(3600),
            oauth_apis_accept_rest_token: true,
            akamai_credentials: vec![EdgeGridCredentials::placeholder()],
            edgegrid: EdgeGridSettings::default(),
            max_clock_skew: Duration::from_secs(300),
            strict_cps_accept: true,
            akamai_account_id: "act_A-0000".into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

/// What the Edgecast APIs answer. Keys are the IDs in the paths.
#[derive(Clone, Debug, Default)]
pub struct EdgecastState {
    /// CPS `CdnProvidedCertificate` by ID.
    pub certificates: BTreeMap<i64, Value>,
    /// CPS `CertificateStatus` by certificate ID.
    pub certificate_status: BTreeMap<i64, Value>,
    /// MCC edge CNAMEs by (account number, platform `httplarge|httpsmall|adn`).
    pub edge_cnames: BTreeMap<(String, String), Vec<Value>>,
    /// MCC propagation status by edge CNAME ID.
    pub edge_cname_propagation: BTreeMap<i64, Value>,
    /// MCC v2 customer origins by (account number, platform).
    pub origins: BTreeMap<(String, String), Vec<Value>>,
    /// MCC v2 propagation status by customer origin ID.
    pub origin_propagation: BTreeMap<i64, Value>,
    /// Origins v3 groups by media type (`http-large`, `adn`).
    pub origin_groups_v3: BTreeMap<String, Vec<Value>>,
    /// Origins v3 origins by media type.
    pub origins_v3: BTreeMap<String, Vec<Value>>,
    /// Origins v3 group propagation status by group ID.
    pub origin_group_status_v3: BTreeMap<i64, Value>,
}

impl EdgecastState {
    /// Stores the certificate and its `/status` answer.
    pub fn put_certificate(&mut self, cert: &EdgecastCertificate) {
        self.certificates.insert(cert.id, cert.to_json());
        self.certificate_status.insert(cert.id, cert.status_json());
    }

    /// Adds (or replaces, by `Id`) an edge CNAME of `account` on its platform.
    pub fn put_edge_cname(&mut self, account: &str, cname: &EdgeCname) {
        let key = (
            account.to_owned(),
            platform_path(cname.media_type_id).to_owned(),
        );
        upsert(
            self.edge_cnames.entry(key).or_default(),
            "Id",
            cname.to_json(),
        );
    }

    pub fn set_edge_cname_propagation(&mut self, edge_cname_id: i64, status: &Propagation) {
        self.edge_cname_propagation
            .insert(edge_cname_id, status.to_json());
    }

    /// Adds (or replaces, by `Id`) a v2 customer origin of `account` on its platform.
    pub fn put_origin(&mut self, account: &str, origin: &CustomerOrigin) {
        let key = (
            account.to_owned(),
            platform_path(origin.media_type_id).to_owned(),
        );
        upsert(self.origins.entry(key).or_default(), "Id", origin.to_json());
    }

    pub fn set_origin_propagation(&mut self, origin_id: i64, status: &Propagation) {
        self.origin_propagation.insert(origin_id, status.to_json());
    }

    /// Adds (or replaces, by `id`) an Origins v3 group of `media_type` (`http-large`).
    pub fn put_origin_group_v3(&mut self, media_type: &str, group: &OriginGroupV3) {
        upsert(
            self.origin_groups_v3
                .entry(media_type.to_owned())
                .or_default(),
            "id",
            group.to_json(),
        );
    }

    /// Adds (or replaces, by `id`) an Origins v3 origin of `media_type`.
    pub fn put_origin_v3(&mut self, media_type: &str, origin: &OriginV3) {
        upsert(
            self.origins_v3.entry(media_type.to_owned()).or_default(),
            "id",
            origin.to_json(),
        );
    }

    pub fn set_origin_group_status_v3(&mut self, group_id: i64, status: &Propagation) {
        self.origin_group_status_v3
            .insert(group_id, status.to_v3_json());
    }
}

/// What the Akamai APIs answer. Keys are the IDs in the paths (with PAPI prefixes).
#[derive(Clone, Debug, Default)]
pub struct AkamaiState {
    /// `GET /papi/v1/contracts` items (`{contractId, contractTypeName}`).
    pub contracts: Vec<Value>,
    /// `GET /papi/v1/groups` items (`{groupId, groupName, parentGroupId, contractIds}`).
    pub groups: Vec<Value>,
    /// CPS enrollments by ID.
    pub enrollments: BTreeMap<i64, Value>,
    /// CPS change status by (enrollment ID, change ID).
    pub changes: BTreeMap<(i64, i64), Value>,
    /// CPS deployments (`{production, staging}`) by enrollment ID.
    pub deployments: BTreeMap<i64, Value>,
    /// PAPI properties by `prp_` ID.
    pub properties: BTreeMap<String, Value>,
    /// PAPI version hostnames items by (property ID, version).
    pub property_hostnames: BTreeMap<(String, u64), Vec<Value>>,
    /// PAPI rule trees (the whole answer) by (property ID, version).
    pub rules: BTreeMap<(String, u64), Value>,
    /// PAPI activations by property ID.
    pub activations: BTreeMap<String, Vec<Value>>,
    /// PAPI edge hostname items.
    pub edge_hostnames: Vec<Value>,
}

impl AkamaiState {
    pub fn put_contract(&mut self, contract_id: &str, type_name: &str) {
        upsert(
            &mut self.contracts,
            "contractId",
            json!({"contractId": contract_id, "contractTypeName": type_name}),
        );
    }

    pub fn put_group(&mut self, group_id: &str, name: &str, contract_ids: &[&str]) {
        upsert(
            &mut self.groups,
            "groupId",
            json!({"groupId": group_id, "groupName": name, "contractIds": contract_ids}),
        );
    }

    pub fn put_enrollment(&mut self, enrollment: &Enrollment) {
        self.enrollments.insert(enrollment.id, enrollment.to_json());
    }

    pub fn set_deployments(&mut self, enrollment_id: i64, deployments: &CpsDeployments) {
        self.deployments
            .insert(enrollment_id, deployments.to_json());
    }

    pub fn put_change(&mut self, enrollment_id: i64, change_id: i64, change: &ChangeStatus) {
        self.changes
            .insert((enrollment_id, change_id), change.to_json());
    }

    pub fn put_property(&mut self, property: &Property) {
        self.properties
            .insert(property.property_id.clone(), property.to_json());
    }

    pub fn set_property_hostnames(
        &mut self,
        property_id: &str,
        version: u64,
        hostnames: &[PropertyHostname],
    ) {
        self.property_hostnames.insert(
            (property_id.to_owned(), version),
            hostnames.iter().map(PropertyHostname::to_json).collect(),
        );
    }

    /// Sets the rule tree of a property version: `rules` is the top rule (`{name: "default",
    /// behaviors, children, criteria}`, doc B.7), wrapped as PAPI answers it.
    pub fn set_rules(&mut self, property_id: &str, version: u64, rules: Value) {
        self.rules.insert(
            (property_id.to_owned(), version),
            json!({
                "accountId": "act_A-0000", "contractId": "ctr_C-0000", "groupId": "grp_1",
                "propertyId": property_id, "propertyVersion": version,
                "etag": "0000000000000000", "ruleFormat": "latest", "rules": rules,
            }),
        );
    }

    /// Adds (or replaces, by `activationId`) an activation of its property.
    pub fn put_activation(&mut self, activation: &Activation) {
        upsert(
            self.activations
                .entry(activation.property_id.clone())
                .or_default(),
            "activationId",
            activation.to_json(),
        );
    }

    /// Adds (or replaces, by `edgeHostnameId`) a PAPI edge hostname.
    pub fn put_edge_hostname(&mut self, edge_hostname: &EdgeHostname) {
        upsert(
            &mut self.edge_hostnames,
            "edgeHostnameId",
            edge_hostname.to_json(),
        );
    }
}

/// Everything the fake answers with; change it with [`FakeCdn::edit`].
#[derive(Clone, Debug, Default)]
pub struct CdnState {
    pub edgecast: EdgecastState,
    pub akamai: AkamaiState,
}

fn upsert(list: &mut Vec<Value>, key: &str, item: Value) {
    match list.iter_mut().find(|old| old[key] == item[key]) {
        Some(old) => *old = item,
        None => list.push(item),
    }
}

// ---------------------------------------------------------------------------------------------
// Typed payload helpers (wire names from the doc)
// ---------------------------------------------------------------------------------------------

/// Edgecast MCC path form of a `MediaTypeId` (doc A.3): 3 `httplarge`, 8 `httpsmall`, 14 `adn`.
pub fn platform_path(media_type_id: i64) -> &'static str {
    match media_type_id {
        8 => "httpsmall",
        14 => "adn",
        _ => "httplarge",
    }
}

/// A domain of an Edgecast CPS certificate.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgecastDomain {
    pub id: i64,
    pub name: String,
    pub is_common_name: bool,
    /// `Active`, `PendingDns`, `Rejected`, … (doc A.4).
    pub status: String,
}

/// A deployment of an Edgecast CPS certificate.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgecastDeployment {
    /// `HttpLarge`, `HttpSmall`, `Adn`.
    pub platform: String,
    pub delivery_region: String,
    pub hex_url: String,
}

/// An Edgecast CPS certificate (`CdnProvidedCertificate`) and its `CertificateStatus`.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgecastCertificate {
    pub id: i64,
    pub certificate_label: String,
    pub certificate_authority: String,
    pub validation_type: String,
    pub thumbprint: String,
    pub expiration_date: String,
    pub workflow_error_message: String,
    pub domains: Vec<EdgecastDomain>,
    pub deployments: Vec<EdgecastDeployment>,
    /// `CertificateStatus.status`: `Processing`, `DomainControlValidation`, …, `Active`.
    pub status: String,
    pub requires_attention: bool,
    /// `order_validation.status`: `Pending`, `Issued`, `Expired`, …
    pub order_status: String,
}

impl EdgecastCertificate {
    /// An issued, active DV certificate for `domains` (the first is the common name), deployed
    /// on HTTP Large with target CNAME `hex_url`.
    pub fn active(id: i64, domains: &[&str], hex_url: &str) -> EdgecastCertificate {
        EdgecastCertificate {
            id,
            certificate_label: format!("cert-{id}"),
            certificate_authority: "DigiCert".into(),
            validation_type: "DV".into(),
            thumbprint: "0".repeat(40),
            expiration_date: "2030-01-01T00:00:00Z".into(),
            workflow_error_message: String::new(),
            domains: domains
                .iter()
                .enumerate()
                .map(|(i, name)| EdgecastDomain {
                    id: id * 100 + i as i64,
                    name: (*name).to_owned(),
                    is_common_name: i == 0,
                    status: "Active".into(),
                })
                .collect(),
            deployments: vec![EdgecastDeployment {
                platform: "HttpLarge".into(),
                delivery_region: "GlobalStandard".into(),
                hex_url: hex_url.to_owned(),
            }],
            status: "Active".into(),
            requires_attention: false,
            order_status: "Issued".into(),
        }
    }

    /// The `GET /sec/cps/v2.0/certificates/{id}` body.
    pub fn to_json(&self) -> Value {
        json!({
            "@id": format!("/v2.0/certificates/{}", self.id),
            "@type": "CdnProvidedCertificate",
            "id": self.id,
            "certificate_label": self.certificate_label,
            "description": "",
            "auto_renew": true,
            "certificate_authority": self.certificate_authority,
            "validation_type": self.validation_type,
            "dcv_method": "DnsTxtToken",
            "request_type": "Enterprise",
            "thumbprint": self.thumbprint,
            "created": "2025-01-01T00:00:00Z",
            "last_modified": "2025-01-01T00:00:00Z",
            "expiration_date": self.expiration_date,
            "workflow_error_message": self.workflow_error_message,
            "domains": self.domains.iter().map(|d| json!({
                "id": d.id, "name": d.name, "is_common_name": d.is_common_name,
                "status": d.status, "active_date": "2025-01-01T00:00:00Z",
                "created": "2025-01-01T00:00:00Z",
            })).collect::<Vec<_>>(),
            "deployments": self.deployments.iter().map(|d| json!({
                "platform": d.platform, "delivery_region": d.delivery_region, "hex_url": d.hex_url,
            })).collect::<Vec<_>>(),
        })
    }

    /// The `GET /sec/cps/v2.0/certificates/{id}/status` body.
    pub fn status_json(&self) -> Value {
        let approved = if self.order_status == "Issued" {
            "Approved"
        } else {
            "Pending"
        };
        json!({
            "@type": "CertificateStatus",
            "status": self.status,
            "step": 5,
            "requires_attention": self.requires_attention,
            "error_message": self.workflow_error_message,
            "order_validation": {
                "status": self.order_status,
                "organization_validation": {"status": "NA", "validation_type": self.validation_type},
                "domain_validations": self.domains.iter().map(|d| json!({
                    "domain_id": d.id, "domain_names": [d.name], "status": approved,
                })).collect::<Vec<_>>(),
            },
        })
    }
}

/// An Edgecast MCC edge CNAME (PascalCase on the wire, doc A.5).
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeCname {
    pub id: i64,
    pub name: String,
    pub dir_path: String,
    /// `-1` for CDN storage, else a customer origin ID.
    pub origin_id: i64,
    pub media_type_id: i64,
    pub origin_string: String,
}

impl EdgeCname {
    /// An HTTP Large edge CNAME `name` pointing at customer origin `origin_id`.
    pub fn new(id: i64, name: &str, origin_id: i64) -> EdgeCname {
        EdgeCname {
            id,
            name: name.to_owned(),
            dir_path: String::new(),
            origin_id,
            media_type_id: 3,
            origin_string: "/80ABCD/myorigin".into(),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "Id": self.id, "Name": self.name, "DirPath": self.dir_path,
            "EnableCustomReports": 0, "OriginId": self.origin_id,
            "MediaTypeId": self.media_type_id, "OriginString": self.origin_string,
        })
    }
}

/// Edgecast propagation status (doc A.6): per-POP percentages and their average.
#[derive(Clone, Debug, PartialEq)]
pub struct Propagation {
    /// `New`, `propagating`, `propagated` (MCC); the v3 `state` (values not in the SDK).
    pub status: String,
    pub pops: Vec<(String, f64)>,
}

impl Propagation {
    pub fn propagated() -> Propagation {
        Propagation {
            status: "propagated".into(),
            pops: vec![
                ("NA : Example POP".into(), 100.0),
                ("EU : Example POP".into(), 100.0),
            ],
        }
    }

    /// Half the POPs at 100 %, the other half at `other_pops` percent.
    pub fn propagating(other_pops: f64) -> Propagation {
        Propagation {
            status: "propagating".into(),
            pops: vec![
                ("NA : Example POP".into(), 100.0),
                ("EU : Example POP".into(), other_pops),
            ],
        }
    }

    fn average(&self) -> f64 {
        if self.pops.is_empty() {
            return 0.0;
        }
        self.pops.iter().map(|(_, p)| p).sum::<f64>() / self.pops.len() as f64
    }

    /// The MCC v2 body, with its mixed casing.
    pub fn to_json(&self) -> Value {
        json!({
            "status": self.status,
            "Percent_propagated": self.average(),
            "Pops": self.pops.iter().map(|(name, p)| json!({
                "name": name, "percentage_propagated": p,
            })).collect::<Vec<_>>(),
        })
    }

    /// The Origins v3 group status body (lower-case keys).
    pub fn to_v3_json(&self) -> Value {
        json!({
            "state": self.status,
            "percent_propagated": self.average(),
            "pops": self.pops.iter().map(|(name, p)| json!({
                "name": name, "percentage_propagated": p,
            })).collect::<Vec<_>>(),
        })
    }
}

/// An Edgecast MCC v2 customer origin (doc A.7).
#[derive(Clone, Debug, PartialEq)]
pub struct CustomerOrigin {
    pub id: i64,
    pub directory_name: String,
    pub host_header: String,
    pub media_type_id: i64,
    /// `Name`s of `HttpHostnames`, e.g. `http://origin.example.com:80`.
    pub http_hostnames: Vec<String>,
    /// `Name`s of `HttpsHostnames`, e.g. `https://origin.example.com:443`.
    pub https_hostnames: Vec<String>,
}

impl CustomerOrigin {
    /// An HTTPS-only HTTP Large origin `https://{host}:443`.
    pub fn https_only(id: i64, directory_name: &str, host: &str) -> CustomerOrigin {
        CustomerOrigin {
            id,
            directory_name: directory_name.to_owned(),
            host_header: format!("{host}:443"),
            media_type_id: 3,
            http_hostnames: Vec::new(),
            https_hostnames: vec![format!("https://{host}:443")],
        }
    }

    pub fn to_json(&self) -> Value {
        let hostnames = |names: &[String]| {
            names
                .iter()
                .enumerate()
                .map(
                    |(i, name)| json!({"Name": name, "IsPrimary": i32::from(i == 0), "Ordinal": i}),
                )
                .collect::<Vec<_>>()
        };
        json!({
            "Id": self.id, "DirectoryName": self.directory_name, "MediaTypeId": self.media_type_id,
            "HostHeader": self.host_header,
            "HttpHostnames": hostnames(&self.http_hostnames), "HttpLoadBalancing": "PF",
            "HttpsHostnames": hostnames(&self.https_hostnames), "HttpsLoadBalancing": "PF",
            "NetworkConfiguration": 1, "UseOriginShield": 0, "ShieldPOPs": [],
            "FollowRedirects": false,
            "HttpFullUrl": format!("http://cdn.example.net/80ABCD/{}", self.directory_name),
            "HttpsFullUrl": format!("https://cdn.example.net/80ABCD/{}", self.directory_name),
        })
    }
}

/// An Edgecast Origins v3 customer origin group (`CustomerOriginGroupHTTP`).
#[derive(Clone, Debug, PartialEq)]
pub struct OriginGroupV3 {
    pub id: i64,
    pub name: String,
    pub host_header: String,
    pub sni_hostname: Option<String>,
    pub allow_self_signed: bool,
}

impl OriginGroupV3 {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "name": self.name, "host_header": self.host_header,
            "shield_pops": [], "network_type_id": 1, "strict_pci_certified": false,
            "tls_settings": {
                "sni_hostname": self.sni_hostname, "allow_self_signed": self.allow_self_signed,
                "public_keys_to_verify": [],
            },
        })
    }
}

/// An Edgecast Origins v3 origin (`CustomerOrigin`); `protocol_type_id` 2 is HTTPS only.
#[derive(Clone, Debug, PartialEq)]
pub struct OriginV3 {
    pub id: i64,
    pub name: String,
    pub host: String,
    pub port: u16,
    pub is_primary: bool,
    /// 1 HTTP only, 2 HTTPS only, 3 match client.
    pub protocol_type_id: i64,
    pub group_id: i64,
}

impl OriginV3 {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "name": self.name, "host": self.host, "port": self.port,
            "is_primary": self.is_primary, "storage_type_id": 1,
            "protocol_type_id": self.protocol_type_id, "group_id": self.group_id,
        })
    }
}

/// An Akamai CPS enrollment (v11 shape, doc B.4).
#[derive(Clone, Debug, PartialEq)]
pub struct Enrollment {
    pub id: i64,
    pub ra: String,
    pub validation_type: String,
    pub certificate_type: String,
    pub cn: String,
    pub sans: Vec<String>,
    /// `standard-tls` or `enhanced-tls`.
    pub secure_network: String,
    pub sni_only: bool,
    pub production_slots: Vec<i64>,
    pub staging_slots: Vec<i64>,
    /// `(change ID, changeType)` of each pending change.
    pub pending_changes: Vec<(i64, String)>,
}

impl Enrollment {
    /// A Let's Encrypt DV SAN enrollment on Enhanced TLS with no pending change.
    pub fn new(id: i64, cn: &str, sans: &[&str]) -> Enrollment {
        Enrollment {
            id,
            ra: "lets-encrypt".into(),
            validation_type: "dv".into(),
            certificate_type: "san".into(),
            cn: cn.to_owned(),
            sans: sans.iter().map(|s| (*s).to_owned()).collect(),
            secure_network: "enhanced-tls".into(),
            sni_only: true,
            production_slots: vec![id * 10],
            staging_slots: vec![id * 10 + 1],
            pending_changes: Vec::new(),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "location": format!("/cps-api/enrollments/{}", self.id),
            "ra": self.ra,
            "validationType": self.validation_type,
            "certificateType": self.certificate_type,
            "changeManagement": false,
            "csr": {"cn": self.cn, "sans": self.sans, "c": "US", "o": "Example"},
            "networkConfiguration": {
                "geography": "core", "secureNetwork": self.secure_network,
                "sniOnly": self.sni_only, "quicEnabled": false,
                "disallowedTlsVersions": ["TLSv1", "TLSv1_1"], "ocspStapling": "on",
                "dnsNameSettings": {"cloneDnsNames": true, "dnsNames": self.sans},
            },
            "productionSlots": self.production_slots,
            "stagingSlots": self.staging_slots,
            "assignedSlots": self.production_slots,
            "pendingChanges": self.pending_changes.iter().map(|(change, kind)| json!({
                "location": format!("/cps-api/enrollments/{}/changes/{change}", self.id),
                "changeType": kind,
            })).collect::<Vec<_>>(),
            "maxAllowedSanNames": 100,
            "maxAllowedWildcardSanNames": 100,
        })
    }
}

/// One network's CPS deployment: the deployed certificate (PEM) and where it is served.
#[derive(Clone, Debug, PartialEq)]
pub struct CpsDeployment {
    pub certificate_pem: String,
    pub trust_chain_pem: String,
    /// RFC 3339, e.g. `2026-02-05T13:21:21Z`.
    pub expiry: String,
    pub key_algorithm: String,
    pub dns_names: Vec<String>,
    pub secure_network: String,
}

impl CpsDeployment {
    pub fn to_json(&self) -> Value {
        json!({
            "ocspStapled": false, "ocspUris": [],
            "networkConfiguration": {
                "geography": "core", "secureNetwork": self.secure_network, "sniOnly": true,
                "quicEnabled": false, "disallowedTlsVersions": ["TLSv1", "TLSv1_1"],
                "dnsNames": self.dns_names, "ocspStapling": "on",
            },
            "primaryCertificate": {
                "certificate": self.certificate_pem, "trustChain": self.trust_chain_pem,
                "expiry": self.expiry, "keyAlgorithm": self.key_algorithm,
                "signatureAlgorithm": "SHA-256",
            },
            "multiStackedCertificates": [],
        })
    }
}

/// The `GET /cps/v2/enrollments/{id}/deployments` body; a missing network is `null`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpsDeployments {
    pub production: Option<CpsDeployment>,
    pub staging: Option<CpsDeployment>,
}

impl CpsDeployments {
    pub fn to_json(&self) -> Value {
        json!({
            "production": self.production.as_ref().map(CpsDeployment::to_json),
            "staging": self.staging.as_ref().map(CpsDeployment::to_json),
        })
    }
}

/// A CPS change status (`statusInfo` plus `allowedInput`, doc B.4).
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeStatus {
    /// e.g. `coodinate-domain-validation` (sic), `complete`.
    pub status: String,
    /// `running`, `awaiting-input`, `suspended`.
    pub state: String,
    pub description: String,
    /// `allowedInput[].type`, e.g. `lets-encrypt-challenges`.
    pub allowed_input: Vec<String>,
}

impl ChangeStatus {
    pub fn to_json(&self) -> Value {
        json!({
            "statusInfo": {
                "status": self.status, "state": self.state, "description": self.description,
                "error": null, "deploymentSchedule": {"notBefore": null, "notAfter": null},
            },
            "allowedInput": self.allowed_input.iter().map(|kind| json!({
                "type": kind, "requiredToProceed": false,
            })).collect::<Vec<_>>(),
        })
    }
}

/// A PAPI property.
#[derive(Clone, Debug, PartialEq)]
pub struct Property {
    pub property_id: String,
    pub property_name: String,
    pub contract_id: String,
    pub group_id: String,
    pub latest_version: u64,
    pub production_version: Option<u64>,
    pub staging_version: Option<u64>,
}

impl Property {
    pub fn to_json(&self) -> Value {
        json!({
            "propertyId": self.property_id, "propertyName": self.property_name,
            "contractId": self.contract_id, "groupId": self.group_id,
            "accountId": "act_A-0000", "assetId": "aid_0000",
            "latestVersion": self.latest_version,
            "productionVersion": self.production_version,
            "stagingVersion": self.staging_version,
            "note": "", "propertyType": "TRADITIONAL",
        })
    }
}

/// A hostname of a PAPI property version.
#[derive(Clone, Debug, PartialEq)]
pub struct PropertyHostname {
    pub cname_from: String,
    pub cname_to: String,
    pub edge_hostname_id: String,
    /// `CPS_MANAGED` or `DEFAULT`.
    pub cert_provisioning_type: String,
}

impl PropertyHostname {
    pub fn to_json(&self) -> Value {
        json!({
            "cnameType": "EDGE_HOSTNAME", "edgeHostnameId": self.edge_hostname_id,
            "cnameFrom": self.cname_from, "cnameTo": self.cname_to,
            "certProvisioningType": self.cert_provisioning_type,
        })
    }
}

/// A PAPI activation.
#[derive(Clone, Debug, PartialEq)]
pub struct Activation {
    pub activation_id: String,
    pub property_id: String,
    pub property_name: String,
    pub property_version: u64,
    /// `STAGING` or `PRODUCTION`.
    pub network: String,
    /// `ACTIVE`, `PENDING`, `FAILED`, … (doc B.6).
    pub status: String,
}

impl Activation {
    pub fn to_json(&self) -> Value {
        json!({
            "activationId": self.activation_id, "propertyId": self.property_id,
            "propertyName": self.property_name, "propertyVersion": self.property_version,
            "network": self.network, "activationType": "ACTIVATE", "status": self.status,
            "submitDate": "2025-01-01T00:00:00Z", "updateDate": "2025-01-01T00:10:00Z",
            "note": "", "notifyEmails": ["ops@example.com"],
        })
    }
}

/// A PAPI edge hostname item; `secure` means TLS-capable.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeHostname {
    pub edge_hostname_id: String,
    pub domain_prefix: String,
    /// `edgesuite.net`, `edgekey.net`, `akamaized.net`.
    pub domain_suffix: String,
    pub secure: bool,
    pub status: String,
}

impl EdgeHostname {
    pub fn to_json(&self) -> Value {
        json!({
            "edgeHostnameId": self.edge_hostname_id,
            "edgeHostnameDomain": format!("{}.{}", self.domain_prefix, self.domain_suffix),
            "domainPrefix": self.domain_prefix, "domainSuffix": self.domain_suffix,
            "productId": "prd_Fresca", "status": self.status, "secure": self.secure,
            "ipVersionBehavior": "IPV4", "useCases": [],
        })
    }
}

// ---------------------------------------------------------------------------------------------
// EdgeGrid (doc B.2)
// ---------------------------------------------------------------------------------------------

/// The parts of a request that EdgeGrid signs, as the client sent them.
#[derive(Clone, Copy, Debug)]
pub struct EdgeGridRequest<'a> {
    pub method: &'a str,
    /// `https` in the SDK (the URL's scheme).
    pub scheme: &'a str,
    /// The `Host` header value.
    pub host: &'a str,
    /// The escaped path plus `?` and the raw query, byte for byte as sent.
    pub path_and_query: &'a str,
    /// The request headers (any case, in any order).
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// Why an EdgeGrid `Authorization` header was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EdgeGridError {
    Missing,
    Malformed(String),
    UnknownClientToken,
    WrongAccessToken,
    StaleTimestamp(String),
    BadSignature,
}

impl fmt::Display for EdgeGridError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EdgeGridError::Missing => write!(f, "no EG1-HMAC-SHA256 Authorization header"),
            EdgeGridError::Malformed(why) => write!(f, "malformed Authorization header: {why}"),
            EdgeGridError::UnknownClientToken => write!(f, "unknown client token"),
            EdgeGridError::WrongAccessToken => {
                write!(f, "access token does not belong to the client token")
            }
            EdgeGridError::StaleTimestamp(ts) => {
                write!(f, "timestamp {ts} is too far from the server clock")
            }
            EdgeGridError::BadSignature => write!(f, "the signature does not match"),
        }
    }
}

impl std::error::Error for EdgeGridError {}

/// `yyyyMMddTHH:mm:ss+0000`, the EdgeGrid timestamp form.
pub fn edgegrid_timestamp(at: Timestamp) -> String {
    at.strftime("%Y%m%dT%H:%M:%S+0000").to_string()
}

/// Go's canonical header key: `x-test1` becomes `X-Test1`.
fn canonical_header_name(name: &str) -> String {
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

/// Replaces runs of two or more whitespace characters with one space (Go's `\s{2,}`).
fn collapse_whitespace(value: &str) -> String {
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c');
    let mut out = String::with_capacity(value.len());
    let chars: Vec<char> = value.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let run = chars[i..].iter().take_while(|c| is_space(**c)).count();
        if run >= 2 {
            out.push(' ');
            i += run;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

fn canonical_headers(request: &EdgeGridRequest<'_>, settings: &EdgeGridSettings) -> String {
    let mut signed: Vec<(String, &str)> = Vec::new();
    for (name, value) in request.headers {
        let canonical = canonical_header_name(name);
        // Go's Header.Get: the first value of a repeated header.
        if settings.headers_to_sign.contains(&canonical)
            && !signed.iter().any(|(seen, _)| *seen == canonical)
        {
            signed.push((canonical, value));
        }
    }
    signed.sort();
    signed
        .iter()
        .map(|(name, value)| {
            format!(
                "{}:{}",
                name.to_ascii_lowercase(),
                collapse_whitespace(value.trim()).to_lowercase()
            )
        })
        .collect::<Vec<_>>()
        .join("\t")
}

fn content_hash(request: &EdgeGridRequest<'_>, settings: &EdgeGridSettings) -> String {
    if request.method != "POST" || request.body.is_empty() {
        return String::new();
    }
    let body = &request.body[..request.body.len().min(settings.max_body)];
    BASE64.encode(digest::digest(&digest::SHA256, body))
}

/// `EG1-HMAC-SHA256 client_token=…;access_token=…;timestamp=…;nonce=…;` (step 3).
fn auth_prefix(credentials: &EdgeGridCredentials, timestamp: &str, nonce: &str) -> String {
    format!(
        "EG1-HMAC-SHA256 client_token={};access_token={};timestamp={timestamp};nonce={nonce};",
        credentials.client_token, credentials.access_token
    )
}

/// The tab-joined string that is signed (step 7).
pub fn edgegrid_data_to_sign(
    request: &EdgeGridRequest<'_>,
    settings: &EdgeGridSettings,
    auth_prefix: &str,
) -> String {
    [
        request.method,
        request.scheme,
        request.host,
        request.path_and_query,
        &canonical_headers(request, settings),
        &content_hash(request, settings),
        auth_prefix,
    ]
    .join("\t")
}

/// base64(HMAC-SHA256(client_secret as text, timestamp)) (step 8).
pub fn edgegrid_signing_key(client_secret: &str, timestamp: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, client_secret.as_bytes());
    BASE64.encode(hmac::sign(&key, timestamp.as_bytes()))
}

/// The whole `Authorization` header value for `request`, as an EdgeGrid client sends it.
pub fn edgegrid_authorization(
    credentials: &EdgeGridCredentials,
    settings: &EdgeGridSettings,
    request: &EdgeGridRequest<'_>,
    timestamp: &str,
    nonce: &str,
) -> String {
    let prefix = auth_prefix(credentials, timestamp, nonce);
    let data = edgegrid_data_to_sign(request, settings, &prefix);
    let signing_key = edgegrid_signing_key(&credentials.client_secret, timestamp);
    let key = hmac::Key::new(hmac::HMAC_SHA256, signing_key.as_bytes());
    let signature = BASE64.encode(hmac::sign(&key, data.as_bytes()));
    format!("{prefix}signature={signature}")
}

/// Checks an EdgeGrid `Authorization` header the way the server recomputes it: the client
/// token must be known, the access token must be its own, the timestamp within `max_skew` of
/// `now`, and the signature equal to the one computed from `request`. Returns the credentials
/// that signed it.
pub fn verify_edgegrid<'c>(
    authorization: Option<&str>,
    request: &EdgeGridRequest<'_>,
    credentials: &'c [EdgeGridCredentials],
    settings: &EdgeGridSettings,
    now: Timestamp,
    max_skew: Duration,
) -> Result<&'c EdgeGridCredentials, EdgeGridError> {
    let authorization = authorization.ok_or(EdgeGridError::Missing)?;
    let fields = authorization
        .strip_prefix("EG1-HMAC-SHA256 ")
        .ok_or(EdgeGridError::Missing)?;
    let mut parts: BTreeMap<&str, &str> = BTreeMap::new();
    for field in fields.split(';').filter(|f| !f.is_empty()) {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| EdgeGridError::Malformed(format!("{field:?} is not key=value")))?;
        parts.insert(key, value);
    }
    let part = |key: &str| {
        parts
            .get(key)
            .copied()
            .ok_or_else(|| EdgeGridError::Malformed(format!("no {key}")))
    };
    let (client_token, access_token) = (part("client_token")?, part("access_token")?);
    let (timestamp, nonce, signature) = (part("timestamp")?, part("nonce")?, part("signature")?);

    let found = credentials
        .iter()
        .find(|c| c.client_token == client_token)
        .ok_or(EdgeGridError::UnknownClientToken)?;
    if found.access_token != access_token {
        return Err(EdgeGridError::WrongAccessToken);
    }
    let signed_at = jiff::fmt::strtime::parse("%Y%m%dT%H:%M:%S%z", timestamp)
        .and_then(|parsed| parsed.to_timestamp())
        .map_err(|e| EdgeGridError::Malformed(format!("timestamp {timestamp:?}: {e}")))?;
    let skew = now.duration_since(signed_at).unsigned_abs();
    if skew > max_skew {
        return Err(EdgeGridError::StaleTimestamp(timestamp.to_owned()));
    }

    // The signature covers the prefix exactly as sent, so rebuild it from the sent parts.
    let prefix = auth_prefix(found, timestamp, nonce);
    let data = edgegrid_data_to_sign(request, settings, &prefix);
    let signing_key = edgegrid_signing_key(&found.client_secret, timestamp);
    let key = hmac::Key::new(hmac::HMAC_SHA256, signing_key.as_bytes());
    let presented = BASE64
        .decode(signature)
        .map_err(|_| EdgeGridError::BadSignature)?;
    hmac::verify(&key, data.as_bytes(), &presented).map_err(|_| EdgeGridError::BadSignature)?;
    Ok(found)
}

// ---------------------------------------------------------------------------------------------
// Failure switches and the request log
// ---------------------------------------------------------------------------------------------

/// Which API a request was for (by path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `POST /connect/token`.
    EdgecastToken,
    /// `/sec/cps/`, `/v2/mcc/`, `/cdn/origins/`.
    Edgecast,
    /// `/cps/`, `/papi/`, `/hapi/`.
    Akamai,
    Unknown,
}

/// One request the fake answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub api: Api,
    /// Whether the credentials passed (for the token endpoint: client ID and secret).
    pub authorized: bool,
    pub status: u16,
}

/// A fixed answer for the paths a pattern matches, given after authentication passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub status: u16,
    /// Seconds for a `Retry-After` header (Akamai 429s also get `X-RateLimit-Next`).
    pub retry_after: Option<u64>,
}

#[derive(Debug, Default)]
struct Switches {
    /// (pattern, fault); a pattern is an exact path or a prefix ending in `*`.
    faults: Vec<(String, Fault)>,
    delay: Duration,
    akamai_forbidden: bool,
    edgecast_forbidden: bool,
}

#[derive(Debug)]
struct IssuedToken {
    scopes: Vec<String>,
    expires: Timestamp,
}

#[derive(Debug, Default)]
struct Inner {
    state: CdnState,
    switches: Switches,
    log: Vec<LoggedRequest>,
    tokens: BTreeMap<String, IssuedToken>,
    issued: u64,
}

struct Shared {
    config: CdnConfig,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn pattern_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => pattern == path,
    }
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/// The fake CDN APIs on `127.0.0.1`; stops when dropped.
pub struct FakeCdn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl FakeCdn {
    /// Binds `127.0.0.1:0` and serves HTTP/1.1 with empty state.
    pub async fn start(config: CdnConfig) -> io::Result<FakeCdn> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            inner: Mutex::new(Inner::default()),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // The server ends with the runtime or on drop; there is nobody to tell of an error.
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(FakeCdn {
            addr,
            shared,
            stop: Some(stop),
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the base URL of every API the fake serves.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn config(&self) -> &CdnConfig {
        &self.shared.config
    }

    /// Changes what the fake answers from the next request on.
    pub fn edit<R>(&self, change: impl FnOnce(&mut CdnState) -> R) -> R {
        change(&mut self.shared.lock().state)
    }

    /// A copy of what the fake answers now.
    pub fn state(&self) -> CdnState {
        self.shared.lock().state.clone()
    }

    /// Answers `status` to every authenticated request whose path matches `pattern` (an exact
    /// path like `/papi/v1/contracts`, or a prefix ending in `*` like `/sec/cps/*`).
    pub fn fail(&self, pattern: &str, status: u16) {
        self.fail_with(
            pattern,
            Fault {
                status,
                retry_after: None,
            },
        );
    }

    /// Like [`fail`](Self::fail) with a `Retry-After` header (e.g. 429 or 503).
    pub fn fail_with(&self, pattern: &str, fault: Fault) {
        let mut inner = self.shared.lock();
        inner.switches.faults.retain(|(p, _)| p != pattern);
        inner.switches.faults.push((pattern.to_owned(), fault));
    }

    /// Removes every fault set with [`fail`](Self::fail).
    pub fn clear_faults(&self) {
        self.shared.lock().switches.faults.clear();
    }

    /// Waits this long before answering each request.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.lock().switches.delay = delay;
    }

    /// Answers 403 to correctly signed Akamai requests (the client lacks API access).
    pub fn set_akamai_forbidden(&self, forbidden: bool) {
        self.shared.lock().switches.akamai_forbidden = forbidden;
    }

    /// Answers 403 to correctly authenticated Edgecast requests.
    pub fn set_edgecast_forbidden(&self, forbidden: bool) {
        self.shared.lock().switches.edgecast_forbidden = forbidden;
    }

    /// Forgets every Bearer token issued, so that clients must fetch a new one.
    pub fn revoke_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// Bearer tokens issued so far by `POST /connect/token`.
    pub fn tokens_issued(&self) -> u64 {
        self.shared.lock().issued
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.lock().log.clone()
    }

    /// How many `method path` requests were answered (the query does not matter).
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().log.clear();
    }
}

impl Drop for FakeCdn {
    fn drop(&mut self) {
        // Graceful shutdown closes idle keep-alive connections too; abort stops accepting.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

fn classify(path: &str) -> Api {
    if path == "/connect/token" {
        Api::EdgecastToken
    } else if ["/sec/cps/", "/v2/mcc/", "/cdn/origins/"]
        .iter()
        .any(|p| path.starts_with(p))
    {
        Api::Edgecast
    } else if ["/cps/", "/papi/", "/hapi/"]
        .iter()
        .any(|p| path.starts_with(p))
    {
        Api::Akamai
    } else {
        Api::Unknown
    }
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` and `%XX`).
fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The decoded pairs of a query string or form body.
fn form_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

fn param(pairs: &[(String, String)], key: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

fn json_response(status: StatusCode, content_type: &str, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

fn ok(body: &Value) -> Response {
    json_response(StatusCode::OK, "application/json", body)
}

/// Edgecast error bodies. CPS and Origins v3 use the `HyperionErrorReponse` shape the SDK
/// documents for 400/404; the SDK shows no 401/403 body and nothing for the legacy MCC API
/// (doc A.8, Part D), so those use the same shape (OAuth APIs) or an ASP.NET-style
/// `{"Message": …}` (MCC), both **[inference]**.
fn edgecast_error(path: &str, status: StatusCode, description: &str) -> Response {
    let body = if path.starts_with("/v2/mcc/") {
        json!({"Message": description})
    } else {
        json!({
            "@type": "HyperionErrorReponse",
            "code": status.canonical_reason().unwrap_or("Error"),
            "status_code": status.as_u16(),
            "details": [{"@type": "ErrorDetail", "description": description,
                         "source": "", "meta": null}],
        })
    };
    json_response(status, "application/json", &body)
}

/// Akamai problem+json (doc B.3). The SDK has no 401 example, so the `type` of auth failures
/// is a made-up relative URI **[inference]**.
fn akamai_error(path: &str, status: StatusCode, kind: &str, detail: &str) -> Response {
    let body = json!({
        "type": format!("/problems/{kind}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "statusCode": status.as_u16(),
        "detail": detail,
        "instance": format!("/problems/instances/{}", path.trim_start_matches('/').replace('/', "-")),
        "errors": [],
    });
    json_response(status, "application/problem+json", &body)
}

fn not_found(api: Api, path: &str) -> Response {
    match api {
        Api::Akamai => akamai_error(path, StatusCode::NOT_FOUND, "not-found", "not found"),
        _ => edgecast_error(path, StatusCode::NOT_FOUND, "not found"),
    }
}

fn fault_response(api: Api, path: &str, fault: &Fault) -> Response {
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match api {
        Api::Akamai if status == StatusCode::TOO_MANY_REQUESTS => {
            let body = json!({
                "type": "/problems/rate-limit-exceeded", "title": "Too Many Requests",
                "status": 429, "detail": "rate limit exceeded",
                "limitKey": "DEFAULT_CERTS_PER_CONTRACT", "limit": 10, "remaining": 0,
            });
            json_response(status, "application/problem+json", &body)
        }
        Api::Akamai => akamai_error(path, status, "injected-fault", "injected fault"),
        _ => edgecast_error(path, status, "injected fault"),
    };
    if let Some(seconds) = fault.retry_after {
        let headers = response.headers_mut();
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        if api == Api::Akamai {
            let next = Timestamp::now()
                .checked_add(jiff::SignedDuration::from_secs(seconds as i64))
                .unwrap_or_else(|_| Timestamp::now());
            let next = next.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            if let Ok(value) = HeaderValue::from_str(&next) {
                headers.insert("X-RateLimit-Next", value);
            }
        }
    }
    response
}

/// The one handler: log, delay, authenticate, inject faults, route.
async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let api = classify(&path);
    let (delay, fault) = {
        let inner = shared.lock();
        let fault = inner
            .switches
            .faults
            .iter()
            .find(|(pattern, _)| pattern_matches(pattern, &path))
            .map(|(_, fault)| fault.clone());
        (inner.switches.delay, fault)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let body = match axum::body::to_bytes(body, MAX_REQUEST_BODY).await {
        Ok(body) => body,
        Err(_) => Bytes::new(),
    };
    let (authorized, response) = answer(
        &shared,
        api,
        &parts.method,
        &parts.uri,
        &parts.headers,
        &body,
        fault,
    );
    shared.lock().log.push(LoggedRequest {
        method: parts.method.to_string(),
        path,
        query,
        api,
        authorized,
        status: response.status().as_u16(),
    });
    response
}

fn answer(
    shared: &Shared,
    api: Api,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &Bytes,
    fault: Option<Fault>,
) -> (bool, Response) {
    let path = uri.path();
    let query = form_pairs(uri.query().unwrap_or(""));
    if api == Api::EdgecastToken {
        return issue_token(shared, method, body);
    }
    let authenticated = match api {
        Api::Edgecast => authenticate_edgecast(shared, path, headers),
        Api::Akamai => authenticate_akamai(shared, method, uri, headers, body),
        _ => return (false, not_found(api, path)),
    };
    if let Err(refusal) = authenticated {
        return (false, *refusal);
    }
    if let Some(fault) = fault {
        return (true, fault_response(api, path, &fault));
    }
    if *method != Method::GET {
        let response = match api {
            Api::Akamai => akamai_error(
                path,
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "the fake serves reads only",
            ),
            _ => edgecast_error(
                path,
                StatusCode::METHOD_NOT_ALLOWED,
                "the fake serves reads only",
            ),
        };
        return (true, response);
    }
    let inner = shared.lock();
    let response = match api {
        Api::Edgecast => route_edgecast(&inner.state.edgecast, path, &query),
        _ => route_akamai(&shared.config, &inner.state.akamai, path, &query, headers),
    };
    (true, response.unwrap_or_else(|| not_found(api, path)))
}

/// `POST /connect/token` (doc A.2): form credentials in, a Bearer token out.
fn issue_token(shared: &Shared, method: &Method, body: &Bytes) -> (bool, Response) {
    let bad = |error: &str| {
        json_response(
            StatusCode::BAD_REQUEST,
            "application/json",
            &json!({ "error": error }),
        )
    };
    if *method != Method::POST {
        return (false, bad("invalid_request"));
    }
    let form = form_pairs(&String::from_utf8_lossy(body));
    let client = shared.config.oauth_clients.iter().find(|c| {
        param(&form, "client_id").as_deref() == Some(&c.client_id)
            && param(&form, "client_secret").as_deref() == Some(&c.client_secret)
    });
    let Some(client) = client else {
        return (false, bad("invalid_client"));
    };
    if param(&form, "grant_type").as_deref() != Some("client_credentials") {
        return (true, bad("unsupported_grant_type"));
    }
    let scope = param(&form, "scope").unwrap_or_default();
    let scopes: Vec<String> = scope.split_whitespace().map(str::to_owned).collect();
    if scopes.is_empty() || scopes.iter().any(|s| !client.scopes.contains(s)) {
        return (true, bad("invalid_scope"));
    }
    let lifetime = shared.config.token_lifetime;
    let expires = Timestamp::now()
        .checked_add(jiff::SignedDuration::try_from(lifetime).unwrap_or_default())
        .unwrap_or_else(|_| Timestamp::now());
    let mut inner = shared.lock();
    inner.issued += 1;
    let token = format!("ec-access-token-{}", inner.issued);
    inner
        .tokens
        .insert(token.clone(), IssuedToken { scopes, expires });
    let body = json!({
        "access_token": token,
        "expires_in": lifetime.as_secs(),
        "token_type": "Bearer",
        "scope": scope,
    });
    (true, ok(&body))
}

fn authenticate_edgecast(
    shared: &Shared,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), Box<Response>> {
    let unauthorized = |why: &str| Box::new(edgecast_error(path, StatusCode::UNAUTHORIZED, why));
    let forbidden = |why: &str| Box::new(edgecast_error(path, StatusCode::FORBIDDEN, why));
    let config = &shared.config;
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthorized("missing Authorization header"))?;
    let needed_scope = if path.starts_with("/sec/cps/") {
        Some(SCOPE_CPS)
    } else if path.starts_with("/cdn/origins/") {
        Some(SCOPE_ORIGINS)
    } else {
        None
    };
    if let Some(token) = authorization.strip_prefix("TOK:") {
        if token.is_empty() || token != config.edgecast_rest_token {
            return Err(unauthorized("invalid REST API token"));
        }
        if needed_scope.is_some() && !config.oauth_apis_accept_rest_token {
            return Err(unauthorized("this API needs an OAuth2 Bearer token"));
        }
    } else if let Some(token) = authorization.strip_prefix("Bearer ") {
        let inner = shared.lock();
        let issued = inner
            .tokens
            .get(token)
            .filter(|t| t.expires > Timestamp::now())
            .ok_or_else(|| unauthorized("invalid or expired Bearer token"))?;
        match needed_scope {
            None => return Err(unauthorized("the MCC API takes a REST API token (TOK:)")),
            Some(scope) if !issued.scopes.iter().any(|s| s == scope) => {
                return Err(forbidden(&format!("the token lacks scope {scope}")));
            }
            Some(_) => {}
        }
    } else {
        return Err(unauthorized("unsupported Authorization scheme"));
    }
    if shared.lock().switches.edgecast_forbidden {
        return Err(forbidden("access denied"));
    }
    // MCC paths name the account; the token belongs to one. What the real API answers for
    // another account is not in the SDK; 403 is an [inference].
    if let Some(rest) = path.strip_prefix("/v2/mcc/customers/") {
        let account = rest.split('/').next().unwrap_or_default();
        if account != "superblocks" && account != config.edgecast_account {
            return Err(forbidden(&format!("no access to account {account}")));
        }
    }
    Ok(())
}

fn authenticate_akamai(
    shared: &Shared,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(), Box<Response>> {
    let path = uri.path();
    let config = &shared.config;
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let path_and_query = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or(path);
    let header_pairs: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // The SDK signs the URL's scheme, `https` against the real host; a client pointed at this
    // plain-HTTP fake may sign `http`. Either is accepted.
    let mut outcome = Err(EdgeGridError::Missing);
    for scheme in ["https", "http"] {
        let request = EdgeGridRequest {
            method: method.as_str(),
            scheme,
            host: &host,
            path_and_query,
            headers: &header_pairs,
            body,
        };
        outcome = verify_edgegrid(
            authorization,
            &request,
            &config.akamai_credentials,
            &config.edgegrid,
            Timestamp::now(),
            config.max_clock_skew,
        );
        if outcome != Err(EdgeGridError::BadSignature) {
            break;
        }
    }
    if let Err(e) = outcome {
        return Err(Box::new(akamai_error(
            path,
            StatusCode::UNAUTHORIZED,
            "authn-failed",
            &e.to_string(),
        )));
    }
    if shared.lock().switches.akamai_forbidden {
        return Err(Box::new(akamai_error(
            path,
            StatusCode::FORBIDDEN,
            "access-denied",
            "the API client has no access to this API",
        )));
    }
    Ok(())
}

fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// Edgecast reads (doc A.4-A.8); `None` is 404.
fn route_edgecast(
    state: &EdgecastState,
    path: &str,
    query: &[(String, String)],
) -> Option<Response> {
    let id = |s: &str| s.parse::<i64>().ok();
    let find = |list: Option<&Vec<Value>>, key: &str, wanted: i64| {
        list.into_iter()
            .flatten()
            .find(|item| item[key].as_i64() == Some(wanted))
            .cloned()
    };
    let seg = segments(path);
    match seg.as_slice() {
        ["sec", "cps", "v2.0", "certificates"] => {
            let page = param(query, "page")
                .and_then(|p| p.parse::<usize>().ok())
                .unwrap_or(1)
                .max(1);
            let size = param(query, "page_size")
                .and_then(|p| p.parse::<usize>().ok())
                .unwrap_or(100)
                .max(1);
            // The `query`/`sort` syntax is not in the SDK; both are ignored.
            let items: Vec<Value> = state
                .certificates
                .values()
                .skip((page - 1) * size)
                .take(size)
                .cloned()
                .collect();
            Some(ok(&json!({
                "@id": "/v2.0/certificates",
                "@type": "Collection",
                "items": items,
                "total_items": state.certificates.len(),
            })))
        }
        ["sec", "cps", "v2.0", "certificates", cert] => state.certificates.get(&id(cert)?).map(ok),
        ["sec", "cps", "v2.0", "certificates", cert, "status"] => {
            state.certificate_status.get(&id(cert)?).map(ok)
        }
        ["v2", "mcc", "customers", "superblocks"] => Some(ok(&json!({
            "SuperBlockIPv4": ["192.0.2.0/24"], "SuperBlockIPv6": ["2001:db8::/32"],
        }))),
        ["v2", "mcc", "customers", account, "cnames", last] => {
            let key = |platform: &str| ((*account).to_owned(), platform.to_owned());
            if ["httplarge", "httpsmall", "adn"].contains(last) {
                let list = state
                    .edge_cnames
                    .get(&key(last))
                    .cloned()
                    .unwrap_or_default();
                return Some(ok(&Value::Array(list)));
            }
            let wanted = id(last)?;
            ["httplarge", "httpsmall", "adn"]
                .iter()
                .find_map(|p| find(state.edge_cnames.get(&key(p)), "Id", wanted))
                .map(|cname| ok(&cname))
        }
        ["v2", "mcc", "customers", _, "cnames", cname, "status"] => {
            state.edge_cname_propagation.get(&id(cname)?).map(ok)
        }
        ["v2", "mcc", "customers", account, "origins", platform] if id(platform).is_none() => {
            let key = ((*account).to_owned(), (*platform).to_owned());
            let list = state.origins.get(&key).cloned().unwrap_or_default();
            Some(ok(&Value::Array(list)))
        }
        ["v2", "mcc", "customers", _, "origins", origin, "status"] => {
            state.origin_propagation.get(&id(origin)?).map(ok)
        }
        [
            "v2",
            "mcc",
            "customers",
            account,
            "origins",
            platform,
            origin,
        ] => {
            let key = ((*account).to_owned(), (*platform).to_owned());
            find(state.origins.get(&key), "Id", id(origin)?).map(|o| ok(&o))
        }
        ["cdn", "origins", "v0.5", "protocol-types"] => Some(ok(&json!([
            {"id": 1, "name": "HTTP Only"}, {"id": 2, "name": "HTTPS Only"},
            {"id": 3, "name": "Match Client"},
        ]))),
        ["cdn", "origins", "v0.5", media, "groups"] => Some(ok(&Value::Array(
            state
                .origin_groups_v3
                .get(*media)
                .cloned()
                .unwrap_or_default(),
        ))),
        ["cdn", "origins", "v0.5", media, "groups", group] => {
            find(state.origin_groups_v3.get(*media), "id", id(group)?).map(|g| ok(&g))
        }
        ["cdn", "origins", "v0.5", media, "groups", group, "origins"] => {
            let group = id(group)?;
            let list: Vec<Value> = state
                .origins_v3
                .get(*media)
                .into_iter()
                .flatten()
                .filter(|o| o["group_id"].as_i64() == Some(group))
                .cloned()
                .collect();
            Some(ok(&Value::Array(list)))
        }
        ["cdn", "origins", "v0.5", _, "groups", group, "status"] => {
            state.origin_group_status_v3.get(&id(group)?).map(ok)
        }
        ["cdn", "origins", "v0.5", media] => Some(ok(&Value::Array(
            state.origins_v3.get(*media).cloned().unwrap_or_default(),
        ))),
        ["cdn", "origins", "v0.5", media, origin] => {
            find(state.origins_v3.get(*media), "id", id(origin)?).map(|o| ok(&o))
        }
        _ => None,
    }
}

/// Akamai reads (doc B.4-B.8); `None` is 404.
fn route_akamai(
    config: &CdnConfig,
    state: &AkamaiState,
    path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Option<Response> {
    let account = config.akamai_account_id.as_str();
    let contract = param(query, "contractId").unwrap_or_default();
    let group = param(query, "groupId").unwrap_or_default();
    let seg = segments(path);
    let bad_request = |detail: &str| {
        Some(akamai_error(
            path,
            StatusCode::BAD_REQUEST,
            "bad-request",
            detail,
        ))
    };
    // CPS answers in the media type it was asked for (doc B.4).
    let cps = |media: &str, body: &Value| {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let wanted = format!("application/vnd.akamai.cps.{media}+json");
        if config.strict_cps_accept && !accept.contains(&wanted) {
            return akamai_error(
                path,
                StatusCode::NOT_ACCEPTABLE,
                "not-acceptable",
                &format!("Accept must be {wanted}"),
            );
        }
        json_response(StatusCode::OK, &wanted, body)
    };
    let papi_scoped = matches!(seg.as_slice(), ["papi", "v1", "properties", ..])
        || matches!(seg.as_slice(), ["papi", "v1", "edgehostnames", ..]);
    if papi_scoped && (contract.is_empty() || group.is_empty()) {
        return bad_request("contractId and groupId are required");
    }
    let enrollment = |s: &str| s.parse::<i64>().ok();
    match seg.as_slice() {
        ["papi", "v1", "contracts"] => Some(ok(&json!({
            "accountId": account, "contracts": {"items": state.contracts},
        }))),
        ["papi", "v1", "groups"] => Some(ok(&json!({
            "accountId": account, "accountName": "Example", "groups": {"items": state.groups},
        }))),
        ["papi", "v1", "properties", property] => {
            let found = state.properties.get(*property)?;
            Some(ok(&json!({"properties": {"items": [found]}})))
        }
        [
            "papi",
            "v1",
            "properties",
            property,
            "versions",
            version,
            "hostnames",
        ] => {
            let version = version.parse::<u64>().ok()?;
            let items = state
                .property_hostnames
                .get(&((*property).to_owned(), version))?;
            Some(ok(&json!({
                "accountId": account, "contractId": contract, "groupId": group,
                "propertyId": property, "propertyVersion": version,
                "etag": "0000000000000000", "hostnames": {"items": items},
            })))
        }
        [
            "papi",
            "v1",
            "properties",
            property,
            "versions",
            version,
            "rules",
        ] => {
            let version = version.parse::<u64>().ok()?;
            state.rules.get(&((*property).to_owned(), version)).map(ok)
        }
        ["papi", "v1", "properties", property, "activations"] => {
            let items = state
                .activations
                .get(*property)
                .cloned()
                .unwrap_or_default();
            Some(ok(&json!({
                "accountId": account, "contractId": contract, "groupId": group,
                "activations": {"items": items},
            })))
        }
        [
            "papi",
            "v1",
            "properties",
            property,
            "activations",
            activation,
        ] => {
            let found = state
                .activations
                .get(*property)?
                .iter()
                .find(|a| a["activationId"] == *activation)?;
            Some(ok(&json!({
                "accountId": account, "contractId": contract, "groupId": group,
                "activations": {"items": [found]},
            })))
        }
        ["papi", "v1", "edgehostnames"] => Some(ok(&json!({
            "accountId": account, "contractId": contract, "groupId": group,
            "edgeHostnames": {"items": state.edge_hostnames},
        }))),
        ["papi", "v1", "edgehostnames", ehn] => {
            let found = state
                .edge_hostnames
                .iter()
                .find(|e| e["edgeHostnameId"] == *ehn)?;
            Some(ok(&json!({
                "accountId": account, "contractId": contract, "groupId": group,
                "edgeHostnames": {"items": [found]},
            })))
        }
        ["cps", "v2", "enrollments"] => {
            if contract.is_empty() {
                return bad_request("contractId is required");
            }
            // Enrollments carry no contract on the wire, so every stored one is listed.
            let items: Vec<&Value> = state.enrollments.values().collect();
            Some(cps("enrollments.v11", &json!({ "enrollments": items })))
        }
        ["cps", "v2", "enrollments", id] => {
            let found = state.enrollments.get(&enrollment(id)?)?;
            Some(cps("enrollment.v11", found))
        }
        ["cps", "v2", "enrollments", id, "changes", change] => {
            let key = (enrollment(id)?, change.parse::<i64>().ok()?);
            Some(cps("change.v2", state.changes.get(&key)?))
        }
        ["cps", "v2", "enrollments", id, "deployments"] => Some(cps(
            "deployments.v8",
            state.deployments.get(&enrollment(id)?)?,
        )),
        [
            "cps",
            "v2",
            "enrollments",
            id,
            "deployments",
            network @ ("production" | "staging"),
        ] => {
            let deployments = state.deployments.get(&enrollment(id)?)?;
            let one = deployments.get(*network).filter(|d| !d.is_null())?;
            Some(cps("deployment.v8", one))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // The placeholder host of the doc's vectors (B.2): only signed as data, never contacted.
    // It cannot change without changing every expected signature.
    const VECTOR_HOST: &str = "akaa-baseurl-xxxxxxxxxxx-xxxxxxxxxxxxx.luna.akamaiapis.net";
    const VECTOR_TIMESTAMP: &str = "20140321T19:34:21+0000";
    const VECTOR_NONCE: &str = "nonce-xx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

    fn vector_settings() -> EdgeGridSettings {
        EdgeGridSettings {
            max_body: 2048,
            headers_to_sign: vec!["X-Test1".into(), "X-Test2".into(), "X-Test3".into()],
        }
    }

    fn vector_header(signature: &str) -> String {
        let creds = EdgeGridCredentials::placeholder();
        format!(
            "{}signature={signature}",
            auth_prefix(&creds, VECTOR_TIMESTAMP, VECTOR_NONCE)
        )
    }

    fn vector_request<'a>(
        method: &'a str,
        path: &'a str,
        headers: &'a [(&'a str, &'a str)],
        body: &'a [u8],
    ) -> EdgeGridRequest<'a> {
        EdgeGridRequest {
            method,
            scheme: "https",
            host: VECTOR_HOST,
            path_and_query: path,
            headers,
            body,
        }
    }

    fn verify_vector(request: &EdgeGridRequest<'_>, signature: &str) -> Result<(), EdgeGridError> {
        let now: Timestamp = "2014-03-21T19:35:00Z".parse().unwrap();
        let header = vector_header(signature);
        verify_edgegrid(
            Some(&header),
            request,
            &[EdgeGridCredentials::placeholder()],
            &vector_settings(),
            now,
            Duration::from_secs(300),
        )
        .map(|_| ())
    }

    #[test]
    fn edgegrid_signing_key_matches_the_doc() {
        let creds = EdgeGridCredentials::placeholder();
        assert_eq!(
            edgegrid_signing_key(&creds.client_secret, VECTOR_TIMESTAMP),
            "znsRMDBRqTXGJ7Ojip3/h2FGPu3LuoMYWgv9PKEnE/o="
        );
        let ts: Timestamp = "2014-03-21T19:34:21Z".parse().unwrap();
        assert_eq!(edgegrid_timestamp(ts), VECTOR_TIMESTAMP);
    }

    #[test]
    fn edgegrid_verifier_accepts_the_doc_vectors() {
        let post_body = b"datadatadatadatadatadatadatadata";
        let big_body = vec![b'd'; 2049];
        let spaced = [("X-Test1", "     first-thing      second-thing")];
        let quoted = [("X-Test1", "\"     test-header-with-spaces     \"")];
        let out_of_order = [("X-Test2", "t2"), ("X-Test1", "t1"), ("X-Test3", "t3")];
        let extra = [
            ("X-Test2", "t2"),
            ("X-Test1", "t1"),
            ("X-Test3", "t3"),
            ("X-Extra", "this won't be included"),
        ];
        let cases: Vec<(EdgeGridRequest<'_>, &str)> = vec![
            (
                vector_request("GET", "/", &[], b""),
                "tL+y4hxyHxgWVD30X3pWnGKHcPzmrIF+LThiAOhMxYU=",
            ),
            (
                vector_request("GET", "/testapi/v1/t1?p1=1&p2=2", &[], b""),
                "hKDH1UlnQySSHjvIcZpDMbQHihTQ0XyVAKZaApabdeA=",
            ),
            (
                vector_request("POST", "/testapi/v1/t3", &[], post_body),
                "hXm4iCxtpN22m4cbZb4lVLW5rhX8Ca82vCFqXzSTPe4=",
            ),
            (
                vector_request("POST", "/testapi/v1/t3", &[], &big_body),
                "6Q6PiTipLae6n4GsSIDTCJ54bEbHUBp+4MUXrbQCBoY=",
            ),
            (
                vector_request("POST", "/testapi/v1/t6", &[], b""),
                "1gEDxeQGD5GovIkJJGcBaKnZ+VaPtrc4qBUHixjsPCQ=",
            ),
            (
                vector_request(
                    "GET",
                    "/testapi/v1/t4",
                    &[("X-Test1", "test-simple-header")],
                    b"",
                ),
                "8F9AybcRw+PLxnvT+H0JRkjROrrUgsxJTnRXMzqvcwY=",
            ),
            (
                vector_request(
                    "GET",
                    "/testapi/v1/t%204",
                    &[("x-test1", "test-simple-header")],
                    b"",
                ),
                "nks5K9Q96uegodgNmzAhLQMgAKaP48dAcKTX+T7Xu8k=",
            ),
            (
                vector_request("GET", "/testapi/v1/t4", &quoted, b""),
                "ucq2AbjCNtobHfCTuS38fdkl5UDdWHZhQX46fYR8CqI=",
            ),
            (
                vector_request("GET", "/testapi/v1/t4", &spaced, b""),
                "WtnneL539UadAAOJwnsXvPqT4Kt6z7HMgBEwAFpt3+c=",
            ),
            (
                vector_request("GET", "/testapi/v1/t4", &out_of_order, b""),
                "Wus73Nx8jOYM+kkBFF2q8D1EATRIMr0WLWwpLBgkBqY=",
            ),
            (
                vector_request("GET", "/testapi/v1/t5", &extra, b""),
                "Knd/jc0A5Ghhizjayr0AUUvl2MZjBpS3FDSzvtq4Ixc=",
            ),
            (
                vector_request(
                    "PUT",
                    "/testapi/v1/t6",
                    &[],
                    b"PPPPPPPPPPPPPPPPPPPPPPPPPPPPPPP",
                ),
                "GNBWEYSEWOLtu+7dD52da2C39aX/Jchpon3K/AmBqBU=",
            ),
        ];
        for (request, signature) in &cases {
            assert_eq!(
                verify_vector(request, signature),
                Ok(()),
                "{} {}",
                request.method,
                request.path_and_query
            );
            // The signer produces the same header.
            assert_eq!(
                edgegrid_authorization(
                    &EdgeGridCredentials::placeholder(),
                    &vector_settings(),
                    request,
                    VECTOR_TIMESTAMP,
                    VECTOR_NONCE,
                ),
                vector_header(signature)
            );
        }
    }

    #[test]
    fn edgegrid_verifier_rejects_tampering() {
        let simple = vector_request("GET", "/", &[], b"");
        let good = "tL+y4hxyHxgWVD30X3pWnGKHcPzmrIF+LThiAOhMxYU=";
        // Another path under the same signature.
        assert_eq!(
            verify_vector(&vector_request("GET", "/x", &[], b""), good),
            Err(EdgeGridError::BadSignature)
        );
        // A changed signature.
        assert_eq!(
            verify_vector(&simple, "uL+y4hxyHxgWVD30X3pWnGKHcPzmrIF+LThiAOhMxYU="),
            Err(EdgeGridError::BadSignature)
        );
        // A changed signed header value.
        let headers = [("X-Test1", "test-simple-headex")];
        assert_eq!(
            verify_vector(
                &vector_request("GET", "/testapi/v1/t4", &headers, b""),
                "8F9AybcRw+PLxnvT+H0JRkjROrrUgsxJTnRXMzqvcwY="
            ),
            Err(EdgeGridError::BadSignature)
        );
        // Too old, and an unknown client.
        let header = vector_header(good);
        let later: Timestamp = "2014-03-21T19:45:00Z".parse().unwrap();
        let creds = [EdgeGridCredentials::placeholder()];
        let settings = vector_settings();
        let five_min = Duration::from_secs(300);
        assert!(matches!(
            verify_edgegrid(Some(&header), &simple, &creds, &settings, later, five_min),
            Err(EdgeGridError::StaleTimestamp(_))
        ));
        let other = [EdgeGridCredentials {
            client_token: "akab-client-token-yyy".into(),
            ..EdgeGridCredentials::placeholder()
        }];
        let now: Timestamp = "2014-03-21T19:34:21Z".parse().unwrap();
        assert_eq!(
            verify_edgegrid(Some(&header), &simple, &other, &settings, now, five_min),
            Err(EdgeGridError::UnknownClientToken)
        );
        assert_eq!(
            verify_edgegrid(None, &simple, &creds, &settings, now, five_min),
            Err(EdgeGridError::Missing)
        );
    }

    #[test]
    fn form_decoding() {
        assert_eq!(form_decode("a+b%20c%2Fd"), "a b c/d");
        assert_eq!(form_decode("100%"), "100%");
        assert_eq!(form_decode("%zz"), "%zz");
        assert_eq!(
            form_pairs("scope=sec.cps.certificates&x"),
            vec![
                ("scope".to_owned(), "sec.cps.certificates".to_owned()),
                ("x".to_owned(), String::new())
            ]
        );
    }

    /// One HTTP/1.1 request to the fake: the status, the head and the body.
    async fn send(
        fake: &FakeCdn,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String, String) {
        let mut conn = tokio::net::TcpStream::connect(fake.addr()).await.unwrap();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            fake.addr(),
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        conn.read_to_end(&mut response).await.unwrap();
        let text = String::from_utf8_lossy(&response).into_owned();
        let code = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let body = crate::http::body_of(head, body).unwrap();
        (code, head.to_owned(), body)
    }

    /// An EdgeGrid-signed GET of `path_and_query`, signed now with the placeholder client.
    async fn akamai_get(
        fake: &FakeCdn,
        path_and_query: &str,
        accept: &str,
        tamper: bool,
    ) -> (u16, String, String) {
        let host = fake.addr().to_string();
        let request = EdgeGridRequest {
            method: "GET",
            scheme: "https",
            host: &host,
            path_and_query,
            headers: &[],
            body: b"",
        };
        let mut authorization = edgegrid_authorization(
            &EdgeGridCredentials::placeholder(),
            &fake.config().edgegrid,
            &request,
            &edgegrid_timestamp(Timestamp::now()),
            "nonce-test",
        );
        if tamper {
            // Change the first character of the signature (a valid base64 digit either way).
            let at = authorization.find("signature=").unwrap() + "signature=".len();
            let first = if authorization[at..].starts_with('A') {
                "B"
            } else {
                "A"
            };
            authorization.replace_range(at..at + 1, first);
        }
        send(
            fake,
            "GET",
            path_and_query,
            &[("Authorization", &authorization), ("Accept", accept)],
            "",
        )
        .await
    }

    fn parse(body: &str) -> Value {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
    }

    #[tokio::test]
    async fn edgecast_rest_token_reads_certificates_and_edge_cnames() {
        let fake = FakeCdn::start(CdnConfig::default()).await.unwrap();
        assert!(fake.base_url().starts_with("http://127.0.0.1:"));
        let cert =
            EdgecastCertificate::active(1234, &["shop.example.com"], "target-cname.example.net");
        fake.edit(|s| {
            s.edgecast.put_certificate(&cert);
            s.edgecast.put_edge_cname(
                EDGECAST_ACCOUNT,
                &EdgeCname::new(1001, "shop.example.com", 5005),
            );
            s.edgecast
                .set_edge_cname_propagation(1001, &Propagation::propagating(75.0));
        });
        let tok = format!("TOK:{EDGECAST_REST_TOKEN}");
        let auth = [("Authorization", tok.as_str())];

        let (code, _, body) =
            send(&fake, "GET", "/sec/cps/v2.0/certificates/1234", &auth, "").await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(parse(&body), cert.to_json());
        assert_eq!(
            parse(&body)["deployments"][0]["hex_url"],
            "target-cname.example.net"
        );

        let (code, _, body) = send(
            &fake,
            "GET",
            "/sec/cps/v2.0/certificates/1234/status",
            &auth,
            "",
        )
        .await;
        assert_eq!(
            (code, parse(&body)["status"].clone()),
            (200, json!("Active"))
        );

        let list = format!("/v2/mcc/customers/{EDGECAST_ACCOUNT}/cnames/httplarge");
        let (code, _, body) = send(&fake, "GET", &list, &auth, "").await;
        assert_eq!(code, 200);
        assert_eq!(parse(&body)[0]["OriginId"], 5005);
        let status = format!("/v2/mcc/customers/{EDGECAST_ACCOUNT}/cnames/1001/status");
        let (_, _, body) = send(&fake, "GET", &status, &auth, "").await;
        assert_eq!(parse(&body)["Percent_propagated"], 87.5);

        let (code, _, body) = send(
            &fake,
            "GET",
            "/sec/cps/v2.0/certificates/1234",
            &[("Authorization", "TOK:wrong")],
            "",
        )
        .await;
        assert_eq!(code, 401);
        assert_eq!(parse(&body)["status_code"], 401);
        let (code, _, _) = send(&fake, "GET", "/sec/cps/v2.0/certificates/1234", &[], "").await;
        assert_eq!(code, 401);
        let (code, _, body) = send(
            &fake,
            "GET",
            "/v2/mcc/customers/9999/cnames/httplarge",
            &auth,
            "",
        )
        .await;
        assert_eq!(code, 403, "{body}");
        let (code, _, _) = send(&fake, "GET", "/sec/cps/v2.0/certificates/4321", &auth, "").await;
        assert_eq!(code, 404);

        let log = fake.requests();
        assert_eq!(log.len(), 8);
        assert_eq!(
            log[0],
            LoggedRequest {
                method: "GET".into(),
                path: "/sec/cps/v2.0/certificates/1234".into(),
                query: None,
                api: Api::Edgecast,
                authorized: true,
                status: 200,
            }
        );
        assert!(!log[4].authorized && log[4].status == 401);
        assert_eq!(fake.count("GET", &list), 1);
    }

    #[tokio::test]
    async fn edgecast_oauth_tokens_are_scoped() {
        let fake = FakeCdn::start(CdnConfig::default()).await.unwrap();
        fake.edit(|s| {
            s.edgecast.put_certificate(&EdgecastCertificate::active(
                7,
                &["a.example.com"],
                "t.example.net",
            ))
        });
        let form = format!(
            "grant_type=client_credentials&scope={SCOPE_CPS}&client_id={EDGECAST_CLIENT_ID}&client_secret={EDGECAST_CLIENT_SECRET}"
        );
        let form_type = [("Content-Type", "application/x-www-form-urlencoded")];
        let (code, _, body) = send(&fake, "POST", "/connect/token", &form_type, &form).await;
        assert_eq!(code, 200, "{body}");
        let token = parse(&body);
        assert_eq!(token["token_type"], "Bearer");
        assert_eq!(token["expires_in"], 3600);
        let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
        let auth = [("Authorization", bearer.as_str())];

        let (code, _, body) = send(
            &fake,
            "GET",
            "/sec/cps/v2.0/certificates?page=1&page_size=1",
            &auth,
            "",
        )
        .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(parse(&body)["total_items"], 1);
        // MCC takes the REST token only; Origins v3 needs another scope.
        let mcc = format!("/v2/mcc/customers/{EDGECAST_ACCOUNT}/cnames/httplarge");
        assert_eq!(send(&fake, "GET", &mcc, &auth, "").await.0, 401);
        assert_eq!(
            send(
                &fake,
                "GET",
                "/cdn/origins/v0.5/http-large/groups",
                &auth,
                ""
            )
            .await
            .0,
            403
        );

        let bad = form.replace(EDGECAST_CLIENT_SECRET, "nope");
        let (code, _, body) = send(&fake, "POST", "/connect/token", &form_type, &bad).await;
        assert_eq!(
            (code, parse(&body)),
            (400, json!({"error": "invalid_client"}))
        );
        assert_eq!(fake.tokens_issued(), 1);

        fake.revoke_tokens();
        assert_eq!(
            send(&fake, "GET", "/sec/cps/v2.0/certificates", &auth, "")
                .await
                .0,
            401
        );
    }

    #[tokio::test]
    async fn akamai_edgegrid_reads_enrollments_and_is_verified() {
        let fake = FakeCdn::start(CdnConfig::default()).await.unwrap();
        let enrollment = Enrollment::new(10, "shop.example.com", &["shop.example.com"]);
        fake.edit(|s| {
            s.akamai.put_enrollment(&enrollment);
            s.akamai.put_contract("ctr_C-0000", "DIRECT_CUSTOMER");
        });
        let accept = "application/vnd.akamai.cps.enrollment.v11+json";

        let (code, head, body) = akamai_get(&fake, "/cps/v2/enrollments/10", accept, false).await;
        assert_eq!(code, 200, "{body}");
        assert!(head.to_ascii_lowercase().contains(accept), "{head}");
        assert_eq!(parse(&body), enrollment.to_json());

        let (code, _, body) = akamai_get(&fake, "/cps/v2/enrollments/10", accept, true).await;
        assert_eq!(code, 401);
        assert_eq!(parse(&body)["status"], 401);

        // The wrong media type, the list with its required query, the Ready check.
        let (code, _, _) =
            akamai_get(&fake, "/cps/v2/enrollments/10", "application/json", false).await;
        assert_eq!(code, 406);
        let list_accept = "application/vnd.akamai.cps.enrollments.v11+json";
        let (code, _, body) = akamai_get(
            &fake,
            "/cps/v2/enrollments?contractId=ctr_C-0000",
            list_accept,
            false,
        )
        .await;
        assert_eq!(code, 200);
        assert_eq!(parse(&body)["enrollments"][0]["id"], 10);
        let (code, _, body) =
            akamai_get(&fake, "/papi/v1/contracts", "application/json", false).await;
        assert_eq!(code, 200);
        assert_eq!(
            parse(&body)["contracts"]["items"][0]["contractId"],
            "ctr_C-0000"
        );

        // A timestamp ten minutes old.
        let host = fake.addr().to_string();
        let old = Timestamp::now()
            .checked_sub(jiff::SignedDuration::from_mins(10))
            .unwrap();
        let request = EdgeGridRequest {
            method: "GET",
            scheme: "https",
            host: &host,
            path_and_query: "/papi/v1/contracts",
            headers: &[],
            body: b"",
        };
        let stale = edgegrid_authorization(
            &EdgeGridCredentials::placeholder(),
            &fake.config().edgegrid,
            &request,
            &edgegrid_timestamp(old),
            "nonce-old",
        );
        let (code, _, _) = send(
            &fake,
            "GET",
            "/papi/v1/contracts",
            &[("Authorization", &stale)],
            "",
        )
        .await;
        assert_eq!(code, 401);

        fake.set_akamai_forbidden(true);
        let (code, _, _) = akamai_get(&fake, "/papi/v1/contracts", "application/json", false).await;
        assert_eq!(code, 403);

        let log = fake.requests();
        let summary: Vec<(&str, bool, u16)> = log
            .iter()
            .map(|r| (r.path.as_str(), r.authorized, r.status))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("/cps/v2/enrollments/10", true, 200),
                ("/cps/v2/enrollments/10", false, 401),
                ("/cps/v2/enrollments/10", true, 406),
                ("/cps/v2/enrollments", true, 200),
                ("/papi/v1/contracts", true, 200),
                ("/papi/v1/contracts", false, 401),
                ("/papi/v1/contracts", false, 403),
            ]
        );
        assert_eq!(log[3].query.as_deref(), Some("contractId=ctr_C-0000"));
        assert!(log.iter().all(|r| r.api == Api::Akamai));
    }

    #[tokio::test]
    async fn faults_and_delay() {
        let fake = FakeCdn::start(CdnConfig::default()).await.unwrap();
        fake.fail_with(
            "/papi/*",
            Fault {
                status: 429,
                retry_after: Some(3),
            },
        );
        let (code, head, body) =
            akamai_get(&fake, "/papi/v1/groups", "application/json", false).await;
        assert_eq!(code, 429);
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains("retry-after: 3") && head.contains("x-ratelimit-next"),
            "{head}"
        );
        assert_eq!(parse(&body)["limitKey"], "DEFAULT_CERTS_PER_CONTRACT");

        fake.fail("/sec/cps/v2.0/certificates", 500);
        let tok = format!("TOK:{EDGECAST_REST_TOKEN}");
        let auth = [("Authorization", tok.as_str())];
        assert_eq!(
            send(&fake, "GET", "/sec/cps/v2.0/certificates", &auth, "")
                .await
                .0,
            500
        );
        // Authentication is checked before a fault applies.
        assert_eq!(
            send(
                &fake,
                "GET",
                "/sec/cps/v2.0/certificates",
                &[("Authorization", "TOK:x")],
                ""
            )
            .await
            .0,
            401
        );

        fake.clear_faults();
        fake.set_delay(Duration::from_millis(200));
        let started = std::time::Instant::now();
        assert_eq!(
            send(&fake, "GET", "/sec/cps/v2.0/certificates", &auth, "")
                .await
                .0,
            200
        );
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(fake.count("GET", "/sec/cps/v2.0/certificates"), 3);
        fake.clear_requests();
        assert!(fake.requests().is_empty());
    }

    #[tokio::test]
    async fn stops_when_dropped() {
        let fake = FakeCdn::start(CdnConfig::default()).await.unwrap();
        let addr = fake.addr();
        drop(fake);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
