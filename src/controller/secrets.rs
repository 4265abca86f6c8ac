//! Secrets read once per change. The metadata watch tells which resourceVersion each Secret is
//! at; a referenced Secret is fetched only when its version is new to this cache, and its
//! parsed content is dropped when the Secret goes or no delivery references it any more.

use crate::checks::secret::SecretContent;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, GetParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

type SecretKey = (String, String);

pub struct SecretCache {
    /// The metadata of every watched Secret (no data), and whether it has been listed once.
    meta: Option<Store<PartialObjectMeta<Secret>>>,
    /// `--secret-label-selector`: only Secrets with these labels are watched and read.
    selector: Option<String>,
    listed: tokio::sync::watch::Sender<bool>,
    /// Parsed content by (namespace, name), with the resourceVersion it was read at.
    parsed: Mutex<HashMap<SecretKey, (String, SecretContent)>>,
    gets: AtomicU64,
}

impl SecretCache {
    /// A cache that follows `meta`, the store of a metadata watch on kubernetes.io/tls Secrets
    /// (with `selector`, only those carrying it).
    pub fn new(meta: Store<PartialObjectMeta<Secret>>, selector: Option<String>) -> Self {
        SecretCache {
            meta: Some(meta),
            selector,
            listed: tokio::sync::watch::Sender::new(false),
            parsed: Mutex::new(HashMap::new()),
            gets: AtomicU64::new(0),
        }
    }

    /// A cache without a watch: every read is a GET (for tests of request shapes).
    pub fn unwatched() -> Self {
        SecretCache {
            meta: None,
            selector: None,
            listed: tokio::sync::watch::Sender::new(false),
            parsed: Mutex::new(HashMap::new()),
            gets: AtomicU64::new(0),
        }
    }

    /// The metadata watch has listed every Secret: from now on, one missing from its store
    /// does not exist.
    pub fn mark_listed(&self) {
        self.listed.send_replace(true);
    }

    /// Waits (a little) for the first list of Secrets, so that a Secret is not called missing
    /// only because the watch has not listed it yet.
    async fn wait_listed(&self) -> bool {
        let mut listed = self.listed.subscribe();
        let wait = listed.wait_for(|l| *l);
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(10), wait).await,
            Ok(Ok(_))
        )
    }

    /// GETs sent since the cache was made.
    pub fn gets(&self) -> u64 {
        self.gets.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SecretKey, (String, SecretContent)>> {
        self.parsed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What Secret `namespace/name` holds, read from the API only when it changed.
    pub async fn read(&self, client: &Client, namespace: &str, name: &str) -> SecretContent {
        let key = (namespace.to_string(), name.to_string());
        // The version the watch reported: the GET asks for that one or newer, which the API
        // server answers from its watch cache instead of a quorum read from etcd.
        let mut watched_version = None;
        if let Some(meta) = &self.meta {
            let listed = self.wait_listed().await;
            match meta.get(&ObjectRef::new(name).within(namespace)) {
                Some(m) => {
                    let version = m.resource_version();
                    if let Some((cached, content)) = self.lock().get(&key)
                        && Some(cached) == version.as_ref()
                    {
                        return content.clone();
                    }
                    watched_version = version;
                }
                None if listed => {
                    self.forget(namespace, name);
                    return self.absent();
                }
                // Not listed in time: only a selector-less cache may ask (a GET would read a
                // Secret the selector excludes).
                None if self.selector.is_some() => return self.absent(),
                None => {}
            }
        }
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
