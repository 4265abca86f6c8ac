//! Provider mode in `check`: the CdnAccounts and ClusterCdnAccounts of the manifests, with
//! credentials from a Secret among the manifests or, failing that, from environment variables
//! (never from a flag, so that they stay out of shell history). One run is one cycle: every
//! answer of an account is shared by all of its deliveries.

use super::input::Manifests;
use crate::api::account::{CdnAccountSpec, Provider};
use crate::api::{AccountKind, CdnSpec};
use crate::checks::cdn::CdnObserved;
use crate::probe::ProbeConfig;
use crate::provider::account::Account;
use crate::provider::http::ApiClients;
use crate::provider::view::{Handles, ProviderError};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// The environment variables read when the manifests hold no credentials Secret, by provider:
/// (variable, Secret key). Akamai's are the names its own tools read (`.edgerc` as variables).
pub const EDGECAST_ENV: [(&str, &str); 3] = [
    ("HTTPSDELIVERY_EDGECAST_REST_TOKEN", "rest_token"),
    ("HTTPSDELIVERY_EDGECAST_CLIENT_ID", "client_id"),
    ("HTTPSDELIVERY_EDGECAST_CLIENT_SECRET", "client_secret"),
];
pub const AKAMAI_ENV: [(&str, &str); 4] = [
    ("AKAMAI_HOST", "host"),
    ("AKAMAI_CLIENT_TOKEN", "client_token"),
    ("AKAMAI_CLIENT_SECRET", "client_secret"),
    ("AKAMAI_ACCESS_TOKEN", "access_token"),
];

type Key = crate::api::AccountKey;

/// Every account the deliveries name, built once.
pub struct CliAccounts {
    accounts: HashMap<Key, Result<Arc<Account>, ProviderError>>,
}

impl CliAccounts {
    /// The accounts of `manifests`; `env` looks up an environment variable.
    pub fn new(
        manifests: &Manifests,
        probe: &ProbeConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> CliAccounts {
        let api = ApiClients::for_probe_config(probe);
        let mut accounts = HashMap::new();
        for d in &manifests.deliveries {
            let Some(cdn) = &d.delivery.spec.cdn else {
                continue;
            };
            let key = cdn.account_ref.key(&d.namespace);
            if accounts.contains_key(&key) {
                continue;
            }
            let account = match (manifests.accounts.get(&key), &api) {
                (None, _) => Err(ProviderError::Account(missing_account(&key))),
                (Some(_), Err(e)) => Err(ProviderError::Account(e.clone())),
                (Some(spec), Ok(api)) => credentials(manifests, &key, spec, &env).and_then(|c| {
                    let api = api.for_kind(key.0).clone();
                    crate::provider::build_account(spec, &c, api, None).map(Arc::new)
                }),
            };
            accounts.insert(key, account);
        }
        CliAccounts { accounts }
    }

    /// What the CDN has for a delivery in `namespace`.
    pub async fn read(&self, namespace: &str, cdn: &CdnSpec, hostname: &str) -> CdnObserved {
        let key = cdn.account_ref.key(namespace);
        let account = match self.accounts.get(&key) {
            Some(Ok(account)) => account.clone(),
            Some(Err(e)) => return Err(e.clone()),
            None => return Err(ProviderError::Account(missing_account(&key))),
        };
        let handles = Handles {
            certificate_id: cdn.certificate_id.clone(),
            edge_id: cdn.edge_cname_id.clone(),
        };
        crate::provider::read(&account, &handles, hostname, Duration::MAX).await
    }
}

fn missing_account((kind, namespace, name): &Key) -> String {
    match kind {
        AccountKind::CdnAccount => {
            format!("no CdnAccount {namespace}/{name} among the manifests given to check")
        }
        AccountKind::ClusterCdnAccount => {
            format!("no ClusterCdnAccount {name} among the manifests given to check")
        }
    }
}

/// The credentials: the account's Secret among the manifests (a ClusterCdnAccount's, in any
/// namespace, when only one Secret has that name), else the provider's environment variables.
fn credentials(
    manifests: &Manifests,
    (kind, namespace, _): &Key,
    spec: &CdnAccountSpec,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, ProviderError> {
    let name = &spec.credentials_secret_ref.name;
    let found: Vec<&BTreeMap<String, String>> = match kind {
        AccountKind::CdnAccount => manifests
            .credentials
            .get(&(namespace.clone(), name.clone()))
            .into_iter()
            .collect(),
        AccountKind::ClusterCdnAccount => manifests
            .credentials
            .iter()
            .filter(|((_, n), _)| n == name)
            .map(|(_, c)| c)
            .collect(),
    };
    if let [one] = found.as_slice() {
        return Ok((*one).clone());
    }
    let variables: &[(&str, &str)] = match spec.provider {
        Provider::Edgecast => &EDGECAST_ENV,
        Provider::Akamai => &AKAMAI_ENV,
    };
    let from_env: BTreeMap<String, String> = variables
        .iter()
        .filter_map(|(var, key)| env(var).map(|v| (key.to_string(), v)))
        .collect();
    if from_env.is_empty() {
        let names: Vec<&str> = variables.iter().map(|(v, _)| *v).collect();
        return Err(ProviderError::Account(format!(
            "no credentials: neither the Secret {name:?} is among the manifests nor are {} set",
            names.join(", ")
        )));
    }
    Ok(from_env)
}
