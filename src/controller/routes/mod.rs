//! Routes as a source: the hostnames of Ingress and Gateway API HTTPRoute objects that no
//! HttpsDelivery covers, as a metric and one Event each (`--audit-routes`), and, for routes
//! that ask for it, HttpsDeliveries generated from a template (`--generate-from-routes`).
//!
//! Read-only towards routes. It watches the operator's scope (every namespace, a list, or the
//! namespaces carrying a label) and consumes watcher event streams, so that another source of
//! events can be swapped in.

mod audit;
mod generate;
mod source;

pub use generate::{TEMPLATE_KEY, generated_name};
pub use source::{HttpRoute, Route, RouteKey, RouteKind, TEMPLATE_ANNOTATION};

use super::run::{WatchBackoff, drop_copies, watch_with};
use super::scope::{ScopeStatus, WatchScope, scoped_watch};
use super::{Context, FIELD_MANAGER};
use crate::api::text::{MAX_EVENT_NOTE, truncate};
use audit::{Routes, Told};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::core::NamespaceResourceScope;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// The field manager generated deliveries are applied under, and the value of their
/// [`GENERATED_BY_LABEL`].
pub const ROUTES_FIELD_MANAGER: &str = "httpsdelivery-operator-routes";
/// The label that marks a delivery as generated from a route (value [`ROUTES_FIELD_MANAGER`]).
pub const GENERATED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// On a generated delivery: the route it was generated from, `KIND/NAME`.
pub const ROUTE_ANNOTATION: &str = "httpsdelivery.dev/route";

/// Every route is looked at again this often even when nothing is seen to change (a template
/// ConfigMap is read, not watched).
const RESYNC: Duration = Duration::from_secs(60);

/// What the route source does beyond the audit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoutesConfig {
    /// Generate deliveries for routes annotated with [`TEMPLATE_ANNOTATION`].
    pub generate: bool,
}

/// What a generated delivery was generated from, by its route annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeneratedFrom {
    Route(RouteKind),
    /// The annotation was changed or removed: never deleted by the generator.
    Unknown,
}

/// What a delivery was generated from; None when it was written by hand.
pub fn generated_from(meta: &ObjectMeta) -> Option<GeneratedFrom> {
    let labelled = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(GENERATED_BY_LABEL))
        .is_some_and(|v| v == ROUTES_FIELD_MANAGER);
    if !labelled {
        return None;
    }
    let route = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(ROUTE_ANNOTATION));
    let kind = route.and_then(|r| r.split_once('/')).and_then(|(kind, _)| {
        [RouteKind::Ingress, RouteKind::HttpRoute]
            .into_iter()
            .find(|k| k.as_str() == kind)
    });
    Some(kind.map_or(GeneratedFrom::Unknown, GeneratedFrom::Route))
}

/// Stops the route source when dropped (the controller stopped, or this replica lost the lead).
pub struct Stop {
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Starts the route source on the operator's scope; it stops when the returned
/// guard is dropped, and then withdraws its metric series. `identity` is this replica's, for
/// the Events it publishes.
pub fn spawn(
    client: Client,
    scope: WatchScope,
    ctx: Arc<Context>,
    config: RoutesConfig,
    identity: &str,
) -> Stop {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let teller = Teller {
        client: client.clone(),
        identity: identity.to_owned(),
    };
    tokio::spawn(async move {
        let metrics = ctx.metrics.clone();
        tokio::select! {
            () = run(client, scope, ctx, config, teller) => {}
            _ = stopped => {}
        }
        metrics.clear_uncovered();
    });
    Stop { _stop: stop }
}

/// Finds out whether HTTPRoutes exist, says what is audited, and audits.
async fn run(
    client: Client,
    watched: WatchScope,
    ctx: Arc<Context>,
    config: RoutesConfig,
    teller: Teller,
) {
    let http_routes = http_routes_served(&client).await;
    let scope = watched.to_string();
    let scope = scope.as_str();
    if http_routes {
        tracing::info!(
            scope,
            generate = config.generate,
            "route audit: auditing the hostnames of Ingress and HTTPRoute (gateway.networking.k8s.io/v1) objects"
        );
    } else {
        tracing::info!(
            scope,
            generate = config.generate,
            "route audit: HTTPRoute is not audited: the API server does not serve gateway.networking.k8s.io/v1 httproutes (Gateway API CRDs not installed; restart the operator after installing them); auditing Ingress only"
        );
    }
    let mut listed = HashMap::new();
    let ingresses = watch::<Ingress>(&client, &watched, &mut listed, RouteKind::Ingress);
    let http = http_routes
        .then(|| watch::<HttpRoute>(&client, &watched, &mut listed, RouteKind::HttpRoute));
    audit(ingresses, http, ctx, (config, listed), teller).await;
}

/// Asks discovery whether gateway.networking.k8s.io/v1 has httproutes; asks again (backing
/// off) until the API server answers.
async fn http_routes_served(client: &Client) -> bool {
    const GROUP_VERSION: &str = "gateway.networking.k8s.io/v1";
    let mut backoff = WatchBackoff::default();
    loop {
        match client.list_api_group_resources(GROUP_VERSION).await {
            Ok(list) => return list.resources.iter().any(|r| r.name == "httproutes"),
            // The group is not served at all: a plain 404 page, not a Status.
            Err(kube::Error::Api(status)) if status.code == 404 => return false,
            Err(error) => {
                tracing::warn!(%error, "route audit: cannot ask the API server whether it serves {GROUP_VERSION} httproutes; asking again");
                tokio::time::sleep(backoff.next().unwrap_or(Duration::from_secs(5))).await;
            }
        }
    }
}

/// A watch of `K` in the scope (one per namespace when several are watched), retried with the
/// controller's backoff, without managedFields.
fn watch<K>(
    client: &Client,
    scope: &WatchScope,
    listed: &mut HashMap<RouteKind, Arc<ScopeStatus>>,
    kind: RouteKind,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    // The merge of several namespaces reads deleted objects back from a store.
    let (store, writer) = reflector::store::<K>();
    let status: Arc<ScopeStatus> = Arc::default();
    listed.insert(kind, status.clone());
    let config = watcher::Config::default().page_size(500);
    scoped_watch(client, scope, (store, status), watch_with(config))
        .modify(|k: &mut K| drop_copies(k.meta_mut()))
        .reflect(writer)
}

/// What wakes the audit.
enum Input {
    Route(RouteKind, Result<watcher::Event<Route>, watcher::Error>),
    /// The deliveries' claims changed.
    Deliveries,
    Resync,
}

/// The audit (and generation) over these watch streams, until they end. HTTPRoutes are left
/// out when `http_routes` is None.
pub async fn audit<I, H>(
    ingresses: I,
    http_routes: Option<H>,
    ctx: Arc<Context>,
    (config, listed): (RoutesConfig, Listed),
    teller: Teller,
) where
    I: Stream<Item = Result<watcher::Event<Ingress>, watcher::Error>> + Send + 'static,
    H: Stream<Item = Result<watcher::Event<HttpRoute>, watcher::Error>> + Send + 'static,
{
    let ingress = |e: Result<watcher::Event<Ingress>, watcher::Error>| {
        Input::Route(
            RouteKind::Ingress,
            e.map(|e| source::route_event(e, Route::of_ingress)),
        )
    };
    let http = |e: Result<watcher::Event<HttpRoute>, watcher::Error>| {
        Input::Route(
            RouteKind::HttpRoute,
            e.map(|e| source::route_event(e, Route::of_http_route)),
        )
    };
    let deliveries = futures::stream::unfold(ctx.index.changes(), |mut rx| async move {
        rx.changed().await.ok()?;
        Some((Input::Deliveries, rx))
    });
    let resync = futures::stream::unfold(tokio::time::interval(RESYNC), |mut tick| async move {
        tick.tick().await;
        Some((Input::Resync, tick))
    });
    let mut kinds = vec![RouteKind::Ingress];
    let mut inputs: Vec<BoxStream<'static, Input>> = vec![
        ingresses.map(ingress).boxed(),
        deliveries.boxed(),
        resync.boxed(),
    ];
    if let Some(routes) = http_routes {
        kinds.push(RouteKind::HttpRoute);
        inputs.push(routes.map(http).boxed());
    }
    let mut state = State {
        routes: Routes::watching(kinds),
        told: Told::default(),
        uncovered: BTreeSet::new(),
        generator: config.generate.then(generate::Generator::default),
        teller,
        listed,
        waiting: false,
    };
    // Whatever arrived together is one pass (a list of a thousand routes is not a thousand).
    let mut inputs = futures::stream::select_all(inputs).ready_chunks(1024);
    while let Some(batch) = inputs.next().await {
        for input in batch {
            if let Input::Route(kind, event) = input {
                match event {
                    Ok(event) => state.routes.apply(kind, event),
                    Err(error) => {
                        tracing::warn!(kind = kind.as_str(), %error, "route audit: the watch failed; retrying")
                    }
                }
            }
        }
        // Before both lists are complete every hostname would look uncovered.
        if state.routes.is_listed() && ctx.index.is_listed() && state.deliveries_listed(&ctx) {
            state.pass(&ctx).await;
        }
    }
}

/// What the audit has published.
struct State {
    routes: Routes,
    told: Told,
    /// The series of `httpsdelivery_uncovered_hostnames` set now.
    uncovered: BTreeSet<(RouteKey, String)>,
    generator: Option<generate::Generator>,
    teller: Teller,
    /// Which namespaces each kind of route has been listed in.
    listed: Listed,
    /// Waiting for a namespace's deliveries to be listed (said once).
    waiting: bool,
}

/// Which namespaces each watched kind of route has been listed in.
pub type Listed = HashMap<RouteKind, Arc<ScopeStatus>>;

impl State {
    /// Whether the deliveries of every watched namespace have been listed: until then a
    /// hostname may look uncovered only because its delivery has not arrived.
    fn deliveries_listed(&mut self, ctx: &Context) -> bool {
        let listed = ctx.deliveries_listed.all_listed();
        if !listed && !self.waiting {
            tracing::info!(
                "route audit: waiting until the deliveries of every watched namespace are listed"
            );
        }
        self.waiting = !listed;
        listed
    }

    /// Generates what is asked for, then publishes the uncovered hostnames: a series each, and
    /// an Event the first time in the route's generation.
    async fn pass(&mut self, ctx: &Context) {
        let generated = match &mut self.generator {
            Some(generator) => {
                let told = (&mut self.told, &self.teller);
                generator
                    .pass((&self.routes, &self.listed), ctx, told)
                    .await
            }
            None => Default::default(),
        };
        let now = audit::uncovered(&self.routes, |h| {
            generated.contains(h) || ctx.index.covers(h)
        });
        for (key, hostname) in self.uncovered.difference(&now) {
            let kind = key.kind.as_str();
            ctx.metrics
                .set_uncovered(&key.namespace, kind, &key.name, hostname, false);
        }
        for (key, hostname) in now.difference(&self.uncovered) {
            let kind = key.kind.as_str();
            ctx.metrics
                .set_uncovered(&key.namespace, kind, &key.name, hostname, true);
            let Some(route) = self.routes.get(key) else {
                continue;
            };
            if self
                .told
                .first_time(route, &format!("UncoveredHostname/{hostname}"))
            {
                let note = format!(
                    "hostname {hostname} of {key} is declared by no HttpsDelivery, so its HTTPS setup is not checked: declare one with spec.hostname {hostname}, or annotate the route with {TEMPLATE_ANNOTATION}: NAME to generate it from a template"
                );
                self.teller
                    .tell(route, false, "UncoveredHostname", note)
                    .await;
            }
        }
        self.uncovered = now;
        self.told.retain(&self.routes);
    }
}

/// Publishes the audit's Events. Each is published once (see `Told`) and says one thing about
/// one hostname, so each is an Event of its own: kube-runtime's Recorder would fold a second
/// hostname's Event of the same reason into the first's series, and its note would be lost.
pub struct Teller {
    client: Client,
    identity: String,
}

impl Teller {
    /// Publishes an events.k8s.io/v1 Event on the route.
    async fn tell(&self, route: &Route, warning: bool, reason: &str, note: String) {
        let namespace = route.key.namespace.clone();
        let now = jiff::Timestamp::now();
        // As the Recorder names them: the object's name, a dot, the time in hex (unique enough:
        // this process publishes one Event at a time).
        let mut name = route.key.name.clone();
        name.truncate(200);
        let event = K8sEvent {
            metadata: ObjectMeta {
                name: Some(format!("{name}.{:x}", now.as_nanosecond())),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            action: Some("AuditRoutes".into()),
            event_time: Some(MicroTime(now)),
            note: Some(truncate(&note, MAX_EVENT_NOTE)),
            reason: Some(reason.into()),
            regarding: Some(ObjectReference {
                api_version: Some(route.key.kind.api_version().into()),
                kind: Some(route.key.kind.as_str().into()),
                name: Some(route.key.name.clone()),
                namespace: Some(namespace.clone()),
                uid: Some(route.uid.clone()),
                ..Default::default()
            }),
            reporting_controller: Some(FIELD_MANAGER.into()),
            reporting_instance: Some(self.identity.clone()),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            ..Default::default()
        };
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(error) = api.create(&PostParams::default(), &event).await {
            tracing::warn!(route = %route.key, reason, %error, "cannot publish an Event");
        }
    }
}
