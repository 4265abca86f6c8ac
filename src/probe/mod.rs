//! Observation: network I/O (DNS, TLS) behind a target guard, shared by every delivery of the
//! process through one cache and one concurrency limit.

pub mod cache;
pub mod dns;
pub mod guard;
mod health;
pub mod http;
pub mod tls;

use crate::checks::certificate::CertificateInput;
use crate::checks::dns::{DnsObservation, DnsOutcome};
use crate::checks::dns_health::DnsHealthObservation;
use crate::checks::edge_http::HttpObservation;
use crate::checks::edge_serving::EdgeObservation;
use crate::checks::secret::SecretContent;
use crate::checks::tls::CHAIN_TOO_LARGE_FIX;
use crate::checks::tls::{ChainProblem, TlsEndpoint, TlsObservation, TlsOutcome};
use crate::checks::x509::parse_pem_chain;
use crate::checks::{Observations, Targets, origin};
use cache::{Fetched, SharedCache};
use futures::FutureExt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// At most this many addresses of one name are probed: enough to see a split edge, bounded work.
pub const MAX_ADDRESSES_PROBED: usize = 4;

/// Settings of the probers, from the command line.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// Name servers; empty means the system's resolver configuration.
    pub dns_servers: Vec<SocketAddr>,
    /// Extra trust anchors (PEM files) besides the bundled web roots.
    pub ca_files: Vec<PathBuf>,
    /// Port of the edge probe.
    pub https_port: u16,
    /// CIDRs that the target guard lets through.
    pub allow_cidrs: Vec<ipnet::IpNet>,
    /// Upper bound of one DNS query; each delivery's `checks.timeout` may be shorter.
    pub dns_timeout: Duration,
    /// How many DNS walks and TLS probes run at once, across the whole process.
    pub concurrency: usize,
    /// The longest a DNS walk or TLS probe is reused for other deliveries (and other
    /// reconciles); each use may ask for a fresher one.
    pub cache_window: Duration,
    /// Port of the authoritative name servers asked directly (DnsHealthy); 53 but in tests.
    pub authoritative_port: u16,
    /// Port of the plain-HTTP probe (the redirect to HTTPS); 80 but in tests.
    pub http_port: u16,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            dns_servers: Vec::new(),
            ca_files: Vec::new(),
            https_port: 443,
            allow_cidrs: Vec::new(),
            dns_timeout: Duration::from_secs(10),
            concurrency: 64,
            cache_window: Duration::from_secs(30),
            authoritative_port: 53,
            http_port: 80,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeSetupError {
    #[error(transparent)]
    Dns(#[from] dns::DnsSetupError),
    #[error(transparent)]
    Tls(#[from] tls::TlsSetupError),
}

/// Receives the duration and outcome of every DNS walk and TLS probe (the operator's metrics).
pub trait ProbeRecorder: Send + Sync {
    fn record(&self, kind: &'static str, outcome: &str, duration: Duration);
}

/// Probes in flight to one address at most (different SNI names or ports of one edge).
pub const PER_ADDRESS: usize = 4;

/// One semaphore per address probed; addresses no probe holds are forgotten now and then.
#[derive(Default)]
struct PerAddress {
    map: std::sync::Mutex<std::collections::HashMap<IpAddr, Arc<Semaphore>>>,
}

impl PerAddress {
    fn limit(&self, ip: IpAddr) -> Arc<Semaphore> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 1024 {
            map.retain(|_, s| Arc::strong_count(s) > 1);
        }
        map.entry(ip)
            .or_insert_with(|| Arc::new(Semaphore::new(PER_ADDRESS)))
            .clone()
    }
}

/// How long one delivery's probes may take, and how old a shared observation it accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub timeout: Duration,
    pub max_age: Duration,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeCounters {
    pub dns_queries: u64,
    pub tls_handshakes: u64,
    pub http_requests: u64,
}

/// The probers of the process: resolver, TLS client configuration, guard, one concurrency
/// limit and one cache of observations shared by every delivery.
#[derive(Clone)]
pub struct Prober {
    dns: Arc<dns::DnsProber>,
    tls: Arc<tls::TlsProber>,
    guard: Arc<guard::TargetGuard>,
    https_port: u16,
    recorder: Option<Arc<dyn ProbeRecorder>>,
    /// Bounds the DNS walks and TLS probes in flight across the whole process.
    limit: Arc<Semaphore>,
    /// Bounds the probes in flight to any one address, so that one target (a slow or hanging
    /// origin many deliveries name) cannot take the whole process's share.
    per_address: Arc<PerAddress>,
    walks: Arc<SharedCache<String, DnsObservation>>,
    /// Walks from a CNAME target on, shared by the walks of every name pointing at it.
    tails: Arc<SharedCache<String, DnsObservation>>,
    probes: Arc<SharedCache<TlsEndpoint, TlsOutcome>>,
    health: Arc<health::HealthCaches>,
    http: Arc<http::HttpProber>,
    http_port: u16,
    exchanges: Arc<SharedCache<http::HttpTarget, http::HttpOutcome>>,
    authoritative_port: u16,
    window: Duration,
}

impl Prober {
    /// Reports every probe's duration and outcome to `recorder`.
    pub fn with_recorder(mut self, recorder: Arc<dyn ProbeRecorder>) -> Self {
        self.recorder = Some(recorder);
        self
    }

    pub fn new(config: &ProbeConfig) -> Result<Self, ProbeSetupError> {
        let mut roots = Vec::new();
        for f in &config.ca_files {
            roots.extend(tls::load_ca_file(f)?);
        }
        let tls = Arc::new(tls::TlsProber::new(roots)?);
        Ok(Prober {
            dns: Arc::new(dns::DnsProber::new(
                &config.dns_servers,
                config.dns_timeout,
            )?),
            http: Arc::new(http::HttpProber::new(tls.clone())),
            http_port: config.http_port,
            exchanges: Arc::new(SharedCache::new(config.cache_window)),
            tls,
            guard: Arc::new(guard::TargetGuard::new(config.allow_cidrs.clone())),
            https_port: config.https_port,
            recorder: None,
            limit: Arc::new(Semaphore::new(config.concurrency.max(1))),
            per_address: Arc::new(PerAddress::default()),
            walks: Arc::new(SharedCache::new(config.cache_window)),
            tails: Arc::new(SharedCache::new(config.cache_window)),
            probes: Arc::new(SharedCache::new(config.cache_window)),
            health: Arc::new(health::HealthCaches::new(config.cache_window)),
            authoritative_port: config.authoritative_port,
            window: config.cache_window,
        })
    }

    /// The same probers with an empty cache of their own (a baseline for measuring sharing).
    pub fn unshared(&self) -> Prober {
        Prober {
            walks: Arc::new(SharedCache::new(self.window)),
            tails: Arc::new(SharedCache::new(self.window)),
            probes: Arc::new(SharedCache::new(self.window)),
            health: Arc::new(health::HealthCaches::new(self.window)),
            exchanges: Arc::new(SharedCache::new(self.window)),
            ..self.clone()
        }
    }

    /// DNS queries sent and TLS handshakes attempted since the prober was built.
    pub fn counters(&self) -> ProbeCounters {
        ProbeCounters {
            dns_queries: self.dns.queries(),
            tls_handshakes: self.tls.handshakes(),
            http_requests: self.http.requests(),
        }
    }

    /// Walks `name`'s CNAME chain, or reuses a walk no older than `max_age` (nor than the
    /// cache window, nor than the shortest TTL of the chain). Only the first CNAME query is
    /// `name`'s own: the rest of the chain, from its first target on, is walked once for every
    /// name that points at that target.
    pub async fn walk(&self, name: &str, timeout: Duration, max_age: Duration) -> DnsObservation {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let walker = Walker {
            dns: self.dns.clone(),
            limit: self.limit.clone(),
            recorder: self.recorder.clone(),
            tails: self.tails.clone(),
            timeout,
            max_age,
        };
        let key = name.clone();
        let fetch = move || walker.task(name, true, |w, name| w.head(name).boxed());
        self.walks.get(key, max_age, fetch).await
    }

    /// Probes one TLS endpoint through the target guard, or reuses a probe no older than
    /// `max_age` (nor than the cache window).
    pub async fn probe(
        &self,
        endpoint: TlsEndpoint,
        timeout: Duration,
        max_age: Duration,
    ) -> TlsObservation {
        self.probe_then(endpoint, timeout, max_age, None).await
    }

    /// Like [`probe`](Self::probe); with `path`, a handshake whose chain verifies is followed by
    /// EdgeHttpOk's `GET path` on the same connection (`Host` = the SNI name), whose outcome
    /// is recorded for [`exchange`](Self::exchange) to find: one handshake for both.
    async fn probe_then(
        &self,
        endpoint: TlsEndpoint,
        timeout: Duration,
        max_age: Duration,
        path: Option<String>,
    ) -> TlsObservation {
        let (tls, guard) = (self.tls.clone(), self.guard.clone());
        let (http, exchanges) = (self.http.clone(), self.exchanges.clone());
        let (limit, recorder) = (self.limit.clone(), self.recorder.clone());
        let per_address = self.per_address.limit(endpoint.address.ip());
        let target = endpoint.clone();
        // A task of its own, as for walks: the probe ends by its timeout and frees its slots
        // even when every reconcile waiting for it was cut short.
        let fetch = move || {
            let probe = async move {
                let _address = per_address.acquire_owned().await.ok();
                let _permit = limit.acquire_owned().await.ok();
                let started = std::time::Instant::now();
                let (outcome, open) = match (guard.check(target.address.ip()), &path) {
                    (Err(reason), _) => (TlsOutcome::Forbidden(reason), None),
                    (Ok(()), None) => (tls.probe(&target, timeout).await, None),
                    (Ok(()), Some(_)) => {
                        tls.probe_keeping(&target, timeout, tls::KeepOpen::IfVerified)
                            .await
                    }
                };
                if let Some(r) = &recorder {
                    r.record("tls", tls_outcome_label(&outcome), started.elapsed());
                }
                if let (Some(open), Some(path)) = (open, path) {
                    let exchange = http::HttpTarget {
                        address: target.address,
                        host: target.sni.clone(),
                        path,
                        tls: true,
                    };
                    let started = std::time::Instant::now();
                    let answer = http.get_on(open, &exchange, http::DEFAULT_BODY_LIMIT).await;
                    if let Some(r) = &recorder {
                        r.record("http", http_outcome_label(&answer), started.elapsed());
                    }
                    exchanges.put(exchange, kept_exchange(answer));
                }
                Fetched::now(outcome, Duration::MAX)
            };
            tokio::spawn(probe)
                .map(|r| {
                    r.unwrap_or(Fetched::now(
                        TlsOutcome::HandshakeFailed("the probe task failed".into()),
                        Duration::ZERO,
                    ))
                })
                .boxed()
        };
        TlsObservation {
            outcome: self.probes.get(endpoint.clone(), max_age, fetch).await,
            endpoint,
        }
    }

    /// One HTTP exchange through the target guard, or one no older than `limits.max_age` (nor
    /// than the cache window) for the same address, host, path and scheme.
    pub async fn exchange(&self, target: http::HttpTarget, limits: Limits) -> http::HttpOutcome {
        let (prober, guard) = (self.http.clone(), self.guard.clone());
        let (limit, recorder) = (self.limit.clone(), self.recorder.clone());
        let per_address = self.per_address.limit(target.address.ip());
        let key = target.clone();
        let fetch = move || {
            let exchange = async move {
                let _address = per_address.acquire_owned().await.ok();
                let _permit = limit.acquire_owned().await.ok();
                let started = std::time::Instant::now();
                let outcome = prober
                    .get(&guard, &target, limits.timeout, http::DEFAULT_BODY_LIMIT)
                    .await;
                if let Some(r) = &recorder {
                    r.record("http", http_outcome_label(&outcome), started.elapsed());
                }
                kept_exchange(outcome)
            };
            tokio::spawn(exchange)
                .map(|r| {
                    r.unwrap_or(Fetched::now(
                        http::HttpOutcome::Failed("the HTTP probe task failed".into()),
                        Duration::ZERO,
                    ))
                })
                .boxed()
        };
        self.exchanges.get(key, limits.max_age, fetch).await
    }

    /// EdgeHttpOk's exchanges: a GET over HTTPS to the first edge address that served a valid
    /// certificate, and (when asked for) a GET over plain HTTP to the same address.
    async fn observe_http(
        &self,
        targets: &Targets,
        edge: &[TlsObservation],
        limits: Limits,
    ) -> HttpObservation {
        let Some(address) = edge.iter().find_map(|p| match p.outcome {
            TlsOutcome::Handshake {
                verified: Ok(()), ..
            } => Some(p.endpoint.address),
            _ => None,
        }) else {
            return HttpObservation::default();
        };
        let target = |address, tls| http::HttpTarget {
            address,
            host: targets.hostname.clone(),
            path: targets.http_path.clone(),
            tls,
        };
        let https = target(address, true);
        let plain = targets
            .http_redirect
            .then(|| target(SocketAddr::new(address.ip(), self.http_port), false));
        let (secure, plain) = tokio::join!(self.exchange(https.clone(), limits), async {
            match plain {
                Some(t) => Some((t.clone(), self.exchange(t, limits).await)),
                None => None,
            }
        });
        HttpObservation {
            https: Some((https, secure)),
            plain,
        }
    }

    /// Resolves `host` (a name or an IP literal) and probes up to MAX_ADDRESSES_PROBED of its
    /// addresses on `port` with `sni`.
    async fn resolve_and_probe(
        &self,
        host: &str,
        port: u16,
        sni: &str,
        limits: Limits,
        http_path: Option<&str>,
    ) -> (Option<DnsObservation>, Vec<TlsObservation>) {
        let (dns, addresses): (Option<DnsObservation>, Vec<IpAddr>) = match host.parse::<IpAddr>() {
            Ok(ip) => (None, vec![ip]),
            Err(_) => {
                let walk = self.walk(host, limits.timeout, limits.max_age).await;
                let addrs = walk.addresses().to_vec();
                (Some(walk), addrs)
            }
        };
        let probes =
            futures::future::join_all(balanced(addresses, MAX_ADDRESSES_PROBED).into_iter().map(
                |ip| {
                    self.probe_then(
                        TlsEndpoint {
                            address: SocketAddr::new(ip, port),
                            sni: sni.to_string(),
                        },
                        limits.timeout,
                        limits.max_age,
                        http_path.map(str::to_string),
                    )
                },
            ))
            .await;
        (dns, probes)
    }

    /// Observes every step of one delivery: what `targets` (decided by the checks) names.
    /// `secret` is what the referenced Secret held. `now` is the instant chains are verified at.
    pub async fn observe(
        &self,
        targets: &Targets,
        secret: Option<SecretContent>,
        limits: Limits,
        now: jiff::Timestamp,
    ) -> Observations {
        self.observe_with(targets, std::future::ready(secret), limits, now)
            .await
    }

    /// Like [`observe`](Self::observe), reading the Secret (an API call) while the probes run.
    pub async fn observe_with(
        &self,
        targets: &Targets,
        secret: impl std::future::Future<Output = Option<SecretContent>>,
        limits: Limits,
        now: jiff::Timestamp,
    ) -> Observations {
        // Each chain of dependent lookups runs on its own (the walk then its DNSSEC retry, the
        // edge's handshakes then its HTTP exchanges), so that the slowest chain, not their sum,
        // bounds the observation.
        let hostname_dns = async {
            let walk = self
                .walk(&targets.hostname, limits.timeout, limits.max_age)
                .await;
            let bogus = self.dnssec_after(&walk, limits).await;
            (walk, bogus)
        };
        let edge = async {
            let (dns, probes) = self
                .resolve_and_probe(
                    &targets.target_cname,
                    self.https_port,
                    &targets.hostname,
                    limits,
                    Some(&targets.http_path),
                )
                .await;
            let http = self.observe_http(targets, &probes, limits).await;
            (dns, probes, http)
        };
        let origin = async {
            let o = targets.origin.as_ref()?;
            let (dns, probes) = self
                .resolve_and_probe(&o.host, o.port, &o.sni, limits, None)
                .await;
            Some(origin::OriginObservation { dns, probes })
        };
        let health = self.dns_health(&targets.hostname, limits);
        let ((dns, dnssec_bogus), (target_dns, edge_probes, http), origin, secret, mut health) =
            tokio::join!(hostname_dns, edge, origin, secret, health);
        health.dnssec_bogus = dnssec_bogus;
        let target_dns = target_dns.unwrap_or_else(|| {
            let name = targets.target_cname.clone();
            DnsObservation::ended(name.clone(), DnsOutcome::NoData { name })
        });
        let edge = EdgeObservation {
            target_dns,
            probes: edge_probes,
        };
        self.assemble(targets, secret, (dns, health), (edge, http), origin, now)
    }

    /// What can be known of one delivery without the network, with every DNS walk and probe
    /// timed out: for when the operator's reconcile deadline ran out.
    pub fn unobserved(
        &self,
        targets: &Targets,
        secret: Option<SecretContent>,
        now: jiff::Timestamp,
    ) -> Observations {
        let timed_out = DnsObservation::timed_out;
        let edge = EdgeObservation {
            target_dns: timed_out(&targets.target_cname),
            probes: Vec::new(),
        };
        let origin = targets.origin.as_ref().map(|o| origin::OriginObservation {
            dns: Some(timed_out(&o.host)),
            probes: Vec::new(),
        });
        let dns = timed_out(&targets.hostname);
        let health = DnsHealthObservation::timed_out(&targets.hostname);
        let http = HttpObservation::default();
        self.assemble(targets, secret, (dns, health), (edge, http), origin, now)
    }

    /// The observations of one delivery from what was seen: the certificate under test (the
    /// Secret's, or else the one the edge served) and its chain verified at `now`.
    fn assemble(
        &self,
        targets: &Targets,
        secret: Option<SecretContent>,
        (dns, dns_health): (DnsObservation, DnsHealthObservation),
        (edge, http): (EdgeObservation, HttpObservation),
        origin: Option<origin::OriginObservation>,
        now: jiff::Timestamp,
    ) -> Observations {
        let certificate = match &targets.secret {
            Some(name) => CertificateInput::Secret {
                name: name.clone(),
                content: secret.unwrap_or(SecretContent::NotFound),
            },
            None => edge_certificate(&edge),
        };
        let chain_verified = self.verify_certificate(&certificate, &targets.hostname, now);
        Observations {
            certificate,
            chain_verified,
            dns,
            dns_health,
            http,
            origin,
            edge,
        }
    }

    /// Verifies the certificate under test for `hostname` at `now`, as a probe would.
    fn verify_certificate(
        &self,
        certificate: &CertificateInput,
        hostname: &str,
        now: jiff::Timestamp,
    ) -> Option<Result<(), ChainProblem>> {
        let chain = match certificate {
            CertificateInput::Secret {
                content: SecretContent::Tls { cert_pem, .. },
                ..
            } => parse_pem_chain(cert_pem).ok()?,
            CertificateInput::Edge { chain, .. } => chain.clone(),
            _ => return None,
        };
        if chain.is_empty() {
            return None;
        }
        let unix = rustls_pki_types::UnixTime::since_unix_epoch(Duration::from_secs(
            now.as_second().max(0).unsigned_abs(),
        ));
        Some(self.tls.verify_chain(&chain, hostname, unix))
    }
}

/// An HTTP exchange as the cache keeps it: a timeout or a failed connection is not an answer,
/// so the next delivery asks again (their verdicts say "will retry").
fn kept_exchange(outcome: http::HttpOutcome) -> Fetched<http::HttpOutcome> {
    let keep = match &outcome {
        http::HttpOutcome::Response(r) => r.body != http::BodyEnd::TimedOut,
        http::HttpOutcome::Failed(_) => true,
        _ => false,
    };
    Fetched::now(outcome, if keep { Duration::MAX } else { Duration::ZERO })
}

/// At most `max` of `addresses`, as many of each family as there is room for: an edge whose
/// IPv6 addresses fail must be seen even when it has many IPv4 ones.
pub(crate) fn balanced(addresses: Vec<IpAddr>, max: usize) -> Vec<IpAddr> {
    let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = addresses.into_iter().partition(IpAddr::is_ipv4);
    let half = max / 2;
    let take_v4 = v4.len().min(max - v6.len().min(half));
    let take_v6 = v6.len().min(max - take_v4);
    v4.into_iter()
        .take(take_v4)
        .chain(v6.into_iter().take(take_v6))
        .collect()
}

/// What a walk's tasks need, cloned out of the prober.
#[derive(Clone)]
struct Walker {
    dns: Arc<dns::DnsProber>,
    limit: Arc<Semaphore>,
    recorder: Option<Arc<dyn ProbeRecorder>>,
    tails: Arc<SharedCache<String, DnsObservation>>,
    timeout: Duration,
    max_age: Duration,
}

/// A walk and, when it is built on another answer (a shared tail), when that was observed
/// and how long it may be reused: the walk is no younger and lives no longer.
type Walked = (DnsObservation, Option<(tokio::time::Instant, Duration)>);

impl Walker {
    /// A walk in a task of its own: a walk whose every waiter gave up (a reconcile cut by its
    /// deadline) still ends by its timeout and frees its slot. Kept no longer than the chain's
    /// shortest TTL nor than the tail it was built on; recorded in the probe metrics when
    /// `recorded` (a whole walk, not a shared tail, so that each walk counts once).
    fn task(
        self,
        name: String,
        recorded: bool,
        body: impl FnOnce(Walker, String) -> futures::future::BoxFuture<'static, Walked>
        + Send
        + 'static,
    ) -> futures::future::BoxFuture<'static, Fetched<DnsObservation>> {
        let failed = failed_walk(&name);
        let task = async move {
            let started = std::time::Instant::now();
            let recorder = self.recorder.clone().filter(|_| recorded);
            let (observed, built_on) = body(self, name).await;
            if let Some(r) = &recorder {
                let label = dns_outcome_label(&observed.outcome);
                r.record("dns", label, started.elapsed());
            }
            let ttl = observed.chain.iter().map(|l| u64::from(l.ttl)).min();
            let mut fetched =
                Fetched::now(observed, ttl.map_or(Duration::MAX, Duration::from_secs));
            if let Some((at, max_age)) = built_on {
                fetched.at = fetched.at.min(at);
                fetched.max_age = fetched.max_age.min(max_age);
            }
            fetched
        };
        tokio::spawn(task).map(move |r| r.unwrap_or(failed)).boxed()
    }

    /// `name`'s own CNAME query, then the shared walk of its target; the whole walk within
    /// this walker's timeout (a tail another walk started, with a longer one, is not waited for
    /// past it).
    async fn head(self, name: String) -> Walked {
        let (first, deadline) = {
            let _permit = self.limit.clone().acquire_owned().await.ok();
            let deadline = tokio::time::Instant::now() + self.timeout;
            let first = tokio::time::timeout_at(deadline, self.dns.first_step(&name)).await;
            (first, deadline)
        };
        match first {
            Ok(dns::Step::Link(link)) if link.target != name => {
                let target = link.target.clone();
                match tokio::time::timeout_at(deadline, self.tail(target.clone())).await {
                    Ok(tail) => (dns::joined(link, tail.value), Some((tail.at, tail.max_age))),
                    // Not an answer: not kept.
                    Err(_) => {
                        let tail = DnsObservation::timed_out(&target);
                        (dns::joined(link, tail), Some(not_kept()))
                    }
                }
            }
            // A CNAME to itself: the tail of the loop is the loop.
            Ok(dns::Step::Link(link)) => {
                let tail = DnsObservation::ended(name.clone(), DnsOutcome::Loop { name });
                (dns::joined(link, tail), None)
            }
            Ok(dns::Step::End(outcome)) => (DnsObservation::ended(name, outcome), None),
            Err(_) => (DnsObservation::timed_out(&name), None),
        }
    }

    /// The walk from `target` on, shared by every name whose CNAME points at it.
    async fn tail(&self, target: String) -> Fetched<DnsObservation> {
        let (tails, max_age, walker) = (self.tails.clone(), self.max_age, self.clone());
        let key = target.clone();
        let fetch = move || {
            walker.task(target, false, |w, name| {
                async move {
                    let _permit = w.limit.clone().acquire_owned().await.ok();
                    let observed =
                        match tokio::time::timeout(w.timeout, w.dns.walk_tail(&name)).await {
                            Ok(observed) => observed,
                            Err(_) => DnsObservation::timed_out(&name),
                        };
                    // A tail is shared by every name pointing at it: a failure is not kept
                    // for the others (nor is a walk joined to it), they ask again.
                    let failed = matches!(
                        observed.outcome,
                        DnsOutcome::Timeout { .. } | DnsOutcome::ServerFailure { .. }
                    );
                    (observed, failed.then(not_kept))
                }
                .boxed()
            })
        };
        tails.get_observed(key, max_age, fetch).await
    }
}

/// For a walk built on no answer: not kept.
fn not_kept() -> (tokio::time::Instant, Duration) {
    (tokio::time::Instant::now(), Duration::ZERO)
}

/// What a walk whose task failed reads as: not an answer, so not kept.
fn failed_walk(name: &str) -> Fetched<DnsObservation> {
    let failed = DnsOutcome::ServerFailure {
        name: name.to_string(),
        detail: "the DNS walk task failed".into(),
    };
    Fetched::now(
        DnsObservation::ended(name.to_string(), failed),
        Duration::ZERO,
    )
}

/// Without a secretRef, the certificate under test is the one the edge served.
fn edge_certificate(edge: &EdgeObservation) -> CertificateInput {
    for p in &edge.probes {
        if let TlsOutcome::Handshake { chain, .. } = &p.outcome
            && !chain.is_empty()
        {
            return CertificateInput::Edge {
                endpoint: p.endpoint.clone(),
                chain: chain.clone(),
            };
        }
    }
    let detail = match edge.probes.first() {
        Some(
            p @ TlsObservation {
                outcome: TlsOutcome::ChainTooLarge,
                ..
            },
        ) => format!("{}: {}{CHAIN_TOO_LARGE_FIX}", p.endpoint, p.outcome),
        Some(p) => format!("{}: {}", p.endpoint, p.outcome),
        None => format!(
            "target CNAME {}: {}",
            edge.target_dns.name,
            edge.target_dns.dig_summary()
        ),
    };
    CertificateInput::EdgeUnavailable { detail }
}

/// Low-cardinality outcome labels for metrics.
fn dns_outcome_label(outcome: &DnsOutcome) -> &'static str {
    match outcome {
        DnsOutcome::Addresses { .. } => "addresses",
        DnsOutcome::NoData { .. } => "nodata",
        DnsOutcome::NxDomain { .. } => "nxdomain",
        DnsOutcome::ZoneApex { .. } => "zone_apex",
        DnsOutcome::Loop { .. } => "loop",
        DnsOutcome::TooLong { .. } => "too_long",
        DnsOutcome::Timeout { .. } => "timeout",
        DnsOutcome::ServerFailure { .. } => "server_failure",
    }
}

fn http_outcome_label(outcome: &http::HttpOutcome) -> &'static str {
    use http::{BodyEnd, HttpOutcome};
    match outcome {
        HttpOutcome::Response(r) if r.body == BodyEnd::TimedOut => "slow_body",
        HttpOutcome::Response(r) => match r.status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        },
        HttpOutcome::Forbidden(_) => "forbidden",
        HttpOutcome::Refused => "refused",
        HttpOutcome::Unreachable(_) => "unreachable",
        HttpOutcome::ConnectTimeout | HttpOutcome::Timeout => "timeout",
        HttpOutcome::TlsFailed(_) => "handshake_failed",
        HttpOutcome::Failed(_) => "failed",
    }
}

fn tls_outcome_label(outcome: &TlsOutcome) -> &'static str {
    match outcome {
        TlsOutcome::Handshake {
            verified: Ok(()), ..
        } => "verified",
        TlsOutcome::Handshake {
            verified: Err(_), ..
        } => "certificate_invalid",
        TlsOutcome::Refused => "refused",
        TlsOutcome::Unreachable(_) => "unreachable",
        TlsOutcome::ConnectTimeout | TlsOutcome::HandshakeTimeout => "timeout",
        TlsOutcome::NotTls(_) => "not_tls",
        TlsOutcome::HandshakeFailed(_) => "handshake_failed",
        TlsOutcome::ChainTooLarge => "chain_too_large",
        TlsOutcome::Forbidden(_) => "forbidden",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_edge_chain_is_named_with_its_one_fix() {
        let endpoint = TlsEndpoint {
            address: "127.0.0.1:443".parse().expect("address"),
            sni: "www.shop.example".into(),
        };
        let edge = EdgeObservation {
            target_dns: DnsObservation {
                name: "cs1.wpc.cdn.example".into(),
                chain: Vec::new(),
                outcome: DnsOutcome::Addresses {
                    name: "cs1.wpc.cdn.example".into(),
                    addresses: vec![endpoint.address.ip()],
                },
            },
            probes: vec![TlsObservation {
                endpoint,
                outcome: TlsOutcome::ChainTooLarge,
            }],
        };
        let CertificateInput::EdgeUnavailable { detail } = edge_certificate(&edge) else {
            panic!("no certificate came from the edge");
        };
        assert_eq!(
            detail,
            format!(
                "127.0.0.1:443 (SNI www.shop.example): {}{CHAIN_TOO_LARGE_FIX}",
                TlsOutcome::ChainTooLarge
            )
        );
        assert_eq!(detail.matches("serve only the leaf").count(), 1);
    }
}
