//! Provider mode's Akamai reader: what Akamai has for one delivered hostname, read from CPS
//! (the enrollment, its pending change, its production deployment) and PAPI (the property, the
//! hostnames of its production version, the edge hostname, the activations, the rule tree),
//! as a provider-neutral [`CdnView`] (doc `docs/design/provider-apis.md`, B.4 to B.8).
//!
//! Every request goes through the [`Account`]: answers are shared per path by every delivery
//! of the account within `max_age`, so deliveries on one property cost one read of it. A
//! value Akamai sends that the operator does not know is kept raw ([`Raw`]), never guessed.

use super::account::Account;
use super::akamai::CPS_ENROLLMENT;
use super::view::{
    CdnCertificate, CdnDeployment, CdnEdge, CdnOrigin, CdnPropagation, CdnView, CertificateState,
    Handles, ProviderError, Raw, found,
};
use crate::api::OriginProtocol;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// CPS change status and deployment media types (doc B.4; CPS refuses other `Accept`s).
const CPS_CHANGE: &str = "application/vnd.akamai.cps.change.v2+json";
const CPS_DEPLOYMENT: &str = "application/vnd.akamai.cps.deployment.v8+json";
/// PAPI answers plain JSON (doc B.5).
const PAPI: &str = "application/json";

/// The CPS change statuses of domain control validation: the SDK's wire spelling (sic) and
/// the correct one, in case Akamai fixes it (doc B.4, C.6).
const DCV_STATUSES: [&str; 2] = [
    "coodinate-domain-validation",
    "coordinate-domain-validation",
];

/// Reads what Akamai has for `hostname`: the CPS enrollment `handles.certificate_id` and the
/// PAPI property `handles.edge_id` (required: PAPI has no search by hostname in the doc).
pub async fn read(
    account: &Arc<Account>,
    handles: &Handles,
    hostname: &str,
    max_age: Duration,
) -> Result<CdnView, ProviderError> {
    let scope = Scope::of(account)?;
    let Some(edge_id) = handles.edge_id.as_deref() else {
        return Err(ProviderError::Spec(format!(
            "Akamai deliveries need spec.cdn.edgeCnameId, the ID of the property (prp_...) that \
             serves {hostname}: the operator does not search properties by hostname"
        )));
    };
    let host = normalize(hostname);
    let certificate_id = handles.certificate_id.trim();
    let (certificate, edge) = futures::try_join!(
        read_certificate(account, certificate_id, &host, max_age),
        read_edge(account, &scope, edge_id, &host, certificate_id, max_age),
    )?;
    Ok(assemble(certificate, edge))
}

/// A cheap authenticated read (`GET /papi/v1/contracts`, doc B.8): the credentials are
/// accepted, may use PAPI, and see the account's contract.
pub async fn check_access(account: &Arc<Account>) -> Result<(), ProviderError> {
    let scope = Scope::of(account)?;
    let answer = account
        .get("/papi/v1/contracts", PAPI, "papi.contracts", Duration::ZERO)
        .await?;
    let doc: ContractsDoc = Account::decode(&answer, "the PAPI contracts")?;
    let wanted = scope.contract.trim_start_matches("ctr_");
    if doc
        .contracts
        .items
        .iter()
        .any(|c| c.contract_id.trim_start_matches("ctr_") == wanted)
    {
        return Ok(());
    }
    Err(ProviderError::Account(format!(
        "contract {} (spec.akamai.contractId) is not among the contracts these credentials may read",
        scope.contract
    )))
}

/// The contract and group every PAPI property read names.
struct Scope {
    contract: String,
    group: String,
    /// `contractId=..&groupId=..`, percent-encoded.
    query: String,
}

impl Scope {
    fn of(account: &Account) -> Result<Scope, ProviderError> {
        let settings = &account.settings;
        fn given(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        match (
            given(&settings.akamai_contract_id),
            given(&settings.akamai_group_id),
        ) {
            (Some(contract), Some(group)) => Ok(Scope {
                contract: contract.to_string(),
                group: group.to_string(),
                query: format!("contractId={}&groupId={}", encode(contract), encode(group)),
            }),
            _ => Err(ProviderError::Account(
                "the CdnAccount needs spec.akamai.contractId and groupId: every Akamai \
                 property read names both"
                    .into(),
            )),
        }
    }
}

// -------------------------------------------------------------------------------------------
// Step 1: the CPS enrollment
// -------------------------------------------------------------------------------------------

/// The certificate, and whether it is deployed on the production network.
struct CertRead {
    certificate: CdnCertificate,
    deployed: bool,
}

async fn read_certificate(
    account: &Arc<Account>,
    id: &str,
    host: &str,
    max_age: Duration,
) -> Result<Option<CertRead>, ProviderError> {
    // CPS enrollment IDs are numbers: anything else names no enrollment.
    let Ok(enrollment_id) = id.parse::<u64>() else {
        return Ok(None);
    };
    let path = format!("/cps/v2/enrollments/{enrollment_id}");
    let answer = account
        .get(&path, CPS_ENROLLMENT, "cps.enrollment", max_age)
        .await;
    let Some(answer) = found(answer)? else {
        return Ok(None);
    };
    let enrollment: EnrollmentDoc = Account::decode(&answer, "the CPS enrollment")?;
    let domains = enrollment.domains();
    let pending = async {
        match enrollment.pending_changes.first() {
            Some(change) => change_state(account, enrollment_id, change, &domains, max_age)
                .await
                .map(Some),
            None => Ok(None),
        }
    };
    let (deployed, pending) =
        futures::try_join!(production_names(account, enrollment_id, max_age), pending)?;
    let serves_host = deployed
        .as_ref()
        .is_some_and(|names| names.iter().any(|n| matches_name(n, host)));
    let state = match pending {
        // A change in progress (a renewal, another SAN) while the deployed certificate
        // already serves this hostname: the hostname is served; errors still show.
        Some(
            CertificateState::DomainValidationPending { .. } | CertificateState::Pending { .. },
        ) if serves_host => CertificateState::Active,
        Some(state) => state,
        None if deployed.is_some() => CertificateState::Active,
        None => CertificateState::Pending {
            stage: "not deployed to production".into(),
        },
    };
    Ok(Some(CertRead {
        certificate: CdnCertificate {
            id: enrollment_id.to_string(),
            state,
            domains,
            deployments: Vec::new(),
        },
        deployed: deployed.is_some(),
    }))
}

/// The names the production deployment serves, when a certificate is deployed there.
async fn production_names(
    account: &Arc<Account>,
    enrollment_id: u64,
    max_age: Duration,
) -> Result<Option<Vec<String>>, ProviderError> {
    let path = format!("/cps/v2/enrollments/{enrollment_id}/deployments/production");
    let answer = account
        .get(&path, CPS_DEPLOYMENT, "cps.deployment.production", max_age)
        .await;
    let Some(answer) = found(answer)? else {
        return Ok(None);
    };
    let deployment: DeploymentDoc = Account::decode(&answer, "the CPS production deployment")?;
    if deployment.primary_certificate.is_none() {
        return Ok(None);
    }
    let names = deployment
        .network_configuration
        .and_then(|n| n.dns_names)
        .unwrap_or_default();
    Ok(Some(names))
}

/// The state of a pending change, from its change status (doc B.4).
async fn change_state(
    account: &Arc<Account>,
    enrollment_id: u64,
    change: &PendingChange,
    domains: &[String],
    max_age: Duration,
) -> Result<CertificateState, ProviderError> {
    let (location, kind) = change.parts();
    let Some(change_id) = change_id(location, enrollment_id) else {
        return Ok(CertificateState::Unrecognized(Raw {
            field: "pendingChanges[].location".into(),
            value: location.into(),
        }));
    };
    let path = format!("/cps/v2/enrollments/{enrollment_id}/changes/{change_id}");
    let answer = account.get(&path, CPS_CHANGE, "cps.change", max_age).await;
    let Some(answer) = found(answer)? else {
        // Gone since the enrollment was read (just completed, or cancelled).
        return Ok(CertificateState::Pending {
            stage: kind.unwrap_or("pending change").to_string(),
        });
    };
    let doc: ChangeDoc = Account::decode(&answer, "the CPS change status")?;
    Ok(status_state(doc.status_info, domains))
}

/// `/cps-api/enrollments/{id}/changes/{changeId}` of this enrollment: the change ID.
fn change_id(location: &str, enrollment_id: u64) -> Option<u64> {
    let segments: Vec<&str> = location.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [.., "enrollments", id, "changes", change]
            if id.parse::<u64>().ok() == Some(enrollment_id) =>
        {
            change.parse().ok()
        }
        _ => None,
    }
}

fn status_state(info: StatusInfo, domains: &[String]) -> CertificateState {
    if let Some(error) = info.error {
        let text = error.description.or(info.description);
        let message = match (text, error.code) {
            (Some(text), Some(code)) => format!("{text} (code {code})"),
            (Some(text), None) => text,
            (None, Some(code)) => format!("change {} failed (code {code})", info.status),
            (None, None) => format!("change {} failed", info.status),
        };
        return CertificateState::NeedsAttention { message };
    }
    if DCV_STATUSES.contains(&info.status.as_str()) {
        return CertificateState::DomainValidationPending {
            domains: domains.to_vec(),
        };
    }
    let stage = match info.state.as_deref() {
        None | Some("" | "running") => info.status,
        Some(state) => format!("{} ({state})", info.status),
    };
    CertificateState::Pending { stage }
}

// -------------------------------------------------------------------------------------------
// Steps 2 to 4: the property
// -------------------------------------------------------------------------------------------

/// The property hostname and what hangs off it.
struct EdgeRead {
    edge: CdnEdge,
    /// The property hostname's `cnameTo` (the edge hostname).
    target_cname: Option<String>,
    /// Whether the edge hostname can serve the enrollment's certificate (not known otherwise).
    serves_certificate: bool,
    propagation: CdnPropagation,
    origin: Option<CdnOrigin>,
}

async fn read_edge(
    account: &Arc<Account>,
    scope: &Scope,
    edge_id: &str,
    host: &str,
    certificate_id: &str,
    max_age: Duration,
) -> Result<Option<EdgeRead>, ProviderError> {
    let Some(property_id) = property_id(edge_id) else {
        return Ok(None);
    };
    let base = format!("/papi/v1/properties/{property_id}");
    let Some(version) = property_version(account, scope, &base, max_age).await? else {
        return Ok(None);
    };
    let Some(entry) = property_hostname(account, scope, &base, version, host, max_age).await?
    else {
        return Ok(None);
    };
    let (edge_hostname, propagation, origin) = futures::try_join!(
        read_edge_hostname(account, scope, entry.edge_hostname_id.as_deref(), max_age),
        read_propagation(account, scope, &base, max_age),
        read_origin(account, scope, &base, version, host, max_age),
    )?;
    let (problems, serves_certificate) =
        edge_problems(&entry, &edge_hostname, certificate_id, scope);
    Ok(Some(EdgeRead {
        edge: CdnEdge {
            id: property_id,
            hostname: entry.cname_from,
            platform: None,
            origin: origin.as_ref().map(|o| o.name.clone()),
            problems,
        },
        target_cname: entry.cname_to,
        serves_certificate,
        propagation,
        origin,
    }))
}

/// `prp_123` as given, `123` with its prefix; anything else names no property.
fn property_id(edge_id: &str) -> Option<String> {
    let id = edge_id.trim();
    let digits = id.strip_prefix("prp_").unwrap_or(id);
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("prp_{digits}"))
}

/// The property's production version, else its latest; `None` when it is not found.
async fn property_version(
    account: &Arc<Account>,
    scope: &Scope,
    base: &str,
    max_age: Duration,
) -> Result<Option<u64>, ProviderError> {
    let path = format!("{base}?{}", scope.query);
    let answer = account.get(&path, PAPI, "papi.property", max_age).await;
    let Some(answer) = found(answer)? else {
        return Ok(None);
    };
    let doc: PropertiesDoc = Account::decode(&answer, "the PAPI property")?;
    Ok(doc
        .properties
        .items
        .first()
        .map(|p| p.production_version.unwrap_or(p.latest_version)))
}

/// The hostname of the property version whose `cnameFrom` is `host`.
async fn property_hostname(
    account: &Arc<Account>,
    scope: &Scope,
    base: &str,
    version: u64,
    host: &str,
    max_age: Duration,
) -> Result<Option<HostnameDoc>, ProviderError> {
    let path = format!(
        "{base}/versions/{version}/hostnames?{}&validateHostnames=false",
        scope.query
    );
    let answer = account
        .get(&path, PAPI, "papi.property.hostnames", max_age)
        .await;
    let Some(answer) = found(answer)? else {
        return Ok(None);
    };
    let doc: HostnamesDoc = Account::decode(&answer, "the PAPI property hostnames")?;
    Ok(doc
        .hostnames
        .items
        .into_iter()
        .find(|h| normalize(&h.cname_from) == host))
}

/// What became of reading the edge hostname a property hostname names.
enum EdgeHostnameRead {
    /// The property hostname names none (or an ID the operator cannot put in a path).
    Unnamed,
    NotFound(String),
    Found(EdgeHostnameDoc),
}

async fn read_edge_hostname(
    account: &Arc<Account>,
    scope: &Scope,
    id: Option<&str>,
    max_age: Duration,
) -> Result<EdgeHostnameRead, ProviderError> {
    let Some(id) = id.filter(|id| is_segment(id)) else {
        return Ok(EdgeHostnameRead::Unnamed);
    };
    let path = format!("/papi/v1/edgehostnames/{id}?{}", scope.query);
    let answer = account.get(&path, PAPI, "papi.edgehostname", max_age).await;
    let Some(answer) = found(answer)? else {
        return Ok(EdgeHostnameRead::NotFound(id.to_string()));
    };
    let doc: EdgeHostnamesDoc = Account::decode(&answer, "the PAPI edge hostname")?;
    Ok(match doc.edge_hostnames.items.into_iter().next() {
        Some(found) => EdgeHostnameRead::Found(found),
        None => EdgeHostnameRead::NotFound(id.to_string()),
    })
}

/// What Akamai's own data says is wrong with the property hostname, and whether its edge
/// hostname can serve the enrollment's certificate.
fn edge_problems(
    entry: &HostnameDoc,
    edge_hostname: &EdgeHostnameRead,
    certificate_id: &str,
    scope: &Scope,
) -> (Vec<String>, bool) {
    let mut problems = Vec::new();
    let mut serves = true;
    let host = &entry.cname_from;
    match entry.cert_provisioning_type.as_deref() {
        None | Some("CPS_MANAGED") => {}
        Some("DEFAULT") => {
            problems.push(format!(
                "{host} uses Akamai-managed certificates (certProvisioningType DEFAULT), not \
                 CPS enrollment {certificate_id}."
            ));
            serves = false;
        }
        Some(other) => {
            problems.push(format!(
                "{host} has certProvisioningType {other:?}, which the operator does not know."
            ));
            serves = false;
        }
    }
    let cname_to = entry.cname_to.as_deref().unwrap_or("no edge hostname");
    // What could not be checked is not a problem of the configuration (step 2 stays as the
    // rest says): it is logged, never reported as False.
    match edge_hostname {
        EdgeHostnameRead::Unnamed => tracing::debug!(
            host,
            cname_to,
            "no readable edge hostname ID: whether it is secure was not checked"
        ),
        EdgeHostnameRead::NotFound(id) => tracing::debug!(
            %id,
            cname_to,
            contract = %scope.contract,
            group = %scope.group,
            "edge hostname not in the account's contract and group: not checked"
        ),
        EdgeHostnameRead::Found(found) => {
            let name = found.edge_hostname_domain.as_deref().unwrap_or(cname_to);
            if found.secure == Some(false) {
                problems.push(format!(
                    "edge hostname {name} is not secure: it cannot serve HTTPS with a CPS \
                     certificate."
                ));
                serves = false;
            }
            if let Some(enrolled) = found.cert_enrollment_id.as_ref().map(id_text)
                && enrolled != certificate_id
            {
                problems.push(format!(
                    "edge hostname {name} carries the certificate of enrollment {enrolled}, \
                     not {certificate_id}."
                ));
                serves = false;
            }
        }
    }
    (problems, serves)
}

/// Step 3: the newest PRODUCTION activation of the property.
async fn read_propagation(
    account: &Arc<Account>,
    scope: &Scope,
    base: &str,
    max_age: Duration,
) -> Result<CdnPropagation, ProviderError> {
    let path = format!("{base}/activations?{}", scope.query);
    let answer = account
        .get(&path, PAPI, "papi.property.activations", max_age)
        .await?;
    let doc: ActivationsDoc = Account::decode(&answer, "the PAPI activations")?;
    let newest = doc
        .activations
        .items
        .iter()
        .enumerate()
        .filter(|(_, a)| a.network == "PRODUCTION")
        .max_by_key(|(i, a)| (a.submit_date, a.property_version, *i))
        .map(|(_, a)| a);
    Ok(match newest {
        Some(activation) => activation_state(activation),
        None => CdnPropagation::Failed {
            state: "never activated on PRODUCTION".into(),
        },
    })
}

/// Activation statuses (doc B.6).
const IN_PROGRESS: [&str; 5] = ["NEW", "PENDING", "ZONE_1", "ZONE_2", "ZONE_3"];
const NOT_REACHED: [&str; 6] = [
    "FAILED",
    "ABORTED",
    "INACTIVE",
    "DEACTIVATED",
    "PENDING_DEACTIVATION",
    "PENDING_CANCELLATION",
];

fn activation_state(activation: &ActivationDoc) -> CdnPropagation {
    let status = activation.status.as_str();
    let known =
        status == "ACTIVE" || IN_PROGRESS.contains(&status) || NOT_REACHED.contains(&status);
    let raw = |field: &str, value: &str| {
        CdnPropagation::Unrecognized(Raw {
            field: field.into(),
            value: value.into(),
        })
    };
    match activation.activation_type.as_deref() {
        _ if !known => raw("status", status),
        None | Some("ACTIVATE") if status == "ACTIVE" => CdnPropagation::Done,
        None | Some("ACTIVATE") if IN_PROGRESS.contains(&status) => CdnPropagation::InProgress {
            state: status.into(),
            percent: None,
        },
        None | Some("ACTIVATE") => CdnPropagation::Failed {
            state: status.into(),
        },
        // The property is (being) taken off the network: the change does not stay there.
        Some("DEACTIVATE") => CdnPropagation::Failed {
            state: format!("DEACTIVATE {status}"),
        },
        Some(other) => raw("activationType", other),
    }
}

/// Step 4: the `origin` behavior that applies to `host` in the version's rule tree.
async fn read_origin(
    account: &Arc<Account>,
    scope: &Scope,
    base: &str,
    version: u64,
    host: &str,
    max_age: Duration,
) -> Result<Option<CdnOrigin>, ProviderError> {
    let path = format!("{base}/versions/{version}/rules?{}", scope.query);
    let answer = account
        .get(&path, PAPI, "papi.property.rules", max_age)
        .await;
    let Some(answer) = found(answer)? else {
        return Ok(None);
    };
    let doc: RulesDoc = Account::decode(&answer, "the PAPI rule tree")?;
    let mut origin = None;
    find_origin(&doc.rules, "rules".into(), host, &mut origin)?;
    let Some((options, at)) = origin else {
        return Ok(None);
    };
    let options: OriginOptions = Account::decode(options, &format!("the origin behavior at {at}"))?;
    Ok(Some(options.into_origin()))
}

/// The last `origin` behavior, in rule order, of the rules that apply to every request for
/// `host` (later rules override earlier ones), with where it is in the tree.
fn find_origin<'a>(
    rule: &'a Rule,
    at: String,
    host: &str,
    origin: &mut Option<(&'a Value, String)>,
) -> Result<(), ProviderError> {
    for (i, behavior) in rule.behaviors.iter().enumerate() {
        if behavior.name == "origin" {
            *origin = Some((&behavior.options, format!("{at}.behaviors[{i}].options")));
        }
    }
    for (i, child) in rule.children.iter().enumerate() {
        let at = format!("{at}.children[{i}]");
        if applies(child, &at, host)? {
            find_origin(child, at, host, origin)?;
        }
    }
    Ok(())
}

/// Whether a rule applies to every request for `host`: no criteria, or only `hostname`
/// criteria that match it. A rule with any other criterion (a path, a header) applies to some
/// requests only; one with an operator the operator does not know is not counted either.
fn applies(rule: &Rule, at: &str, host: &str) -> Result<bool, ProviderError> {
    let mut results = Vec::with_capacity(rule.criteria.len());
    for (i, criterion) in rule.criteria.iter().enumerate() {
        if criterion.name != "hostname" {
            return Ok(false);
        }
        let what = format!("the hostname criterion at {at}.criteria[{i}].options");
        let options: HostnameCriterion = Account::decode(&criterion.options, &what)?;
        let listed = options.values.iter().any(|v| glob(v, host));
        results.push(match options.match_operator.as_str() {
            "IS_ONE_OF" => listed,
            "IS_NOT_ONE_OF" => !listed,
            _ => return Ok(false),
        });
    }
    Ok(match rule.criteria_must_satisfy.as_deref() {
        None | Some("all") => results.iter().all(|r| *r),
        // A rule without criteria applies to every request, whatever it says to satisfy.
        Some("any") => results.is_empty() || results.iter().any(|r| *r),
        Some(_) => false,
    })
}

impl OriginOptions {
    /// Akamai reaches the origin on `httpPort` for HTTP requests and on `httpsPort` for HTTPS
    /// ones (doc B.7: no single "HTTPS only" flag, and `httpPort` is always there). The
    /// delivery is an HTTPS hostname, so its requests reach the origin over HTTPS whenever
    /// `httpsPort` is set: that is step 4's HTTPS Only. Only `httpPort` is HTTP only. An origin
    /// that is not a customer origin is kept raw.
    fn into_origin(self) -> CdnOrigin {
        let protocol = match (&self.origin_type, self.http_port, self.https_port) {
            (Some(kind), _, _) if kind != "CUSTOMER" => Err(Raw {
                field: "originType".into(),
                value: kind.clone(),
            }),
            (_, _, Some(_)) => Ok(OriginProtocol::HttpsOnly),
            (_, Some(_), None) => Ok(OriginProtocol::HttpOnly),
            (_, None, None) => Err(Raw {
                field: "httpsPort".into(),
                value: String::new(),
            }),
        };
        let name = self
            .hostname
            .clone()
            .or_else(|| self.origin_type.clone())
            .unwrap_or_else(|| "origin".into());
        CdnOrigin {
            name,
            sni_hostname: self
                .hostname
                .clone()
                .filter(|_| self.origin_sni == Some(true)),
            sni_reported: true,
            host: self.hostname,
            port: self.https_port.or(self.http_port),
            protocol,
            https_edge_protocol: self.https_port.is_some(),
        }
    }
}

// -------------------------------------------------------------------------------------------
// The view
// -------------------------------------------------------------------------------------------

/// The view; the certificate is deployed at the property hostname's edge hostname when it is
/// deployed to production and the edge hostname can serve it.
fn assemble(certificate: Option<CertRead>, edge: Option<EdgeRead>) -> CdnView {
    let certificate = certificate.map(|read| {
        let mut certificate = read.certificate;
        if let Some(edge) = &edge
            && read.deployed
            && edge.serves_certificate
            && let Some(target) = &edge.target_cname
        {
            certificate.deployments.push(CdnDeployment {
                platform: None,
                target_cname: target.clone(),
            });
        }
        certificate
    });
    let (edge, propagation, origin) = match edge {
        Some(read) => (Some(read.edge), Some(read.propagation), read.origin),
        None => (None, None, None),
    };
    CdnView {
        provider: "akamai",
        certificate,
        edge,
        propagation,
        origin,
    }
}

/// A 404 as `None`; other errors stay errors.
/// A hostname as compared: lower case, without a final dot.
fn normalize(hostname: &str) -> String {
    hostname.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Whether a certificate or criterion name (`*` for any characters, `?` for one) matches
/// `host` (normalized).
fn matches_name(name: &str, host: &str) -> bool {
    let name = normalize(name);
    match name.strip_prefix("*.") {
        // A certificate wildcard covers exactly one label.
        Some(parent) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => name == host,
    }
}

/// A PAPI hostname criterion value (`*` any characters, `?` one) against `host`.
fn glob(pattern: &str, host: &str) -> bool {
    let pattern = normalize(pattern).into_bytes();
    let host = host.as_bytes();
    let (mut p, mut h) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while h < host.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, h));
                p += 1;
            }
            Some(&c) if c == b'?' || Some(&c) == host.get(h) => {
                p += 1;
                h += 1;
            }
            _ => match star {
                Some((sp, sh)) => {
                    p = sp + 1;
                    h = sh + 1;
                    star = Some((sp, sh + 1));
                }
                None => return false,
            },
        }
    }
    pattern.iter().skip(p).all(|&c| c == b'*')
}

/// An ID the provider sent that may stand as one path segment as it is.
fn is_segment(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Percent-encodes a query value (all but RFC 3986 unreserved characters).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// An ID sent as a number or a string, as text.
fn id_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// -------------------------------------------------------------------------------------------
// Wire shapes (doc B.4 to B.8): only the fields read; unknown fields are ignored.
// -------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct Items<T> {
    items: Vec<T>,
}

#[derive(Deserialize)]
struct ContractsDoc {
    contracts: Items<ContractDoc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContractDoc {
    contract_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnrollmentDoc {
    csr: Csr,
    #[serde(default)]
    pending_changes: Vec<PendingChange>,
}

impl EnrollmentDoc {
    /// CN, then the SANs, each once.
    fn domains(&self) -> Vec<String> {
        let mut domains: Vec<String> = Vec::new();
        let names = self.csr.cn.iter().chain(self.csr.sans.iter().flatten());
        for name in names {
            if !domains.iter().any(|d| d.eq_ignore_ascii_case(name)) {
                domains.push(name.clone());
            }
        }
        domains
    }
}

#[derive(Deserialize)]
struct Csr {
    cn: Option<String>,
    sans: Option<Vec<String>>,
}

/// A pending change: `{location, changeType}` in enrollment v11, a bare location in v9.
#[derive(Deserialize)]
#[serde(untagged)]
enum PendingChange {
    Location(String),
    #[serde(rename_all = "camelCase")]
    Change {
        location: String,
        change_type: Option<String>,
    },
}

impl PendingChange {
    fn parts(&self) -> (&str, Option<&str>) {
        match self {
            PendingChange::Location(location) => (location, None),
            PendingChange::Change {
                location,
                change_type,
            } => (location, change_type.as_deref()),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChangeDoc {
    status_info: StatusInfo,
}

#[derive(Deserialize)]
struct StatusInfo {
    status: String,
    state: Option<String>,
    description: Option<String>,
    error: Option<ChangeError>,
}

#[derive(Deserialize)]
struct ChangeError {
    code: Option<String>,
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentDoc {
    network_configuration: Option<DeployedNetwork>,
    primary_certificate: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeployedNetwork {
    dns_names: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct PropertiesDoc {
    properties: Items<PropertyDoc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PropertyDoc {
    latest_version: u64,
    production_version: Option<u64>,
}

#[derive(Deserialize)]
struct HostnamesDoc {
    hostnames: Items<HostnameDoc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HostnameDoc {
    cname_from: String,
    cname_to: Option<String>,
    edge_hostname_id: Option<String>,
    cert_provisioning_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EdgeHostnamesDoc {
    edge_hostnames: Items<EdgeHostnameDoc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EdgeHostnameDoc {
    edge_hostname_domain: Option<String>,
    secure: Option<bool>,
    /// Sent on create only in the SDK (doc B.5); compared when present.
    cert_enrollment_id: Option<Value>,
}

#[derive(Deserialize)]
struct ActivationsDoc {
    activations: Items<ActivationDoc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActivationDoc {
    network: String,
    activation_type: Option<String>,
    status: String,
    property_version: Option<u64>,
    submit_date: Option<jiff::Timestamp>,
}

#[derive(Deserialize)]
struct RulesDoc {
    rules: Rule,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    behaviors: Vec<Behavior>,
    #[serde(default)]
    children: Vec<Rule>,
    #[serde(default)]
    criteria: Vec<Behavior>,
    criteria_must_satisfy: Option<String>,
}

/// A behavior or a criterion: a name and untyped options (doc B.7).
#[derive(Deserialize)]
struct Behavior {
    name: String,
    #[serde(default)]
    options: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OriginOptions {
    origin_type: Option<String>,
    hostname: Option<String>,
    http_port: Option<u16>,
    https_port: Option<u16>,
    origin_sni: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HostnameCriterion {
    match_operator: String,
    values: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::account::{AccountSettings, Transport};
    use crate::provider::akamai::AkamaiClient;
    use crate::provider::edgegrid::{self, Credentials};
    use crate::provider::http::Limits;
    use serde_json::json;
    use testkit::cdn::{
        Activation, CdnConfig, ChangeStatus, CpsDeployment, CpsDeployments, EdgeGridCredentials,
        EdgeHostname, Enrollment, FakeCdn, Property, PropertyHostname,
    };

    const PROPERTY: &str = "prp_1000";
    const SHOP: &str = "shop.example.com";
    const WWW: &str = "www.example.com";
    /// The edge hostnames' suffix: a reserved name, not one of Akamai's.
    const SUFFIX: &str = "edgekey.example";
    const MINUTE: Duration = Duration::from_secs(60);

    fn settings() -> AccountSettings {
        AccountSettings {
            akamai_contract_id: Some("ctr_C-0000".into()),
            akamai_group_id: Some("grp_1".into()),
            ..Default::default()
        }
    }

    fn account_with(
        fake: &FakeCdn,
        secret: Option<&str>,
        settings: AccountSettings,
    ) -> Arc<Account> {
        let api = crate::provider::http::test_client(true, Limits::default());
        let known = EdgeGridCredentials::placeholder();
        let credentials = Credentials {
            host: fake.addr().to_string(),
            client_token: known.client_token,
            client_secret: secret.map_or(known.client_secret, str::to_string),
            access_token: known.access_token,
            max_body: edgegrid::DEFAULT_MAX_BODY,
            headers_to_sign: Vec::new(),
        };
        let client = AkamaiClient::new(api, credentials, Some(&fake.base_url()));
        Arc::new(Account::new(
            Transport::Akamai(Box::new(client)),
            settings,
            100,
            None,
        ))
    }

    fn account(fake: &FakeCdn) -> Arc<Account> {
        account_with(fake, None, settings())
    }

    fn handles() -> Handles {
        Handles {
            certificate_id: "10".into(),
            edge_id: Some(PROPERTY.into()),
        }
    }

    fn edge_name(host: &str) -> String {
        format!("{host}.{SUFFIX}")
    }

    fn deployment(names: &[&str]) -> CpsDeployments {
        CpsDeployments {
            production: Some(CpsDeployment {
                certificate_pem: "-----BEGIN CERTIFICATE-----\n...".into(),
                trust_chain_pem: "-----BEGIN CERTIFICATE-----\n...".into(),
                expiry: "2026-02-05T13:21:21Z".into(),
                key_algorithm: "RSA".into(),
                dns_names: names.iter().map(|n| (*n).to_string()).collect(),
                secure_network: "enhanced-tls".into(),
            }),
            staging: None,
        }
    }

    fn property_hostname(host: &str, ehn: &str) -> PropertyHostname {
        PropertyHostname {
            cname_from: host.into(),
            cname_to: edge_name(host),
            edge_hostname_id: ehn.into(),
            cert_provisioning_type: "CPS_MANAGED".into(),
        }
    }

    fn edge_hostname(host: &str, ehn: &str, secure: bool) -> EdgeHostname {
        EdgeHostname {
            edge_hostname_id: ehn.into(),
            domain_prefix: host.into(),
            domain_suffix: SUFFIX.into(),
            secure,
            status: "CREATED".into(),
        }
    }

    fn activation(status: &str) -> Activation {
        Activation {
            activation_id: "atv_3000".into(),
            property_id: PROPERTY.into(),
            property_name: "shop".into(),
            property_version: 3,
            network: "PRODUCTION".into(),
            status: status.into(),
        }
    }

    fn origin(hostname: &str, http_port: Option<u16>, sni: bool) -> Value {
        let mut options = json!({
            "originType": "CUSTOMER", "hostname": hostname, "httpsPort": 443,
            "originSni": sni, "verificationMode": "PLATFORM_SETTINGS",
            "forwardHostHeader": "REQUEST_HOST_HEADER", "cacheKeyHostname": "ORIGIN_HOSTNAME",
            "compress": true, "enableTrueClientIp": false,
        });
        if let Some(port) = http_port {
            options["httpPort"] = json!(port);
        }
        json!({"name": "origin", "options": options})
    }

    /// The default rule's origin, another one for www only, and one for a path (ignored).
    fn rules() -> Value {
        json!({
            "name": "default", "criteria": [],
            "behaviors": [origin("origin.example.com", Some(80), true), {"name": "caching", "options": {}}],
            "children": [
                {"name": "www", "criteriaMustSatisfy": "all",
                 "criteria": [{"name": "hostname", "options": {"matchOperator": "IS_ONE_OF", "values": ["www.*"]}}],
                 "behaviors": [origin("www-origin.example.com", None, false)], "children": []},
                {"name": "api", "criteriaMustSatisfy": "all",
                 "criteria": [{"name": "path", "options": {"matchOperator": "MATCHES_ONE_OF", "values": ["/api/*"]}}],
                 "behaviors": [origin("api-origin.example.com", Some(80), true)], "children": []},
            ],
        })
    }

    /// Enrollment 10 (shop and www) deployed to production; property 1000 version 3 active on
    /// PRODUCTION with both hostnames (version 4, not active, has none); its rule tree.
    async fn healthy() -> FakeCdn {
        let fake = FakeCdn::start(CdnConfig::default()).await.expect("fake");
        fake.edit(|s| {
            let a = &mut s.akamai;
            a.put_contract("ctr_C-0000", "DIRECT_CUSTOMER");
            a.put_enrollment(&Enrollment::new(10, SHOP, &[SHOP, WWW]));
            a.set_deployments(10, &deployment(&[SHOP, WWW]));
            a.put_property(&Property {
                property_id: PROPERTY.into(),
                property_name: "shop".into(),
                contract_id: "ctr_C-0000".into(),
                group_id: "grp_1".into(),
                latest_version: 4,
                production_version: Some(3),
                staging_version: Some(4),
            });
            let hostnames = [
                property_hostname(SHOP, "ehn_2000"),
                property_hostname(WWW, "ehn_2001"),
            ];
            a.set_property_hostnames(PROPERTY, 3, &hostnames);
            a.set_property_hostnames(PROPERTY, 4, &[]);
            a.put_edge_hostname(&edge_hostname(SHOP, "ehn_2000", true));
            a.put_edge_hostname(&edge_hostname(WWW, "ehn_2001", true));
            a.put_activation(&activation("ACTIVE"));
            a.set_rules(PROPERTY, 3, rules());
        });
        fake
    }

    async fn read_host(fake: &FakeCdn, host: &str) -> Result<CdnView, ProviderError> {
        read(&account(fake), &handles(), host, MINUTE).await
    }

    #[tokio::test]
    async fn a_healthy_delivery_is_read_whole() {
        let fake = healthy().await;
        let view = read_host(&fake, SHOP).await.expect("the view");
        let origin = CdnOrigin {
            name: "origin.example.com".into(),
            host: Some("origin.example.com".into()),
            port: Some(443),
            protocol: Ok(OriginProtocol::HttpsOnly),
            https_edge_protocol: true,
            sni_hostname: Some("origin.example.com".into()),
            sni_reported: true,
        };
        let expected = CdnView {
            provider: "akamai",
            certificate: Some(CdnCertificate {
                id: "10".into(),
                state: CertificateState::Active,
                domains: vec![SHOP.into(), WWW.into()],
                deployments: vec![CdnDeployment {
                    platform: None,
                    target_cname: edge_name(SHOP),
                }],
            }),
            edge: Some(CdnEdge {
                id: PROPERTY.into(),
                hostname: SHOP.into(),
                platform: None,
                origin: Some("origin.example.com".into()),
                problems: vec![],
            }),
            propagation: Some(CdnPropagation::Done),
            origin: Some(origin),
        };
        assert_eq!(view, expected);
        assert_eq!(view.target_cname(), Some(edge_name(SHOP).as_str()));

        // www has its own origin by a hostname rule, reached over HTTPS only, without SNI;
        // the name is matched whatever its case or final dot.
        let view = read_host(&fake, "WWW.example.com.").await.expect("www");
        let origin = view.origin.as_ref().expect("an origin");
        assert_eq!(origin.name, "www-origin.example.com");
        assert_eq!(origin.protocol, Ok(OriginProtocol::HttpsOnly));
        assert_eq!(origin.sni_hostname, None);
        assert_eq!(view.target_cname(), Some(edge_name(WWW).as_str()));
    }

    #[tokio::test]
    async fn a_pending_change_is_read_from_its_change_status() {
        let fake = healthy().await;
        let mut enrollment = Enrollment::new(10, SHOP, &[SHOP, WWW]);
        enrollment.pending_changes = vec![(2, "new-certificate".into())];
        let dcv = ChangeStatus {
            status: "coodinate-domain-validation".into(),
            state: "awaiting-input".into(),
            description: "Coordinating domain name validation.".into(),
            allowed_input: vec!["lets-encrypt-challenges".into()],
        };
        fake.edit(|s| {
            s.akamai.put_enrollment(&enrollment);
            s.akamai.put_change(10, 2, &dcv);
            s.akamai.deployments.clear();
        });
        let view = read_host(&fake, SHOP).await.expect("the view");
        let certificate = view.certificate.expect("a certificate");
        assert_eq!(
            certificate.state,
            CertificateState::DomainValidationPending {
                domains: vec![SHOP.into(), WWW.into()]
            }
        );
        // Not deployed: no target CNAME yet.
        assert_eq!(certificate.deployments, vec![]);
        assert_eq!(fake.count("GET", "/cps/v2/enrollments/10/changes/2"), 1);

        // Another stage, named as CPS names it.
        let mut third_party = dcv.clone();
        third_party.status = "wait-upload-third-party".into();
        fake.edit(|s| s.akamai.put_change(10, 2, &third_party));
        let state = |view: CdnView| view.certificate.expect("a certificate").state;
        let view = read(&account(&fake), &handles(), SHOP, MINUTE).await;
        assert_eq!(
            state(view.expect("the view")),
            CertificateState::Pending {
                stage: "wait-upload-third-party (awaiting-input)".into()
            }
        );

        // An error in the change needs attention, deployed or not.
        fake.edit(|s| {
            s.akamai.changes.insert(
                (10, 2),
                json!({"statusInfo": {"status": "wait-review-pre-verification-safety-checks",
                    "state": "awaiting-input", "description": "Waiting for review.",
                    "error": {"code": "011.0001", "description": "The CAA record forbids the CA.",
                              "timestamp": "2025-01-01T00:00:00Z"}},
                    "allowedInput": []}),
            );
            s.akamai.set_deployments(10, &deployment(&[SHOP, WWW]));
        });
        let view = read(&account(&fake), &handles(), SHOP, MINUTE).await;
        assert_eq!(
            state(view.expect("the view")),
            CertificateState::NeedsAttention {
                message: "The CAA record forbids the CA. (code 011.0001)".into()
            }
        );

        // A renewal waiting for validation while the deployed certificate serves the
        // hostname: the hostname is served.
        fake.edit(|s| s.akamai.put_change(10, 2, &dcv));
        let view = read(&account(&fake), &handles(), SHOP, MINUTE).await;
        let certificate = view.expect("the view").certificate.expect("a certificate");
        assert_eq!(certificate.state, CertificateState::Active);
        assert_eq!(certificate.deployments.len(), 1);
    }

    #[tokio::test]
    async fn an_enrollment_without_deployment_or_change_is_not_deployed() {
        let fake = healthy().await;
        fake.edit(|s| s.akamai.deployments.clear());
        let view = read_host(&fake, SHOP).await.expect("the view");
        let certificate = view.certificate.as_ref().expect("a certificate");
        assert_eq!(
            certificate.state,
            CertificateState::Pending {
                stage: "not deployed to production".into()
            }
        );
        assert_eq!(view.target_cname(), None);
    }

    #[tokio::test]
    async fn propagation_follows_the_newest_production_activation() {
        let fake = healthy().await;
        let mut staging = activation("PENDING");
        staging.activation_id = "atv_3001".into();
        staging.network = "STAGING".into();
        fake.edit(|s| {
            s.akamai.put_activation(&activation("PENDING"));
            s.akamai.put_activation(&staging);
        });
        let account = account(&fake);
        let view = read(&account, &handles(), SHOP, MINUTE)
            .await
            .expect("view");
        assert_eq!(
            view.propagation,
            Some(CdnPropagation::InProgress {
                state: "PENDING".into(),
                percent: None
            })
        );

        fake.edit(|s| s.akamai.put_activation(&activation("ACTIVE")));
        let view = read(&account, &handles(), SHOP, Duration::ZERO).await;
        assert_eq!(view.expect("view").propagation, Some(CdnPropagation::Done));

        // A newer activation that failed.
        let mut failed = activation("FAILED");
        failed.activation_id = "atv_3002".into();
        failed.property_version = 4;
        fake.edit(|s| s.akamai.put_activation(&failed));
        let view = read(&account, &handles(), SHOP, Duration::ZERO).await;
        assert_eq!(
            view.expect("view").propagation,
            Some(CdnPropagation::Failed {
                state: "FAILED".into()
            })
        );

        // Never activated on PRODUCTION.
        fake.edit(|s| s.akamai.activations.clear());
        let view = read(&account, &handles(), SHOP, Duration::ZERO).await;
        assert!(matches!(
            view.expect("view").propagation,
            Some(CdnPropagation::Failed { .. })
        ));
    }

    #[tokio::test]
    async fn an_unknown_activation_status_is_kept_raw() {
        let fake = healthy().await;
        fake.edit(|s| s.akamai.put_activation(&activation("ZONE_4")));
        let view = read_host(&fake, SHOP).await.expect("the view");
        assert_eq!(
            view.propagation,
            Some(CdnPropagation::Unrecognized(Raw {
                field: "status".into(),
                value: "ZONE_4".into()
            }))
        );
    }

    #[tokio::test]
    async fn a_hostname_not_on_the_property_has_no_edge() {
        let fake = healthy().await;
        let view = read_host(&fake, "other.example.com").await.expect("view");
        assert_eq!(view.edge, None);
        assert_eq!(view.propagation, None);
        assert_eq!(view.origin, None);
        let certificate = view.certificate.expect("the certificate is still read");
        assert_eq!(certificate.state, CertificateState::Active);
        assert_eq!(certificate.deployments, vec![]);
        // Nothing is read for an edge that is not there.
        assert_eq!(
            fake.count("GET", "/papi/v1/properties/prp_1000/activations"),
            0
        );

        // A property that is not there either, nor one the ID cannot name.
        for edge_id in ["prp_9999", "9999", "../contracts"] {
            let handles = Handles {
                edge_id: Some(edge_id.into()),
                ..handles()
            };
            let view = read(&account(&fake), &handles, SHOP, MINUTE).await;
            assert_eq!(view.expect("view").edge, None, "{edge_id}");
        }
        // `9999` is read as `prp_9999`; `../contracts` names nothing and is not asked.
        assert_eq!(fake.count("GET", "/papi/v1/properties/prp_9999"), 2);
        assert!(fake.requests().iter().all(|r| !r.path.contains("..")));
    }

    #[tokio::test]
    async fn a_missing_enrollment_has_no_certificate() {
        let fake = healthy().await;
        let handles = Handles {
            certificate_id: "11".into(),
            ..handles()
        };
        let view = read(&account(&fake), &handles, SHOP, MINUTE).await;
        let view = view.expect("the view");
        assert_eq!(view.certificate, None);
        assert!(view.edge.is_some());
        assert_eq!(view.target_cname(), None);
    }

    #[tokio::test]
    async fn an_edge_hostname_that_cannot_serve_the_certificate_is_a_problem() {
        let fake = healthy().await;
        fake.edit(|s| {
            s.akamai
                .put_edge_hostname(&edge_hostname(SHOP, "ehn_2000", false))
        });
        let view = read_host(&fake, SHOP).await.expect("the view");
        let edge = view.edge.as_ref().expect("an edge");
        assert_eq!(
            edge.problems,
            vec![format!(
                "edge hostname {} is not secure: it cannot serve HTTPS with a CPS certificate.",
                edge_name(SHOP)
            )]
        );
        assert_eq!(view.target_cname(), None);

        fake.edit(|s| {
            s.akamai
                .put_edge_hostname(&edge_hostname(SHOP, "ehn_2000", true));
            s.akamai.edge_hostnames[0]["certEnrollmentId"] = json!(12);
        });
        let view = read(&account(&fake), &handles(), SHOP, MINUTE).await;
        let view = view.expect("the view");
        let problems = &view.edge.as_ref().expect("an edge").problems;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("enrollment 12, not 10"),
            "{problems:?}"
        );
        assert_eq!(view.target_cname(), None);

        // Its own enrollment is no problem; an edge hostname that cannot be found was not
        // checked, which is no problem of the configuration (never a False step 2).
        fake.edit(|s| s.akamai.edge_hostnames[0]["certEnrollmentId"] = json!(10));
        let view = read(&account(&fake), &handles(), SHOP, MINUTE).await;
        assert_eq!(
            view.expect("view").edge.expect("edge").problems,
            Vec::<String>::new()
        );
        fake.edit(|s| s.akamai.edge_hostnames.clear());
        let view = read(&account(&fake), &handles(), SHOP, MINUTE)
            .await
            .expect("view");
        assert_eq!(
            view.edge.as_ref().expect("edge").problems,
            Vec::<String>::new()
        );
        assert!(
            view.target_cname().is_some(),
            "its cnameTo is still the target"
        );
    }

    #[tokio::test]
    async fn a_changed_field_type_names_its_json_path() {
        let fake = healthy().await;
        fake.edit(|s| {
            if let Some(property) = s.akamai.properties.get_mut(PROPERTY) {
                property["productionVersion"] = json!("three");
            }
        });
        let error = read_host(&fake, SHOP).await.expect_err("a wrong type");
        let ProviderError::Unexpected(message) = &error else {
            panic!("{error:?}");
        };
        assert!(
            message.contains("properties.items[0].productionVersion"),
            "{message}"
        );

        // In a behavior's untyped options too.
        let fake = healthy().await;
        fake.edit(|s| {
            let mut tree = rules();
            tree["behaviors"][0]["options"]["httpsPort"] = json!("443");
            s.akamai.set_rules(PROPERTY, 3, tree);
        });
        let error = read_host(&fake, SHOP).await.expect_err("a wrong type");
        let ProviderError::Unexpected(message) = &error else {
            panic!("{error:?}");
        };
        assert!(message.contains("rules.behaviors[0].options"), "{message}");
        assert!(message.contains("httpsPort"), "{message}");
    }

    #[tokio::test]
    async fn wrong_credentials_and_settings_are_errors() {
        let fake = healthy().await;
        let secret = "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy=";
        let wrong = account_with(&fake, Some(secret), settings());
        let error = read(&wrong, &handles(), SHOP, MINUTE)
            .await
            .expect_err("401");
        assert!(matches!(error, ProviderError::Unauthorized(_)), "{error:?}");
        assert!(!error.to_string().contains("yyyy"), "{error}");
        let asked = fake.requests().len();

        let unscoped = account_with(&fake, None, AccountSettings::default());
        for error in [
            read(&unscoped, &handles(), SHOP, MINUTE)
                .await
                .expect_err("no contract"),
            check_access(&unscoped).await.expect_err("no contract"),
        ] {
            assert!(
                matches!(&error, ProviderError::Account(m) if m.contains("contractId and groupId")),
                "{error:?}"
            );
        }
        let no_edge = Handles {
            edge_id: None,
            ..handles()
        };
        let error = read(&account(&fake), &no_edge, SHOP, MINUTE).await;
        assert!(
            matches!(&error, Err(ProviderError::Spec(m)) if m.contains("spec.cdn.edgeCnameId")),
            "{error:?}"
        );
        // Neither is asked.
        assert_eq!(fake.requests().len(), asked);
    }

    #[tokio::test]
    async fn check_access_reads_the_contracts() {
        let fake = healthy().await;
        let account = account(&fake);
        check_access(&account).await.expect("access");
        let other = account_with(
            &fake,
            None,
            AccountSettings {
                akamai_contract_id: Some("C-9999".into()),
                ..settings()
            },
        );
        let error = check_access(&other).await.expect_err("another contract");
        assert!(
            matches!(&error, ProviderError::Account(m) if m.contains("C-9999")),
            "{error:?}"
        );

        fake.set_akamai_forbidden(true);
        let error = check_access(&account).await.expect_err("403");
        assert!(matches!(error, ProviderError::Forbidden(_)), "{error:?}");
        assert_eq!(fake.count("GET", "/papi/v1/contracts"), 3);
    }

    #[tokio::test]
    async fn deliveries_on_one_property_share_its_reads() {
        let fake = healthy().await;
        let account = account(&fake);
        let handles = handles();
        let (shop, www) = futures::join!(
            read(&account, &handles, SHOP, MINUTE),
            read(&account, &handles, WWW, MINUTE),
        );
        assert_eq!(
            shop.expect("shop").target_cname(),
            Some(edge_name(SHOP).as_str())
        );
        assert!(www.expect("www").edge.is_some());
        // Later, within max_age: nothing is asked again.
        let www = read(&account, &handles, WWW, MINUTE)
            .await
            .expect("www again");
        assert_eq!(www.target_cname(), Some(edge_name(WWW).as_str()));
        let base = "/papi/v1/properties/prp_1000";
        for path in [
            "/cps/v2/enrollments/10".to_string(),
            "/cps/v2/enrollments/10/deployments/production".into(),
            base.into(),
            format!("{base}/versions/3/hostnames"),
            format!("{base}/activations"),
            format!("{base}/versions/3/rules"),
            "/papi/v1/edgehostnames/ehn_2000".into(),
            "/papi/v1/edgehostnames/ehn_2001".into(),
        ] {
            assert_eq!(fake.count("GET", &path), 1, "{path}");
        }
        assert_eq!(fake.requests().len(), 8);
        assert!(www.origin.is_some());
    }

    #[test]
    fn names_and_locations_are_matched_exactly() {
        assert!(matches_name("*.example.com", "shop.example.com"));
        assert!(!matches_name("*.example.com", "a.shop.example.com"));
        assert!(!matches_name("*.example.com", "example.com"));
        assert!(matches_name("Shop.Example.com.", "shop.example.com"));
        assert!(glob("www.*", "www.example.com"));
        assert!(glob("*.example.???", "a.b.example.com"));
        assert!(!glob("www.*", "shop.example.com"));
        assert!(!glob("shop.example.com", "shop.example.co"));
        assert_eq!(change_id("/cps-api/enrollments/10/changes/2", 10), Some(2));
        assert_eq!(change_id("/cps-api/enrollments/11/changes/2", 10), None);
        assert_eq!(change_id("/elsewhere", 10), None);
        assert_eq!(property_id(" 1000 "), Some("prp_1000".into()));
        assert_eq!(property_id("prp_x"), None);
        assert_eq!(encode("ctr_C-0000&x=1"), "ctr_C-0000%26x%3D1");
    }

    #[test]
    fn enrollment_v9_pending_changes_are_bare_locations() {
        let v9 = json!({"csr": {"cn": SHOP, "sans": [SHOP]},
            "pendingChanges": ["/cps-api/enrollments/10/changes/2"]});
        let doc: EnrollmentDoc = Account::decode(&v9, "v9").expect("v9");
        assert_eq!(
            doc.pending_changes[0].parts(),
            ("/cps-api/enrollments/10/changes/2", None)
        );
        assert_eq!(doc.domains(), vec![SHOP.to_string()]);
    }
}
