//! What the operator watches: every namespace, a list of them, or the namespaces carrying a
//! label, and one watch stream over them however many there are.
//!
//! With several namespaces, each gets a watch of its own (a Role in each is enough to read
//! it). [`scoped_watch`] merges them into one stream of watcher events with the meaning of a
//! single watch, so that one reflector store, one index and one controller serve them all:
//! one `Init` at the start, the objects of every namespace as `InitApply`, and one `InitDone`
//! once each namespace has been listed. After that, a namespace listed again (its watch
//! restarted, or it just gained the label) is passed on as `Apply` events followed by a
//! `Delete` for each of its objects that the new list no longer has; a namespace that leaves
//! the scope is passed on as a `Delete` of each of its objects.

use futures::StreamExt;
use futures::stream::{AbortHandle, BoxStream, SelectAll};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource, ResourceExt};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::sync::Arc;

/// The namespaces the operator watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchScope {
    /// Every namespace (a ClusterRole).
    All,
    /// These namespaces, sorted and without repeats, never empty (a Role in each).
    Namespaces(Vec<String>),
    /// The namespaces whose labels match this selector, as they come and go.
    Selector(String),
}

impl WatchScope {
    /// The scope `--watch-namespace` (repeatable, or a comma list) and
    /// `--watch-namespace-selector` ask for. Both at once is an error.
    pub fn from_flags(namespaces: &[String], selector: Option<&str>) -> Result<Self, String> {
        let listed: BTreeSet<String> = namespaces
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        for ns in &listed {
            if !crate::cli::input::is_dns_label(ns) {
                return Err(format!(
                    "--watch-namespace {ns:?}: not a namespace name (lower-case letters, digits \
                     and '-', at most 63 characters)"
                ));
            }
        }
        let selector = selector.map(str::trim).filter(|s| !s.is_empty());
        match (listed.is_empty(), selector) {
            (true, None) => Ok(WatchScope::All),
            (false, None) => Ok(WatchScope::Namespaces(listed.into_iter().collect())),
            (true, Some(s)) => Ok(WatchScope::Selector(s.to_owned())),
            (false, Some(_)) => Err(
                "--watch-namespace and --watch-namespace-selector cannot be used together: \
                 list the namespaces, or label them"
                    .into(),
            ),
        }
    }

    /// The one namespace watched, when there is exactly one.
    pub fn single(&self) -> Option<&str> {
        match self {
            WatchScope::Namespaces(list) if list.len() == 1 => list.first().map(String::as_str),
            _ => None,
        }
    }

    /// Whether cluster-scoped objects (ClusterCdnAccounts) can be read: not with Roles only.
    pub fn cluster_wide(&self) -> bool {
        !matches!(self, WatchScope::Namespaces(_))
    }
}

impl std::fmt::Display for WatchScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchScope::All => f.write_str("all namespaces"),
            WatchScope::Namespaces(list) => write!(f, "namespaces {}", list.join(",")),
            WatchScope::Selector(s) => write!(f, "namespaces labelled {s}"),
        }
    }
}

/// Checks once, before anything is watched, that the API server accepts the namespace
/// selector and lets the operator list namespaces with it: a typo or a missing ClusterRole
/// rule is a clear error at start instead of a watch that fails forever.
pub async fn check_selector(client: &Client, scope: &WatchScope) -> Result<(), String> {
    let WatchScope::Selector(selector) = scope else {
        return Ok(());
    };
    let api: Api<Namespace> = Api::all(client.clone());
    match api
        .list_metadata(&ListParams::default().labels(selector).limit(1))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 400 || status.code == 403 => Err(format!(
            "--watch-namespace-selector {selector:?}: the API server refused to list namespaces \
             with it: {} (a selector is written like team=web or team in (web,shop); listing \
             namespaces needs a ClusterRole)",
            status.message
        )),
        // Anything else is transient: the watch retries.
        Err(_) => Ok(()),
    }
}

/// What one scoped watch knows of its namespaces, for those who must not take a namespace not
/// listed yet for an empty one, and for readiness.
#[derive(Debug, Default)]
pub struct ScopeStatus {
    inner: std::sync::Mutex<StatusInner>,
}

#[derive(Debug, Default)]
struct StatusInner {
    /// Several watches are merged (otherwise the watch's own events tell everything).
    merged: bool,
    /// Namespaces in the scope whose objects have not all been listed yet.
    unlisted: BTreeSet<String>,
    /// Namespaces whose watch fails (no Role there, the Role removed); those listed once count
    /// against readiness.
    failing: BTreeSet<String>,
    /// The namespace watch (of a selector) fails.
    source_failing: bool,
}

impl ScopeStatus {
    fn lock(&self) -> std::sync::MutexGuard<'_, StatusInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether every object of `namespace` has been listed (always, for a single watch: its
    /// `InitDone` says so).
    pub fn is_listed(&self, namespace: &str) -> bool {
        !self.lock().unlisted.contains(namespace)
    }

    /// Whether every namespace of the scope has been listed.
    pub fn all_listed(&self) -> bool {
        self.lock().unlisted.is_empty()
    }

    /// Whether the scope can be watched, after an event that was `ok`: for merged watches,
    /// no namespace listed once is failing (one never listed, e.g. without a Role yet, is
    /// logged, not counted: the others are served).
    pub fn watching(&self, ok: bool) -> bool {
        let inner = self.lock();
        if !inner.merged {
            return ok;
        }
        let listed_failing = inner.failing.iter().any(|ns| !inner.unlisted.contains(ns));
        !listed_failing && !inner.source_failing
    }

    fn update(&self, change: impl FnOnce(&mut StatusInner)) {
        change(&mut self.lock());
    }
}

/// A stream of watcher events, as `watcher()` gives them.
pub type Events<K> = BoxStream<'static, Result<Event<K>, watcher::Error>>;

/// One watch stream over `scope`. `watch` makes the watch of one API (already backed off);
/// `store` is the reflector store the returned stream feeds, read to pass on the deletion of
/// objects whose namespace left the scope or that a new list no longer has.
pub fn scoped_watch<K, W>(
    client: &Client,
    scope: &WatchScope,
    (store, status): (Store<K>, Arc<ScopeStatus>),
    watch: W,
) -> Events<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Send
        + Sync
        + 'static,
    W: Fn(Api<K>) -> Events<K> + Send + 'static,
{
    match scope {
        WatchScope::All => watch(Api::all(client.clone())),
        WatchScope::Namespaces(list) if list.len() == 1 => {
            watch(Api::namespaced(client.clone(), &list[0]))
        }
        WatchScope::Namespaces(list) => {
            let listed: Vec<_> = list.iter().cloned().map(Event::InitApply).collect();
            let source = futures::stream::iter(
                std::iter::once(Event::Init)
                    .chain(listed)
                    .chain(std::iter::once(Event::InitDone))
                    .map(Ok),
            )
            .chain(futures::stream::pending());
            let client = client.clone();
            merge(source.boxed(), (store, status), move |ns| {
                watch(Api::namespaced(client.clone(), ns))
            })
        }
        WatchScope::Selector(selector) => {
            let client = client.clone();
            let source = namespaces_labelled(&client, selector);
            merge(source, (store, status), move |ns| {
                watch(Api::namespaced(client.clone(), ns))
            })
        }
    }
}

/// The names of the namespaces matching `selector`, as watcher events.
fn namespaces_labelled(client: &Client, selector: &str) -> Events<String> {
    use kube::runtime::WatchStreamExt;
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
    watcher::watcher(api, watcher::Config::default().labels(selector))
        .default_backoff()
        .map(|event| {
            event.map(|e| match e {
                Event::Apply(ns) => Event::Apply(ns.name_any()),
                Event::Delete(ns) => Event::Delete(ns.name_any()),
                Event::Init => Event::Init,
                Event::InitApply(ns) => Event::InitApply(ns.name_any()),
                Event::InitDone => Event::InitDone,
            })
        })
        .boxed()
}

/// The events of one namespace's watch, with its name.
type Tagged<K> = BoxStream<'static, (String, Result<Event<K>, watcher::Error>)>;

/// Makes the watch of one namespace.
type MakeWatch<K> = Box<dyn Fn(&str) -> Events<K> + Send>;

/// What the merge knows of one watched namespace (whether it has been listed once is in
/// the `ScopeStatus`).
struct Watched {
    stop: AbortHandle,
    /// The names of its objects passed on.
    names: HashSet<String>,
    /// The names listed since its watch (re)started, until the list is complete.
    relist: Option<HashSet<String>>,
}

/// A deletion passed on once the store has the object (it is read when the event is sent).
enum Out<K> {
    Event(Result<Event<K>, watcher::Error>),
    Delete(String, String),
}

struct Merge<K: Resource<DynamicType = ()> + Clone + 'static> {
    source: Events<String>,
    streams: SelectAll<Tagged<K>>,
    make: MakeWatch<K>,
    store: Store<K>,
    status: Arc<ScopeStatus>,
    namespaces: HashMap<String, Watched>,
    /// The namespace list while the source is (re)listing.
    source_relist: Option<BTreeSet<String>>,
    source_listed: bool,
    /// Whether the merged `InitDone` has been sent: before it, objects go to the store's
    /// buffer (InitApply) and deletions wait until after it.
    synced: bool,
    after_sync: Vec<(String, String)>,
    /// A namespace that cannot be listed (no Role there yet) holds the others back until
    /// then, not longer.
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    out: VecDeque<Out<K>>,
}

/// How long the first list of every namespace may take before the others are served anyway.
pub const FIRST_LIST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

fn merge<K, F>(
    source: Events<String>,
    (store, status): (Store<K>, Arc<ScopeStatus>),
    make: F,
) -> Events<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
    F: Fn(&str) -> Events<K> + Send + 'static,
{
    status.update(|s| s.merged = true);
    let state = Merge {
        source,
        streams: SelectAll::new(),
        make: Box::new(make),
        store,
        status,
        namespaces: HashMap::new(),
        source_relist: None,
        source_listed: false,
        synced: false,
        after_sync: Vec::new(),
        deadline: Box::pin(tokio::time::sleep(FIRST_LIST_DEADLINE)),
        out: VecDeque::from([Out::Event(Ok(Event::Init))]),
    };
    futures::stream::unfold(state, |mut state| async move {
        let next = state.next().await;
        next.map(|event| (event, state))
    })
    .boxed()
}

impl<K> Merge<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
{
    async fn next(&mut self) -> Option<Result<Event<K>, watcher::Error>> {
        loop {
            while let Some(out) = self.out.pop_front() {
                match out {
                    Out::Event(event) => return Some(event),
                    Out::Delete(ns, name) => {
                        let key = ObjectRef::new(&name).within(&ns);
                        if let Some(obj) = self.store.get(&key) {
                            return Some(Ok(Event::Delete(obj.as_ref().clone())));
                        }
                    }
                }
            }
            let watching = !self.streams.is_empty();
            let waiting = !self.synced && self.source_listed;
            tokio::select! {
                () = &mut self.deadline, if waiting => self.sync_without_unlisted(),
                change = self.source.next() => match change {
                    Some(change) => self.on_source(change),
                    // The namespace watch never ends; if it did, so does the merged watch.
                    None => return None,
                },
                Some((ns, event)) = self.streams.next(), if watching => self.on_event(ns, event),
            }
        }
    }

    fn on_source(&mut self, change: Result<Event<String>, watcher::Error>) {
        match change {
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the namespaces of the selector");
                self.status.update(|s| s.source_failing = true);
                self.out.push_back(Out::Event(Err(e)));
            }
            Ok(Event::Init) => self.source_relist = Some(BTreeSet::new()),
            Ok(Event::InitApply(ns)) => {
                if let Some(relist) = &mut self.source_relist {
                    relist.insert(ns);
                }
            }
            Ok(Event::InitDone) => {
                let listed = self.source_relist.take().unwrap_or_default();
                let gone: Vec<String> = self
                    .namespaces
                    .keys()
                    .filter(|ns| !listed.contains(*ns))
                    .cloned()
                    .collect();
                for ns in gone {
                    self.stop_watching(&ns);
                }
                for ns in listed {
                    self.start_watching(ns);
                }
                if !self.source_listed {
                    // The namespaces are known only now: their first lists get the whole time.
                    let at = tokio::time::Instant::now() + FIRST_LIST_DEADLINE;
                    self.deadline.as_mut().reset(at);
                }
                self.source_listed = true;
                self.status.update(|s| s.source_failing = false);
                self.send_init_done_once_listed();
            }
            Ok(Event::Apply(ns)) => self.start_watching(ns),
            Ok(Event::Delete(ns)) => {
                self.stop_watching(&ns);
                self.send_init_done_once_listed();
            }
        }
    }

    fn start_watching(&mut self, ns: String) {
        if self.namespaces.contains_key(&ns) {
            return;
        }
        tracing::info!(namespace = %ns, "watching namespace");
        self.status.update(|s| {
            s.unlisted.insert(ns.clone());
        });
        let (events, stop) = futures::stream::abortable((self.make)(&ns));
        let tag = ns.clone();
        self.streams
            .push(events.map(move |e| (tag.clone(), e)).boxed());
        self.namespaces.insert(
            ns,
            Watched {
                stop,
                names: HashSet::new(),
                relist: None,
            },
        );
    }

    fn stop_watching(&mut self, ns: &str) {
        let Some(watched) = self.namespaces.remove(ns) else {
            return;
        };
        tracing::info!(namespace = %ns, objects = watched.names.len(), "no longer watching namespace");
        self.status.update(|s| {
            s.unlisted.remove(ns);
            s.failing.remove(ns);
        });
        watched.stop.abort();
        for name in watched.names {
            self.delete(ns.to_owned(), name);
        }
    }

    fn delete(&mut self, ns: String, name: String) {
        if self.synced {
            self.out.push_back(Out::Delete(ns, name));
        } else {
            self.after_sync.push((ns, name));
        }
    }

    fn on_event(&mut self, ns: String, event: Result<Event<K>, watcher::Error>) {
        let synced = self.synced;
        if !self.namespaces.contains_key(&ns) {
            return;
        }
        let event = match event {
            Err(e) => return self.on_error(ns, e),
            Ok(event) => event,
        };
        if self.status.lock().failing.remove(&ns) {
            tracing::info!(namespace = %ns, "watching namespace again");
        }
        let Some(watched) = self.namespaces.get_mut(&ns) else {
            return;
        };
        match event {
            Event::Init => watched.relist = Some(HashSet::new()),
            Event::InitApply(obj) | Event::Apply(obj) => {
                let name = obj.name_any();
                if let Some(relist) = &mut watched.relist {
                    relist.insert(name.clone());
                }
                watched.names.insert(name.clone());
                self.after_sync.retain(|(n, o)| (n, o) != (&ns, &name));
                let event = if synced {
                    Event::Apply(obj)
                } else {
                    Event::InitApply(obj)
                };
                self.out.push_back(Out::Event(Ok(event)));
            }
            Event::Delete(obj) => {
                watched.names.remove(&obj.name_any());
                if synced {
                    self.out.push_back(Out::Event(Ok(Event::Delete(obj))));
                } else {
                    self.after_sync.push((ns, obj.name_any()));
                }
            }
            Event::InitDone => {
                let listed = watched.relist.take().unwrap_or_default();
                let gone: Vec<String> = watched.names.difference(&listed).cloned().collect();
                watched.names = listed;
                self.status.update(|s| {
                    s.unlisted.remove(&ns);
                });
                for name in gone {
                    self.delete(ns.clone(), name);
                }
                self.send_init_done_once_listed();
            }
        }
    }

    /// A namespace's watch failed: logged once until it works again; counted against
    /// readiness only once the namespace has been listed.
    fn on_error(&mut self, ns: String, e: watcher::Error) {
        let listed = self.status.is_listed(&ns);
        if self.status.lock().failing.insert(ns.clone()) {
            tracing::warn!(namespace = %ns, error = %e, listed, "cannot watch namespace; retrying");
        }
        self.out.push_back(Out::Event(Err(e)));
    }

    /// The first list of some namespace is late: serve the others (its objects will come as
    /// `Apply` events once it is listed).
    fn sync_without_unlisted(&mut self) {
        let late: Vec<String> = self.status.lock().unlisted.iter().cloned().collect();
        tracing::warn!(
            namespaces = %late.join(","),
            deadline = ?FIRST_LIST_DEADLINE,
            "these namespaces could not be listed in time (is the operator's Role there?); \
             serving the others, and these once they can be listed"
        );
        self.send_init_done();
    }

    /// The merged `InitDone`: once the namespaces are known and each has been listed.
    fn send_init_done_once_listed(&mut self) {
        if self.synced || !self.source_listed || !self.status.all_listed() {
            return;
        }
        self.send_init_done();
    }

    fn send_init_done(&mut self) {
        self.synced = true;
        self.out.push_back(Out::Event(Ok(Event::InitDone)));
        for (ns, name) in std::mem::take(&mut self.after_sync) {
            self.out.push_back(Out::Delete(ns, name));
        }
    }
}

/// The objects of `events` (read after the store) whose generation is new: what
/// kube-runtime's `predicates::generation` filter passes, except that an object deleted (or
/// whose namespace left the scope) is forgotten at once, so that it is reconciled again when
/// it comes back, and one gone by a new list is forgotten at its `InitDone`.
pub fn new_generations<K, S>(events: S) -> impl futures::Stream<Item = Result<K, watcher::Error>>
where
    K: Resource,
    S: futures::Stream<Item = Result<Event<K>, watcher::Error>>,
{
    let mut seen: HashMap<(String, String), u64> = HashMap::new();
    let mut relist: Option<HashSet<(String, String)>> = None;
    events.filter_map(move |event| {
        let passed = match event {
            Err(e) => Some(Err(e)),
            Ok(Event::Apply(obj) | Event::InitApply(obj)) => {
                let key = (obj.namespace().unwrap_or_default(), obj.name_any());
                if let Some(listed) = &mut relist {
                    listed.insert(key.clone());
                }
                let is_new = match obj.meta().generation {
                    Some(generation) => {
                        let id = generation_id(obj.meta().uid.as_deref(), generation);
                        seen.insert(key, id) != Some(id)
                    }
                    None => true,
                };
                is_new.then_some(Ok(obj))
            }
            Ok(Event::Delete(obj)) => {
                seen.remove(&(obj.namespace().unwrap_or_default(), obj.name_any()));
                None
            }
            Ok(Event::Init) => {
                relist = Some(HashSet::new());
                None
            }
            Ok(Event::InitDone) => {
                if let Some(listed) = relist.take() {
                    seen.retain(|key, _| listed.contains(key));
                }
                None
            }
        };
        std::future::ready(passed)
    })
}

/// One number for an object's uid and generation (a new object of the same name is new).
fn generation_id(uid: Option<&str>, generation: i64) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    uid.hash(&mut hasher);
    generation.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests;
