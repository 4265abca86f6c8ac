//! Step 6, the dig: walks a hostname's CNAME chain record by record against real name servers.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use hickory_resolver::config::{NameServerConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::xfer::DnsHandle;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::proto::op::{
    DnsRequest, DnsRequestOptions, DnsResponse, Query, ResponseCode,
};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig};

use crate::checks::caa::{self, CaaRecord};
use crate::checks::dns::{CnameLink, DnsObservation, DnsOutcome};
use crate::checks::dns_health::{AuthoritativeAnswer, CaaLookup};

/// Longest CNAME chain followed before giving up with [`DnsOutcome::TooLong`].
pub const MAX_CHAIN: usize = 16;

/// One step of a walk.
#[derive(Clone, Debug)]
pub enum Step {
    /// The name is a CNAME: the walk goes on at its target.
    Link(CnameLink),
    /// The walk ends at the name.
    End(DnsOutcome),
}

/// The walk of `link.name` whose first link is `link` and whose rest is `tail` (the walk of
/// `link.target`, made without an apex check): the same observation as walking from
/// `link.name`, with the loop and depth limits counted from there.
pub fn joined(link: CnameLink, tail: DnsObservation) -> DnsObservation {
    let name = link.name.clone();
    let mut chain = vec![link];
    let mut outcome = tail.outcome;
    if chain[0].target == name {
        outcome = DnsOutcome::Loop { name: name.clone() };
    } else {
        for next in tail.chain {
            if chain.len() == MAX_CHAIN {
                outcome = DnsOutcome::TooLong { limit: MAX_CHAIN };
                break;
            }
            let back = next.target == name;
            chain.push(next);
            if back {
                outcome = DnsOutcome::Loop { name: name.clone() };
                break;
            }
        }
    }
    DnsObservation {
        name,
        chain,
        outcome,
    }
}

/// A zone's name servers and the addresses of each.
pub type NameServers = Vec<(String, Vec<IpAddr>)>;

/// At most this many name servers of a zone are asked directly.
pub const MAX_NAME_SERVERS: usize = 8;

/// The prober could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DnsSetupError {
    #[error("cannot read the system resolver configuration (/etc/resolv.conf): {0}")]
    SystemConfig(#[source] NetError),
    #[error(
        "the system resolver configuration (/etc/resolv.conf) lists no name server; pass --dns-server IP:PORT"
    )]
    NoNameServers,
    #[error("cannot set up the DNS client: {0}")]
    Client(#[source] NetError),
}

/// Sends single, uncached queries (UDP, TCP when truncated) to fixed name servers and follows
/// CNAME chains itself, so that every link is seen as dig would show it.
pub struct DnsProber {
    // The pool, not a hickory `Resolver`: the resolver caches, chases CNAMEs itself (hiding the
    // links this step reports), retries, and applies search domains and /etc/hosts.
    pool: NameServerPool<TokioRuntimeProvider>,
    /// The pool's settings, for the one-server pools of authoritative queries.
    context: Arc<PoolContext>,
    name_servers: Vec<SocketAddr>,
    timeout: Duration,
    queries: AtomicU64,
}

impl fmt::Debug for DnsProber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsProber")
            .field("name_servers", &self.name_servers)
            .field("timeout", &self.timeout)
            .field("queries", &self.queries())
            .finish()
    }
}

impl DnsProber {
    /// Queries exactly `servers`, or the name servers of /etc/resolv.conf when `servers` is
    /// empty. `timeout` bounds each query, retransmissions and TCP fallback included.
    pub fn new(servers: &[SocketAddr], timeout: Duration) -> Result<Self, DnsSetupError> {
        let configs = if servers.is_empty() {
            let (config, _) = hickory_resolver::system_conf::read_system_conf()
                .map_err(DnsSetupError::SystemConfig)?;
            if config.name_servers.is_empty() {
                return Err(DnsSetupError::NoNameServers);
            }
            config.name_servers
        } else {
            servers.iter().map(|addr| name_server(*addr)).collect()
        };
        let name_servers = configs
            .iter()
            .flat_map(|c| {
                c.connections
                    .first()
                    .map(|conn| SocketAddr::new(c.ip, conn.port))
            })
            .collect();

        // resolv.conf options (ndots, search, rotate, attempts) are deliberately ignored: names
        // are always sent fully qualified, and retries would multiply the timeout.
        let mut options = ResolverOpts::default();
        options.timeout = timeout;
        options.attempts = 1;
        options.cache_size = 0;
        options.recursion_desired = true;
        let tls = TlsConfig::new().map_err(DnsSetupError::Client)?;
        let context = Arc::new(PoolContext::new(options, tls));
        let pool =
            NameServerPool::from_config(configs, context.clone(), TokioRuntimeProvider::default());
        Ok(Self {
            pool,
            context,
            name_servers,
            timeout,
            queries: AtomicU64::new(0),
        })
    }

    /// The name servers queried, in configuration order.
    pub fn name_servers(&self) -> &[SocketAddr] {
        &self.name_servers
    }

    /// DNS queries sent so far (CNAME, A, AAAA and SOA alike; a UDP retransmission or the TCP
    /// retry of a truncated answer is part of the same query).
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Walks `name`'s CNAME chain: a CNAME query per name, then A and AAAA (and SOA when `name`
    /// itself has no CNAME) for the last one.
    pub async fn walk(&self, name: &str) -> DnsObservation {
        self.walk_from(name, true).await
    }

    /// The CAA record sets of `hostname` and each parent up to the TLD ([`caa::climb`] order),
    /// each answer following CNAMEs as the server resolves them; stops at the first non-empty
    /// set (the relevant one, RFC 8659). A failed query is the failure (a timeout, SERVFAIL):
    /// an undecided lookup is never read as "no policy". `validated` is the AD bit of the
    /// hostname's own answer.
    pub async fn caa(&self, hostname: &str) -> CaaLookup {
        climb_caa(hostname, |name| async move { self.caa_set(&name).await }).await
    }

    /// The CAA record set `name` resolves to (following CNAMEs, RFC 8659 section 3), and
    /// whether the resolver validated it (AD).
    pub async fn caa_set(&self, name: &str) -> CaaSet {
        let reply = match fqdn(name) {
            Ok(qname) => self.query(&qname, RecordType::CAA).await,
            Err(detail) => Err(Failure::Server(detail)),
        }
        .map_err(|failure| failure.outcome(name.to_string()))?;
        let records = reply
            .records
            .iter()
            .filter_map(|r| match &r.data {
                RData::CAA(c) => Some(CaaRecord {
                    critical: c.issuer_critical,
                    tag: c.tag.to_ascii_lowercase(),
                    value: String::from_utf8_lossy(&c.value).into_owned(),
                }),
                _ => None,
            })
            .collect();
        Ok((records, reply.authentic))
    }

    /// After a SERVFAIL for `name`: asks again with DNSSEC checking disabled (CD). When that
    /// answers, validation is what failed: returns the zone the name is in (the closest
    /// enclosing name with an SOA record, looked up with CD too).
    pub async fn dnssec_bogus_zone(&self, name: &str) -> Option<String> {
        let qname = fqdn(name).ok()?;
        // Both at once, so that a SERVFAIL of a slow upstream that the resolver has since
        // answered (and cached) is not taken for a validation failure: bogus only when the
        // query still fails as it is and answers with checking disabled.
        let (checked, unchecked) = tokio::join!(
            self.query_via(&self.pool, &qname, RecordType::A, Flags::RECURSIVE),
            self.query_via(&self.pool, &qname, RecordType::A, Flags::UNCHECKED)
        );
        match checked {
            Err(Failure::Server(detail)) if detail == "SERVFAIL" => {}
            _ => return None,
        }
        unchecked.ok()?;
        for candidate in caa::climb(name) {
            let Ok(q) = fqdn(&candidate) else { continue };
            match self
                .query_via(&self.pool, &q, RecordType::SOA, Flags::UNCHECKED)
                .await
            {
                Ok(reply) if !reply.records.is_empty() => return Some(candidate),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        Some(name.to_string())
    }

    /// Whether `name` is a zone apex (owns an SOA record), through the resolver.
    pub async fn is_zone_apex(&self, name: &str) -> Result<bool, String> {
        let qname = fqdn(name)?;
        match self.query(&qname, RecordType::SOA).await {
            Ok(reply) => Ok(!reply.records.is_empty()),
            Err(failure) => Err(failure_text(name, "SOA", failure)),
        }
    }

    /// The name servers of `zone` (its NS set, at most [`MAX_NAME_SERVERS`]) and the addresses
    /// of each (A and AAAA), through the resolver.
    pub async fn zone_name_servers(&self, zone: &str) -> Result<NameServers, String> {
        let qname = fqdn(zone)?;
        let ns = self
            .query(&qname, RecordType::NS)
            .await
            .map_err(|f| failure_text(zone, "NS", f))?;
        let mut names: Vec<String> = ns
            .records
            .iter()
            .filter_map(|r| match &r.data {
                RData::NS(ns) => Some(display(&ns.0)),
                _ => None,
            })
            .collect();
        names.sort();
        names.dedup();
        names.truncate(MAX_NAME_SERVERS);
        if names.is_empty() {
            return Err(format!("zone {zone} has no NS records"));
        }
        let servers = futures::future::join_all(names.into_iter().map(|ns| async move {
            let addresses = match fqdn(&ns) {
                Ok(q) => {
                    let (v4, v6) = tokio::join!(
                        self.query(&q, RecordType::A),
                        self.query(&q, RecordType::AAAA)
                    );
                    let mut all: Vec<IpAddr> = [v4, v6]
                        .into_iter()
                        .flatten()
                        .flat_map(|r| r.records)
                        .filter_map(|r| match r.data {
                            RData::A(a) => Some(IpAddr::V4(a.0)),
                            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                            _ => None,
                        })
                        .collect();
                    all.sort();
                    all
                }
                Err(_) => Vec::new(),
            };
            (ns, addresses)
        }))
        .await;
        Ok(servers)
    }

    /// Asks the authoritative server at `server` (no recursion) for `name`'s CNAME.
    pub async fn ask_authoritative(&self, server: SocketAddr, name: &str) -> AuthoritativeAnswer {
        let qname = match fqdn(name) {
            Ok(q) => q,
            Err(detail) => return AuthoritativeAnswer::Failed(detail),
        };
        let pool = NameServerPool::from_config(
            vec![name_server(server)],
            self.context.clone(),
            TokioRuntimeProvider::default(),
        );
        match self
            .query_via(&pool, &qname, RecordType::CNAME, Flags::AUTHORITATIVE)
            .await
        {
            Err(Failure::Timeout) => AuthoritativeAnswer::Failed("timed out".into()),
            Err(Failure::Server(detail)) => AuthoritativeAnswer::Failed(detail),
            Ok(reply) if !reply.authoritative => AuthoritativeAnswer::Failed(
                "answered without authority (no AA bit, or a referral): the server is not authoritative for the zone (a lame delegation)".into(),
            ),
            Ok(reply) if !reply.exists => AuthoritativeAnswer::NxDomain,
            Ok(reply) => match reply.records.iter().find_map(|r| match (&r.data, r.ttl) {
                (RData::CNAME(c), ttl) => Some((display(&c.0), ttl)),
                _ => None,
            }) {
                Some((target, ttl)) => AuthoritativeAnswer::Cname { target, ttl },
                None => AuthoritativeAnswer::NoCname,
            },
        }
    }

    /// Walks the chain from `name` on, as the rest of a chain whose first name pointed at it:
    /// like [`walk`](Self::walk), without asking whether `name` is a zone apex.
    pub async fn walk_tail(&self, name: &str) -> DnsObservation {
        self.walk_from(name, false).await
    }

    /// The walk of `name`, asking whether it is a zone apex when `first`.
    async fn walk_from(&self, name: &str, first: bool) -> DnsObservation {
        let name = normalize(name);
        let mut chain = Vec::new();
        let outcome = self.follow(&name, &mut chain, first).await;
        DnsObservation {
            name,
            chain,
            outcome,
        }
    }

    /// The first step of `name`'s walk: its CNAME, or how the walk ends there.
    pub async fn first_step(&self, name: &str) -> Step {
        self.step(&normalize(name), true).await
    }

    async fn follow(&self, start: &str, chain: &mut Vec<CnameLink>, first: bool) -> DnsOutcome {
        let mut visited = HashSet::from([start.to_owned()]);
        let mut current = start.to_owned();
        loop {
            let link = match self.step(&current, first && chain.is_empty()).await {
                Step::Link(link) => link,
                Step::End(outcome) => return outcome,
            };
            if chain.len() == MAX_CHAIN {
                return DnsOutcome::TooLong { limit: MAX_CHAIN };
            }
            let target = link.target.clone();
            chain.push(link);
            if !visited.insert(target.clone()) {
                return DnsOutcome::Loop { name: target };
            }
            current = target;
        }
    }

    /// The CNAME query for `current`; at a name without one, the end of the chain (`first`:
    /// the walk's first name, whose zone apex status is asked too).
    async fn step(&self, current: &str, first: bool) -> Step {
        let qname = match fqdn(current) {
            Ok(qname) => qname,
            Err(detail) => {
                return Step::End(DnsOutcome::ServerFailure {
                    name: current.to_owned(),
                    detail,
                });
            }
        };
        let reply = match self.query(&qname, RecordType::CNAME).await {
            Ok(reply) => reply,
            Err(failure) => return Step::End(failure.outcome(current.to_owned())),
        };
        // A CNAME record wins over the response code: with a chained answer the code speaks
        // for the end of the chain, not for the name queried.
        match reply.records.iter().find_map(|r| match &r.data {
            RData::CNAME(cname) => Some(CnameLink {
                name: current.to_owned(),
                target: display(&cname.0),
                ttl: r.ttl,
                validated: reply.authentic,
            }),
            _ => None,
        }) {
            Some(link) => Step::Link(link),
            None if !reply.exists => Step::End(DnsOutcome::NxDomain {
                name: current.to_owned(),
            }),
            None => Step::End(self.end_of_chain(&qname, current.to_owned(), first).await),
        }
    }

    /// The last name of the chain: its addresses, and whether it is a zone apex when it is
    /// also the first.
    async fn end_of_chain(&self, qname: &Name, name: String, first: bool) -> DnsOutcome {
        let v4 = self.query(qname, RecordType::A);
        let v6 = self.query(qname, RecordType::AAAA);
        let (v4, v6, soa) = if first {
            let (v4, v6, soa) = tokio::join!(v4, v6, self.query(qname, RecordType::SOA));
            (v4, v6, Some(soa))
        } else {
            let (v4, v6) = tokio::join!(v4, v6);
            (v4, v6, None)
        };
        // A failed query makes the whole answer undecided: partial addresses or a missing apex
        // check would be a guess.
        let (v4, v6, apex) = match (v4, v6, soa.transpose()) {
            (Ok(v4), Ok(v6), Ok(soa)) => (v4, v6, soa.is_some_and(|s| !s.records.is_empty())),
            (Err(failure), _, _) | (_, Err(failure), _) | (_, _, Err(failure)) => {
                return failure.outcome(name);
            }
        };
        let mut addresses: Vec<IpAddr> = v4
            .records
            .iter()
            .chain(&v6.records)
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                _ => None,
            })
            .collect();
        // Servers rotate record order; a stable order keeps an unchanged answer unchanged.
        addresses.sort();
        addresses.dedup();
        if apex {
            DnsOutcome::ZoneApex { name, addresses }
        } else if !addresses.is_empty() {
            DnsOutcome::Addresses { name, addresses }
        } else if !v4.exists || !v6.exists {
            DnsOutcome::NxDomain { name }
        } else {
            DnsOutcome::NoData { name }
        }
    }

    async fn query(&self, name: &Name, record_type: RecordType) -> Result<Reply, Failure> {
        self.query_via(&self.pool, name, record_type, Flags::RECURSIVE)
            .await
    }

    /// One query through `pool` with the header bits of `flags`.
    async fn query_via(
        &self,
        pool: &NameServerPool<TokioRuntimeProvider>,
        name: &Name,
        record_type: RecordType,
        flags: Flags,
    ) -> Result<Reply, Failure> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let mut options = DnsRequestOptions::default();
        options.recursion_desired = flags.recursion_desired;
        let request = DnsRequest::from_query(Query::query(name.clone(), record_type), options);
        let (mut message, options) = request.into_parts();
        message.metadata.checking_disabled = flags.checking_disabled;
        // RFC 6840 section 5.7: a query with AD set asks the resolver to report validation.
        message.metadata.authentic_data = flags.recursion_desired;
        let mut responses = pool.send(DnsRequest::new(message, options));
        // The pool enforces the timeout too; this outer bound also covers connection setup and
        // TCP fallback, so a silent server can never hold a walk longer than promised.
        match tokio::time::timeout(self.timeout, responses.next()).await {
            Err(_) => Err(Failure::Timeout),
            Ok(None) => Err(Failure::Server("no response".into())),
            Ok(Some(Ok(response))) => Reply::from_response(response, name, record_type),
            Ok(Some(Err(error))) => Reply::from_error(error),
        }
    }
}

/// Header bits of a query.
#[derive(Clone, Copy, Debug)]
struct Flags {
    recursion_desired: bool,
    checking_disabled: bool,
}

impl Flags {
    /// To the resolver, asking it to validate.
    const RECURSIVE: Flags = Flags {
        recursion_desired: true,
        checking_disabled: false,
    };
    /// To the resolver, with DNSSEC checking disabled (CD).
    const UNCHECKED: Flags = Flags {
        recursion_desired: true,
        checking_disabled: true,
    };
    /// To an authoritative server.
    const AUTHORITATIVE: Flags = Flags {
        recursion_desired: false,
        checking_disabled: false,
    };
}

/// What one query said about the name queried.
#[derive(Debug)]
struct Reply {
    /// False on NXDOMAIN.
    exists: bool,
    /// Answer records owned by the name queried and of the type queried; the rest of the answer
    /// (a chain followed by the server, glue) is ignored because each name is queried itself.
    records: Vec<Record>,
    /// The AD bit: the resolver validated the answer with DNSSEC.
    authentic: bool,
    /// The AA bit: an authoritative server answered.
    authoritative: bool,
}

impl Reply {
    fn from_response(
        response: DnsResponse,
        name: &Name,
        record_type: RecordType,
    ) -> Result<Self, Failure> {
        let exists = match response.response_code {
            ResponseCode::NoError => true,
            ResponseCode::NXDomain => false,
            code => return Err(Failure::Server(rcode_detail(code))),
        };
        // A CAA set is the one the name resolves to (RFC 8659 section 3): a CNAME's target's
        // records answer for the name; every other type is owned by the name queried.
        let follows_cnames = record_type == RecordType::CAA;
        let records = response
            .answers
            .iter()
            .filter(|r| r.record_type() == record_type && (follows_cnames || r.name == *name))
            .cloned()
            .collect();
        Ok(Self {
            exists,
            records,
            authentic: response.metadata.authentic_data,
            authoritative: response.metadata.authoritative,
        })
    }

    fn negative(exists: bool, authoritative: bool) -> Self {
        Self {
            exists,
            records: Vec::new(),
            authentic: false,
            authoritative,
        }
    }

    fn from_error(error: NetError) -> Result<Self, Failure> {
        match error {
            // hickory turns empty NOERROR and NXDOMAIN answers into this error.
            NetError::Dns(DnsError::NoRecordsFound(NoRecords {
                response_code,
                soa,
                ns,
                ..
            })) => {
                // The error keeps no header: a negative answer reads as not validated, and as
                // authoritative only with the zone's SOA and no referral (an authoritative
                // server's negative answer carries its SOA; a lame one refers elsewhere).
                let authoritative = soa.is_some() && ns.is_none();
                match response_code {
                    ResponseCode::NoError => Ok(Self::negative(true, authoritative)),
                    ResponseCode::NXDomain => Ok(Self::negative(false, authoritative)),
                    code => Err(Failure::Server(rcode_detail(code))),
                }
            }
            NetError::Dns(DnsError::ResponseCode(code)) => Err(Failure::Server(rcode_detail(code))),
            NetError::Timeout => Err(Failure::Timeout),
            NetError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => Err(Failure::Timeout),
            other => Err(Failure::Server(other.to_string())),
        }
    }
}

/// Why a query has no usable answer.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    Timeout,
    Server(String),
}

impl Failure {
    fn outcome(self, name: String) -> DnsOutcome {
        match self {
            Failure::Timeout => DnsOutcome::Timeout { name },
            Failure::Server(detail) => DnsOutcome::ServerFailure { name, detail },
        }
    }
}

/// One name's CAA record set and the resolver's AD bit, or why it could not be read.
pub type CaaSet = Result<(Vec<CaaRecord>, bool), DnsOutcome>;

/// The CAA sets of `hostname` and its parents ([`caa::climb`] order) up to the first non-empty
/// one, each read by `set`; a failed read is the answer (never "no policy"). `validated` is the
/// AD bit of the hostname's own set.
pub async fn climb_caa<F, Fut>(hostname: &str, mut set: F) -> CaaLookup
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = CaaSet>,
{
    let mut sets = Vec::new();
    let mut validated = false;
    for (i, name) in caa::climb(hostname).into_iter().enumerate() {
        let (records, authentic) = match set(name.clone()).await {
            Ok(found) => found,
            Err(outcome) => {
                return CaaLookup {
                    sets: Err(outcome),
                    validated,
                };
            }
        };
        if i == 0 {
            validated = authentic;
        }
        let found = !records.is_empty();
        sets.push((name, records));
        if found {
            break;
        }
    }
    CaaLookup {
        sets: Ok(sets),
        validated,
    }
}

/// "SOA query for NAME: DETAIL", for the errors of [`DnsProber::name_servers`].
fn failure_text(name: &str, record_type: &str, failure: Failure) -> String {
    match failure {
        Failure::Timeout => format!("the {record_type} query for {name} timed out"),
        Failure::Server(detail) => format!("the {record_type} query for {name} failed: {detail}"),
    }
}

fn name_server(addr: SocketAddr) -> NameServerConfig {
    let mut config = NameServerConfig::udp_and_tcp(addr.ip());
    for connection in &mut config.connections {
        connection.port = addr.port();
    }
    config
}

/// Lower case, no trailing dot: the form names take in observations.
fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn display(name: &Name) -> String {
    normalize(&name.to_lowercase().to_ascii())
}

/// The fully qualified form, so that no search domain is ever appended.
fn fqdn(name: &str) -> Result<Name, String> {
    let absolute = format!("{name}.");
    // IDNA mapping only for internationalised names: it would reject ASCII labels real zones
    // use, such as `_acme-challenge`.
    let parsed = if absolute.is_ascii() {
        Name::from_ascii(&absolute)
    } else {
        Name::from_utf8(&absolute)
    };
    parsed.map_err(|e| format!("invalid DNS name {name:?}: {e}"))
}

/// The response code as dig prints it.
fn rcode_detail(code: ResponseCode) -> String {
    match code {
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        other => format!("rcode {} ({other})", u16::from(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, target: &str) -> CnameLink {
        CnameLink {
            name: name.into(),
            target: target.into(),
            ttl: 60,
            validated: false,
        }
    }

    fn tail(name: &str, links: &[(&str, &str)], outcome: DnsOutcome) -> DnsObservation {
        DnsObservation {
            name: name.into(),
            chain: links.iter().map(|(n, t)| link(n, t)).collect(),
            outcome,
        }
    }

    #[test]
    fn a_joined_walk_reads_as_the_walk_from_its_first_name() {
        let addresses = DnsOutcome::Addresses {
            name: "edge.cdn".into(),
            addresses: vec![IpAddr::from([192, 0, 2, 1])],
        };
        let walk = joined(
            link("www.shop", "mid.shop"),
            tail("mid.shop", &[("mid.shop", "edge.cdn")], addresses.clone()),
        );
        assert_eq!(walk.name, "www.shop");
        assert_eq!(
            walk.dig_lines()[..2],
            [
                "www.shop. IN CNAME mid.shop.",
                "mid.shop. IN CNAME edge.cdn."
            ]
        );
        assert_eq!(walk.outcome, addresses);

        // The tail comes back to the first name: the loop is the first name's, cut there.
        let back = joined(
            link("a", "b"),
            tail(
                "b",
                &[("b", "a"), ("a", "b")],
                DnsOutcome::Loop { name: "b".into() },
            ),
        );
        assert_eq!(back.chain.len(), 2);
        assert_eq!(back.outcome, DnsOutcome::Loop { name: "a".into() });

        // A loop inside the tail stays the tail's.
        let inner = tail(
            "b",
            &[("b", "c"), ("c", "b")],
            DnsOutcome::Loop { name: "b".into() },
        );
        assert_eq!(
            joined(link("a", "b"), inner).outcome,
            DnsOutcome::Loop { name: "b".into() }
        );

        // The depth limit counts from the first name: a tail at the limit is one link too long.
        let links: Vec<(String, String)> = (0..MAX_CHAIN)
            .map(|i| (format!("n{i}"), format!("n{}", i + 1)))
            .collect();
        let links: Vec<(&str, &str)> = links
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let long = tail(
            "n0",
            &links,
            DnsOutcome::NoData {
                name: format!("n{MAX_CHAIN}"),
            },
        );
        let walk = joined(link("start", "n0"), long);
        assert_eq!(walk.outcome, DnsOutcome::TooLong { limit: MAX_CHAIN });
        assert_eq!(walk.chain.len(), MAX_CHAIN);
    }

    #[test]
    fn names_are_lower_case_without_trailing_dot() {
        assert_eq!(normalize("WWW.Shop.Example."), "www.shop.example");
        assert_eq!(normalize("www.shop.example"), "www.shop.example");
        let name = Name::from_ascii("CS1.WPC.v0cdn.NET.").unwrap();
        assert_eq!(display(&name), "cs1.wpc.v0cdn.net");
    }

    #[test]
    fn queries_are_fully_qualified() {
        let name = fqdn("www.shop.example").unwrap();
        assert!(name.is_fqdn());
        assert_eq!(name.to_ascii(), "www.shop.example.");
        assert!(fqdn("bad..name").is_err());
    }

    #[test]
    fn server_errors_name_the_response_code() {
        let servfail = NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail));
        assert_eq!(
            Reply::from_error(servfail).unwrap_err(),
            Failure::Server("SERVFAIL".into())
        );
        let refused = NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused));
        assert_eq!(
            Reply::from_error(refused).unwrap_err(),
            Failure::Server("REFUSED".into())
        );
        assert_eq!(
            Reply::from_error(NetError::Timeout).unwrap_err(),
            Failure::Timeout
        );
    }

    #[test]
    fn negative_answers_are_not_failures() {
        let query = Query::query(fqdn("x.shop.example").unwrap(), RecordType::CNAME);
        let nx = NetError::Dns(DnsError::NoRecordsFound(NoRecords::new(
            query.clone(),
            ResponseCode::NXDomain,
        )));
        let reply = Reply::from_error(nx).unwrap();
        assert!(!reply.exists && reply.records.is_empty());
        assert!(
            !reply.authoritative,
            "a negative answer without the zone's SOA speaks for no zone"
        );
        let nodata = NetError::Dns(DnsError::NoRecordsFound(NoRecords::new(
            query,
            ResponseCode::NoError,
        )));
        let reply = Reply::from_error(nodata).unwrap();
        assert!(reply.exists && reply.records.is_empty());
    }
}
