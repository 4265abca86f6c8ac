//! The operator: keeps every HttpsDelivery's status true to the world.
//! Reconcile = observe (Secret, DNS, TLS) -> evaluate (the check engine) -> publish.

pub mod leader;
pub mod publish;

use crate::api::{HttpsDelivery, HttpsDeliveryStatus, Reason};
use crate::checks::certificate::SecretContent;
use crate::checks::{self, Memory};
use crate::cli::input::secret_content;
use crate::probe::Prober;
use crate::telemetry::Metrics;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The one field manager under which status is applied.
pub const FIELD_MANAGER: &str = "httpsdelivery-operator";

type Guarded = DeserializeGuard<HttpsDelivery>;

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
    pub store: Store<Guarded>,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<Guarded>, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        prober: Prober,
        metrics: Metrics,
        store: Store<Guarded>,
        identity: &str,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(identity.to_string()),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            prober,
            metrics,
            store,
            failures: Mutex::new(HashMap::new()),
        }
    }
}

/// The readable deliveries in the cache that satisfy `pred`, as references to reconcile.
fn deliveries_where(
    store: &Store<Guarded>,
    pred: impl Fn(&HttpsDelivery) -> bool,
) -> Vec<ObjectRef<Guarded>> {
    store
        .state()
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .filter(|d| pred(d))
        .map(|d| ObjectRef::new(&d.name_any()).within(&d.namespace().unwrap_or_default()))
        .collect()
}

/// The delivery that keeps `hostname`: the oldest object claiming it (then by namespace/name).
fn hostname_owner(store: &Store<Guarded>, me: &HttpsDelivery) -> Option<String> {
    let key = |d: &HttpsDelivery| {
        (
            d.metadata.creation_timestamp.clone().map(|t| t.0),
            d.namespace().unwrap_or_default(),
            d.name_any(),
        )
    };
    let owner = store
        .state()
        .into_iter()
        .filter_map(|g| g.0.as_ref().ok().cloned())
        .filter(|d| d.spec.hostname == me.spec.hostname && d.metadata.deletion_timestamp.is_none())
        .min_by_key(key)?;
    let (o, m) = (key(&owner), key(me));
    (o.1 != m.1 || o.2 != m.2).then(|| format!("{}/{}", o.1, o.2))
}

async fn read_secret(client: &Client, namespace: &str, name: &str) -> SecretContent {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(secret)) => secret_content(&secret),
        Ok(None) => SecretContent::NotFound,
        // The error's text names the Secret and the cause; it never holds the Secret's data.
        Err(e) => SecretContent::ReadFailed(e.to_string()),
    }
}

/// Reconciles one HttpsDelivery.
pub async fn reconcile(guarded: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = ctx.metrics.reconcile_timer();
    let delivery = match &guarded.0 {
        Ok(d) => d,
        Err(invalid) => {
            // One malformed object must not stop the watch: say why on the object, then wait.
            let reference = invalid_reference(invalid);
            let event = Event {
                type_: EventType::Warning,
                reason: Reason::InvalidSpec.as_str().into(),
                note: Some(
                    format!("the object cannot be read: {}", invalid.error)
                        .chars()
                        .take(1024)
                        .collect(),
                ),
                action: "Reconcile".into(),
                secondary: None,
            };
            if let Err(e) = ctx.recorder.publish(&event, &reference).await {
                tracing::warn!(error = %e, "cannot publish an Event");
            }
            tracing::warn!(error = %invalid.error, name = ?invalid.metadata.name, "skipping an HttpsDelivery that cannot be read");
            timer.ok();
            return Ok(Action::await_change());
        }
    };
    let namespace = delivery.namespace().unwrap_or_default();
    let name = delivery.name_any();
    let object = format!("{namespace}/{name}");
    let spec = &delivery.spec;
    let settings = spec.settings().unwrap_or_default();
    let now = jiff::Timestamp::now();

    let secret = match &spec.certificate.secret_ref {
        Some(r) => Some(read_secret(&ctx.client, &namespace, &r.name).await),
        None => None,
    };
    let conflict = hostname_owner(&ctx.store, delivery);
    let observed = ctx
        .prober
        .session()
        .observe(spec, secret, settings.timeout, now)
        .await;
    let old_status = delivery.status.as_ref();
    let memory = Memory {
        track_edge_changes: true,
        edge_tracking: old_status.and_then(|s| s.edge_cname.clone()),
    };
    let evaluation = checks::evaluate(
        spec,
        &settings,
        &observed,
        &memory,
        conflict.as_deref(),
        now,
    );
    let plan = publish::plan(old_status, &evaluation, delivery.metadata.generation, now);

    if let Some(status) = &plan.status {
        if let Err(source) = apply_status(&ctx.client, &namespace, &name, status).await {
            let error = Error::StatusPatch {
                object: object.clone(),
                source,
            };
            timer.error(error.metric_label());
            return Err(error);
        }
        tracing::info!(object, ready = ?evaluation.ready().status, reason = %evaluation.ready().reason, "status updated");
    }
    let reference = delivery.object_ref(&());
    for t in &plan.events {
        let event = Event {
            type_: if t.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: t.reason.clone(),
            note: Some(t.note.clone()),
            action: "Check".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(object, error = %e, "cannot publish an Event");
        }
    }
    let conditions: Vec<(String, String)> = evaluation
        .verdicts
        .iter()
        .map(|v| (v.type_.as_str().to_string(), v.status.as_str().to_string()))
        .collect();
    ctx.metrics.set_conditions(&namespace, &name, &conditions);
    ctx.metrics.set_certificate_not_after(
        &namespace,
        &name,
        evaluation
            .certificate
            .as_ref()
            .map(|c| c.not_after.as_second()),
    );
    ctx.failures
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&ObjectRef::from_obj(guarded.as_ref()));
    timer.ok();
    Ok(Action::requeue(publish::next_check(
        &evaluation,
        settings.recheck_interval,
        now,
        rand::random::<f64>(),
    )))
}

fn invalid_reference(
    invalid: &kube::core::error_boundary::InvalidObject,
) -> k8s_openapi::api::core::v1::ObjectReference {
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(HttpsDelivery::api_version(&()).into_owned()),
        kind: Some(HttpsDelivery::kind(&()).into_owned()),
        name: invalid.metadata.name.clone(),
        namespace: invalid.metadata.namespace.clone(),
        uid: invalid.metadata.uid.clone(),
        resource_version: invalid.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// Server-side apply of the whole status under the operator's field manager.
pub async fn apply_status(
    client: &Client,
    namespace: &str,
    name: &str,
    status: &HttpsDeliveryStatus,
) -> Result<(), kube::Error> {
    let api: Api<HttpsDelivery> = Api::namespaced(client.clone(), namespace);
    let body = status_apply_body(status);
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// The exact body of the status apply.
pub fn status_apply_body(status: &HttpsDeliveryStatus) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": HttpsDelivery::api_version(&()),
        "kind": HttpsDelivery::kind(&()),
        "status": status,
    })
}

/// Backs off exponentially per object when a reconcile fails.
pub fn error_policy(guarded: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = ObjectRef::from_obj(guarded.as_ref());
    let mut failures = ctx.failures.lock().unwrap_or_else(|e| e.into_inner());
    let n = failures.entry(key).or_insert(0);
    let wait = publish::backoff(*n);
    *n = n.saturating_add(1);
    tracing::warn!(error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// Deleted objects are never reconciled again: drop their per-object metrics from time to time.
async fn forget_deleted(ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    loop {
        tick.tick().await;
        let live: std::collections::HashSet<(String, String)> = ctx
            .store
            .state()
            .iter()
            .map(|g| {
                let meta = match &g.0 {
                    Ok(d) => d.metadata.clone(),
                    Err(invalid) => invalid.metadata.clone(),
                };
                (
                    meta.namespace.unwrap_or_default(),
                    meta.name.unwrap_or_default(),
                )
            })
            .collect();
        let gone: Vec<(String, String)> = ctx
            .metrics
            .objects()
            .into_iter()
            .filter(|k| !live.contains(k))
            .collect();
        for (ns, name) in gone {
            ctx.metrics.forget(&ns, &name);
        }
    }
}

/// Settings of `run`.
pub struct RunConfig {
    pub watch_namespace: Option<String>,
    pub identity: String,
    pub concurrency: u16,
}

/// Runs the controller until `shutdown` resolves. `ready` turns true once the caches are filled.
pub async fn run(
    client: Client,
    config: RunConfig,
    prober: Prober,
    metrics: Metrics,
    ready: Arc<std::sync::atomic::AtomicBool>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (deliveries, secrets): (Api<Guarded>, Api<PartialObjectMeta<Secret>>) =
        match &config.watch_namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
    let controller = Controller::new(deliveries, watcher::Config::default().any_semantic())
        .with_config(kube::runtime::controller::Config::default().concurrency(config.concurrency));
    let store = controller.store();
    let mapper_store = store.clone();
    let claims_store = store.clone();
    let claims: Api<PartialObjectMeta<HttpsDelivery>> = match &config.watch_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let ctx = Arc::new(Context::new(
        client,
        prober,
        metrics,
        store.clone(),
        &config.identity,
    ));
    let readiness = {
        let store = store.clone();
        async move {
            // kube-runtime's Store wakes only the last waiter, and the Controller waits on the same
            // store: poll, so that this task sees the stored result too.
            loop {
                match tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready())
                    .await
                {
                    Ok(Ok(())) => {
                        ready.store(true, std::sync::atomic::Ordering::Relaxed);
                        tracing::info!("caches synced; reconciling");
                        break;
                    }
                    Ok(Err(_)) => break,
                    Err(_) => continue,
                }
            }
        }
    };
    tokio::spawn(readiness);
    tokio::spawn(forget_deleted(ctx.clone()));
    controller
        // Secrets are watched by metadata only: their keys never enter the operator's cache.
        .watches(secrets, watcher::Config::default(), move |secret| {
            let (ns, name) = (secret.namespace(), secret.name_any());
            deliveries_where(&mapper_store, |d| {
                d.namespace() == ns
                    && d.spec
                        .certificate
                        .secret_ref
                        .as_ref()
                        .is_some_and(|r| r.name == name)
            })
        })
        // When any delivery appears, changes or goes away, the losers of hostname conflicts are
        // looked at again at once: the hostname may now be theirs.
        .watches(claims, watcher::Config::default(), move |_changed| {
            deliveries_where(&claims_store, |d| {
                d.status.as_ref().is_some_and(|s| {
                    s.conditions.iter().any(|c| {
                        c.type_ == "Ready" && c.reason == Reason::HostnameConflict.as_str()
                    })
                })
            })
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
}

impl crate::probe::ProbeRecorder for Metrics {
    fn record(&self, kind: &'static str, outcome: &str, duration: Duration) {
        self.observe_probe(kind, outcome, duration);
    }
}
