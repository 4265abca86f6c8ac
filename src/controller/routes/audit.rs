//! The audit's state: the routes known from the watches, which of their hostnames no
//! HttpsDelivery covers, and what has already been told about each route (so that an Event is
//! published once per route generation, not every cycle).

use super::source::{Route, RouteKey, RouteKind};
use kube::runtime::watcher;
use std::collections::{BTreeSet, HashMap, HashSet};

/// The routes of the watched kinds, kept from their watch events.
#[derive(Debug, Default)]
pub struct Routes {
    routes: HashMap<RouteKey, Route>,
    /// Per kind, the routes listed since its watch (re)started, until the list is complete.
    relist: HashMap<RouteKind, HashMap<RouteKey, Route>>,
    /// The kinds whose first list is complete.
    listed: HashSet<RouteKind>,
    /// The kinds watched.
    watched: HashSet<RouteKind>,
}

impl Routes {
    pub fn watching(kinds: impl IntoIterator<Item = RouteKind>) -> Routes {
        Routes {
            watched: kinds.into_iter().collect(),
            ..Routes::default()
        }
    }

    /// Applies one watch event of `kind`.
    pub fn apply(&mut self, kind: RouteKind, event: watcher::Event<Route>) {
        match event {
            watcher::Event::Apply(route) => {
                self.routes.insert(route.key.clone(), route);
            }
            watcher::Event::Delete(route) => {
                self.routes.remove(&route.key);
            }
            watcher::Event::Init => {
                self.relist.insert(kind, HashMap::new());
            }
            watcher::Event::InitApply(route) => {
                if let Some(relist) = self.relist.get_mut(&kind) {
                    relist.insert(route.key.clone(), route);
                }
            }
            watcher::Event::InitDone => {
                let listed = self.relist.remove(&kind).unwrap_or_default();
                self.routes.retain(|key, _| key.kind != kind);
                self.routes.extend(listed);
                self.listed.insert(kind);
            }
        }
    }

    /// Every watched kind has been listed once.
    pub fn is_listed(&self) -> bool {
        self.watched.is_subset(&self.listed)
    }

    /// The routes, in a stable order (kind, namespace, name): the first of several routes
    /// wanting the same generated hostname is the one that gets it.
    pub fn sorted(&self) -> Vec<&Route> {
        let mut all: Vec<&Route> = self.routes.values().collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    pub fn get(&self, key: &RouteKey) -> Option<&Route> {
        self.routes.get(key)
    }

    pub fn contains(&self, key: &RouteKey) -> bool {
        self.routes.contains_key(key)
    }
}

/// The (route, hostname) pairs whose hostname `covered` says no delivery declares.
pub fn uncovered(routes: &Routes, covered: impl Fn(&str) -> bool) -> BTreeSet<(RouteKey, String)> {
    routes
        .routes
        .values()
        .flat_map(|r| r.hostnames.iter().map(move |h| (r, h)))
        .filter(|(_, h)| !covered(h))
        .map(|(r, h)| (r.key.clone(), h.clone()))
        .collect()
}

/// What has been said about each route in its current generation.
#[derive(Debug, Default)]
pub struct Told {
    routes: HashMap<RouteKey, (String, i64, HashSet<String>)>,
}

impl Told {
    /// True the first time `what` is told about `route` in its current generation (a new
    /// generation, or a new object of the same name, starts afresh).
    pub fn first_time(&mut self, route: &Route, what: &str) -> bool {
        let entry = self
            .routes
            .entry(route.key.clone())
            .or_insert_with(|| (route.uid.clone(), route.generation, HashSet::new()));
        if (entry.0.as_str(), entry.1) != (route.uid.as_str(), route.generation) {
            *entry = (route.uid.clone(), route.generation, HashSet::new());
        }
        entry.2.insert(what.to_owned())
    }

    /// Forgets the routes that are gone.
    pub fn retain(&mut self, routes: &Routes) {
        self.routes.retain(|key, _| routes.contains(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(kind: RouteKind, name: &str, generation: i64, hosts: &[&str]) -> Route {
        Route {
            key: RouteKey {
                kind,
                namespace: "web".into(),
                name: name.into(),
            },
            uid: format!("uid-{name}"),
            generation,
            hostnames: hosts.iter().map(|h| h.to_string()).collect(),
            wildcards: BTreeSet::new(),
            template: None,
        }
    }

    fn names(set: &BTreeSet<(RouteKey, String)>) -> Vec<String> {
        set.iter().map(|(k, h)| format!("{}:{h}", k.name)).collect()
    }

    #[test]
    fn only_hostnames_nobody_covers_are_uncovered() {
        let mut routes = Routes::watching([RouteKind::Ingress, RouteKind::HttpRoute]);
        let shop = route(
            RouteKind::Ingress,
            "shop",
            1,
            &["www.shop.example", "api.shop.example"],
        );
        routes.apply(RouteKind::Ingress, watcher::Event::Apply(shop.clone()));
        assert!(!routes.is_listed(), "HTTPRoutes are not listed yet");
        routes.apply(RouteKind::HttpRoute, watcher::Event::Init);
        routes.apply(RouteKind::HttpRoute, watcher::Event::InitDone);
        routes.apply(RouteKind::Ingress, watcher::Event::Init);
        routes.apply(RouteKind::Ingress, watcher::Event::InitApply(shop));
        routes.apply(RouteKind::Ingress, watcher::Event::InitDone);
        assert!(routes.is_listed());
        let covered = |h: &str| h == "www.shop.example";
        assert_eq!(
            names(&uncovered(&routes, covered)),
            ["shop:api.shop.example"]
        );
        assert_eq!(names(&uncovered(&routes, |_| true)), Vec::<String>::new());
    }

    #[test]
    fn a_relist_drops_the_routes_deleted_meanwhile_of_its_kind_only() {
        let mut routes = Routes::watching([RouteKind::Ingress, RouteKind::HttpRoute]);
        let a = route(RouteKind::Ingress, "a", 1, &["a.example"]);
        let b = route(RouteKind::HttpRoute, "b", 1, &["b.example"]);
        routes.apply(RouteKind::Ingress, watcher::Event::Apply(a.clone()));
        routes.apply(RouteKind::HttpRoute, watcher::Event::Apply(b.clone()));
        routes.apply(RouteKind::Ingress, watcher::Event::Init);
        assert!(routes.contains(&a.key), "kept until the list is complete");
        routes.apply(RouteKind::Ingress, watcher::Event::InitDone);
        assert!(!routes.contains(&a.key));
        assert!(routes.contains(&b.key));
        routes.apply(RouteKind::HttpRoute, watcher::Event::Delete(b.clone()));
        assert!(routes.sorted().is_empty());
    }

    #[test]
    fn something_is_told_once_per_generation() {
        let mut told = Told::default();
        let g1 = route(RouteKind::Ingress, "shop", 1, &["www.shop.example"]);
        assert!(told.first_time(&g1, "UncoveredHostname/www.shop.example"));
        assert!(!told.first_time(&g1, "UncoveredHostname/www.shop.example"));
        assert!(told.first_time(&g1, "UncoveredHostname/api.shop.example"));
        let g2 = route(RouteKind::Ingress, "shop", 2, &["www.shop.example"]);
        assert!(told.first_time(&g2, "UncoveredHostname/www.shop.example"));
        let mut recreated = g2.clone();
        recreated.uid = "uid-new".into();
        assert!(told.first_time(&recreated, "UncoveredHostname/www.shop.example"));
        told.retain(&Routes::default());
        assert!(told.first_time(&recreated, "UncoveredHostname/www.shop.example"));
    }
}
