//! The operator: keeps every HttpsDelivery's status true to the world.
//! `reconcile` runs one object through the stages; `run` wires the watches, the health server
//! and leader election around it.

pub mod accounts;
pub mod index;
pub mod leader;
pub mod publish;
mod reconcile;
pub mod routes;
mod run;
pub mod scope;
pub mod secrets;

pub use reconcile::{apply_status, error_policy, reconcile, status_apply_body};
pub use run::{Bounds, OperatorConfig, RunConfig, operate, run};

use crate::api::HttpsDelivery;
use crate::probe::Prober;
use crate::telemetry::{Health, Metrics};
use index::DeliveryIndex;
use kube::Client;
use kube::core::DeserializeGuard;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use secrets::SecretCache;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The one field manager under which status is applied.
pub const FIELD_MANAGER: &str = "httpsdelivery-operator";

/// A stored delivery, or the reason it could not be read (one bad object must not stop the watch).
pub type Guarded = DeserializeGuard<HttpsDelivery>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot apply the status of {object}: {source}")]
    StatusPatch { object: String, source: kube::Error },
}

impl Error {
    /// A short label for the reconcile-errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::StatusPatch { .. } => "status_patch",
        }
    }
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub prober: Prober,
    pub metrics: Metrics,
    /// Who claims each hostname and references each Secret, kept from the watch.
    pub index: DeliveryIndex,
    pub secrets: SecretCache,
    /// CDN accounts of provider mode.
    pub accounts: Arc<accounts::Accounts>,
    pub limits: Bounds,
    /// The watchdog and readiness of the process.
    pub health: Arc<Health>,
    /// Which namespaces' deliveries have all been listed (several watched namespaces).
    pub deliveries_listed: Arc<scope::ScopeStatus>,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<Guarded>, u32>>,
}

impl Context {
    /// A context whose Secrets are read with a GET each time, until [`Context::with_secrets`]
    /// gives it a watched cache.
    pub fn new(client: Client, prober: Prober, metrics: Metrics, identity: &str) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(identity.to_string()),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            prober,
            metrics,
            index: DeliveryIndex::default(),
            secrets: SecretCache::unwatched(),
            accounts: Arc::new(accounts::Accounts::new(
                &crate::probe::ProbeConfig::default(),
                "default".into(),
                None,
            )),
            limits: Bounds::default(),
            health: Arc::new(Health::new(Bounds::default().stall_timeout)),
            deliveries_listed: Arc::default(),
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn with_secrets(mut self, secrets: SecretCache) -> Self {
        self.secrets = secrets;
        self
    }

    pub fn with_accounts(mut self, accounts: accounts::Accounts) -> Self {
        self.accounts = Arc::new(accounts);
        self
    }

    pub fn with_limits(mut self, limits: Bounds) -> Self {
        self.limits = limits;
        self
    }

    pub fn with_health(mut self, health: Arc<Health>) -> Self {
        self.health = health;
        self
    }

    /// Counts a failed reconcile of `object` and returns how long to wait before the next.
    fn note_failure(&self, object: ObjectRef<Guarded>) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(object).or_insert(0);
        let wait = publish::backoff(*n);
        *n = n.saturating_add(1);
        wait
    }

    /// Forgets the failures of `object` (it reconciled, or it is gone).
    fn forget_failures(&self, object: &ObjectRef<Guarded>) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(object);
    }
}
