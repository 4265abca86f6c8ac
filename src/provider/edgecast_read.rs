//! The Edgecast reader: what Edgecast has for one delivery (`docs/design/provider-apis.md`,
//! part A). Step 1 from CPS (`/sec/cps/v2.0/certificates/{id}` and its `/status`), step 2
//! from the MCC edge CNAMEs of the account (`/v2/mcc/customers/{AN}/cnames/{platform}`), step 3
//! from the edge CNAME's propagation status, step 4 from the MCC customer origin it points at.
//! Lists are read once per account and platform and shared by every delivery of the account.

use super::account::Account;
use super::view::{
    CdnCertificate, CdnDeployment, CdnEdge, CdnOrigin, CdnPropagation, CdnView, CertificateState,
    Handles, ProviderError, Raw,
};
use crate::api::{OriginProtocol, Platform};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

const JSON: &str = "application/json";
/// MCC's platform path segments, in the order edge CNAMEs are looked for.
const PLATFORMS: [&str; 3] = ["httplarge", "httpsmall", "adn"];

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
    hex_url: String,
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

/// A cheap authenticated read: the account's HTTP Large edge CNAMEs.
pub async fn check_access(account: &Arc<Account>) -> Result<(), ProviderError> {
    let an = account_number(account)?;
    let path = format!("/v2/mcc/customers/{an}/cnames/httplarge");
    account
        .get(&path, JSON, "mcc.cnames", Duration::ZERO)
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
    let propagation = match account
        .get(&status_path, JSON, "mcc.cname.status", max_age)
        .await
    {
        Ok(v) => Some(propagation(&Account::decode(&v, "edge CNAME status")?)),
        Err(ProviderError::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    let origin = read_origin(account, &an, &edge, origin_id, max_age).await?;
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
    let path = format!("/sec/cps/v2.0/certificates/{id}");
    let cert: Certificate = match account.get(&path, JSON, "cps.certificate", max_age).await {
        Ok(v) => Account::decode(&v, "certificate")?,
        Err(ProviderError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
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
            .map(|d| CdnDeployment {
                platform: Some(platform_named(&d.platform)),
                target_cname: d.hex_url.trim_end_matches('.').to_string(),
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
    let found = match &handles.edge_id {
        Some(id) => {
            let path = format!("/v2/mcc/customers/{an}/cnames/{id}");
            match account.get(&path, JSON, "mcc.cname", max_age).await {
                Ok(v) => Some(Account::decode::<EdgeCname>(&v, "edge CNAME")?),
                Err(ProviderError::NotFound(_)) => None,
                Err(e) => return Err(e),
            }
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
    Ok(list.into_iter().find(|o| o.id == origin_id).map(origin))
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
mod tests {
    use super::*;

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
