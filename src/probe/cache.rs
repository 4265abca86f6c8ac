//! A process-wide cache of observations: each distinct key (a DNS name, a TLS endpoint) is
//! fetched once, every caller that asks while it is in flight joins that one fetch, and its
//! answer is reused while it is fresh (within the cache's window and the answer's own maximum
//! age, such as a DNS record's TTL).

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// What a fetch produced, when, and for how long it may be reused at most.
#[derive(Clone, Debug)]
pub struct Fetched<V> {
    pub value: V,
    pub max_age: Duration,
    /// When it was observed: its age counts from there, even when nobody was waiting for it
    /// then, or when it is built on an older answer.
    pub at: Instant,
}

impl<V> Fetched<V> {
    /// An answer observed now.
    pub fn now(value: V, max_age: Duration) -> Self {
        Fetched {
            value,
            max_age,
            at: Instant::now(),
        }
    }
}

#[derive(Clone)]
struct Done<V> {
    value: V,
    at: Instant,
    max_age: Duration,
}

type Pending<V> = Shared<BoxFuture<'static, Done<V>>>;

pub struct SharedCache<K, V: Clone> {
    entries: Mutex<Entries<K, V>>,
    window: Duration,
}

struct Entries<K, V: Clone> {
    map: HashMap<K, Pending<V>>,
    /// Stale entries are swept when the map reaches this size, so that names no longer asked
    /// for do not accumulate.
    sweep_at: usize,
}

const FIRST_SWEEP: usize = 1024;

impl<K: Hash + Eq + Clone, V: Clone + Send + Sync + 'static> SharedCache<K, V> {
    /// `window`: the longest any answer is reused (Duration::MAX for "as long as the cache lives").
    pub fn new(window: Duration) -> Self {
        SharedCache {
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                sweep_at: FIRST_SWEEP,
            }),
            window,
        }
    }

    /// The answer for `key` if one is in flight or no older than `max_age` (and within the
    /// window and the answer's own maximum age), or else the answer of a new fetch by `fetch`.
    pub async fn get(
        &self,
        key: K,
        max_age: Duration,
        fetch: impl FnOnce() -> BoxFuture<'static, Fetched<V>>,
    ) -> V {
        self.pending(key, max_age, fetch).await.value
    }

    fn pending(
        &self,
        key: K,
        max_age: Duration,
        fetch: impl FnOnce() -> BoxFuture<'static, Fetched<V>>,
    ) -> Pending<V> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match entries.map.get(&key) {
            Some(p) if self.fresh(p, now, max_age) => p.clone(),
            _ => {
                let p = fetch()
                    .map(|f| Done {
                        value: f.value,
                        at: f.at,
                        max_age: f.max_age,
                    })
                    .boxed()
                    .shared();
                entries.map.insert(key, p.clone());
                if entries.map.len() >= entries.sweep_at {
                    entries.map.retain(|_, p| self.fresh(p, now, Duration::MAX));
                    entries.sweep_at = (entries.map.len() * 2).max(FIRST_SWEEP);
                }
                p
            }
        }
    }

    /// Like [`get`](Self::get), with when the answer was observed and how long it may be
    /// reused at most (its own limit within the window), for answers built on it that must
    /// not outlive it.
    pub async fn get_observed(
        &self,
        key: K,
        max_age: Duration,
        fetch: impl FnOnce() -> BoxFuture<'static, Fetched<V>>,
    ) -> Fetched<V> {
        let done = self.pending(key, max_age, fetch).await;
        Fetched {
            value: done.value,
            max_age: done.max_age.min(self.window),
            at: done.at,
        }
    }

    /// Records an answer fetched elsewhere (an HTTP exchange made on a TLS probe's own
    /// connection), as if `get` had fetched it when it was observed; an answer in flight for
    /// `key` is replaced.
    pub fn put(&self, key: K, fetched: Fetched<V>) {
        let done = Done {
            value: fetched.value,
            at: fetched.at,
            max_age: fetched.max_age,
        };
        let p = futures::future::ready(done).boxed().shared();
        // Polled once here, so that it reads as done (and ages) without a reader.
        let _ = p.clone().now_or_never();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.map.insert(key, p);
    }

    /// In flight, or done within the window, the answer's own maximum age and `max_age`.
    fn fresh(&self, pending: &Pending<V>, now: Instant, max_age: Duration) -> bool {
        // A fetch runs in a task of its own: when every waiter gave up before it ended, it may
        // be done without anyone having looked. Look (a poll that does not wait), so that its
        // answer is judged like any other rather than handed out as if still in flight.
        if pending.peek().is_none() {
            let _ = pending.clone().now_or_never();
        }
        match pending.peek() {
            None => true,
            Some(done) => {
                let limit = done.max_age.min(self.window).min(max_age);
                now.saturating_duration_since(done.at) < limit
            }
        }
    }

    /// Entries held (fresh or not yet swept).
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_answer_put_is_read_until_it_is_too_old() {
        let cache: SharedCache<&str, u32> = SharedCache::new(Duration::from_secs(30));
        cache.put("k", Fetched::now(7, Duration::MAX));
        let never = || -> BoxFuture<'static, Fetched<u32>> { panic!("fetched again") };
        assert_eq!(cache.get("k", Duration::from_secs(10), never).await, 7);
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(11)).await;
        let again = || async { Fetched::now(8, Duration::MAX) }.boxed();
        assert_eq!(cache.get("k", Duration::from_secs(10), again).await, 8);
    }
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counting(
        calls: &Arc<AtomicUsize>,
        max_age: Duration,
    ) -> impl FnOnce() -> BoxFuture<'static, Fetched<usize>> {
        let calls = calls.clone();
        move || {
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                Fetched::now(n, max_age)
            }
            .boxed()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn callers_in_flight_join_one_fetch() {
        let cache = SharedCache::new(Duration::from_secs(30));
        let calls = Arc::new(AtomicUsize::new(0));
        let hour = Duration::from_secs(3600);
        let (a, b, c) = tokio::join!(
            cache.get("www", Duration::MAX, counting(&calls, hour)),
            cache.get("www", Duration::MAX, counting(&calls, hour)),
            cache.get("api", Duration::MAX, counting(&calls, hour)),
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one fetch per key");
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[tokio::test(start_paused = true)]
    async fn answers_are_reused_within_the_window_then_fetched_again() {
        let cache = SharedCache::new(Duration::from_secs(30));
        let calls = Arc::new(AtomicUsize::new(0));
        let hour = Duration::from_secs(3600);
        assert_eq!(
            cache
                .get("www", Duration::MAX, counting(&calls, hour))
                .await,
            1
        );
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(
            cache
                .get("www", Duration::MAX, counting(&calls, hour))
                .await,
            1,
            "fresh"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            cache
                .get("www", Duration::MAX, counting(&calls, hour))
                .await,
            2,
            "past the window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_never_outlives_its_own_maximum_age() {
        let cache = SharedCache::new(Duration::from_secs(30));
        let calls = Arc::new(AtomicUsize::new(0));
        let ttl = Duration::from_secs(5);
        assert_eq!(
            cache.get("www", Duration::MAX, counting(&calls, ttl)).await,
            1
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(
            cache.get("www", Duration::MAX, counting(&calls, ttl)).await,
            2,
            "past the TTL"
        );
        let zero = Duration::ZERO;
        assert_eq!(
            cache
                .get("api", Duration::MAX, counting(&calls, zero))
                .await,
            3
        );
        assert_eq!(
            cache
                .get("api", Duration::MAX, counting(&calls, zero))
                .await,
            4,
            "TTL 0: never reused"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_may_ask_for_a_fresher_answer() {
        let cache = SharedCache::new(Duration::from_secs(30));
        let calls = Arc::new(AtomicUsize::new(0));
        let hour = Duration::from_secs(3600);
        assert_eq!(cache.get("www", hour, counting(&calls, hour)).await, 1);
        tokio::time::advance(Duration::from_secs(5)).await;
        let one = Duration::from_secs(1);
        assert_eq!(
            cache.get("www", one, counting(&calls, hour)).await,
            2,
            "older than 1s"
        );
        assert_eq!(
            cache.get("www", hour, counting(&calls, hour)).await,
            2,
            "the new answer"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stale_entries_are_swept() {
        let cache = SharedCache::new(Duration::from_secs(1));
        let calls = Arc::new(AtomicUsize::new(0));
        for i in 0..FIRST_SWEEP - 1 {
            cache
                .get(i, Duration::MAX, counting(&calls, Duration::MAX))
                .await;
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        cache
            .get(usize::MAX, Duration::MAX, counting(&calls, Duration::MAX))
            .await;
        assert_eq!(cache.len(), 1, "only the fresh entry is left");
    }
}
