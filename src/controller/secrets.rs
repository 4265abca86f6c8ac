//! Secrets read once per change. The metadata watch tells which resourceVersion each Secret is
//! at; a referenced Secret is fetched only when its version is new to this cache, and its
//! parsed content is dropped when the Secret goes or no delivery references it any more.
//!
//! The first read after start lists the referenced Secrets in pages (one request per 250
//! Secrets, where a GET each would be one per Secret); later changes are fetched one by one.

use super::index::DeliveryIndex;
use super::scope::ScopeStatus;
use crate::checks::secret::SecretContent;
use crate::checks::secret::TLS_TYPE;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, GetParams, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

type SecretKey = (String, String);

pub struct SecretCache {
    /// The metadata of every watched Secret (no data), and whether it has been listed once.
    meta: Option<Store<PartialObjectMeta<Secret>>>,
    /// Which namespaces' Secrets the metadata watch has listed (several watched namespaces).
    scope: Arc<ScopeStatus>,
    /// `--secret-label-selector`: only Secrets with these labels are watched and read.
    selector: Option<String>,
    listed: tokio::sync::watch::Sender<bool>,
    /// Parsed content by (namespace, name), with the resourceVersion it was read at.
    parsed: Mutex<HashMap<SecretKey, (String, SecretContent)>>,
    /// How the first read lists the Secrets of the scope; None: every read is a GET.
    first_read_from: Option<FirstRead>,
    /// Whether every delivery has been listed once (the first read keeps only what they use).
    deliveries_listed: tokio::sync::watch::Sender<bool>,
    first_read: tokio::sync::OnceCell<()>,
    /// Secrets whose content was read from the API server, and of those, read with a GET.
    reads: AtomicU64,
    gets: AtomicU64,
}

/// Where the first read lists Secrets.
pub enum FirstRead {
    /// Every namespace at once (the operator watches them all).
    All(Api<Secret>),
    /// Each namespace where a delivery references a Secret, one after the other (the
    /// operator watches some namespaces, and may read only those).
    ByNamespace(Client),
}

/// Secrets per page of the first read (a TLS Secret is a few kilobytes).
const FIRST_READ_PAGE: u32 = 250;

impl SecretCache {
    /// A cache that follows `meta`, the store of a metadata watch on kubernetes.io/tls Secrets
    /// (with `selector`, only those carrying it).
    pub fn new(meta: Store<PartialObjectMeta<Secret>>, selector: Option<String>) -> Self {
        SecretCache {
            meta: Some(meta),
            selector,
            ..Self::unwatched()
        }
    }

    /// Lets the first read list the Secrets of the operator's scope in pages.
    pub fn with_first_read(mut self, from: FirstRead) -> Self {
        self.first_read_from = Some(from);
        self
    }

    /// A cache without a watch: every read is a GET (for tests of request shapes).
    pub fn unwatched() -> Self {
        SecretCache {
            meta: None,
            selector: None,
            scope: Arc::default(),
            listed: tokio::sync::watch::Sender::new(false),
            parsed: Mutex::new(HashMap::new()),
            first_read_from: None,
            deliveries_listed: tokio::sync::watch::Sender::new(false),
            first_read: tokio::sync::OnceCell::new(),
            reads: AtomicU64::new(0),
            gets: AtomicU64::new(0),
        }
    }

    /// The metadata watch has listed every Secret: from now on, one missing from its store
    /// does not exist.
    pub fn mark_listed(&self) {
        self.listed.send_replace(true);
    }

    /// What the metadata watch reports of its namespaces (for `scoped_watch`).
    pub fn scope_status(&self) -> Arc<ScopeStatus> {
        self.scope.clone()
    }

    /// The Secrets the operator reads, as (field selector, label selector): kubernetes.io/tls
    /// ones, and with `--secret-label-selector` only those carrying it. The metadata watch and
    /// the first read both select with these, so neither sees a Secret the other cannot.
    pub fn selectors(&self) -> (String, Option<&str>) {
        (format!("type={TLS_TYPE}"), self.selector.as_deref())
    }

    /// Every delivery of the scope has been listed once: the index knows which Secrets are
    /// referenced.
    pub fn mark_deliveries_listed(&self) {
        self.deliveries_listed.send_replace(true);
    }

    /// Waits (a little) for the first list of Secrets, so that a Secret is not called missing
    /// only because the watch has not listed it yet.
    async fn wait_listed(&self) -> bool {
        wait_for(&self.listed, std::time::Duration::from_secs(10)).await
    }

    /// Secrets whose content was read from the API server since the cache was made.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Of those, the ones read with a GET of their own.
    pub fn gets(&self) -> u64 {
        self.gets.load(Ordering::Relaxed)
    }

    fn cached_at(&self, key: &SecretKey, version: Option<&String>) -> Option<SecretContent> {
        let parsed = self.lock();
        let (cached, content) = parsed.get(key)?;
        (Some(cached) == version).then(|| content.clone())
    }

    /// The first read: every Secret of the scope that a delivery references, listed in pages
    /// once the deliveries have been listed (so that the index knows them all). A failure
    /// leaves the Secrets to be read one by one.
    async fn read_all(&self, index: &DeliveryIndex) {
        let Some(from) = &self.first_read_from else {
            return;
        };
        if !wait_for(&self.deliveries_listed, std::time::Duration::from_secs(30)).await {
            return;
        }
        match from {
            FirstRead::All(api) => self.read_pages(api, index).await,
            FirstRead::ByNamespace(client) => {
                for namespace in index.secret_namespaces() {
                    let api = Api::namespaced(client.clone(), &namespace);
                    self.read_pages(&api, index).await;
                }
            }
        }
    }

    /// The Secrets of `api` that a delivery references, in pages.
    async fn read_pages(&self, api: &Api<Secret>, index: &DeliveryIndex) {
        let (fields, labels) = self.selectors();
        let mut params = ListParams::default().fields(&fields).limit(FIRST_READ_PAGE);
        if let Some(labels) = labels {
            params = params.labels(labels);
        }
        loop {
            let page = match api.list(&params).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "listing Secrets failed; reading them one by one");
                    return;
                }
            };
            for secret in &page.items {
                let (namespace, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
                if let Some(version) = secret.resource_version()
                    && !index.referencing(&namespace, &name).is_empty()
                {
                    self.reads.fetch_add(1, Ordering::Relaxed);
                    let content = SecretContent::from_secret(secret);
                    self.lock().insert((namespace, name), (version, content));
                }
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return,
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SecretKey, (String, SecretContent)>> {
        self.parsed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What Secret `namespace/name` holds, read from the API only when it changed.
    pub async fn read(
        &self,
        client: &Client,
        index: &DeliveryIndex,
        namespace: &str,
        name: &str,
    ) -> SecretContent {
        let key = (namespace.to_string(), name.to_string());
        // The version the watch reported: the GET asks for that one or newer, which the API
        // server answers from its watch cache instead of a quorum read from etcd.
        let mut watched_version = None;
        if let Some(meta) = &self.meta {
            let listed = self.wait_listed().await;
            match meta.get(&ObjectRef::new(name).within(namespace)) {
                Some(m) => {
                    let version = m.resource_version();
                    if let Some(content) = self.cached_at(&key, version.as_ref()) {
                        return content;
                    }
                    if self.first_read_from.is_some() {
                        self.first_read.get_or_init(|| self.read_all(index)).await;
                        if let Some(content) = self.cached_at(&key, version.as_ref()) {
                            return content;
                        }
                    }
                    watched_version = version;
                }
                // A namespace that just joined the scope may not be listed yet.
                None if listed && self.scope.is_listed(namespace) => {
                    self.forget(namespace, name);
                    return self.absent();
                }
                // Not listed in time: only a selector-less cache may ask (a GET would read a
                // Secret the selector excludes).
                None if self.selector.is_some() => return self.absent(),
                None => {}
            }
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.gets.fetch_add(1, Ordering::Relaxed);
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let read = match &watched_version {
            Some(version) => match api.get_with(name, &GetParams::at(version)).await {
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
                other => other.map(Some),
            },
            None => api.get_opt(name).await,
        };
        match read {
            Ok(Some(secret)) => {
                let content = SecretContent::from_secret(&secret);
                if let Some(version) = secret.resource_version() {
                    self.lock().insert(key, (version, content.clone()));
                }
                content
            }
            Ok(None) => {
                self.forget(namespace, name);
                SecretContent::NotFound
            }
            // The error's text names the Secret and the cause; it never holds the Secret's data.
            Err(e) => SecretContent::ReadFailed(e.to_string()),
        }
    }

    /// What a Secret outside the watch reads as.
    fn absent(&self) -> SecretContent {
        match &self.selector {
            Some(selector) => SecretContent::NotAllowed {
                selector: selector.clone(),
            },
            None => SecretContent::NotFound,
        }
    }

    /// Drops what is cached of Secret `namespace/name` (it went, or nothing references it).
    pub fn forget(&self, namespace: &str, name: &str) {
        self.lock()
            .remove(&(namespace.to_string(), name.to_string()));
    }

    /// Secrets whose content is cached.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Waits up to `limit` for `flag` to be true.
async fn wait_for(flag: &tokio::sync::watch::Sender<bool>, limit: std::time::Duration) -> bool {
    let mut flag = flag.subscribe();
    let wait = flag.wait_for(|set| *set);
    matches!(tokio::time::timeout(limit, wait).await, Ok(Ok(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::index::tests::{T1, delivery};
    use http::{Request, Response};
    use kube::client::Body;
    use kube::core::ObjectMeta;
    use kube::runtime::{reflector, watcher};
    use serde_json::json;

    fn secret_json(name: &str, version: &str) -> serde_json::Value {
        secret_json_in("shop", name, version)
    }

    fn secret_json_in(namespace: &str, name: &str, version: &str) -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": version},
            "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"}
        })
    }

    fn page(items: Vec<serde_json::Value>, next: &str) -> Response<Body> {
        let body = json!({
            "apiVersion": "v1", "kind": "SecretList",
            "metadata": {"resourceVersion": "100", "continue": next},
            "items": items
        });
        Response::new(Body::from(serde_json::to_vec(&body).expect("JSON")))
    }

    /// The first read lists the Secrets in pages, follows the continue token, keeps only the
    /// referenced ones, and sends no GET; later reads come from the cache.
    #[tokio::test]
    async fn the_first_read_lists_in_pages_and_keeps_only_referenced_secrets() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "shop");
        let (store, mut writer) = reflector::store::<PartialObjectMeta<Secret>>();
        for (name, version) in [("www-tls", "11"), ("other-tls", "12"), ("img-tls", "13")] {
            let meta = PartialObjectMeta::<Secret> {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some("shop".into()),
                    resource_version: Some(version.into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            writer.apply_watcher_event(&watcher::Event::Apply(meta));
        }
        let cache = SecretCache::new(store, Some("certs=cdn".into()))
            .with_first_read(FirstRead::All(Api::namespaced(client.clone(), "shop")));
        cache.mark_listed();
        let index = DeliveryIndex::default();
        for name in ["www", "img"] {
            let hostname = format!("{name}.shop.example");
            index.observe(&watcher::Event::Apply(delivery(
                "shop", name, &hostname, T1,
            )));
        }
        cache.mark_deliveries_listed();

        let server = tokio::spawn(async move {
            let mut queries = Vec::new();
            for response in [
                page(vec![secret_json("www-tls", "11")], "next-page"),
                page(
                    vec![secret_json("other-tls", "12"), secret_json("img-tls", "13")],
                    "",
                ),
            ] {
                let (request, send) = handle.next_request().await.expect("a request");
                assert_eq!(request.method(), http::Method::GET);
                assert_eq!(request.uri().path(), "/api/v1/namespaces/shop/secrets");
                queries.push(request.uri().query().unwrap_or_default().to_string());
                send.send_response(response);
            }
            queries
        });
        let content = cache.read(&client, &index, "shop", "www-tls").await;
        let queries = server.await.expect("the mock server");
        assert_eq!(
            content,
            SecretContent::Tls {
                cert_pem: b"cert".to_vec(),
                key_pem: Some(crate::checks::secret::SecretKey::from_pem(b"key".to_vec())),
            }
        );
        for query in &queries {
            assert!(
                query.contains("limit=250")
                    && query.contains("fieldSelector=type%3Dkubernetes.io%2Ftls")
                    && query.contains("labelSelector=certs%3Dcdn"),
                "{query}"
            );
        }
        assert!(!queries[0].contains("continue="), "{}", queries[0]);
        assert!(queries[1].contains("continue=next-page"), "{}", queries[1]);
        // www-tls and img-tls are referenced and kept; other-tls is not.
        assert_eq!((cache.reads(), cache.gets(), cache.len()), (2, 0, 2));
        // img-tls comes from the cache: the mock has no answer left, so a request would fail.
        assert!(matches!(
            cache.read(&client, &index, "shop", "img-tls").await,
            SecretContent::Tls { .. }
        ));
        assert_eq!((cache.reads(), cache.gets()), (2, 0));
    }

    /// Watching some namespaces, the first read lists only those where a delivery references a
    /// Secret, one after the other, never the whole cluster (a Role in each is all it has).
    #[tokio::test]
    async fn the_first_read_by_namespace_lists_only_the_namespaces_with_references() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let (store, mut writer) = reflector::store::<PartialObjectMeta<Secret>>();
        for ns in ["shop", "blog"] {
            let meta = PartialObjectMeta::<Secret> {
                metadata: ObjectMeta {
                    name: Some("www-tls".into()),
                    namespace: Some(ns.into()),
                    resource_version: Some("7".into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            writer.apply_watcher_event(&watcher::Event::Apply(meta));
        }
        let cache =
            SecretCache::new(store, None).with_first_read(FirstRead::ByNamespace(client.clone()));
        cache.mark_listed();
        let index = DeliveryIndex::default();
        for (ns, hostname) in [("shop", "www.shop.example"), ("blog", "www.blog.example")] {
            index.observe(&watcher::Event::Apply(delivery(ns, "www", hostname, T1)));
        }
        cache.mark_deliveries_listed();

        let server = tokio::spawn(async move {
            let mut paths = Vec::new();
            for ns in ["blog", "shop"] {
                let (request, send) = handle.next_request().await.expect("a request");
                paths.push(request.uri().path().to_string());
                send.send_response(page(vec![secret_json_in(ns, "www-tls", "7")], ""));
            }
            paths
        });
        let content = cache.read(&client, &index, "shop", "www-tls").await;
        assert!(matches!(content, SecretContent::Tls { .. }), "{content:?}");
        let paths = server.await.expect("the mock server");
        assert_eq!(
            paths,
            [
                "/api/v1/namespaces/blog/secrets",
                "/api/v1/namespaces/shop/secrets"
            ]
        );
        // blog's came with the same first read: no request left to make.
        assert!(matches!(
            cache.read(&client, &index, "blog", "www-tls").await,
            SecretContent::Tls { .. }
        ));
        assert_eq!((cache.reads(), cache.gets()), (2, 0));
    }
}
