//! Observation: network I/O (DNS, TLS) behind a target guard, deduplicated per run.

pub mod dns;
pub mod guard;
pub mod tls;

use crate::checks::certificate::CertificateInput;
use crate::checks::dns::{DnsObservation, DnsOutcome};
use crate::checks::edge_serving::EdgeObservation;
use crate::checks::secret::SecretContent;
use crate::checks::tls::{ChainProblem, TlsEndpoint, TlsObservation, TlsOutcome};
use crate::checks::x509::parse_pem_chain;
use crate::checks::{Observations, Targets, origin};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
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
    /// How many DNS walks and TLS probes run at once.
    pub concurrency: usize,
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

/// The long-lived probers: resolver, TLS client configuration, guard.
pub struct Prober {
    dns: Arc<dns::DnsProber>,
    tls: Arc<tls::TlsProber>,
    guard: Arc<guard::TargetGuard>,
    https_port: u16,
    concurrency: usize,
    recorder: Option<Arc<dyn ProbeRecorder>>,
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
        Ok(Prober {
            dns: Arc::new(dns::DnsProber::new(
                &config.dns_servers,
                config.dns_timeout,
            )?),
            tls: Arc::new(tls::TlsProber::new(roots)?),
            guard: Arc::new(guard::TargetGuard::new(config.allow_cidrs.clone())),
            https_port: config.https_port,
            concurrency: config.concurrency.max(1),
            recorder: None,
        })
    }

    /// A session deduplicates work: each distinct DNS name is walked once and each distinct TLS
    /// endpoint (address, port, SNI) is probed once for as long as the session lives.
    pub fn session(&self) -> ProbeSession {
        ProbeSession {
            dns: self.dns.clone(),
            tls: self.tls.clone(),
            guard: self.guard.clone(),
            https_port: self.https_port,
            recorder: self.recorder.clone(),
            limit: Arc::new(Semaphore::new(self.concurrency)),
            walks: Arc::new(Mutex::new(HashMap::new())),
            probes: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// DNS queries sent and TLS handshakes attempted since the prober was built.
    pub fn counters(&self) -> ProbeCounters {
        ProbeCounters {
            dns_queries: self.dns.queries(),
            tls_handshakes: self.tls.handshakes(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeCounters {
    pub dns_queries: u64,
    pub tls_handshakes: u64,
}

type SharedWalk = Shared<BoxFuture<'static, DnsObservation>>;
type SharedProbe = Shared<BoxFuture<'static, TlsOutcome>>;

#[derive(Clone)]
pub struct ProbeSession {
    dns: Arc<dns::DnsProber>,
    tls: Arc<tls::TlsProber>,
    guard: Arc<guard::TargetGuard>,
    https_port: u16,
    recorder: Option<Arc<dyn ProbeRecorder>>,
    limit: Arc<Semaphore>,
    walks: Arc<Mutex<HashMap<String, SharedWalk>>>,
    probes: Arc<Mutex<HashMap<TlsEndpoint, SharedProbe>>>,
}

impl ProbeSession {
    /// Walks `name`'s CNAME chain, once per session.
    pub async fn walk(&self, name: &str, timeout: Duration) -> DnsObservation {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let fut = {
            let mut walks = self.walks.lock().unwrap_or_else(|e| e.into_inner());
            walks
                .entry(name.clone())
                .or_insert_with(|| {
                    let dns = self.dns.clone();
                    let limit = self.limit.clone();
                    let recorder = self.recorder.clone();
                    let name = name.clone();
                    async move {
                        let _permit = limit.acquire_owned().await.ok();
                        let started = std::time::Instant::now();
                        let observed = match tokio::time::timeout(timeout, dns.walk(&name)).await {
                            Ok(o) => o,
                            Err(_) => DnsObservation {
                                name: name.clone(),
                                chain: Vec::new(),
                                outcome: DnsOutcome::Timeout { name },
                            },
                        };
                        if let Some(r) = &recorder {
                            r.record(
                                "dns",
                                dns_outcome_label(&observed.outcome),
                                started.elapsed(),
                            );
                        }
                        observed
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        fut.await
    }

    /// Probes one TLS endpoint, once per session, through the target guard.
    pub async fn probe(&self, endpoint: TlsEndpoint, timeout: Duration) -> TlsObservation {
        let fut = {
            let mut probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
            probes
                .entry(endpoint.clone())
                .or_insert_with(|| {
                    let tls = self.tls.clone();
                    let guard = self.guard.clone();
                    let limit = self.limit.clone();
                    let endpoint = endpoint.clone();
                    let recorder = self.recorder.clone();
                    async move {
                        let _permit = limit.acquire_owned().await.ok();
                        let started = std::time::Instant::now();
                        let outcome = tls.probe_guarded(&guard, &endpoint, timeout).await;
                        if let Some(r) = &recorder {
                            r.record("tls", tls_outcome_label(&outcome), started.elapsed());
                        }
                        outcome
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        TlsObservation {
            outcome: fut.await,
            endpoint,
        }
    }

    /// Resolves `host` (a name or an IP literal) and probes up to MAX_ADDRESSES_PROBED of its
    /// addresses on `port` with `sni`.
    async fn resolve_and_probe(
        &self,
        host: &str,
        port: u16,
        sni: &str,
        timeout: Duration,
    ) -> (Option<DnsObservation>, Vec<TlsObservation>) {
        let (dns, addresses): (Option<DnsObservation>, Vec<IpAddr>) = match host.parse::<IpAddr>() {
            Ok(ip) => (None, vec![ip]),
            Err(_) => {
                let walk = self.walk(host, timeout).await;
                let addrs = walk.addresses().to_vec();
                (Some(walk), addrs)
            }
        };
        let probes =
            futures::future::join_all(addresses.into_iter().take(MAX_ADDRESSES_PROBED).map(|ip| {
                self.probe(
                    TlsEndpoint {
                        address: SocketAddr::new(ip, port),
                        sni: sni.to_string(),
                    },
                    timeout,
                )
            }))
            .await;
        (dns, probes)
    }

    /// Observes every step of one delivery: what `targets` (decided by the checks) names.
    /// `secret` is what the referenced Secret held. `now` is the instant chains are verified at.
    pub async fn observe(
        &self,
        targets: &Targets,
        secret: Option<SecretContent>,
        timeout: Duration,
        now: jiff::Timestamp,
    ) -> Observations {
        let hostname_dns = self.walk(&targets.hostname, timeout);
        let edge = self.resolve_and_probe(
            &targets.target_cname,
            self.https_port,
            &targets.hostname,
            timeout,
        );
        let origin = async {
            let o = targets.origin.as_ref()?;
            let (dns, probes) = self
                .resolve_and_probe(&o.host, o.port, &o.sni, timeout)
                .await;
            Some(origin::OriginObservation { dns, probes })
        };
        let (dns, (target_dns, edge_probes), origin) = tokio::join!(hostname_dns, edge, origin);
        let target_dns = target_dns.unwrap_or_else(|| DnsObservation {
            name: targets.target_cname.clone(),
            chain: Vec::new(),
            outcome: DnsOutcome::NoData {
                name: targets.target_cname.clone(),
            },
        });
        let edge = EdgeObservation {
            target_dns,
            probes: edge_probes,
        };
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
        TlsOutcome::Forbidden(_) => "forbidden",
    }
}
