//! Provider mode: reading steps 1 to 4 from the CDN's own API. One module per provider reads
//! its API into the provider-neutral [`view::CdnView`]; a third provider is one more reader and
//! one more arm in [`read`] and [`check_access`]. The API shapes are in
//! `docs/design/provider-apis.md`.

pub mod account;
pub mod akamai;
pub mod akamai_read;
pub mod edgecast_auth;
pub mod edgecast_read;
pub mod edgegrid;
pub mod http;
pub mod view;

use crate::api::account::{CdnAccountSpec, Provider};
use account::{Account, AccountSettings, EdgecastTransport, RequestObserver, Transport};
use http::ApiClient;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use view::{CdnView, Handles, ProviderError};

/// Edgecast's CPS and Origins API, unless the account overrides it.
pub const EDGECAST_BASE_URL: &str = "https://api.vdms.io";
/// Edgecast's MCC API (edge CNAMEs, customer origins), on its own (legacy) host.
pub const EDGECAST_MCC_BASE_URL: &str = "https://api.edgecast.com";
/// Requests per second to one account, unless it says otherwise.
pub const DEFAULT_REQUESTS_PER_SECOND: u32 = 10;

/// Everything the CDN has for one delivery. The provider is `edgecast` or `akamai` (the only
/// two `Account::new` makes).
pub async fn read(
    account: &Arc<Account>,
    handles: &Handles,
    hostname: &str,
    max_age: Duration,
) -> Result<CdnView, ProviderError> {
    match account.provider {
        "edgecast" => edgecast_read::read(account, handles, hostname, max_age).await,
        _ => akamai_read::read(account, handles, hostname, max_age).await,
    }
}

/// A cheap authenticated read, for the account's Ready condition.
pub async fn check_access(account: &Arc<Account>) -> Result<(), ProviderError> {
    match account.provider {
        "edgecast" => edgecast_read::check_access(account).await,
        _ => akamai_read::check_access(account).await,
    }
}

/// A credentials Secret's keys as text (`data` decoded, `stringData` as written, which wins as
/// the API server merges them); keys that are not UTF-8 are left out. Never logged.
pub fn credentials_of(secret: &k8s_openapi::api::core::v1::Secret) -> BTreeMap<String, String> {
    let mut text = BTreeMap::new();
    for (k, v) in secret.data.iter().flatten() {
        if let Ok(value) = String::from_utf8(v.0.clone()) {
            text.insert(k.clone(), value);
        }
    }
    for (k, v) in secret.string_data.iter().flatten() {
        text.insert(k.clone(), v.clone());
    }
    text
}

/// A credential from the Secret's data, trimmed (a trailing newline from `echo` is common).
fn key<'a>(data: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    data.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// The account of `spec`, with `credentials` (the Secret's data as text). A missing key is an
/// error that names it, never its value.
pub fn build_account(
    spec: &CdnAccountSpec,
    credentials: &BTreeMap<String, String>,
    api: ApiClient,
    observer: Option<RequestObserver>,
) -> Result<Account, ProviderError> {
    let rate = spec
        .requests_per_second
        .unwrap_or(DEFAULT_REQUESTS_PER_SECOND);
    let (transport, settings) = match spec.provider {
        Provider::Edgecast => edgecast_transport(spec, credentials, api)?,
        Provider::Akamai => akamai_transport(spec, credentials, api)?,
    };
    Ok(Account::new(transport, settings, rate, observer))
}

fn missing(spec: &CdnAccountSpec, keys: &str) -> ProviderError {
    ProviderError::Account(format!(
        "the credentials Secret {:?} lacks {keys}",
        spec.credentials_secret_ref.name
    ))
}

/// How edgecast requests are sent, and the identifiers its paths need.
fn edgecast_transport(
    spec: &CdnAccountSpec,
    credentials: &BTreeMap<String, String>,
    api: ApiClient,
) -> Result<(Transport, AccountSettings), ProviderError> {
    let settings = spec
        .edgecast
        .as_ref()
        .ok_or_else(|| ProviderError::Account("provider edgecast needs spec.edgecast".into()))?;
    let rest_token = key(credentials, "rest_token").map(str::to_string);
    let oauth = match (
        key(credentials, "client_id"),
        key(credentials, "client_secret"),
    ) {
        (Some(id), Some(secret)) => Some((id, secret)),
        _ => None,
    };
    if rest_token.is_none() {
        return Err(missing(spec, "rest_token (the MCC API needs it)"));
    }
    let token_url = settings
        .token_url
        .as_deref()
        .unwrap_or(edgecast_auth::DEFAULT_TOKEN_URL);
    let source = |scope: &str| {
        oauth.map(|(id, secret)| {
            edgecast_auth::TokenSource::new(api.clone(), token_url, id, secret, scope)
        })
    };
    let transport = Transport::Edgecast(Box::new(EdgecastTransport {
        base_url: settings
            .base_url
            .as_deref()
            .unwrap_or(EDGECAST_BASE_URL)
            .trim_end_matches('/')
            .to_string(),
        mcc_base_url: settings
            .mcc_base_url
            .as_deref()
            .or(settings.base_url.as_deref())
            .unwrap_or(EDGECAST_MCC_BASE_URL)
            .trim_end_matches('/')
            .to_string(),
        rest_token,
        cps_tokens: source("sec.cps.certificates"),
        origin_tokens: source("cdn.origins"),
        api,
    }));
    let settings = AccountSettings {
        edgecast_account_number: Some(settings.account_number.clone()),
        ..Default::default()
    };
    Ok((transport, settings))
}

/// How akamai requests are sent, and the identifiers its paths need.
fn akamai_transport(
    spec: &CdnAccountSpec,
    credentials: &BTreeMap<String, String>,
    api: ApiClient,
) -> Result<(Transport, AccountSettings), ProviderError> {
    let settings = spec
        .akamai
        .as_ref()
        .ok_or_else(|| ProviderError::Account("provider akamai needs spec.akamai".into()))?;
    let get = |name: &str| {
        key(credentials, name)
            .map(str::to_string)
            .ok_or_else(|| missing(spec, name))
    };
    let credentials = edgegrid::Credentials {
        host: get("host")?,
        client_token: get("client_token")?,
        client_secret: get("client_secret")?,
        access_token: get("access_token")?,
        max_body: edgegrid::DEFAULT_MAX_BODY,
        headers_to_sign: Vec::new(),
    };
    let client = akamai::AkamaiClient::new(api, credentials, settings.base_url.as_deref());
    let settings = AccountSettings {
        akamai_contract_id: Some(settings.contract_id.clone()),
        akamai_group_id: Some(settings.group_id.clone()),
        ..Default::default()
    };
    Ok((Transport::Akamai(Box::new(client)), settings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::account::{CredentialsReference, EdgecastSettings};

    fn edgecast(base_url: Option<&str>, mcc_base_url: Option<&str>) -> CdnAccountSpec {
        CdnAccountSpec {
            provider: Provider::Edgecast,
            edgecast: Some(EdgecastSettings {
                account_number: "0001".into(),
                base_url: base_url.map(str::to_string),
                mcc_base_url: mcc_base_url.map(str::to_string),
                token_url: None,
            }),
            akamai: None,
            credentials_secret_ref: CredentialsReference { name: "x".into() },
            requests_per_second: None,
        }
    }

    fn bases(spec: &CdnAccountSpec) -> (String, String) {
        let credentials = BTreeMap::from([("rest_token".to_string(), "t".to_string())]);
        let api = http::test_client(false, http::Limits::default());
        match edgecast_transport(spec, &credentials, api)
            .expect("transport")
            .0
        {
            Transport::Edgecast(t) => (t.base_url, t.mcc_base_url),
            Transport::Akamai(_) => panic!("not Edgecast"),
        }
    }

    /// MCC lives on its own host (doc A.1); one overridden base URL serves both.
    #[test]
    fn edgecast_mcc_and_cps_have_their_own_hosts_unless_overridden() {
        assert_eq!(
            bases(&edgecast(None, None)),
            (EDGECAST_BASE_URL.into(), EDGECAST_MCC_BASE_URL.into())
        );
        assert_eq!(
            bases(&edgecast(Some("https://proxy.example/"), None)),
            (
                "https://proxy.example".into(),
                "https://proxy.example".into()
            )
        );
        assert_eq!(
            bases(&edgecast(None, Some("https://mcc.example"))),
            (EDGECAST_BASE_URL.into(), "https://mcc.example".into())
        );
    }

    #[test]
    fn a_missing_key_is_named_and_no_value_is_shown() {
        let spec = edgecast(None, None);
        let api = http::test_client(false, http::Limits::default());
        let only_client =
            BTreeMap::from([("client_secret".to_string(), "s3cr3t-value".to_string())]);
        let Err(error) = build_account(&spec, &only_client, api, None) else {
            panic!("an account without a REST token");
        };
        assert!(error.to_string().contains("rest_token"), "{error}");
        assert!(!error.to_string().contains("s3cr3t-value"), "{error}");
    }
}
