//! Indexes over the watched deliveries, kept from the watch itself: who claims each hostname
//! and who references each Secret. No reconcile and no watch event scans the store. The route
//! audit reads the claims too (`covers`, `claimants`) and is told when they change.

use super::Guarded;
use super::routes::GeneratedFrom;
use crate::checks::inventory::{self, Claim};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// Who keeps a hostname when several deliveries claim it: the oldest object, then by
/// namespace and name (the order is the one rule of `checks::inventory::conflicts`).
pub type Precedence = (Option<jiff::Timestamp>, String, String);

/// What the index keeps of one delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    hostname: String,
    secret: Option<String>,
    precedence: Precedence,
    /// Generated from a route (it carries the routes' managed-by label), not written by hand.
    generated: Option<GeneratedFrom>,
}

impl Entry {
    /// None for an object that cannot be read or is being deleted: it claims nothing.
    fn of(guarded: &Guarded) -> Option<Entry> {
        let d = guarded.0.as_ref().ok()?;
        if d.metadata.deletion_timestamp.is_some() {
            return None;
        }
        Some(Entry {
            hostname: d.spec.hostname.clone(),
            secret: d
                .spec
                .certificate
                .secret_ref
                .as_ref()
                .map(|r| r.name.clone()),
            precedence: (
                d.metadata.creation_timestamp.as_ref().map(|t| t.0),
                d.namespace().unwrap_or_default(),
                d.name_any(),
            ),
            generated: super::routes::generated_from(&d.metadata),
        })
    }
}

type Key = ObjectRef<Guarded>;

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    /// The claimants of each hostname: nearly always one, so a vector (a map would reserve
    /// room for several in every entry).
    claims: HashMap<String, Vec<(Key, Precedence)>>,
    /// The deliveries referencing each Secret (a vector for the same reason).
    secrets: HashMap<(String, String), Vec<Key>>,
    /// Objects listed since the watch (re)started, until the list is complete.
    relist: Option<HashMap<Key, Entry>>,
    /// An entry changed since the last event was observed.
    touched: bool,
    /// Secrets no delivery references any more, since the last event.
    released: Vec<(String, String)>,
    /// A complete list has arrived once: from then on, a hostname without claims is unclaimed.
    listed: bool,
}

/// One delivery claiming a hostname, as the route audit sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimant {
    pub namespace: String,
    pub name: String,
    /// Generated from a route rather than written by hand.
    pub generated: bool,
}

/// What one watch event changed that others must act on.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Deliveries to look at again: the owner of a hostname they claim changed hands.
    pub recheck: Vec<Key>,
    /// Secrets (namespace, name) that no delivery references any more.
    pub released: Vec<(String, String)>,
}

pub struct DeliveryIndex {
    inner: Mutex<Inner>,
    /// Bumped whenever a claim changes (and when the first list is complete), for the route
    /// audit, which looks at its routes again then.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Default for DeliveryIndex {
    fn default() -> Self {
        DeliveryIndex {
            inner: Mutex::default(),
            changes: tokio::sync::watch::Sender::new(0),
        }
    }
}

/// The object's namespace and name only (without the resourceVersion and uid that
/// `ObjectRef::from_obj` carries, which the index would otherwise hold three times).
fn key_of(guarded: &Guarded) -> Key {
    let key = ObjectRef::new(&guarded.name_any());
    match guarded.namespace() {
        Some(namespace) => key.within(&namespace),
        None => key,
    }
}

fn namespace_of(key: &Key) -> String {
    key.namespace.clone().unwrap_or_default()
}

impl DeliveryIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one watch event.
    pub fn observe(&self, event: &watcher::Event<Guarded>) -> Change {
        let mut inner = self.lock();
        let recheck = inner.apply(event);
        let touched = std::mem::take(&mut inner.touched);
        if touched || matches!(event, watcher::Event::InitDone) {
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        Change {
            recheck,
            released: std::mem::take(&mut inner.released),
        }
    }

    /// Whether any delivery claims `hostname`.
    pub fn covers(&self, hostname: &str) -> bool {
        self.lock().claims.contains_key(hostname)
    }

    /// The deliveries that claim `hostname`.
    pub fn claimants(&self, hostname: &str) -> Vec<Claimant> {
        let inner = self.lock();
        let Some(claims) = inner.claims.get(hostname) else {
            return Vec::new();
        };
        claims
            .iter()
            .map(|(key, _)| Claimant {
                namespace: namespace_of(key),
                name: key.name.clone(),
                generated: inner
                    .entries
                    .get(key)
                    .is_some_and(|e| e.generated.is_some()),
            })
            .collect()
    }

    /// Every generated delivery, with the hostname it claims and what it was generated from.
    pub fn generated(&self) -> Vec<(String, Claimant, GeneratedFrom)> {
        let inner = self.lock();
        inner
            .entries
            .iter()
            .filter_map(|(key, e)| {
                let claimant = Claimant {
                    namespace: namespace_of(key),
                    name: key.name.clone(),
                    generated: true,
                };
                Some((e.hostname.clone(), claimant, e.generated?))
            })
            .collect()
    }

    /// Whether a complete list of the deliveries has arrived (before, every hostname looks
    /// unclaimed).
    pub fn is_listed(&self) -> bool {
        self.lock().listed
    }

    /// A receiver that sees a new value after each change of the claims.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The delivery (`namespace/name`) that keeps `key`'s hostname, when it is another one.
    pub fn conflict_of(&self, key: &Key) -> Option<String> {
        let inner = self.lock();
        let entry = inner.entries.get(key)?;
        let owner = inner.owner(&entry.hostname)?;
        (&owner != key).then(|| format!("{}/{}", namespace_of(&owner), owner.name))
    }

    /// The deliveries that reference Secret `namespace/name`.
    pub fn referencing(&self, namespace: &str, name: &str) -> Vec<Key> {
        self.lock()
            .secrets
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// The namespaces where some delivery references a Secret.
    pub fn secret_namespaces(&self) -> std::collections::BTreeSet<String> {
        self.lock()
            .secrets
            .keys()
            .map(|(ns, _)| ns.clone())
            .collect()
    }

    /// How many deliveries are indexed.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn apply(&mut self, event: &watcher::Event<Guarded>) -> Vec<Key> {
        match event {
            watcher::Event::Apply(g) => self.set(key_of(g), Entry::of(g)),
            watcher::Event::Delete(g) => self.set(key_of(g), None),
            watcher::Event::Init => {
                self.relist = Some(HashMap::new());
                Vec::new()
            }
            watcher::Event::InitApply(g) => {
                if let (Some(relist), Some(entry)) = (self.relist.as_mut(), Entry::of(g)) {
                    relist.insert(key_of(g), entry);
                }
                Vec::new()
            }
            watcher::Event::InitDone => self.replace_all(),
        }
    }

    /// The claimant that keeps `hostname`, by the one conflict rule.
    fn owner(&self, hostname: &str) -> Option<Key> {
        let claimants = self.claims.get(hostname)?;
        let claims: Vec<Claim<'_, &Precedence>> = claimants
            .iter()
            .map(|(k, p)| Claim {
                key: format!("{}/{}", namespace_of(k), k.name),
                hostname,
                precedence: p,
            })
            .collect();
        let losers = inventory::conflicts(&claims);
        claimants
            .iter()
            .map(|(k, _)| k)
            .find(|k| !losers.contains_key(&format!("{}/{}", namespace_of(k), k.name)))
            .cloned()
    }

    /// Puts (or with None removes) one delivery; returns the claimants of every hostname whose
    /// owner changed.
    fn set(&mut self, key: Key, entry: Option<Entry>) -> Vec<Key> {
        let old = self.entries.get(&key).cloned();
        if old == entry {
            return Vec::new();
        }
        self.touched = true;
        let hostnames: Vec<String> = [&old, &entry]
            .into_iter()
            .flatten()
            .map(|e| e.hostname.clone())
            .collect();
        let before: Vec<Option<Key>> = hostnames.iter().map(|h| self.owner(h)).collect();
        if let Some(old) = &old {
            self.unlink(&key, old);
        }
        match entry {
            Some(entry) => {
                self.link(&key, &entry);
                self.entries.insert(key, entry);
            }
            None => {
                self.entries.remove(&key);
            }
        }
        self.changed_hands(&hostnames, &before)
    }

    fn link(&mut self, key: &Key, entry: &Entry) {
        // Room for exactly one: a first push would reserve four.
        self.claims
            .entry(entry.hostname.clone())
            .or_insert_with(|| Vec::with_capacity(1))
            .push((key.clone(), entry.precedence.clone()));
        if let Some(secret) = &entry.secret {
            self.secrets
                .entry((namespace_of(key), secret.clone()))
                .or_insert_with(|| Vec::with_capacity(1))
                .push(key.clone());
        }
    }

    fn unlink(&mut self, key: &Key, entry: &Entry) {
        if let Some(claimants) = self.claims.get_mut(&entry.hostname) {
            claimants.retain(|(k, _)| k != key);
            if claimants.is_empty() {
                self.claims.remove(&entry.hostname);
            }
        }
        if let Some(secret) = &entry.secret {
            let id = (namespace_of(key), secret.clone());
            if let Some(keys) = self.secrets.get_mut(&id) {
                keys.retain(|k| k != key);
                if keys.is_empty() {
                    self.secrets.remove(&id);
                    self.released.push(id);
                }
            }
        }
    }

    /// The claimants of each of `hostnames` whose owner is not what it was `before`.
    fn changed_hands(&self, hostnames: &[String], before: &[Option<Key>]) -> Vec<Key> {
        let mut out = Vec::new();
        for (hostname, was) in hostnames.iter().zip(before) {
            if &self.owner(hostname) != was
                && let Some(claimants) = self.claims.get(hostname)
            {
                out.extend(claimants.iter().map(|(k, _)| k.clone()));
            }
        }
        out
    }

    /// A complete list arrived after the watch (re)started: it replaces the index.
    fn replace_all(&mut self) -> Vec<Key> {
        let Some(listed) = self.relist.take() else {
            return Vec::new();
        };
        let hostnames: HashSet<String> = self
            .entries
            .values()
            .chain(listed.values())
            .map(|e| e.hostname.clone())
            .collect();
        let hostnames: Vec<String> = hostnames.into_iter().collect();
        let before: Vec<Option<Key>> = hostnames.iter().map(|h| self.owner(h)).collect();
        let previous: HashSet<(String, String)> = self.secrets.keys().cloned().collect();
        *self = Inner {
            listed: true,
            ..Inner::default()
        };
        for (key, entry) in listed {
            self.link(&key, &entry);
            self.entries.insert(key, entry);
        }
        self.released = previous
            .into_iter()
            .filter(|id| !self.secrets.contains_key(id))
            .collect();
        self.changed_hands(&hostnames, &before)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::{HttpsDelivery, SecretReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::core::DeserializeGuard;

    /// Delivery `ns/name` claiming `hostname`, created at `created`, with Secret `{name}-tls`.
    pub(crate) fn delivery(ns: &str, name: &str, hostname: &str, created: &str) -> Guarded {
        let mut spec = crate::checks::fixtures::crd_spec();
        spec.hostname = hostname.into();
        spec.certificate.secret_ref = Some(SecretReference {
            name: format!("{name}-tls"),
        });
        let mut d = HttpsDelivery::new(name, spec);
        d.metadata.namespace = Some(ns.into());
        d.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
        DeserializeGuard(Ok(d))
    }

    fn names(mut keys: Vec<Key>) -> Vec<String> {
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        keys.into_iter().map(|k| k.name).collect()
    }

    pub(crate) const T1: &str = "2026-01-01T00:00:00Z";
    const T2: &str = "2026-01-02T00:00:00Z";
    const T3: &str = "2026-01-03T00:00:00Z";

    #[test]
    fn the_oldest_claim_keeps_the_hostname_through_create_rename_delete_and_recreate() {
        let index = DeliveryIndex::default();
        let a = delivery("shop", "a", "www.shop.example", T1);
        let b = delivery("web", "b", "www.shop.example", T2);
        index.observe(&watcher::Event::Apply(a.clone()));
        let moved = index.observe(&watcher::Event::Apply(b.clone())).recheck;
        assert!(moved.is_empty(), "a still owns the hostname: {moved:?}");
        assert_eq!(index.conflict_of(&key_of(&b)), Some("shop/a".into()));
        assert_eq!(index.conflict_of(&key_of(&a)), None);

        // a moves to another hostname: b takes www over, and both are looked at again.
        let renamed = delivery("shop", "a", "api.shop.example", T1);
        let moved = index
            .observe(&watcher::Event::Apply(renamed.clone()))
            .recheck;
        assert_eq!(names(moved), ["a", "b"]);
        assert_eq!(index.conflict_of(&key_of(&b)), None);

        // a comes back to www: being older, it takes it back.
        let moved = index.observe(&watcher::Event::Apply(a.clone())).recheck;
        assert_eq!(names(moved), ["a", "b"]);
        assert_eq!(index.conflict_of(&key_of(&b)), Some("shop/a".into()));

        // a is deleted: b owns www; a re-created later is younger and loses.
        let moved = index.observe(&watcher::Event::Delete(a.clone())).recheck;
        assert_eq!(names(moved), ["b"]);
        assert_eq!(index.conflict_of(&key_of(&b)), None);
        let recreated = delivery("shop", "a", "www.shop.example", T3);
        let moved = index
            .observe(&watcher::Event::Apply(recreated.clone()))
            .recheck;
        assert!(moved.is_empty(), "b still owns it: {moved:?}");
        assert_eq!(index.conflict_of(&key_of(&recreated)), Some("web/b".into()));
    }

    #[test]
    fn unrelated_changes_move_nothing() {
        let index = DeliveryIndex::default();
        let a = delivery("shop", "a", "www.shop.example", T1);
        let b = delivery("web", "b", "www.shop.example", T2);
        let c = delivery("other", "c", "img.other.example", T1);
        for g in [&a, &b, &c] {
            index.observe(&watcher::Event::Apply(g.clone()));
        }
        let mut annotated = c.clone();
        if let Ok(d) = annotated.0.as_mut() {
            d.metadata.annotations = Some([("x".to_string(), "y".to_string())].into());
        }
        assert!(
            index
                .observe(&watcher::Event::Apply(annotated))
                .recheck
                .is_empty()
        );
        assert!(
            index
                .observe(&watcher::Event::Apply(b.clone()))
                .recheck
                .is_empty()
        );
    }

    #[test]
    fn a_deleting_object_gives_its_claim_up() {
        let index = DeliveryIndex::default();
        let a = delivery("shop", "a", "www.shop.example", T1);
        let b = delivery("web", "b", "www.shop.example", T2);
        index.observe(&watcher::Event::Apply(a.clone()));
        index.observe(&watcher::Event::Apply(b.clone()));
        let mut deleting = a.clone();
        if let Ok(d) = deleting.0.as_mut() {
            d.metadata.deletion_timestamp = Some(Time(T3.parse().unwrap()));
        }
        assert_eq!(
            names(index.observe(&watcher::Event::Apply(deleting)).recheck),
            ["b"]
        );
        assert_eq!(index.conflict_of(&key_of(&b)), None);
    }

    #[test]
    fn the_route_audit_reads_claims_and_is_told_when_they_change() {
        let index = DeliveryIndex::default();
        let mut changes = index.changes();
        let a = delivery("shop", "a", "www.shop.example", T1);
        let mut generated = delivery("web", "gen", "www.shop.example", T2);
        if let Ok(d) = generated.0.as_mut() {
            d.metadata.labels = Some(
                [(
                    crate::controller::routes::GENERATED_BY_LABEL.to_string(),
                    crate::controller::routes::ROUTES_FIELD_MANAGER.to_string(),
                )]
                .into(),
            );
            d.metadata.annotations = Some(
                [(
                    crate::controller::routes::ROUTE_ANNOTATION.to_string(),
                    "HTTPRoute/web".to_string(),
                )]
                .into(),
            );
        }
        assert!(!index.is_listed());
        index.observe(&watcher::Event::Init);
        index.observe(&watcher::Event::InitApply(a.clone()));
        assert!(
            !changes.has_changed().unwrap(),
            "not before the list is complete"
        );
        index.observe(&watcher::Event::InitDone);
        assert!(index.is_listed());
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        assert!(index.covers("www.shop.example"));
        assert!(!index.covers("api.shop.example"));

        index.observe(&watcher::Event::Apply(generated.clone()));
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        let mut claimants = index.claimants("www.shop.example");
        claimants.sort_by(|x, y| x.name.cmp(&y.name));
        assert_eq!(
            claimants,
            [
                Claimant {
                    namespace: "shop".into(),
                    name: "a".into(),
                    generated: false
                },
                Claimant {
                    namespace: "web".into(),
                    name: "gen".into(),
                    generated: true
                },
            ]
        );
        assert_eq!(
            index.generated(),
            [(
                "www.shop.example".to_string(),
                claimants[1].clone(),
                GeneratedFrom::Route(crate::controller::routes::RouteKind::HttpRoute)
            )]
        );

        // The same object again changes no claim and tells nobody.
        index.observe(&watcher::Event::Apply(generated.clone()));
        assert!(!changes.has_changed().unwrap());
        index.observe(&watcher::Event::Delete(a));
        assert!(changes.has_changed().unwrap());
        assert!(
            index
                .claimants("www.shop.example")
                .iter()
                .all(|c| c.generated)
        );
    }

    #[test]
    fn secrets_are_indexed_by_namespace_and_name() {
        let index = DeliveryIndex::default();
        let a = delivery("shop", "a", "www.shop.example", T1);
        index.observe(&watcher::Event::Apply(a.clone()));
        assert_eq!(names(index.referencing("shop", "a-tls")), ["a"]);
        assert!(index.referencing("web", "a-tls").is_empty());
        let change = index.observe(&watcher::Event::Delete(a));
        assert!(index.referencing("shop", "a-tls").is_empty());
        assert_eq!(change.released, [("shop".to_string(), "a-tls".to_string())]);
    }

    #[test]
    fn a_relist_replaces_the_index_and_reports_new_owners() {
        let index = DeliveryIndex::default();
        let a = delivery("shop", "a", "www.shop.example", T1);
        let b = delivery("web", "b", "www.shop.example", T2);
        index.observe(&watcher::Event::Apply(a.clone()));
        index.observe(&watcher::Event::Apply(b.clone()));
        // a was deleted while the watch was down: the relist no longer has it.
        index.observe(&watcher::Event::Init);
        index.observe(&watcher::Event::InitApply(b.clone()));
        assert_eq!(
            index.conflict_of(&key_of(&b)),
            Some("shop/a".into()),
            "until the list is complete"
        );
        assert_eq!(
            names(index.observe(&watcher::Event::InitDone).recheck),
            ["b"]
        );
        assert_eq!(index.conflict_of(&key_of(&b)), None);
        assert_eq!(index.len(), 1);
    }
}
