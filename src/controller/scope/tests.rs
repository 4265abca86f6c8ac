use super::*;
use futures::channel::mpsc::{UnboundedSender, unbounded};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector;
use std::sync::Mutex;
use std::time::Duration;

type Sent = Result<Event<ConfigMap>, watcher::Error>;

/// A merge of fake namespace watches: each namespace's events are sent by the test.
struct Fixture {
    source: UnboundedSender<Result<Event<String>, watcher::Error>>,
    watches: Arc<Mutex<HashMap<String, UnboundedSender<Sent>>>>,
    store: Store<ConfigMap>,
    status: Arc<ScopeStatus>,
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
    let status: Arc<ScopeStatus> = Arc::default();
    let merged = merge(
        source_rx.boxed(),
        (store.clone(), status.clone()),
        move |ns| {
            let (tx, rx) = unbounded();
            made.lock().unwrap().insert(ns.to_owned(), tx);
            rx.boxed()
        },
    )
    .reflect(writer)
    .boxed();
    Fixture {
        source,
        watches,
        store,
        status,
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

    fn fail(&self, ns: &str) {
        let error = watcher::Error::NoResourceVersion;
        self.watches.lock().unwrap()[ns]
            .unbounded_send(Err(error))
            .unwrap();
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

#[tokio::test(start_paused = true)]
async fn the_deadline_counts_from_when_the_namespaces_are_known() {
    let mut f = fixture();
    // The namespace watch takes longer than the deadline to answer.
    tokio::time::advance(FIRST_LIST_DEADLINE * 2).await;
    f.namespaces(&["a", "b"]).await;
    f.list("a", &["a1"]);
    assert_eq!(f.drain().await, ["InitApply a/a1"], "b still has its time");
    assert!(!f.status.all_listed() && !f.status.is_listed("b") && f.status.is_listed("a"));
    tokio::time::advance(FIRST_LIST_DEADLINE).await;
    assert_eq!(f.drain().await, ["InitDone"]);
    // Served without b, but b is still known as not listed (its Secrets, its routes).
    assert!(!f.status.is_listed("b"));
    f.list("b", &[]);
    f.drain().await;
    assert!(f.status.all_listed());
}

#[tokio::test]
async fn readiness_counts_a_failing_namespace_only_once_it_was_listed() {
    let mut f = fixture();
    f.namespaces(&["a", "forbidden"]).await;
    f.fail("forbidden");
    f.list("a", &["a1"]);
    f.drain().await;
    assert!(
        f.status.watching(false),
        "never listed: logged, not held against readiness"
    );
    f.fail("a");
    f.drain().await;
    assert!(!f.status.watching(true), "a was listed and now fails");
    f.send("a", Event::Apply(cm("a", "a2")));
    f.drain().await;
    assert!(f.status.watching(true), "a works again");
}

#[tokio::test]
async fn a_namespace_that_joins_is_unlisted_until_its_list_is_done() {
    let mut f = fixture();
    f.namespaces(&["a"]).await;
    f.list("a", &[]);
    f.drain().await;
    assert!(f.status.all_listed());
    f.source
        .unbounded_send(Ok(Event::Apply("b".into())))
        .unwrap();
    f.drain().await;
    assert!(!f.status.is_listed("b"));
    f.list("b", &["b1"]);
    f.drain().await;
    assert!(f.status.is_listed("b"));
}

#[tokio::test]
async fn an_object_that_comes_back_is_passed_again_though_its_generation_is_the_same() {
    let with_generation = |name: &str, generation: i64| {
        let mut c = cm("a", name);
        c.metadata.uid = Some(format!("uid-{name}"));
        c.metadata.generation = Some(generation);
        c
    };
    let events = futures::stream::iter(
        [
            Event::Init,
            Event::InitApply(with_generation("x", 1)),
            Event::InitApply(with_generation("y", 1)),
            Event::InitDone,
            // A status write: same generation, not passed.
            Event::Apply(with_generation("x", 1)),
            Event::Apply(with_generation("x", 2)),
            // Its namespace leaves the scope and comes back: passed again.
            Event::Delete(with_generation("x", 2)),
            Event::Apply(with_generation("x", 2)),
            // A new list without y forgets it: y coming back is passed.
            Event::Init,
            Event::InitApply(with_generation("x", 2)),
            Event::InitDone,
            Event::Apply(with_generation("y", 1)),
        ]
        .map(Ok),
    );
    let passed: Vec<String> = new_generations(events)
        .map(|o| {
            let o = o.unwrap();
            format!("{}@{}", o.name_any(), o.metadata.generation.unwrap())
        })
        .collect()
        .await;
    assert_eq!(passed, ["x@1", "y@1", "x@2", "x@2", "y@1"]);
}
