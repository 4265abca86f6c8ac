use super::*;
use futures::channel::mpsc::{UnboundedSender, unbounded};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Sent = Result<Event<ConfigMap>, watcher::Error>;

/// A merge of fake namespace watches: each namespace's events are sent by the test.
struct Fixture {
    source: UnboundedSender<Result<Event<String>, watcher::Error>>,
    watches: Arc<Mutex<HashMap<String, UnboundedSender<Sent>>>>,
    store: Store<ConfigMap>,
    merged: BoxStream<'static, Result<Event<ConfigMap>, watcher::Error>>,
}

fn cm(ns: &str, name: &str) -> ConfigMap {
    let mut c = ConfigMap::default();
    c.metadata.namespace = Some(ns.into());
    c.metadata.name = Some(name.into());
    c
}

fn fixture() -> Fixture {
    let (source, source_rx) = unbounded();
    let watches: Arc<Mutex<HashMap<String, UnboundedSender<Sent>>>> = Arc::default();
    let (store, writer) = reflector::store::<ConfigMap>();
    let made = watches.clone();
    let merged = merge(source_rx.boxed(), store.clone(), move |ns| {
        let (tx, rx) = unbounded();
        made.lock().unwrap().insert(ns.to_owned(), tx);
        rx.boxed()
    })
    .reflect(writer)
    .boxed();
    Fixture {
        source,
        watches,
        store,
        merged,
    }
}

impl Fixture {
    /// The namespace source lists `list`; returns the merged events that follow.
    async fn namespaces(&mut self, list: &[&str]) -> Vec<String> {
        self.source.unbounded_send(Ok(Event::Init)).unwrap();
        for ns in list {
            self.source
                .unbounded_send(Ok(Event::InitApply(ns.to_string())))
                .unwrap();
        }
        self.source.unbounded_send(Ok(Event::InitDone)).unwrap();
        self.drain().await
    }

    fn send(&self, ns: &str, event: Event<ConfigMap>) {
        self.watches.lock().unwrap()[ns]
            .unbounded_send(Ok(event))
            .unwrap();
    }

    fn list(&self, ns: &str, names: &[&str]) {
        self.send(ns, Event::Init);
        for name in names {
            self.send(ns, Event::InitApply(cm(ns, name)));
        }
        self.send(ns, Event::InitDone);
    }

    /// The merged events until none is ready, as "Kind ns/name" strings.
    async fn drain(&mut self) -> Vec<String> {
        let mut seen = Vec::new();
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(50), self.merged.next()).await
        {
            seen.push(match event {
                Ok(Event::Init) => "Init".into(),
                Ok(Event::InitDone) => "InitDone".into(),
                Ok(Event::InitApply(o)) => {
                    format!("InitApply {}/{}", o.namespace().unwrap(), o.name_any())
                }
                Ok(Event::Apply(o)) => format!("Apply {}/{}", o.namespace().unwrap(), o.name_any()),
                Ok(Event::Delete(o)) => {
                    format!("Delete {}/{}", o.namespace().unwrap(), o.name_any())
                }
                Err(e) => format!("Err {e}"),
            });
        }
        seen
    }

    fn stored(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .store
            .state()
            .iter()
            .map(|o| format!("{}/{}", o.namespace().unwrap(), o.name_any()))
            .collect();
        names.sort();
        names
    }
}

#[tokio::test]
async fn the_store_is_ready_only_once_every_namespace_is_listed() {
    let mut f = fixture();
    assert_eq!(f.namespaces(&["a", "b"]).await, ["Init"]);
    f.list("a", &["a1"]);
    assert_eq!(f.drain().await, ["InitApply a/a1"]);
    assert!(
        f.stored().is_empty(),
        "nothing is stored before both are listed"
    );
    // An object changed in `a` while `b` is still listing goes to the same buffer.
    f.send("a", Event::Apply(cm("a", "a2")));
    f.list("b", &["b1"]);
    assert_eq!(
        f.drain().await,
        ["InitApply a/a2", "InitApply b/b1", "InitDone"]
    );
    assert_eq!(f.stored(), ["a/a1", "a/a2", "b/b1"]);
    assert!(f.store.wait_until_ready().await.is_ok());
}

#[tokio::test]
async fn a_namespace_listed_again_replaces_only_its_own_objects() {
    let mut f = fixture();
    f.namespaces(&["a", "b"]).await;
    f.drain().await;
    f.list("a", &["a1", "a2"]);
    f.list("b", &["b1"]);
    f.drain().await;
    // `a`'s watch restarts: a1 is gone, a3 is new; `b` is untouched.
    f.list("a", &["a2", "a3"]);
    let events = f.drain().await;
    assert_eq!(events, ["Apply a/a2", "Apply a/a3", "Delete a/a1"]);
    assert_eq!(f.stored(), ["a/a2", "a/a3", "b/b1"]);
}

#[tokio::test]
async fn a_namespace_that_leaves_the_scope_takes_its_objects_and_one_that_joins_brings_them() {
    let mut f = fixture();
    f.namespaces(&["a", "b"]).await;
    f.list("a", &["a1"]);
    f.list("b", &["b1", "b2"]);
    f.drain().await;
    f.source
        .unbounded_send(Ok(Event::Delete("b".into())))
        .unwrap();
    let mut events = f.drain().await;
    events.sort();
    assert_eq!(events, ["Delete b/b1", "Delete b/b2"]);
    assert_eq!(f.stored(), ["a/a1"]);
    // The stopped watch is not read any more.
    assert!(f.watches.lock().unwrap()["b"].is_closed());

    f.source
        .unbounded_send(Ok(Event::Apply("c".into())))
        .unwrap();
    f.drain().await;
    f.list("c", &["c1"]);
    assert_eq!(f.drain().await, ["Apply c/c1"]);
    assert_eq!(f.stored(), ["a/a1", "c/c1"]);
}

#[tokio::test]
async fn the_namespace_list_relisted_stops_and_starts_watches() {
    let mut f = fixture();
    f.namespaces(&["a", "b"]).await;
    f.list("a", &["a1"]);
    f.list("b", &["b1"]);
    f.drain().await;
    // The namespace watch restarted: b lost its label meanwhile, c gained it.
    assert_eq!(f.namespaces(&["a", "c"]).await, ["Delete b/b1"]);
    f.list("c", &["c1"]);
    f.drain().await;
    assert_eq!(f.stored(), ["a/a1", "c/c1"]);
}

#[tokio::test]
async fn deletions_before_the_first_sync_are_applied_after_it() {
    let mut f = fixture();
    f.namespaces(&["a", "b"]).await;
    f.list("a", &["a1", "a2"]);
    f.send("a", Event::Delete(cm("a", "a1")));
    // Deleted and made again: the new one stays.
    f.send("a", Event::Delete(cm("a", "a2")));
    f.send("a", Event::Apply(cm("a", "a2")));
    f.list("b", &[]);
    f.drain().await;
    assert_eq!(f.stored(), ["a/a2"]);
}

#[tokio::test]
async fn no_namespace_matching_yet_is_an_empty_synced_scope() {
    let mut f = fixture();
    assert_eq!(f.namespaces(&[]).await, ["Init", "InitDone"]);
    assert!(f.store.wait_until_ready().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_namespace_that_cannot_be_listed_holds_the_others_back_only_until_the_deadline() {
    let mut f = fixture();
    f.namespaces(&["a", "forbidden"]).await;
    f.list("a", &["a1"]);
    assert_eq!(f.drain().await, ["InitApply a/a1"]);
    tokio::time::advance(FIRST_LIST_DEADLINE).await;
    assert_eq!(f.drain().await, ["InitDone"]);
    assert_eq!(f.stored(), ["a/a1"]);
    // Listed at last: its objects come as changes.
    f.list("forbidden", &["f1"]);
    assert_eq!(f.drain().await, ["Apply forbidden/f1"]);
    assert_eq!(f.stored(), ["a/a1", "forbidden/f1"]);
}

#[test]
fn the_flags_make_a_scope_or_a_clear_error() {
    let ns = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(WatchScope::from_flags(&[], None), Ok(WatchScope::All));
    assert_eq!(
        WatchScope::from_flags(&ns(&["shop", "blog", "shop"]), None),
        Ok(WatchScope::Namespaces(ns(&["blog", "shop"])))
    );
    assert_eq!(
        WatchScope::from_flags(&ns(&["shop"]), None)
            .unwrap()
            .single(),
        Some("shop")
    );
    assert_eq!(
        WatchScope::from_flags(&[], Some("team=web")),
        Ok(WatchScope::Selector("team=web".into()))
    );
    let both = WatchScope::from_flags(&ns(&["shop"]), Some("team=web")).unwrap_err();
    assert!(both.contains("cannot be used together"), "{both}");
    let bad = WatchScope::from_flags(&ns(&["Shop"]), None).unwrap_err();
    assert!(
        bad.contains("\"Shop\"") && bad.contains("not a namespace name"),
        "{bad}"
    );
    assert!(!WatchScope::Namespaces(ns(&["a"])).cluster_wide());
    assert!(WatchScope::Selector("team=web".into()).cluster_wide());
}
