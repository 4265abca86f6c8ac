//! CDN accounts in the cluster: the registry deliveries read through (one [`Account`] per
//! CdnAccount or ClusterCdnAccount, kept while neither it nor its Secret changes, so that its
//! shared answers, budget and OAuth2 token live across reconciles), and the accounts' own
//! status (Ready once a cheap authenticated read succeeds).

use super::FIELD_MANAGER;
use super::scope::{Events, WatchScope, scoped_watch};
use crate::api::account::{CdnAccount, CdnAccountSpec, CdnAccountStatus, ClusterCdnAccount};
use crate::api::conditions::merge_conditions;
use crate::api::{AccountKind, AccountReference, ConditionStatus, ConditionType, Reason, Verdict};
use crate::probe::ProbeConfig;
use crate::provider::account::{Account, RequestObserver};
use crate::provider::http::ApiClients;
use crate::provider::view::ProviderError;
use crate::provider::{build_account, check_access};
use crate::telemetry::Metrics;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long an account and its Secret are trusted before they are read again.
const REREAD_AFTER: Duration = Duration::from_secs(30);

type Key = crate::api::AccountKey;

struct Entry {
    /// uid, generation and the Secret's resourceVersion: a change builds a new Account.
    fingerprint: String,
    account: Arc<Account>,
    read_at: Instant,
}

pub struct Accounts {
    api: Option<ApiClients>,
    /// Where ClusterCdnAccounts' Secrets are read.
    operator_namespace: String,
    entries: tokio::sync::Mutex<HashMap<Key, Entry>>,
    observer: Option<RequestObserver>,
    /// Why no API client could be made (bad CA files), reported on every account.
    setup_error: Mutex<Option<String>>,
}

impl Accounts {
    /// Accounts whose API clients trust the web roots and `probe`'s extra CA files; a
    /// CdnAccount's addresses pass `probe`'s target guard (see [`ApiClients`]).
    pub fn new(probe: &ProbeConfig, operator_namespace: String, metrics: Option<Metrics>) -> Self {
        let (api, setup_error) = match ApiClients::for_probe_config(probe) {
            Ok(api) => (Some(api), None),
            Err(e) => (None, Some(e)),
        };
        let observer: Option<RequestObserver> = metrics.map(|m| {
            Arc::new(
                move |p: &'static str, e: &'static str, o: &'static str, s: f64| {
                    m.observe_provider_request(p, e, o, s)
                },
            ) as RequestObserver
        });
        Accounts {
            api,
            operator_namespace,
            entries: tokio::sync::Mutex::new(HashMap::new()),
            observer,
            setup_error: Mutex::new(setup_error),
        }
    }

    /// The account `reference` names for a delivery in `namespace`.
    pub async fn get(
        &self,
        client: &Client,
        namespace: &str,
        reference: &AccountReference,
    ) -> Result<Arc<Account>, ProviderError> {
        let key = reference.key(namespace);
        let mut entries = self.entries.lock().await;
        if let Some(e) = entries.get(&key)
            && e.read_at.elapsed() < REREAD_AFTER
        {
            return Ok(e.account.clone());
        }
        let (spec, uid, generation) = match read_account(client, &key).await {
            Ok(read) => read,
            Err(error) => {
                // A deleted account's shared answers are dropped with it.
                if matches!(error, ProviderError::Account(_)) {
                    entries.remove(&key);
                }
                return Err(error);
            }
        };
        let secret_namespace = match key.0 {
            AccountKind::CdnAccount => key.1.clone(),
            AccountKind::ClusterCdnAccount => self.operator_namespace.clone(),
        };
        let (data, version) = read_credentials(client, &secret_namespace, &spec).await?;
        let fingerprint = format!("{uid}/{generation}/{version}");
        if let Some(e) = entries.get_mut(&key)
            && e.fingerprint == fingerprint
        {
            e.read_at = Instant::now();
            return Ok(e.account.clone());
        }
        let api = self
            .api
            .as_ref()
            .map(|a| a.for_kind(key.0).clone())
            .ok_or_else(|| {
                let why = self
                    .setup_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                ProviderError::Account(why.unwrap_or_default())
            })?;
        let account = Arc::new(build_account(&spec, &data, api, self.observer.clone())?);
        entries.insert(
            key,
            Entry {
                fingerprint,
                account: account.clone(),
                read_at: Instant::now(),
            },
        );
        Ok(account)
    }
}

async fn read_account(
    client: &Client,
    key: &Key,
) -> Result<(CdnAccountSpec, String, i64), ProviderError> {
    let (kind, namespace, name) = key;
    let not_found = |e: kube::Error| match e {
        kube::Error::Api(s) if s.is_not_found() => ProviderError::Account(match kind {
            AccountKind::CdnAccount => {
                format!("there is no CdnAccount {name:?} in namespace {namespace:?}")
            }
            AccountKind::ClusterCdnAccount => format!("there is no ClusterCdnAccount {name:?}"),
        }),
        // Not a passing failure: the operator's RBAC does not grant it (the chart's Roles, with
        // watchNamespaces, cannot grant a cluster-scoped object).
        kube::Error::Api(s) if s.code == 403 => ProviderError::Account(match kind {
            AccountKind::CdnAccount => format!(
                "the operator may not read CdnAccount {name:?} in namespace {namespace:?} \
                 (forbidden): is the namespace watched?"
            ),
            AccountKind::ClusterCdnAccount => format!(
                "the operator may not read ClusterCdnAccount {name:?} (forbidden): with \
                 watchNamespaces it has Roles only, which cannot grant a cluster-scoped \
                 object; use a CdnAccount in the delivery's namespace, or \
                 watchNamespaceSelector"
            ),
        }),
        other => ProviderError::Unavailable(format!(
            "cannot read the account from the API server: {other}"
        )),
    };
    match kind {
        AccountKind::CdnAccount => {
            let a = Api::<CdnAccount>::namespaced(client.clone(), namespace)
                .get(name)
                .await
                .map_err(not_found)?;
            Ok((
                a.spec.clone(),
                a.uid().unwrap_or_default(),
                a.metadata.generation.unwrap_or_default(),
            ))
        }
        AccountKind::ClusterCdnAccount => {
            let a = Api::<ClusterCdnAccount>::all(client.clone())
                .get(name)
                .await
                .map_err(not_found)?;
            Ok((
                a.spec.account.clone(),
                a.uid().unwrap_or_default(),
                a.metadata.generation.unwrap_or_default(),
            ))
        }
    }
}

/// The credentials Secret's data as text, and its resourceVersion. Values never leave this
/// function in an error.
async fn read_credentials(
    client: &Client,
    namespace: &str,
    spec: &CdnAccountSpec,
) -> Result<(BTreeMap<String, String>, String), ProviderError> {
    let name = &spec.credentials_secret_ref.name;
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.is_not_found() => ProviderError::Account(format!(
                "the credentials Secret {name:?} does not exist in namespace {namespace:?}"
            )),
            kube::Error::Api(s) if s.code == 403 => ProviderError::Account(format!(
                "the operator may not read the credentials Secret {name:?} in namespace {namespace:?}"
            )),
            other => ProviderError::Unavailable(format!("cannot read the credentials Secret: {other}")),
        })?;
    Ok((
        crate::provider::credentials_of(&secret),
        secret.resource_version().unwrap_or_default(),
    ))
}

/// The account's Ready condition from a cheap authenticated read.
pub fn ready_verdict(outcome: &Result<(), ProviderError>) -> Verdict {
    let (status, reason, message) = match outcome {
        Ok(()) => (
            ConditionStatus::True,
            Reason::Verified,
            "the CDN's API answered an authenticated read.".to_string(),
        ),
        Err(ProviderError::Unauthorized(why)) => (
            ConditionStatus::False,
            Reason::Unauthorized,
            format!("the CDN refused the credentials ({why}); check the Secret's keys."),
        ),
        Err(ProviderError::Forbidden(why)) => (
            ConditionStatus::False,
            Reason::Forbidden,
            format!(
                "the credentials lack a grant or scope ({why}); give the API client read access (see the README)."
            ),
        ),
        Err(ProviderError::Account(why)) => (
            ConditionStatus::False,
            Reason::InvalidSpec,
            format!("{why}."),
        ),
        Err(other) => (
            ConditionStatus::False,
            Reason::Unreachable,
            format!("{other}; will retry."),
        ),
    };
    Verdict::new(ConditionType::Ready, status, reason, message)
}

/// Checks one account and writes its status (only when it changed); true when its API
/// answered.
async fn check_and_publish<K: AccountObject>(
    accounts: &Accounts,
    client: &Client,
    account: &K,
) -> Result<bool, kube::Error> {
    let meta = account.meta();
    let name = account.name_any();
    let reference = AccountReference {
        kind: K::KIND,
        name: name.clone(),
    };
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let outcome = match accounts.get(client, namespace, &reference).await {
        Ok(account) => check_access(&account).await,
        Err(e) => Err(e),
    };
    let verdict = ready_verdict(&outcome);
    let existing = account.account_status();
    let conditions = merge_conditions(
        existing
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default(),
        std::slice::from_ref(&verdict),
        meta.generation,
        jiff::Timestamp::now(),
    );
    let status = CdnAccountStatus {
        observed_generation: meta.generation,
        conditions,
    };
    if existing == Some(&status) {
        return Ok(outcome.is_ok());
    }
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    account
        .status_api(client.clone())
        .patch_status(&name, &params, &Patch::Apply(&body))
        .await?;
    Ok(outcome.is_ok())
}

/// How often a Ready account is checked again; a failing one is retried sooner.
const RECHECK_READY: Duration = Duration::from_secs(300);
const RECHECK_FAILING: Duration = Duration::from_secs(30);

struct AccountContext {
    client: Client,
    accounts: Arc<Accounts>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write the account's status: {0}")]
struct StatusError(#[from] kube::Error);

/// What the status controller needs of both account kinds.
trait AccountObject:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    const KIND: AccountKind;
    fn account_status(&self) -> Option<&CdnAccountStatus>;
    /// Where its status is written.
    fn status_api(&self, client: Client) -> Api<Self>;
}

impl AccountObject for CdnAccount {
    const KIND: AccountKind = AccountKind::CdnAccount;
    fn account_status(&self) -> Option<&CdnAccountStatus> {
        self.status.as_ref()
    }
    fn status_api(&self, client: Client) -> Api<Self> {
        Api::namespaced(client, self.meta().namespace.as_deref().unwrap_or_default())
    }
}

impl AccountObject for ClusterCdnAccount {
    const KIND: AccountKind = AccountKind::ClusterCdnAccount;
    fn account_status(&self) -> Option<&CdnAccountStatus> {
        self.status.as_ref()
    }
    fn status_api(&self, client: Client) -> Api<Self> {
        Api::all(client)
    }
}

/// Keeps the Ready condition of the accounts `api` lists, until `shutdown`.
async fn account_controller<K: AccountObject>(
    stream: impl FnOnce(Store<K>) -> Events<K>,
    ctx: Arc<AccountContext>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    use futures::StreamExt;
    use kube::runtime::controller::{Action, Controller};
    use kube::runtime::{WatchStreamExt, reflector};
    let (store, writer) = reflector::store();
    // Only a new generation checks again (the status write does not); the requeue does.
    let stream = super::scope::new_generations(stream(store.clone()).reflect(writer));
    let reconcile = |a: Arc<K>, ctx: Arc<AccountContext>| async move {
        let ok = check_and_publish(&ctx.accounts, &ctx.client, a.as_ref()).await?;
        Ok::<_, StatusError>(Action::requeue(if ok {
            RECHECK_READY
        } else {
            RECHECK_FAILING
        }))
    };
    Controller::for_stream(stream, store)
        .graceful_shutdown_on(shutdown)
        .run(
            reconcile,
            |_, e, _| {
                tracing::warn!(error = %e, kind = %K::KIND, "account status");
                Action::requeue(RECHECK_FAILING)
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

fn watch_accounts<K: AccountObject>(api: Api<K>) -> Events<K> {
    use kube::runtime::{WatchStreamExt, watcher};
    futures::StreamExt::boxed(watcher::watcher(api, watcher::Config::default()).default_backoff())
}

/// Watches CdnAccounts (in the scope's namespaces) and, unless the scope is Roles only,
/// ClusterCdnAccounts,
/// and keeps their Ready condition, until `shutdown`.
pub async fn run_account_controllers(
    client: Client,
    scope: WatchScope,
    accounts: Arc<Accounts>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let ctx = Arc::new(AccountContext {
        client: client.clone(),
        accounts,
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let local = account_controller(
        |store: Store<CdnAccount>| {
            scoped_watch(&client, &scope, (store, Arc::default()), watch_accounts)
        },
        ctx.clone(),
        stopped(),
    );
    if !scope.cluster_wide() {
        // Roles only: cluster-scoped accounts cannot be watched.
        local.await;
        return;
    }
    let global = account_controller(
        |_| watch_accounts(Api::<ClusterCdnAccount>::all(client.clone())),
        ctx,
        stopped(),
    );
    futures::join!(local, global);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With Roles in listed namespaces only, reading a ClusterCdnAccount is forbidden: that
    /// is a reason to give (not a passing failure to retry as if the API server were down).
    #[tokio::test]
    async fn a_forbidden_cluster_account_says_why_and_what_to_use() {
        use http::{Request, Response};
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "shop");
        let accounts = Accounts::new(&ProbeConfig::default(), "ops".into(), None);
        let reference = AccountReference {
            kind: AccountKind::ClusterCdnAccount,
            name: "edgecast-prod".into(),
        };
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.expect("a request");
            let path = request.uri().path().to_string();
            let status = serde_json::json!({
                "apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "Forbidden",
                "code": 403, "message": "clustercdnaccounts is forbidden",
            });
            let mut response = Response::new(Body::from(status.to_string().into_bytes()));
            *response.status_mut() = http::StatusCode::FORBIDDEN;
            send.send_response(response);
            path
        });
        let error = accounts.get(&client, "shop", &reference).await.err();
        assert_eq!(
            server.await.expect("the mock server"),
            "/apis/httpsdelivery.dev/v1alpha1/clustercdnaccounts/edgecast-prod"
        );
        let Some(ProviderError::Account(message)) = error else {
            panic!("not an account error: {error:?}");
        };
        assert!(
            message.contains("may not read ClusterCdnAccount \"edgecast-prod\" (forbidden)")
                && message.contains("use a CdnAccount in the delivery's namespace"),
            "{message}"
        );
    }

    #[test]
    fn each_outcome_of_the_access_check_has_its_ready_reason() {
        let cases = [
            (Ok(()), ConditionStatus::True, Reason::Verified),
            (
                Err(ProviderError::Unauthorized("HTTP 401".into())),
                ConditionStatus::False,
                Reason::Unauthorized,
            ),
            (
                Err(ProviderError::Forbidden("HTTP 403".into())),
                ConditionStatus::False,
                Reason::Forbidden,
            ),
            (
                Err(ProviderError::Unavailable("timed out".into())),
                ConditionStatus::False,
                Reason::Unreachable,
            ),
            (
                Err(ProviderError::Unexpected("[0].Id: invalid type".into())),
                ConditionStatus::False,
                Reason::Unreachable,
            ),
            (
                Err(ProviderError::Account(
                    "the credentials Secret \"x\" lacks rest_token".into(),
                )),
                ConditionStatus::False,
                Reason::InvalidSpec,
            ),
        ];
        for (outcome, status, reason) in cases {
            let v = ready_verdict(&outcome);
            assert_eq!(
                (v.type_, v.status, v.reason),
                (ConditionType::Ready, status, reason),
                "{outcome:?}"
            );
            if let Err(e) = &outcome {
                let why = match e {
                    ProviderError::Unauthorized(w)
                    | ProviderError::Forbidden(w)
                    | ProviderError::Unavailable(w)
                    | ProviderError::Unexpected(w)
                    | ProviderError::Account(w)
                    | ProviderError::Spec(w)
                    | ProviderError::NotFound(w) => w,
                };
                assert!(v.message.contains(why.as_str()), "{}", v.message);
            }
        }
    }
}
