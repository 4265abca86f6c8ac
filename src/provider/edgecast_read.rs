//! The Edgecast reader: what Edgecast has for one delivery (`docs/design/provider-apis.md`,
//! part A). Step 1 from CPS (`/sec/cps/v2.0/certificates/{id}` and its `/status`), step 2
//! from the MCC edge CNAMEs of the account (`/v2/mcc/customers/{AN}/cnames/{platform}`), step 3
//! from the edge CNAME's propagation status, step 4 from the MCC customer origin it points at.
//! Lists are read once per account and platform and shared by every delivery of the account.

use super::account::Account;
use super::view::{
    CdnCertificate, CdnDeployment, CdnEdge, CdnOrigin, CdnPropagation, CdnView, CertificateState,
    Handles, ProviderError, Raw, found,
};
use crate::api::{OriginProtocol, Platform};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

const JSON: &str = "application/json";
/// MCC's platform path segments, in the order edge CNAMEs are looked for.
const PLATFORMS: [&str; 3] = ["httplarge", "httpsmall", "adn"];
/// The smallest CPS read: the first certificate of the account, if any.
const CPS_PROBE: &str = "/sec/cps/v2.0/certificates?page=1&page_size=1";

#[derive(Deserialize)]
struct Certificate {
    id: i64,
    #[serde(default)]
    domains: Vec<Domain>,
    #[serde(default)]
    deployments: Vec<Deployment>,
}

#[derive(Deserialize)]
struct Domain {
    name: String,
}

#[derive(Deserialize)]
struct Deployment {
    platform: String,
    /// Empty or absent until the certificate is deployed there (EC-TF waits for it).
    #[serde(default)]
    hex_url: Option<String>,
}

#[derive(Deserialize)]
struct CertificateStatus {
    status: String,
    #[serde(default)]
    requires_attention: bool,
    #[serde(default)]
    error_message: Option<String>,
    #[serde(default)]
    order_validation: Option<OrderValidation>,
}

#[derive(Deserialize)]
struct OrderValidation {
    #[serde(default)]
    domain_validations: Vec<DomainValidation>,
}

#[derive(Deserialize)]
struct DomainValidation {
    #[serde(default)]
    domain_names: Vec<String>,
    status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EdgeCname {
    id: i64,
    name: String,
    origin_id: i64,
    media_type_id: i64,
}

#[derive(Deserialize)]
struct PropagationStatus {
    status: String,
    #[serde(rename = "Percent_propagated", default)]
    percent_propagated: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CustomerOrigin {
    id: i64,
    directory_name: String,
    #[serde(default)]
    http_hostnames: Vec<OriginHostname>,
    #[serde(default)]
    https_hostnames: Vec<OriginHostname>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OriginHostname {
    name: String,
}

/// The account number MCC paths need.
fn account_number(account: &Account) -> Result<&str, ProviderError> {
    account
        .settings
        .edgecast_account_number
        .as_deref()
        .ok_or_else(|| {
            ProviderError::Account("the CdnAccount needs spec.edgecast.accountNumber".into())
        })
}

/// Cheap authenticated reads (doc A.8): the account's HTTP Large edge CNAMEs with the REST
/// token (which checks the account number too), and one page of one CPS certificate with the
/// OAuth2 client (the REST token without one), so that wrong OAuth2 credentials show on the
/// account, not only on each of its deliveries.
pub async fn check_access(account: &Arc<Account>) -> Result<(), ProviderError> {
    let an = account_number(account)?;
    let path = format!("/v2/mcc/customers/{an}/cnames/httplarge");
    account
        .get(&path, JSON, "mcc.cnames", Duration::ZERO)
        .await?;
    account
        .get(CPS_PROBE, JSON, "cps.certificates", Duration::ZERO)
        .await
        .map(|_| ())
}

/// Everything Edgecast has for `hostname`, answers no older than `max_age`.
pub async fn read(
    account: &Arc<Account>,
    handles: &Handles,
    hostname: &str,
    max_age: Duration,
) -> Result<CdnView, ProviderError> {
    let an = account_number(account)?.to_string();
    let certificate = read_certificate(account, &handles.certificate_id, max_age).await?;
    let Some((edge, origin_id)) = find_edge(account, &an, handles, hostname, max_age).await? else {
        return Ok(CdnView {
            provider: "edgecast",
            certificate,
            edge: None,
            propagation: None,
            origin: None,
        });
    };
    let status_path = format!("/v2/mcc/customers/{an}/cnames/{}/status", edge.id);
    let status = account
        .get(&status_path, JSON, "mcc.cname.status", max_age)
        .await;
    let propagation = found(status)?
        .map(|v| Account::decode(&v, "edge CNAME status"))
        .transpose()?
        .map(|status| propagation(&status));
    let origin = read_origin(account, &an, &edge, origin_id, max_age).await?;
    let edge = CdnEdge {
        origin: origin.as_ref().map(|o| o.name.clone()),
        ..edge
    };
    Ok(CdnView {
        provider: "edgecast",
        certificate,
        edge: Some(edge),
        propagation,
        origin,
    })
}

async fn read_certificate(
    account: &Arc<Account>,
    id: &str,
    max_age: Duration,
) -> Result<Option<CdnCertificate>, ProviderError> {
    let Some(id) = numeric(id) else {
        return Ok(None);
    };
    let path = format!("/sec/cps/v2.0/certificates/{id}");
    let Some(answer) = found(account.get(&path, JSON, "cps.certificate", max_age).await)? else {
        return Ok(None);
    };
    let cert: Certificate = Account::decode(&answer, "certificate")?;
    let status_path = format!("{path}/status");
    let status: CertificateStatus = Account::decode(
        &*account
            .get(&status_path, JSON, "cps.certificate.status", max_age)
            .await?,
        "certificate status",
    )?;
    Ok(Some(CdnCertificate {
        id: cert.id.to_string(),
        state: certificate_state(&status, &cert),
        domains: cert.domains.into_iter().map(|d| d.name).collect(),
        deployments: cert
            .deployments
            .into_iter()
            .filter_map(|d| {
                let target = d.hex_url?.trim().trim_end_matches('.').to_string();
                (!target.is_empty()).then(|| CdnDeployment {
                    platform: Some(platform_named(&d.platform)),
                    target_cname: target,
                })
            })
            .collect(),
    }))
}

fn certificate_state(status: &CertificateStatus, cert: &Certificate) -> CertificateState {
    if status.requires_attention {
        return CertificateState::NeedsAttention {
            message: status
                .error_message
                .clone()
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "requires attention (no message given)".into()),
        };
    }
    match status.status.as_str() {
        "Active" => CertificateState::Active,
        "DomainControlValidation" => {
            let pending: Vec<String> = status
                .order_validation
                .iter()
                .flat_map(|o| &o.domain_validations)
                .filter(|d| d.status != "Approved")
                .flat_map(|d| d.domain_names.clone())
                .collect();
            CertificateState::DomainValidationPending {
                domains: if pending.is_empty() {
                    cert.domains.iter().map(|d| d.name.clone()).collect()
                } else {
                    pending
                },
            }
        }
        "Processing" | "OtherValidation" | "Deployment" => CertificateState::Pending {
            stage: status.status.clone(),
        },
        "Deleted" => CertificateState::Deleted,
        other => CertificateState::Unrecognized(Raw {
            field: "status".into(),
            value: other.into(),
        }),
    }
}

fn platform_named(name: &str) -> Result<Platform, Raw> {
    match name {
        "HttpLarge" => Ok(Platform::HttpLarge),
        "HttpSmall" => Ok(Platform::HttpSmall),
        "Adn" | "ADN" => Ok(Platform::Adn),
        other => Err(Raw {
            field: "deployments[].platform".into(),
            value: other.into(),
        }),
    }
}

fn platform_of_media_type(id: i64) -> Result<Platform, Raw> {
    match id {
        3 => Ok(Platform::HttpLarge),
        8 => Ok(Platform::HttpSmall),
        14 => Ok(Platform::Adn),
        other => Err(Raw {
            field: "MediaTypeId".into(),
            value: other.to_string(),
        }),
    }
}

/// The edge CNAME named by `handles.edge_id`, else the one whose Name is `hostname`, with the
/// ID of the origin it points at.
async fn find_edge(
    account: &Arc<Account>,
    an: &str,
    handles: &Handles,
    hostname: &str,
    max_age: Duration,
) -> Result<Option<(CdnEdge, i64)>, ProviderError> {
    let found = match handles.edge_id.as_deref().map(numeric) {
        // Not an edge CNAME ID (a number): it names none, and is never put into a path.
        Some(None) => None,
        Some(Some(id)) => {
            let path = format!("/v2/mcc/customers/{an}/cnames/{id}");
            found(account.get(&path, JSON, "mcc.cname", max_age).await)?
                .map(|v| Account::decode::<EdgeCname>(&v, "edge CNAME"))
                .transpose()?
        }
        None => {
            let mut found = None;
            for platform in PLATFORMS {
                let path = format!("/v2/mcc/customers/{an}/cnames/{platform}");
                let list: Vec<EdgeCname> = Account::decode(
                    &*account.get(&path, JSON, "mcc.cnames", max_age).await?,
                    "edge CNAMEs",
                )?;
                found = list
                    .into_iter()
                    .find(|c| c.name.trim_end_matches('.').eq_ignore_ascii_case(hostname));
                if found.is_some() {
                    break;
                }
            }
            found
        }
    };
    Ok(found.map(|c| {
        let edge = CdnEdge {
            id: c.id.to_string(),
            hostname: c.name.trim_end_matches('.').to_ascii_lowercase(),
            platform: Some(platform_of_media_type(c.media_type_id)),
            origin: None,
            problems: Vec::new(),
        };
        (edge, c.origin_id)
    }))
}

/// `id` trimmed when it is a number (Edgecast's IDs are), else `None`: a handle from a
/// delivery's spec goes into a path only as digits.
fn numeric(id: &str) -> Option<&str> {
    let id = id.trim();
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then_some(id)
}

fn propagation(status: &PropagationStatus) -> CdnPropagation {
    match status.status.to_ascii_lowercase().as_str() {
        "propagated" => CdnPropagation::Done,
        "new" | "propagating" => CdnPropagation::InProgress {
            state: status.status.clone(),
            percent: status.percent_propagated,
        },
        _ => CdnPropagation::Unrecognized(Raw {
            field: "status".into(),
            value: status.status.clone(),
        }),
    }
}

/// The customer origin `origin_id` on the edge's platform (none for CDN storage, `-1`).
async fn read_origin(
    account: &Arc<Account>,
    an: &str,
    edge: &CdnEdge,
    origin_id: i64,
    max_age: Duration,
) -> Result<Option<CdnOrigin>, ProviderError> {
    let Some(Ok(platform)) = &edge.platform else {
        return Ok(None);
    };
    if origin_id < 0 {
        return Ok(None);
    }
    let segment = match platform {
        Platform::HttpLarge => "httplarge",
        Platform::HttpSmall => "httpsmall",
        Platform::Adn => "adn",
    };
    let path = format!("/v2/mcc/customers/{an}/origins/{segment}");
    let list: Vec<CustomerOrigin> = Account::decode(
        &*account.get(&path, JSON, "mcc.origins", max_age).await?,
        "customer origins",
    )?;
    match list.into_iter().find(|o| o.id == origin_id) {
        Some(o) => Ok(Some(origin(o))),
        None => read_origin_group(account, *platform, origin_id, max_age).await,
    }
}

#[derive(Deserialize)]
struct OriginGroupV3 {
    name: String,
    #[serde(default)]
    tls_settings: Option<TlsSettingsV3>,
}

#[derive(Deserialize)]
struct TlsSettingsV3 {
    #[serde(default)]
    sni_hostname: Option<String>,
}

#[derive(Deserialize)]
struct OriginV3 {
    host: String,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    is_primary: bool,
    protocol_type_id: i64,
}

/// An origin that MCC v2 does not list may be an Origins v3 customer origin group. The SDK
/// does not show how an edge CNAME's `OriginId` maps to v3 (doc A.7): it is taken as the
/// group's ID [inference]. The group's primary origin (else its first) gives host, port and
/// protocol (`protocol_type_id` 2 is HTTPS Only), the group its SNI name. v3 serves HTTP Large
/// and ADN only.
async fn read_origin_group(
    account: &Arc<Account>,
    platform: Platform,
    group_id: i64,
    max_age: Duration,
) -> Result<Option<CdnOrigin>, ProviderError> {
    let media = match platform {
        Platform::HttpLarge => "http-large",
        Platform::Adn => "adn",
        Platform::HttpSmall => return Ok(None),
    };
    let path = format!("/cdn/origins/v0.5/{media}/groups/{group_id}");
    let Some(answer) = found(account.get(&path, JSON, "origins.group", max_age).await)? else {
        return Ok(None);
    };
    let group: OriginGroupV3 = Account::decode(&answer, "the customer origin group")?;
    let path = format!("{path}/origins");
    let origins: Vec<OriginV3> = Account::decode(
        &*account
            .get(&path, JSON, "origins.group.origins", max_age)
            .await?,
        "the origins of the customer origin group",
    )?;
    let Some(o) = origins
        .iter()
        .find(|o| o.is_primary)
        .or_else(|| origins.first())
    else {
        return Ok(None);
    };
    let protocol = match o.protocol_type_id {
        1 => Ok(OriginProtocol::HttpOnly),
        2 => Ok(OriginProtocol::HttpsOnly),
        3 => Ok(OriginProtocol::MatchRequest),
        other => Err(Raw {
            field: "protocol_type_id".into(),
            value: other.to_string(),
        }),
    };
    let default_port = if o.protocol_type_id == 1 { 80 } else { 443 };
    let (host, port) = host_port(&o.host, default_port);
    Ok(Some(CdnOrigin {
        name: group.name,
        host: Some(host),
        port: o.port.or(port),
        https_edge_protocol: protocol
            .as_ref()
            .is_ok_and(|p| *p != OriginProtocol::HttpOnly),
        protocol,
        sni_hostname: group.tls_settings.and_then(|t| t.sni_hostname),
        sni_reported: true,
    }))
}

/// Edgecast's HTTPS hostnames are the HTTPS Edge Protocol; an origin with HTTPS hostnames and
/// no HTTP ones is reached over HTTPS only.
fn origin(o: CustomerOrigin) -> CdnOrigin {
    let https = o.https_hostnames.first().map(|h| host_port(&h.name, 443));
    let http = o.http_hostnames.first().map(|h| host_port(&h.name, 80));
    let protocol = match (o.https_hostnames.is_empty(), o.http_hostnames.is_empty()) {
        (false, true) => OriginProtocol::HttpsOnly,
        (false, false) => OriginProtocol::MatchRequest,
        _ => OriginProtocol::HttpOnly,
    };
    let (host, port) = https.or(http).unzip();
    CdnOrigin {
        name: o.directory_name,
        host,
        port: port.flatten(),
        protocol: Ok(protocol),
        https_edge_protocol: !o.https_hostnames.is_empty(),
        sni_hostname: None,
        sni_reported: false,
    }
}

/// `https://origin.example:8443` -> (`origin.example`, 8443); the scheme's port by default.
fn host_port(url: &str, default_port: u16) -> (String, Option<u16>) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let port = |p: &str| p.parse().ok().or(Some(default_port));
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').unwrap_or((v6, ""));
        return (
            host.to_ascii_lowercase(),
            port(after.trim_start_matches(':')),
        );
    }
    match authority.rsplit_once(':') {
        Some((host, p)) => (host.to_ascii_lowercase(), port(p)),
        None => (authority.to_ascii_lowercase(), Some(default_port)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! The reader against the fake Edgecast API (`testkit::cdn`). The helpers are shared with
    //! the account's tests.

    use super::*;
    use crate::api::account::{CdnAccountSpec, CredentialsReference, EdgecastSettings, Provider};
    use crate::provider::http::Limits;
    use serde_json::json;
    use std::collections::BTreeMap;
    use testkit::cdn::{
        CdnConfig, CustomerOrigin, EDGECAST_ACCOUNT, EDGECAST_CLIENT_ID, EDGECAST_CLIENT_SECRET,
        EDGECAST_REST_TOKEN, EdgeCname, EdgecastCertificate, EdgecastDeployment, FakeCdn,
        Propagation,
    };

    pub(crate) const HOST: &str = "www.shop.example";
    /// The certificate's target CNAME: a reserved name, not one of Edgecast's.
    pub(crate) const TARGET: &str = "wpc.0001.cdn.example";
    pub(crate) const MINUTE: Duration = Duration::from_secs(60);

    pub(crate) async fn fake() -> FakeCdn {
        FakeCdn::start(CdnConfig::default())
            .await
            .expect("the fake CDN")
    }

    /// The Secret's data: a REST token and an OAuth2 client.
    pub(crate) fn credentials(rest_token: &str, client_secret: &str) -> BTreeMap<String, String> {
        [
            ("rest_token", rest_token),
            ("client_id", EDGECAST_CLIENT_ID),
            ("client_secret", client_secret),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// An Edgecast account on the fake, as `build_account` makes it from a CdnAccount.
    pub(crate) fn account_with(
        fake: &FakeCdn,
        credentials: &BTreeMap<String, String>,
        requests_per_second: u32,
    ) -> Arc<Account> {
        let spec = CdnAccountSpec {
            provider: Provider::Edgecast,
            edgecast: Some(EdgecastSettings {
                account_number: EDGECAST_ACCOUNT.into(),
                base_url: Some(fake.base_url()),
                mcc_base_url: None,
                token_url: Some(format!("{}/connect/token", fake.base_url())),
            }),
            akamai: None,
            credentials_secret_ref: CredentialsReference { name: "x".into() },
            requests_per_second: Some(requests_per_second),
        };
        let api = crate::provider::http::test_client(true, Limits::default());
        let account = crate::provider::build_account(&spec, credentials, api, None);
        Arc::new(account.expect("the account"))
    }

    /// The right credentials, a budget no test reaches.
    pub(crate) fn account(fake: &FakeCdn) -> Arc<Account> {
        let credentials = credentials(EDGECAST_REST_TOKEN, EDGECAST_CLIENT_SECRET);
        account_with(fake, &credentials, 1000)
    }

    /// An MCC path of the fake's account: `mcc("cnames/httplarge")`.
    pub(crate) fn mcc(rest: &str) -> String {
        format!("/v2/mcc/customers/{EDGECAST_ACCOUNT}/{rest}")
    }

    pub(crate) fn cps(certificate_id: i64) -> String {
        format!("/sec/cps/v2.0/certificates/{certificate_id}")
    }

    /// Certificate 1234 for HOST, active on HTTP Large; edge CNAME 1001 for HOST on HTTP
    /// Large, propagated, pointing at customer origin 2001, HTTPS only.
    pub(crate) fn healthy(fake: &FakeCdn) {
        fake.edit(|s| {
            let ec = &mut s.edgecast;
            ec.put_certificate(&EdgecastCertificate::active(1234, &[HOST], TARGET));
            ec.put_edge_cname(EDGECAST_ACCOUNT, &EdgeCname::new(1001, HOST, 2001));
            ec.set_edge_cname_propagation(1001, &Propagation::propagated());
            let origin = CustomerOrigin::https_only(2001, "shop-origin", "origin.shop.example");
            ec.put_origin(EDGECAST_ACCOUNT, &origin);
        });
    }

    fn handles(edge_id: Option<&str>) -> Handles {
        Handles {
            certificate_id: "1234".into(),
            edge_id: edge_id.map(str::to_string),
        }
    }

    /// HOST read by hostname.
    async fn read_host(fake: &FakeCdn) -> Result<CdnView, ProviderError> {
        read(&account(fake), &handles(None), HOST, MINUTE).await
    }

    async fn view(fake: &FakeCdn) -> CdnView {
        read_host(fake).await.expect("a view")
    }

    fn https_origin() -> CdnOrigin {
        CdnOrigin {
            name: "shop-origin".into(),
            host: Some("origin.shop.example".into()),
            port: Some(443),
            protocol: Ok(OriginProtocol::HttpsOnly),
            https_edge_protocol: true,
            sni_hostname: None,
            sni_reported: false,
        }
    }

    #[tokio::test]
    async fn a_healthy_delivery_is_read_whole() {
        let fake = fake().await;
        healthy(&fake);
        let view = view(&fake).await;
        let expected = CdnView {
            provider: "edgecast",
            certificate: Some(CdnCertificate {
                id: "1234".into(),
                state: CertificateState::Active,
                domains: vec![HOST.into()],
                deployments: vec![CdnDeployment {
                    platform: Some(Ok(Platform::HttpLarge)),
                    target_cname: TARGET.into(),
                }],
            }),
            edge: Some(CdnEdge {
                id: "1001".into(),
                hostname: HOST.into(),
                platform: Some(Ok(Platform::HttpLarge)),
                // The name of the customer origin it points at, as spec.edgeCname.origin is.
                origin: Some("shop-origin".into()),
                problems: vec![],
            }),
            propagation: Some(CdnPropagation::Done),
            origin: Some(https_origin()),
        };
        assert_eq!(view, expected);
        assert_eq!(view.target_cname(), Some(TARGET));
        assert_eq!(fake.count("GET", &mcc("cnames/httplarge")), 1);
        assert_eq!(
            fake.count("GET", &mcc("cnames/httpsmall")),
            0,
            "found on the first"
        );
        assert_eq!(fake.count("GET", &mcc("cnames/1001/status")), 1);
        assert_eq!(fake.count("GET", &mcc("origins/httplarge")), 1);
    }

    #[tokio::test]
    async fn the_edge_cname_is_found_by_its_id() {
        let fake = fake().await;
        healthy(&fake);
        // Another edge CNAME for the same name: the ID decides.
        fake.edit(|s| {
            let other = EdgeCname::new(1002, HOST, 2001);
            s.edgecast.put_edge_cname(EDGECAST_ACCOUNT, &other);
        });
        let view = read(&account(&fake), &handles(Some("1002")), HOST, MINUTE)
            .await
            .expect("a view");
        let edge = view.edge.expect("the edge CNAME");
        assert_eq!(edge.id, "1002");
        assert_eq!(edge.origin.as_deref(), Some("shop-origin"));
        assert_eq!(view.origin, Some(https_origin()));
        assert_eq!(fake.count("GET", &mcc("cnames/1002")), 1);
        assert_eq!(
            fake.count("GET", &mcc("cnames/httplarge")),
            0,
            "no list read"
        );
    }

    #[tokio::test]
    async fn an_edge_id_that_is_no_number_names_nothing_and_is_never_sent() {
        let fake = fake().await;
        healthy(&fake);
        let account = account(&fake);
        for id in ["1001/status", "../origins/httplarge", "1001?x=1", ""] {
            let view = read(&account, &handles(Some(id)), HOST, MINUTE)
                .await
                .expect("a view");
            assert_eq!(
                (view.edge, view.propagation, view.origin),
                (None, None, None)
            );
        }
        let odd = Handles {
            certificate_id: "1234/status".into(),
            edge_id: Some(" 1001 ".into()),
        };
        let view = read(&account, &odd, HOST, MINUTE).await.expect("a view");
        assert_eq!(view.certificate, None, "a certificate ID is a number");
        assert_eq!(view.edge.map(|e| e.id).as_deref(), Some("1001"), "trimmed");
        let mcc_paths: Vec<String> = fake
            .requests()
            .into_iter()
            .filter(|r| r.path.starts_with("/v2/mcc/"))
            .map(|r| r.path)
            .collect();
        assert_eq!(
            mcc_paths,
            [
                mcc("cnames/1001"),
                mcc("cnames/1001/status"),
                mcc("origins/httplarge")
            ]
        );
        assert_eq!(
            fake.count("GET", "/sec/cps/v2.0/certificates/1234/status"),
            1
        );
    }

    #[tokio::test]
    async fn an_edge_cname_on_http_small_is_found_after_http_large() {
        let fake = fake().await;
        fake.edit(|s| {
            let ec = &mut s.edgecast;
            let mut cert = EdgecastCertificate::active(1234, &[HOST], TARGET);
            cert.deployments.push(EdgecastDeployment {
                platform: "HttpSmall".into(),
                delivery_region: "GlobalStandard".into(),
                hex_url: "small.0001.cdn.example.".into(),
            });
            ec.put_certificate(&cert);
            let elsewhere = EdgeCname::new(1000, "api.shop.example", 2001);
            ec.put_edge_cname(EDGECAST_ACCOUNT, &elsewhere);
            let mut small = EdgeCname::new(1001, HOST, 2001);
            small.media_type_id = 8;
            ec.put_edge_cname(EDGECAST_ACCOUNT, &small);
            ec.set_edge_cname_propagation(1001, &Propagation::propagated());
            let mut origin = CustomerOrigin::https_only(2001, "shop-origin", "origin.shop.example");
            origin.media_type_id = 8;
            ec.put_origin(EDGECAST_ACCOUNT, &origin);
        });
        let view = view(&fake).await;
        let edge = view.edge.as_ref().expect("the edge CNAME");
        assert_eq!(edge.platform, Some(Ok(Platform::HttpSmall)));
        assert_eq!(view.target_cname(), Some("small.0001.cdn.example"));
        assert_eq!(view.origin, Some(https_origin()));
        assert_eq!(fake.count("GET", &mcc("cnames/httplarge")), 1);
        assert_eq!(fake.count("GET", &mcc("cnames/httpsmall")), 1);
        assert_eq!(fake.count("GET", &mcc("cnames/adn")), 0);
        assert_eq!(fake.count("GET", &mcc("origins/httpsmall")), 1);
        assert_eq!(fake.count("GET", &mcc("origins/httplarge")), 0);
    }

    #[tokio::test]
    async fn domain_control_validation_lists_the_domains_still_pending() {
        let fake = fake().await;
        healthy(&fake);
        fake.edit(|s| {
            let ec = &mut s.edgecast;
            let cert = EdgecastCertificate::active(1234, &[HOST, "shop.example"], TARGET);
            ec.put_certificate(&cert);
            ec.certificate_status.insert(
                1234,
                json!({
                    "@type": "CertificateStatus", "status": "DomainControlValidation",
                    "step": 2, "requires_attention": false,
                    "order_validation": {"status": "Pending", "domain_validations": [
                        {"domain_id": 1, "domain_names": [HOST], "status": "Approved"},
                        {"domain_id": 2, "domain_names": ["shop.example"], "status": "Pending"},
                    ]},
                }),
            );
        });
        let certificate = view(&fake).await.certificate.expect("the certificate");
        assert_eq!(
            certificate.state,
            CertificateState::DomainValidationPending {
                domains: vec!["shop.example".into()]
            }
        );
        assert_eq!(certificate.domains, [HOST, "shop.example"]);
    }

    #[tokio::test]
    async fn a_certificate_needing_attention_carries_the_providers_message() {
        let fake = fake().await;
        healthy(&fake);
        fake.edit(|s| {
            let mut cert = EdgecastCertificate::active(1234, &[HOST], TARGET);
            cert.status = "Processing".into();
            cert.requires_attention = true;
            cert.workflow_error_message = "CAA record forbids the CA".into();
            s.edgecast.put_certificate(&cert);
        });
        let certificate = view(&fake).await.certificate.expect("the certificate");
        assert_eq!(
            certificate.state,
            CertificateState::NeedsAttention {
                message: "CAA record forbids the CA".into()
            }
        );
    }

    #[tokio::test]
    async fn a_certificate_not_found_is_none_not_an_error() {
        let fake = fake().await;
        healthy(&fake);
        fake.edit(|s| s.edgecast.certificates.clear());
        let view = view(&fake).await;
        assert_eq!(view.certificate, None);
        assert_eq!(view.target_cname(), None);
        assert!(view.edge.is_some(), "the rest is still read");
        assert_eq!(view.origin, Some(https_origin()));
    }

    #[tokio::test]
    async fn a_deployment_without_its_target_cname_yet_has_none() {
        let fake = fake().await;
        healthy(&fake);
        fake.edit(|s| {
            let cert = s.edgecast.certificates.get_mut(&1234).expect("stored");
            cert["deployments"] = json!([
                {"platform": "HttpLarge", "delivery_region": "GlobalStandard", "hex_url": ""},
                {"platform": "HttpSmall", "delivery_region": "GlobalStandard"},
            ]);
        });
        let view = view(&fake).await;
        assert_eq!(view.certificate.expect("read").deployments, []);
    }

    #[tokio::test]
    async fn without_an_edge_cname_there_is_no_propagation_or_origin() {
        let fake = fake().await;
        healthy(&fake);
        fake.edit(|s| s.edgecast.edge_cnames.clear());
        let view = view(&fake).await;
        assert!(view.certificate.is_some());
        assert_eq!(
            (view.edge, view.propagation, view.origin),
            (None, None, None)
        );
        for platform in PLATFORMS {
            let path = mcc(&format!("cnames/{platform}"));
            assert_eq!(fake.count("GET", &path), 1, "{platform} searched");
        }
        assert_eq!(fake.count("GET", &mcc("origins/httplarge")), 0);
    }

    /// HOST's view with edge CNAME 1001's propagation status answered as `status`.
    async fn with_propagation(status: serde_json::Value) -> Option<CdnPropagation> {
        let fake = fake().await;
        healthy(&fake);
        fake.edit(|s| s.edgecast.edge_cname_propagation.insert(1001, status));
        view(&fake).await.propagation
    }

    #[tokio::test]
    async fn propagation_in_progress_carries_its_percentage() {
        let status = Propagation::propagating(50.0).to_json();
        assert_eq!(
            with_propagation(status).await,
            Some(CdnPropagation::InProgress {
                state: "propagating".into(),
                percent: Some(75.0)
            })
        );
        let status = json!({"status": "New", "Pops": []});
        assert_eq!(
            with_propagation(status).await,
            Some(CdnPropagation::InProgress {
                state: "New".into(),
                percent: None
            })
        );
    }

    #[tokio::test]
    async fn an_unknown_propagation_status_is_kept_raw() {
        let status = json!({"status": "Paused", "Percent_propagated": 10.0});
        assert_eq!(
            with_propagation(status).await,
            Some(CdnPropagation::Unrecognized(Raw {
                field: "status".into(),
                value: "Paused".into()
            }))
        );
    }

    #[tokio::test]
    async fn an_unknown_media_type_is_kept_raw() {
        let fake = fake().await;
        healthy(&fake);
        fake.edit(|s| {
            let mut cname = EdgeCname::new(1001, HOST, 2001);
            cname.media_type_id = 99;
            s.edgecast.put_edge_cname(EDGECAST_ACCOUNT, &cname);
        });
        let view = view(&fake).await;
        let raw = Raw {
            field: "MediaTypeId".into(),
            value: "99".into(),
        };
        assert_eq!(view.target_cname(), None, "no known platform to match");
        assert_eq!(view.edge.expect("the edge").platform, Some(Err(raw)));
        assert_eq!(view.origin, None, "no platform to read its origins on");
    }

    #[tokio::test]
    async fn an_origin_with_http_and_https_hostnames_matches_the_request() {
        let fake = fake().await;
        healthy(&fake);
        fake.edit(|s| {
            let mut origin = CustomerOrigin::https_only(2001, "shop-origin", "origin.shop.example");
            origin.https_hostnames = vec!["https://Origin.Shop.example:8443".into()];
            origin.http_hostnames = vec!["http://plain.shop.example:8080".into()];
            s.edgecast.put_origin(EDGECAST_ACCOUNT, &origin);
        });
        let origin = view(&fake).await.origin.expect("the origin");
        assert_eq!(origin.protocol, Ok(OriginProtocol::MatchRequest));
        assert_eq!(origin.host.as_deref(), Some("origin.shop.example"));
        assert_eq!(origin.port, Some(8443), "the HTTPS hostname's");
        assert!(origin.https_edge_protocol);
    }

    #[tokio::test]
    async fn cdn_storage_has_no_customer_origin() {
        let fake = fake().await;
        healthy(&fake);
        fake.edit(|s| {
            let storage = EdgeCname::new(1001, HOST, -1);
            s.edgecast.put_edge_cname(EDGECAST_ACCOUNT, &storage);
        });
        let view = view(&fake).await;
        assert_eq!(view.edge.expect("the edge").origin, None);
        assert_eq!(view.origin, None);
        assert_eq!(fake.count("GET", &mcc("origins/httplarge")), 0);
    }

    /// An origin MCC v2 does not list is looked for as an Origins v3 group (by the edge
    /// CNAME's OriginId): its primary origin's protocol and its SNI name are read.
    #[tokio::test]
    async fn an_origin_group_of_origins_v3_is_read_when_v2_has_no_such_origin() {
        let fake = fake().await;
        healthy(&fake);
        fake.edit(|s| {
            s.edgecast
                .put_edge_cname(EDGECAST_ACCOUNT, &EdgeCname::new(1001, HOST, 700));
            s.edgecast.put_origin_group_v3(
                "http-large",
                &testkit::cdn::OriginGroupV3 {
                    id: 700,
                    name: "shop-group".into(),
                    host_header: "origin.shop.example".into(),
                    sni_hostname: Some("sni.shop.example".into()),
                    allow_self_signed: false,
                },
            );
            for (id, primary, protocol) in [(9001, false, 1), (9002, true, 2)] {
                s.edgecast.put_origin_v3(
                    "http-large",
                    &testkit::cdn::OriginV3 {
                        id,
                        name: format!("o{id}"),
                        host: "https://origin-v3.shop.example".into(),
                        port: 8443,
                        is_primary: primary,
                        protocol_type_id: protocol,
                        group_id: 700,
                    },
                );
            }
        });
        let origin = view(&fake).await.origin.expect("the group's origin");
        assert_eq!(
            origin,
            CdnOrigin {
                name: "shop-group".into(),
                host: Some("origin-v3.shop.example".into()),
                port: Some(8443),
                protocol: Ok(OriginProtocol::HttpsOnly),
                https_edge_protocol: true,
                sni_hostname: Some("sni.shop.example".into()),
                sni_reported: true,
            }
        );
        // An unknown protocol type is kept raw; a group that is not there is no origin.
        fake.edit(|s| {
            let group = s
                .edgecast
                .origins_v3
                .get_mut("http-large")
                .expect("origins");
            for o in group.iter_mut() {
                o["protocol_type_id"] = json!(9);
            }
        });
        let fresh = view(&fake).await.origin.expect("the group's origin");
        assert_eq!(
            fresh.protocol,
            Err(Raw {
                field: "protocol_type_id".into(),
                value: "9".into()
            })
        );
        assert!(!fresh.https_edge_protocol);
        fake.edit(|s| {
            s.edgecast
                .put_edge_cname(EDGECAST_ACCOUNT, &EdgeCname::new(1001, HOST, 701));
        });
        assert_eq!(view(&fake).await.origin, None);
    }

    #[tokio::test]
    async fn a_changed_field_type_is_unexpected_and_names_its_path() {
        let fake = fake().await;
        healthy(&fake);
        fake.edit(|s| {
            let key = (EDGECAST_ACCOUNT.to_string(), "httplarge".to_string());
            let cname = json!({"Id": 1001, "Name": HOST, "OriginId": 2001, "MediaTypeId": "3"});
            s.edgecast.edge_cnames.insert(key, vec![cname]);
        });
        let error = read_host(&fake).await.expect_err("a changed shape");
        assert!(
            matches!(&error, ProviderError::Unexpected(m) if m.contains("[0].MediaTypeId")),
            "{error:?}"
        );
        fake.edit(|s| {
            let cert = s.edgecast.certificates.get_mut(&1234).expect("stored");
            cert["domains"][0]["name"] = json!(7);
        });
        let error = read_host(&fake).await.expect_err("a changed shape");
        assert!(
            matches!(&error, ProviderError::Unexpected(m) if m.contains("domains[0].name")),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn refusals_and_failures_are_errors_not_views() {
        let fake = fake().await;
        healthy(&fake);
        fake.fail("/sec/cps/*", 500);
        let error = read_host(&fake).await.expect_err("HTTP 500");
        assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");
        fake.clear_faults();
        let credentials = credentials("not-the-rest-token", EDGECAST_CLIENT_SECRET);
        let wrong = account_with(&fake, &credentials, 1000);
        let error = read(&wrong, &handles(None), HOST, MINUTE)
            .await
            .expect_err("a wrong REST token");
        assert!(matches!(error, ProviderError::Unauthorized(_)), "{error:?}");
    }

    #[tokio::test]
    async fn check_access_reads_the_account_with_both_credentials() {
        let fake = fake().await;
        check_access(&account(&fake)).await.expect("access");
        assert_eq!(fake.count("GET", &mcc("cnames/httplarge")), 1);
        assert_eq!(fake.count("GET", "/sec/cps/v2.0/certificates"), 1);
        assert_eq!(fake.tokens_issued(), 1, "CPS read with an OAuth2 token");
        for (rest_token, client_secret) in [
            ("not-the-rest-token", EDGECAST_CLIENT_SECRET),
            (EDGECAST_REST_TOKEN, "not-the-client-secret"),
        ] {
            let wrong = account_with(&fake, &credentials(rest_token, client_secret), 1000);
            let error = check_access(&wrong).await.expect_err("wrong credentials");
            assert!(matches!(error, ProviderError::Unauthorized(_)), "{error:?}");
        }
        fake.set_edgecast_forbidden(true);
        let error = check_access(&account(&fake)).await.expect_err("forbidden");
        assert!(matches!(error, ProviderError::Forbidden(_)), "{error:?}");
    }

    #[test]
    fn origin_urls_give_host_and_port() {
        assert_eq!(
            host_port("https://o.example:8443", 443),
            ("o.example".into(), Some(8443))
        );
        assert_eq!(
            host_port("https://O.example", 443),
            ("o.example".into(), Some(443))
        );
        assert_eq!(
            host_port("http://o.example:80/x", 80),
            ("o.example".into(), Some(80))
        );
    }

    #[test]
    fn unknown_values_are_kept_raw() {
        assert_eq!(
            platform_of_media_type(99),
            Err(Raw {
                field: "MediaTypeId".into(),
                value: "99".into()
            })
        );
        let status = PropagationStatus {
            status: "Paused".into(),
            percent_propagated: None,
        };
        assert_eq!(
            propagation(&status),
            CdnPropagation::Unrecognized(Raw {
                field: "status".into(),
                value: "Paused".into()
            })
        );
    }
}
