//! What the route audit keeps of an Ingress or an HTTPRoute: its hostnames, its generation and
//! its template annotation; and the small HTTPRoute type it is read into.

use k8s_openapi::api::networking::v1::Ingress;
use kube::api::ObjectMeta;
use kube::core::NamespaceResourceScope;
use kube::runtime::watcher;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeSet;

/// The annotation that asks for generated deliveries: its value names the template ConfigMap.
pub const TEMPLATE_ANNOTATION: &str = "httpsdelivery.dev/template";

/// The two kinds of route the audit reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKind {
    Ingress,
    HttpRoute,
}

impl RouteKind {
    /// The Kubernetes kind, as labels, Events and logs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Ingress => "Ingress",
            RouteKind::HttpRoute => "HTTPRoute",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            RouteKind::Ingress => "networking.k8s.io/v1",
            RouteKind::HttpRoute => "gateway.networking.k8s.io/v1",
        }
    }
}

/// A route's identity: kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    pub kind: RouteKind,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for RouteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

/// What the audit needs of one route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub key: RouteKey,
    pub uid: String,
    pub generation: i64,
    /// Exact (non-wildcard) hostnames, lower-case, without a trailing dot, each once.
    pub hostnames: BTreeSet<String>,
    /// Wildcard hostnames (`*.shop.example`) and single labels (`intranet`): no HttpsDelivery
    /// can name one (the CRD wants a dotted name), so they are neither reported nor generated
    /// (see the README, "Routes as a source").
    pub wildcards: BTreeSet<String>,
    /// The value of [`TEMPLATE_ANNOTATION`], when set and not empty.
    pub template: Option<String>,
}

impl Route {
    fn new(kind: RouteKind, meta: &ObjectMeta, hosts: impl IntoIterator<Item = String>) -> Route {
        let (mut hostnames, mut wildcards) = (BTreeSet::new(), BTreeSet::new());
        for host in hosts {
            let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
            if host.is_empty() {
                continue;
            }
            if host.starts_with('*') || !host.contains('.') {
                wildcards.insert(host);
            } else {
                hostnames.insert(host);
            }
        }
        Route {
            key: RouteKey {
                kind,
                namespace: meta.namespace.clone().unwrap_or_default(),
                name: meta.name.clone().unwrap_or_default(),
            },
            uid: meta.uid.clone().unwrap_or_default(),
            generation: meta.generation.unwrap_or_default(),
            hostnames,
            wildcards,
            template: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(TEMPLATE_ANNOTATION))
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty()),
        }
    }

    /// The hosts of `spec.rules[].host` and `spec.tls[].hosts`.
    pub fn of_ingress(ingress: &Ingress) -> Route {
        let spec = ingress.spec.as_ref();
        let rules = spec
            .and_then(|s| s.rules.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|r| r.host.clone());
        let tls = spec
            .and_then(|s| s.tls.as_ref())
            .into_iter()
            .flatten()
            .flat_map(|t| t.hosts.clone().unwrap_or_default());
        Route::new(RouteKind::Ingress, &ingress.metadata, rules.chain(tls))
    }

    /// The hosts of `spec.hostnames`.
    pub fn of_http_route(route: &HttpRoute) -> Route {
        Route::new(
            RouteKind::HttpRoute,
            &route.metadata,
            route.spec.hostnames.iter().cloned(),
        )
    }
}

/// A watch event of either kind, as routes.
pub fn route_event<K>(event: watcher::Event<K>, of: fn(&K) -> Route) -> watcher::Event<Route> {
    match event {
        watcher::Event::Apply(k) => watcher::Event::Apply(of(&k)),
        watcher::Event::Delete(k) => watcher::Event::Delete(of(&k)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(k) => watcher::Event::InitApply(of(&k)),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// A Gateway API `HTTPRoute` (gateway.networking.k8s.io/v1), with only the fields the audit
/// reads: everything else in the object is ignored when it is read, and never written.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct HttpRoute {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: HttpRouteSpec,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct HttpRouteSpec {
    #[serde(default)]
    pub hostnames: Vec<String>,
}

impl kube::Resource for HttpRoute {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "HTTPRoute".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "gateway.networking.k8s.io".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "httproutes".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_ingress_gives_its_rule_and_tls_hosts_once_each_and_wildcards_apart() {
        let ingress: Ingress = serde_json::from_value(json!({
            "metadata": {"name": "shop", "namespace": "web", "uid": "u1", "generation": 3,
                         "annotations": {TEMPLATE_ANNOTATION: " cdn "}},
            "spec": {
                "rules": [{"host": "www.shop.example"}, {"host": "API.shop.example."}, {}],
                "tls": [{"hosts": ["www.shop.example", "*.img.shop.example"]}, {}],
            },
        }))
        .expect("an Ingress");
        let route = Route::of_ingress(&ingress);
        assert_eq!(route.key.to_string(), "Ingress web/shop");
        assert_eq!(route.generation, 3);
        assert_eq!(
            route.hostnames.iter().collect::<Vec<_>>(),
            ["api.shop.example", "www.shop.example"]
        );
        assert_eq!(
            route.wildcards.iter().collect::<Vec<_>>(),
            ["*.img.shop.example"]
        );
        assert_eq!(route.template.as_deref(), Some("cdn"));
    }

    #[test]
    fn an_http_route_is_read_from_its_hostnames_and_other_fields_are_ignored() {
        let route: HttpRoute = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "web"},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["shop.example"],
                     "rules": [{"backendRefs": [{"name": "svc", "port": 80}]}]},
        }))
        .expect("an HTTPRoute");
        let route = Route::of_http_route(&route);
        assert_eq!(route.key.kind, RouteKind::HttpRoute);
        assert_eq!(route.hostnames.iter().collect::<Vec<_>>(), ["shop.example"]);
        assert_eq!(route.template, None);
        let empty: HttpRoute =
            serde_json::from_value(json!({"metadata": {"name": "e"}})).expect("no spec");
        assert!(Route::of_http_route(&empty).hostnames.is_empty());
    }
}
