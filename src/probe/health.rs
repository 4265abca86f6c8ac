//! The lookups of DnsHealthy (CAA, DNSSEC, the zone's authoritative servers), each shared by
//! every delivery of the process through the prober's caches, like the walks and probes.

use super::cache::{Fetched, SharedCache};
use super::dns::{CaaSet, NameServers, climb_caa};
use super::{Limits, Prober};
use crate::checks::caa;
use crate::checks::dns::{DnsObservation, DnsOutcome};
use crate::checks::dns_health::{
    AuthoritativeAnswer, AuthoritativeReply, CaaLookup, DnsHealthObservation,
};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Addresses of one name server asked (one per family is enough to see a split).
const ADDRESSES_PER_SERVER: usize = 2;

/// What a lookup is called in the metrics, what it reads as when it times out, and the
/// metrics label of each of its answers.
struct Lookup<V> {
    kind: &'static str,
    timed_out: V,
    label: fn(&V) -> &'static str,
    /// Whether an answer is kept for other deliveries: a failure is not (the next one asks
    /// again, as its "will retry" says).
    keep: fn(&V) -> bool,
}

impl<T, E> Lookup<Result<T, E>> {
    /// A lookup whose `Err` is a failure: labelled "answered" or "failed", only answers kept.
    fn answer_or_failure(kind: &'static str, timed_out: Result<T, E>) -> Self {
        Lookup {
            kind,
            timed_out,
            label: |v| if v.is_ok() { "answered" } else { "failed" },
            keep: Result::is_ok,
        }
    }
}

/// The caches of DnsHealthy's lookups.
pub(super) struct HealthCaches {
    caa: SharedCache<String, CaaSet>,
    apex: SharedCache<String, Result<bool, String>>,
    servers: SharedCache<String, Result<NameServers, String>>,
    authoritative: SharedCache<(SocketAddr, String), AuthoritativeAnswer>,
    dnssec: SharedCache<String, Option<String>>,
}

impl HealthCaches {
    pub(super) fn new(window: Duration) -> Self {
        HealthCaches {
            caa: SharedCache::new(window),
            apex: SharedCache::new(window),
            servers: SharedCache::new(window),
            authoritative: SharedCache::new(window),
            dnssec: SharedCache::new(window),
        }
    }
}

impl Prober {
    /// One lookup of kind `kind` for `key`, shared through `cache`: run in a task of its own
    /// under the process's concurrency limit and `timeout`, recorded in the probe metrics.
    async fn shared<K, V>(
        &self,
        cache: impl Fn(&HealthCaches) -> &SharedCache<K, V>,
        key: K,
        limits: Limits,
        Lookup {
            kind,
            timed_out,
            label,
            keep,
        }: Lookup<V>,
        work: impl FnOnce(Arc<super::dns::DnsProber>) -> BoxFuture<'static, V> + Send + 'static,
    ) -> V
    where
        K: Hash + Eq + Clone + Send + 'static,
        V: Clone + Send + Sync + 'static,
    {
        let (dns, limit, recorder) = (self.dns.clone(), self.limit.clone(), self.recorder.clone());
        let failed = timed_out.clone();
        let fetch = move || {
            let task = async move {
                let _permit = limit.acquire_owned().await.ok();
                let started = std::time::Instant::now();
                let (value, max_age) = match tokio::time::timeout(limits.timeout, work(dns)).await {
                    Ok(value) if keep(&value) => (value, Duration::MAX),
                    Ok(value) => (value, Duration::ZERO),
                    // Not an answer: not kept for others.
                    Err(_) => (timed_out, Duration::ZERO),
                };
                if let Some(r) = &recorder {
                    r.record(kind, label(&value), started.elapsed());
                }
                Fetched::now(value, max_age)
            };
            tokio::spawn(task)
                .map(move |r| r.unwrap_or(Fetched::now(failed, Duration::ZERO)))
                .boxed()
        };
        cache(&self.health).get(key, limits.max_age, fetch).await
    }

    /// The hostname's CAA record sets: the climb of [`caa::climb`], each name's set looked up
    /// once across all deliveries (the parents are shared by every hostname below them).
    pub(super) async fn caa(&self, hostname: &str, limits: Limits) -> CaaLookup {
        climb_caa(hostname, |name| async move {
            let owned = name.clone();
            self.shared(
                |c| &c.caa,
                name.clone(),
                limits,
                Lookup::answer_or_failure("caa", Err(DnsOutcome::Timeout { name })),
                move |dns| async move { dns.caa_set(&owned).await }.boxed(),
            )
            .await
        })
        .await
    }

    /// After a walk that ended in SERVFAIL: the zone whose DNSSEC validation fails, if asking
    /// with checking disabled answers.
    pub(super) async fn dnssec_after(
        &self,
        walk: &DnsObservation,
        limits: Limits,
    ) -> Option<String> {
        let DnsOutcome::ServerFailure { name, detail } = &walk.outcome else {
            return None;
        };
        if detail != "SERVFAIL" {
            return None;
        }
        let owned = name.clone();
        self.shared(
            |c| &c.dnssec,
            name.clone(),
            limits,
            Lookup {
                kind: "dnssec",
                timed_out: None,
                label: |v| if v.is_some() { "bogus" } else { "servfail" },
                keep: |_| true,
            },
            move |dns| async move { dns.dnssec_bogus_zone(&owned).await }.boxed(),
        )
        .await
    }

    /// Each authoritative server of the hostname's zone, asked directly for its CNAME.
    pub(super) async fn authoritative(
        &self,
        hostname: &str,
        limits: Limits,
    ) -> Result<Vec<AuthoritativeReply>, String> {
        let zone = self.zone_of(hostname, limits).await?;
        let owned = zone.clone();
        let servers = self
            .shared(
                |c| &c.servers,
                zone.clone(),
                limits,
                Lookup::answer_or_failure(
                    "zone_servers",
                    Err(format!("the NS lookup of {zone} timed out")),
                ),
                move |dns| async move { dns.zone_name_servers(&owned).await }.boxed(),
            )
            .await?;
        if servers.iter().all(|(_, addresses)| addresses.is_empty()) {
            let names: Vec<&str> = servers.iter().map(|(n, _)| n.as_str()).collect();
            return Err(format!(
                "the name servers of {zone} ({}) have no address",
                names.join(", ")
            ));
        }
        let targets: Vec<(&str, IpAddr)> = servers
            .iter()
            .flat_map(|(server, addresses)| {
                super::balanced(addresses.clone(), ADDRESSES_PER_SERVER)
                    .into_iter()
                    .map(move |ip| (server.as_str(), ip))
            })
            .collect();
        let asks = targets
            .iter()
            .map(|(server, ip)| self.ask(server, *ip, hostname, limits));
        let replies = futures::future::join_all(asks).await;
        Ok(self.ask_again_if_split(replies, hostname).await)
    }

    /// When the servers disagree, each is asked once more, directly: a server whose answer
    /// changes from one query to the next serves per-query answers (weighted or geographic
    /// DNS), which are not a disagreement between servers.
    async fn ask_again_if_split(
        &self,
        replies: Vec<AuthoritativeReply>,
        hostname: &str,
    ) -> Vec<AuthoritativeReply> {
        let answers: Vec<&AuthoritativeAnswer> = replies
            .iter()
            .map(|r| &r.answer)
            .filter(|a| a.is_answer())
            .collect();
        if answers.windows(2).all(|w| w[0].same(w[1])) {
            return replies;
        }
        let again = replies.into_iter().map(|reply| async move {
            if !reply.answer.is_answer() {
                return reply;
            }
            let at = SocketAddr::new(reply.address, self.authoritative_port);
            let second = self.dns.ask_authoritative(at, hostname).await;
            if second.is_answer() && !second.same(&reply.answer) {
                AuthoritativeReply {
                    answer: AuthoritativeAnswer::Varies(format!("{} then {second}", reply.answer)),
                    ..reply
                }
            } else {
                reply
            }
        });
        futures::future::join_all(again).await
    }

    async fn ask(
        &self,
        server: &str,
        address: IpAddr,
        hostname: &str,
        limits: Limits,
    ) -> AuthoritativeReply {
        let reply = |answer| AuthoritativeReply {
            server: server.to_string(),
            address,
            answer,
        };
        // The zone's owner chooses its NS addresses: the guard stands between them and the
        // operator's network like for every other target.
        if let Err(reason) = self.guard.check(address) {
            return reply(AuthoritativeAnswer::Forbidden(reason));
        }
        let at = SocketAddr::new(address, self.authoritative_port);
        let name = hostname.to_ascii_lowercase();
        let per_address = self.per_address.limit(address);
        let answer = self
            .shared(
                |c| &c.authoritative,
                (at, name.clone()),
                limits,
                Lookup {
                    kind: "authoritative",
                    timed_out: AuthoritativeAnswer::Failed("timed out".into()),
                    label: |v| if v.is_answer() { "answered" } else { "failed" },
                    keep: AuthoritativeAnswer::is_answer,
                },
                move |dns| {
                    async move {
                        let _address = per_address.acquire_owned().await.ok();
                        dns.ask_authoritative(at, &name).await
                    }
                    .boxed()
                },
            )
            .await;
        reply(answer)
    }

    /// The zone `hostname` is in: the closest enclosing name that owns an SOA record. Whether
    /// the hostname itself does is read from its walk (step 6's, shared) when that answered:
    /// a name with a CNAME owns no SOA, and one without was asked for it.
    async fn zone_of(&self, hostname: &str, limits: Limits) -> Result<String, String> {
        let walk = self.walk(hostname, limits.timeout, limits.max_age).await;
        let own = apex_from_walk(&walk);
        for candidate in caa::climb(hostname) {
            if candidate == walk.name
                && let Some(apex) = own
            {
                if apex {
                    return Ok(candidate);
                }
                continue;
            }
            let owned = candidate.clone();
            let apex = self
                .shared(
                    |c| &c.apex,
                    candidate.clone(),
                    limits,
                    Lookup::answer_or_failure(
                        "zone_apex",
                        Err(format!("the SOA query for {candidate} timed out")),
                    ),
                    move |dns| async move { dns.is_zone_apex(&owned).await }.boxed(),
                )
                .await?;
            if apex {
                return Ok(candidate);
            }
        }
        Err(format!("no zone encloses {hostname}"))
    }

    /// Everything DnsHealthy needs besides the walks and probes, but the DNSSEC retry (which
    /// needs the walk's outcome): CAA and the authoritative servers, looked up concurrently.
    pub(super) async fn dns_health(&self, hostname: &str, limits: Limits) -> DnsHealthObservation {
        // A wildcard certificate's CAA set is the parent's (RFC 8659 section 3, `*.X` is
        // checked at X); looked up too, since which certificate is served is not known yet.
        // The parent's climb is shared by every hostname of the zone.
        let parent = hostname.split_once('.').map(|(_, parent)| parent);
        let wildcard = async {
            match parent {
                Some(parent) => Some(self.caa(parent, limits).await),
                None => None,
            }
        };
        let (caa, caa_wildcard, authoritative) = tokio::join!(
            self.caa(hostname, limits),
            wildcard,
            self.authoritative(hostname, limits)
        );
        DnsHealthObservation {
            caa,
            caa_wildcard,
            dnssec_bogus: None,
            authoritative,
        }
    }
}

/// Whether the walked name is a zone apex, when its walk says (`None` when its first query
/// failed).
fn apex_from_walk(walk: &DnsObservation) -> Option<bool> {
    if !walk.chain.is_empty() {
        return Some(false);
    }
    match walk.outcome {
        DnsOutcome::ZoneApex { .. } => Some(true),
        DnsOutcome::Addresses { .. } | DnsOutcome::NoData { .. } | DnsOutcome::NxDomain { .. } => {
            Some(false)
        }
        _ => None,
    }
}
