//! `run`: the process around the reconciler: client, probes, health server, leader election,
//! the watches (deliveries, Secrets, hostname claims) and shutdown on SIGTERM.

use super::accounts::{Accounts, run_account_controllers};
use super::routes;
use super::scope::{Events, WatchScope, check_selector, new_generations, scoped_watch};
use super::secrets::{FirstRead, SecretCache};
use super::{Context, Guarded, error_policy, leader, reconcile};
use crate::probe::{ProbeConfig, Prober};
use crate::telemetry::{self, Health, LogFormat, Metrics};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Everything `httpsdelivery-operator run` is told on its command line.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// `--watch-namespace` (one or several) or `--watch-namespace-selector`.
    pub scope: WatchScope,
    pub metrics_addr: SocketAddr,
    pub leader_elect: bool,
    pub lease_namespace: Option<String>,
    pub lease_duration: Duration,
    pub identity: Option<String>,
    pub reconcile_concurrency: u16,
    pub log_format: LogFormat,
    pub probe: ProbeConfig,
    pub limits: Bounds,
    /// Read and watch only the Secrets carrying this label selector (shared clusters).
    pub secret_label_selector: Option<String>,
    /// Where ClusterCdnAccounts' credentials Secrets are read.
    pub operator_namespace: String,
    /// Audit (and generate from) Ingress and HTTPRoute hostnames; None: off.
    pub routes: Option<routes::RoutesConfig>,
}

/// The operator's own bounds, whatever an object says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// No delivery is rechecked more often than this (its recheckInterval is raised to it).
    pub min_recheck_interval: Duration,
    /// A reconcile whose probes have not finished by then is cut short: Unknown ProbeTimeout.
    pub reconcile_timeout: Duration,
    /// `/healthz` fails when reconciles are in flight and none finished for this long.
    pub stall_timeout: Duration,
    /// After SIGTERM, how long reconciles in flight may take before the process exits anyway.
    pub shutdown_grace: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            min_recheck_interval: Duration::from_secs(30),
            reconcile_timeout: Duration::from_secs(120),
            stall_timeout: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Settings of the controller loop itself.
pub struct RunConfig {
    pub scope: WatchScope,
    /// The CDN accounts of provider mode.
    pub accounts: Accounts,
    pub identity: String,
    pub concurrency: u16,
    pub limits: Bounds,
    pub secret_label_selector: Option<String>,
    pub routes: Option<routes::RoutesConfig>,
}

/// Runs the operator until SIGTERM or Ctrl-C. Returns the process exit code.
pub async fn operate(config: OperatorConfig) -> i32 {
    telemetry::init_logging(config.log_format);
    let client = match Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build a Kubernetes client from the kubeconfig or the in-cluster config");
            return 1;
        }
    };
    let metrics = Metrics::new();
    let prober = match Prober::new(&config.probe) {
        Ok(p) => p.with_recorder(Arc::new(metrics.clone())),
        Err(e) => {
            tracing::error!(error = %e, "cannot set up the probes");
            return 1;
        }
    };
    let identity = config.identity.clone().unwrap_or_else(default_identity);
    let health = Arc::new(Health::new(config.limits.stall_timeout));
    let stopped = shutdown_on_signal();
    let server = match telemetry::bind(config.metrics_addr).await {
        Ok(listener) => tokio::spawn(telemetry::serve_listener(
            listener,
            metrics.clone(),
            health.clone(),
            stopped(),
        )),
        Err(e) => {
            tracing::error!(addr = %config.metrics_addr, error = %e, "cannot listen for health and metrics");
            return 1;
        }
    };
    tracing::info!(identity, scope = %config.scope, leader_elect = config.leader_elect, "starting");
    if let Err(e) = check_selector(&client, &config.scope).await {
        tracing::error!("{e}");
        server.abort();
        return 1;
    }
    let run_config = RunConfig {
        scope: config.scope.clone(),
        accounts: Accounts::new(
            &config.probe,
            config.operator_namespace.clone(),
            Some(metrics.clone()),
        ),
        identity: identity.clone(),
        concurrency: config.reconcile_concurrency.max(1),
        limits: config.limits,
        secret_label_selector: config.secret_label_selector.clone(),
        routes: config.routes,
    };
    let work = run(
        client.clone(),
        run_config,
        prober,
        metrics,
        health.clone(),
        stopped(),
    );
    let work = lead_then_run(&config, client, identity, &health, work);
    // Reconciles in flight get a short grace after SIGTERM; then the process exits anyway.
    let grace = config.limits.shutdown_grace;
    let abandon = async {
        stopped().await;
        tokio::time::sleep(grace).await;
        tracing::warn!(grace = ?grace, "shutting down with reconciles still in flight");
    };
    let code = tokio::select! {
        code = work => code,
        () = abandon => 0,
    };
    health.set_synced(false);
    server.abort();
    code
}

/// Runs `work` directly, or with leader election only once this replica holds the Lease.
/// Returns the exit code.
async fn lead_then_run(
    config: &OperatorConfig,
    client: Client,
    identity: String,
    health: &Health,
    work: impl Future<Output = ()>,
) -> i32 {
    if !config.leader_elect {
        work.await;
        return 0;
    }
    // A standby is healthy and ready to take over: report it ready, as controller-runtime
    // does, so that rolling updates and disruption budgets work with several replicas.
    health.set_synced(true);
    match leader::run_as_leader(client, leader_config(config, identity), || work).await {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "leader election");
            1
        }
    }
}

/// POD_NAME is the usual identity; outside a Pod, the host name and the process id.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

fn leader_config(config: &OperatorConfig, identity: String) -> leader::LeaderConfig {
    let namespace = config
        .lease_namespace
        .clone()
        .or_else(|| config.scope.single().map(str::to_owned))
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".into());
    let mut lc = leader::LeaderConfig::new(namespace, identity);
    lc.lease_duration = config.lease_duration;
    // The grace (how early the leader renews) must stay well inside a short lease.
    let third = Duration::from_secs(lc.lease_duration.as_secs() / 3);
    lc.grace = lc.grace.min(third).max(Duration::from_secs(1));
    lc
}

/// Starts listening for SIGTERM and Ctrl-C; returns a maker of futures that resolve once
/// either has arrived (each consumer of the shutdown gets its own).
fn shutdown_on_signal() -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    move || {
        let mut rx = stop_rx.clone();
        Box::pin(async move {
            let _ = rx.wait_for(|s| *s).await;
        })
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

/// Runs the controller until `shutdown` resolves. `ready` turns true once the caches are filled.
///
/// One watch on deliveries feeds the store, the index (hostname claims, Secret references) and
/// the reconciler; only a new generation reconciles, so the operator's own status writes do not
/// trigger a second pass. managedFields are dropped before anything is cached.
pub async fn run(
    client: Client,
    config: RunConfig,
    prober: Prober,
    metrics: Metrics,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let scope = config.scope.clone();
    let (secret_store, secret_writer) = reflector::store::<PartialObjectMeta<Secret>>();
    let first_read = match &scope {
        WatchScope::All => FirstRead::All(Api::all(client.clone())),
        _ => FirstRead::ByNamespace(client.clone()),
    };
    let ctx = Arc::new(
        Context::new(client.clone(), prober, metrics, &config.identity)
            .with_secrets(
                SecretCache::new(secret_store.clone(), config.secret_label_selector.clone())
                    .with_first_read(first_read),
            )
            .with_accounts(config.accounts)
            .with_limits(config.limits)
            .with_health(health.clone()),
    );
    let (accounts_stop, accounts_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(run_account_controllers(
        client.clone(),
        scope.clone(),
        ctx.accounts.clone(),
        async move {
            let _ = accounts_stopped.await;
        },
    ));
    let _routes = (config.routes).map(|r| {
        routes::spawn(
            client.clone(),
            scope.clone(),
            ctx.clone(),
            r,
            &config.identity,
        )
    });
    let (store, writer) = reflector::store::<Guarded>();
    let (recheck_tx, recheck_rx) = futures::channel::mpsc::unbounded();
    let deliveries = watch_deliveries(&client, &scope, &store, ctx.clone(), writer, recheck_tx);
    let secrets = watch_secrets(&client, &scope, secret_store, ctx.clone(), secret_writer);
    tokio::spawn(report_ready_when_synced(store.clone(), health));
    tokio::spawn(forget_deleted(ctx.clone(), store.clone()));
    let mapper_ctx = ctx.clone();
    Controller::for_stream(deliveries, store)
        // Each watch backs off on its own (WatchBackoff); a second, slower backoff over all of
        // them (kube-runtime's default, up to 30 s) would only delay recovery.
        .trigger_backoff(NoBackoff)
        .with_config(
            controller::Config::default()
                .concurrency(config.concurrency)
                // A burst of events for one object (a kubectl apply of many fields, a Secret
                // rewritten twice) is one reconcile.
                .debounce(Duration::from_millis(500)),
        )
        // A changed Secret reconciles the deliveries that reference it (rotation); Secrets are
        // watched by metadata only: their keys never enter the operator's cache.
        .watches_stream(secrets, move |secret| {
            mapper_ctx
                .index
                .referencing(&secret.namespace().unwrap_or_default(), &secret.name_any())
        })
        // When the owner of a hostname changes hands, its claimants are looked at again.
        .reconcile_on(recheck_rx)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
    let _ = accounts_stop.send(());
}

/// The deliveries of the scope: listed in pages (500 objects) from etcd rather than in one
/// piece from the watch cache, so that 10,000 deliveries never sit in memory twice (as JSON and
/// as objects); managedFields dropped, statuses compacted (their text kept as a digest); the
/// index kept; only new generations passed on.
fn watch_deliveries(
    client: &Client,
    scope: &WatchScope,
    store: &Store<Guarded>,
    ctx: Arc<Context>,
    writer: reflector::store::Writer<Guarded>,
    recheck: futures::channel::mpsc::UnboundedSender<ObjectRef<Guarded>>,
) -> impl futures::Stream<Item = Result<Guarded, watcher::Error>> + Send + 'static {
    let health = ctx.health.clone();
    let listed = ctx.deliveries_listed.clone();
    let config = watcher::Config::default().page_size(500);
    let events = scoped_watch(
        client,
        scope,
        (store.clone(), listed.clone()),
        watch_with(config),
    )
    // Ready tells the truth: not while the API server cannot be watched.
    .inspect(move |event| health.set_watching(listed.watching(event.is_ok())))
    .modify(|d: &mut Guarded| {
        drop_copies(kube::Resource::meta_mut(d));
        if let Ok(delivery) = &mut d.0
            && let Some(status) = &mut delivery.status
        {
            status.compact();
        }
    })
    .inspect_ok(move |event| {
        let change = ctx.index.observe(event);
        if matches!(event, watcher::Event::InitDone) {
            ctx.secrets.mark_deliveries_listed();
        }
        for r in change.recheck {
            let _ = recheck.unbounded_send(r);
        }
        for (ns, name) in change.released {
            ctx.secrets.forget(&ns, &name);
        }
    })
    .reflect(writer);
    new_generations(events)
}

/// The Secrets of the scope, by metadata only: only kubernetes.io/tls ones (and with a
/// selector, only those carrying it) are watched, so only they are ever read.
fn watch_secrets(
    client: &Client,
    scope: &WatchScope,
    store: Store<PartialObjectMeta<Secret>>,
    ctx: Arc<Context>,
    writer: reflector::store::Writer<PartialObjectMeta<Secret>>,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>> + Send + 'static
{
    let (fields, labels) = ctx.secrets.selectors();
    let mut config = watcher::Config::default().page_size(500).fields(&fields);
    if let Some(labels) = labels {
        config = config.labels(labels);
    }
    let listed = ctx.secrets.scope_status();
    scoped_watch(client, scope, (store, listed), watch_with(config))
        .modify(|s: &mut PartialObjectMeta<Secret>| keep_name_and_version(&mut s.metadata))
        .inspect_ok(move |event| match event {
            watcher::Event::InitDone => ctx.secrets.mark_listed(),
            watcher::Event::Delete(s) => ctx
                .secrets
                .forget(&s.namespace().unwrap_or_default(), &s.name_any()),
            _ => {}
        })
        .reflect(writer)
        .touched_objects()
}

/// What `kubectl apply` (client-side) copies of the whole object into an annotation: a second
/// copy of the spec on a delivery, and of the private key on a Secret.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The watch of one API (all namespaces, or one), retried with [`WatchBackoff`]: what
/// `scoped_watch` makes for each namespace.
pub(super) fn watch_with<K>(
    config: watcher::Config,
) -> impl Fn(Api<K>) -> Events<K> + Send + 'static
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    move |api| {
        watcher::watcher(api, config.clone())
            .backoff(WatchBackoff::default())
            .boxed()
    }
}

/// Drops what the operator never reads and would only hold twice: managedFields, and the
/// copy of the whole object `kubectl apply` keeps in an annotation (`LAST_APPLIED`).
pub(super) fn drop_copies(meta: &mut kube::api::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
    }
}

/// Of a watched Secret, the cache keeps what finding and re-reading it needs: namespace, name
/// and resourceVersion. Labels, annotations (which may hold a copy of the key, see
/// `LAST_APPLIED`), owners and managedFields are dropped.
fn keep_name_and_version(meta: &mut kube::api::ObjectMeta) {
    *meta = kube::api::ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        resource_version: meta.resource_version.take(),
        uid: meta.uid.take(),
        ..Default::default()
    };
}

/// Retries of a failed watch: quick at first, at most 5 s apart, so that the operator is back
/// within seconds of the API server (kube-runtime's default waits up to 30 s).
pub(super) struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(5);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(now)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// No wait: for the controller's merged trigger stream, whose watches have their own backoff.
struct NoBackoff;

impl Iterator for NoBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for NoBackoff {
    fn reset(&mut self) {}
}

/// kube-runtime's Store wakes only the last waiter, and the Controller waits on the same store:
/// poll, so that this task sees the stored result too.
async fn report_ready_when_synced(store: Store<Guarded>, health: Arc<Health>) {
    loop {
        match tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready()).await {
            Ok(Ok(())) => {
                health.set_synced(true);
                tracing::info!("caches synced; reconciling");
                return;
            }
            Ok(Err(_)) => return,
            Err(_) => continue,
        }
    }
}

/// Deleted objects are never reconciled again: drop their per-object metrics and backoff
/// state from time to time.
async fn forget_deleted(ctx: Arc<Context>, store: Store<Guarded>) {
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    loop {
        tick.tick().await;
        let live: HashSet<(String, String)> = store
            .state()
            .iter()
            .map(|g| {
                let meta = match &g.0 {
                    Ok(d) => &d.metadata,
                    Err(invalid) => &invalid.metadata,
                };
                (
                    meta.namespace.clone().unwrap_or_default(),
                    meta.name.clone().unwrap_or_default(),
                )
            })
            .collect();
        for (ns, name) in ctx.metrics.objects() {
            if !live.contains(&(ns.clone(), name.clone())) {
                ctx.metrics.forget(&ns, &name);
                ctx.forget_failures(&ObjectRef::new(&name).within(&ns));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_cache_keeps_only_name_and_version() {
        let mut meta = kube::api::ObjectMeta {
            name: Some("www-tls".into()),
            namespace: Some("shop".into()),
            resource_version: Some("42".into()),
            uid: Some("u-1".into()),
            labels: Some([("team".to_string(), "web".to_string())].into()),
            annotations: Some(
                [(
                    LAST_APPLIED.to_string(),
                    "{\"data\":{\"tls.key\":\"...\"}}".to_string(),
                )]
                .into(),
            ),
            finalizers: Some(vec!["example.com/keep".into()]),
            ..Default::default()
        };
        keep_name_and_version(&mut meta);
        assert_eq!(
            meta,
            kube::api::ObjectMeta {
                name: Some("www-tls".into()),
                namespace: Some("shop".into()),
                resource_version: Some("42".into()),
                uid: Some("u-1".into()),
                ..Default::default()
            }
        );
    }
}
