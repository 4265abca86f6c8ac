//! An authoritative DNS server on loopback (hickory-server) serving declarative zones that tests
//! can change, break and fix while it runs.

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use hickory_proto::op::{Edns, Header, HeaderCounts, Message, Metadata, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CAA, CNAME, NS, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// TTL of every record unless [`Zone::ttl`] says otherwise.
pub const TTL: u32 = 60;

/// CNAME hops the server follows inside its zones when answering other types.
const MAX_CHASE: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Data {
    Cname(String),
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// (issuer critical, tag, value)
    Caa(bool, String, String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    ServFail,
    Silent,
}

/// A zone: its apex (which gets SOA and NS records automatically) and the records below it.
/// Names are absolute (`www.shop.example`), case and trailing dot do not matter.
#[derive(Clone, Debug)]
pub struct Zone {
    origin: String,
    ttl: u32,
    records: Vec<(String, u32, Data)>,
    faults: Vec<(String, Fault)>,
    /// The apex's NS set (default `ns1.ORIGIN`).
    name_servers: Vec<String>,
    /// Where recursive queries for names in the zone go instead (see [`Zone::resolved_by`]).
    resolver: Option<SocketAddr>,
}

impl Zone {
    pub fn new(origin: &str) -> Self {
        let origin = normalize(origin);
        assert!(valid(&origin), "invalid zone origin {origin:?}");
        Self {
            name_servers: vec![format!("ns1.{origin}")],
            origin,
            ttl: TTL,
            records: Vec::new(),
            faults: Vec::new(),
            resolver: None,
        }
    }

    /// The apex, lower case, without trailing dot.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// TTL of the records added after this call.
    pub fn ttl(mut self, ttl: u32) -> Self {
        self.ttl = ttl;
        self
    }

    pub fn cname(self, name: &str, target: &str) -> Self {
        let target = normalize(target);
        assert!(valid(&target), "invalid CNAME target {target:?}");
        self.with(name, Data::Cname(target))
    }

    pub fn a(self, name: &str, addr: Ipv4Addr) -> Self {
        self.with(name, Data::A(addr))
    }

    /// A wildcard CNAME `*.parent` (RFC 4592): every name one or more labels below `parent`
    /// that owns nothing itself answers as a CNAME to `target`.
    pub fn wildcard_cname(mut self, parent: &str, target: &str) -> Self {
        let parent = self.owned(parent);
        let target = normalize(target);
        assert!(valid(&target), "invalid CNAME target {target:?}");
        self.records
            .push((format!("*.{parent}"), self.ttl, Data::Cname(target)));
        self
    }

    pub fn aaaa(self, name: &str, addr: Ipv6Addr) -> Self {
        self.with(name, Data::Aaaa(addr))
    }

    /// A CAA record (RFC 8659): `caa("shop.example", false, "issue", "digicert.com")`.
    pub fn caa(self, name: &str, critical: bool, tag: &str, value: &str) -> Self {
        self.with(name, Data::Caa(critical, tag.into(), value.into()))
    }

    /// Every query for `name`, whatever its type, is answered SERVFAIL.
    pub fn servfail(self, name: &str) -> Self {
        self.fault(name, Fault::ServFail)
    }

    /// Every query for `name` is dropped without an answer (the client times out).
    pub fn silent(self, name: &str) -> Self {
        self.fault(name, Fault::Silent)
    }

    /// Replaces the apex's NS set (their addresses are ordinary A/AAAA records of some zone).
    pub fn name_servers(mut self, names: &[&str]) -> Self {
        self.name_servers = names.iter().map(|n| normalize(n)).collect();
        self
    }

    /// Recursive queries (RD set) for names in this zone are relayed to the resolver at
    /// `resolver`, and its answer (response code, AD bit, answer and authority sections) is
    /// returned as it is: the way to put a validating resolver of signed zones
    /// ([`crate::dnssec::SignedDns`]) behind this server. Queries without RD, as to the zone's
    /// own name servers, are still answered from this zone's records.
    pub fn resolved_by(mut self, resolver: SocketAddr) -> Self {
        assert!(
            resolver.ip().is_loopback(),
            "fixtures talk to loopback only"
        );
        self.resolver = Some(resolver);
        self
    }

    /// Removes every record and fault of `name` (the apex keeps its SOA and NS).
    pub fn remove(mut self, name: &str) -> Self {
        let name = self.owned(name);
        self.records.retain(|(owner, _, _)| *owner != name);
        self.faults.retain(|(owner, _)| *owner != name);
        self
    }

    fn with(mut self, name: &str, data: Data) -> Self {
        let name = self.owned(name);
        self.records.push((name, self.ttl, data));
        self
    }

    fn fault(mut self, name: &str, fault: Fault) -> Self {
        let name = self.owned(name);
        self.faults.retain(|(owner, _)| *owner != name);
        self.faults.push((name, fault));
        self
    }

    fn owned(&self, name: &str) -> String {
        let name = normalize(name);
        assert!(valid(&name), "invalid name {name:?}");
        assert!(
            in_zone(&name, &self.origin),
            "{name} is not inside the zone {}",
            self.origin
        );
        name
    }

    fn faulted(&self, name: &str) -> Option<Fault> {
        self.faults
            .iter()
            .find(|(owner, _)| owner == name)
            .map(|(_, f)| *f)
    }

    /// Whether `name` exists: it owns records or is an ancestor of a name that does.
    fn exists(&self, name: &str) -> bool {
        name == self.origin
            || self
                .records
                .iter()
                .map(|(owner, _, _)| owner)
                .chain(self.faults.iter().map(|(owner, _)| owner))
                .any(|owner| in_zone(owner, name))
    }

    fn records_of(&self, name: &str) -> Result<Vec<Record>, String> {
        let own = self.own_records_of(name)?;
        if !own.is_empty() || self.exists(name) {
            return Ok(own);
        }
        // No such name: the closest wildcard above it answers, with the name as the owner.
        let mut parent = name;
        while let Some((_, rest)) = parent.split_once('.') {
            let wildcard = format!("*.{rest}");
            let synthesized: Vec<Record> = self
                .records
                .iter()
                .filter(|(owner, _, _)| *owner == wildcard)
                .map(|(_, ttl, data)| record(name, *ttl, rdata(data)?))
                .collect::<Result<_, _>>()?;
            if !synthesized.is_empty() || rest == self.origin {
                return Ok(synthesized);
            }
            parent = rest;
        }
        Ok(Vec::new())
    }

    fn own_records_of(&self, name: &str) -> Result<Vec<Record>, String> {
        let mut out = Vec::new();
        if name == self.origin {
            out.push(self.soa()?);
            for ns in &self.name_servers {
                out.push(record(name, TTL, RData::NS(NS(absolute(ns)?)))?);
            }
        }
        for (owner, ttl, data) in &self.records {
            if owner == name {
                out.push(record(owner, *ttl, rdata(data)?)?);
            }
        }
        Ok(out)
    }

    /// Every record: the apex's SOA and NS set, then the records in the order they were added.
    pub(crate) fn records(&self) -> Result<Vec<Record>, String> {
        let mut out = vec![self.soa()?];
        for ns in &self.name_servers {
            out.push(record(&self.origin, TTL, RData::NS(NS(absolute(ns)?)))?);
        }
        for (owner, ttl, data) in &self.records {
            out.push(record(owner, *ttl, rdata(data)?)?);
        }
        Ok(out)
    }

    fn soa(&self) -> Result<Record, String> {
        let soa = SOA::new(
            absolute(&format!("ns1.{}", self.origin))?,
            absolute(&format!("hostmaster.{}", self.origin))?,
            1,
            3600,
            600,
            86400,
            TTL,
        );
        record(&self.origin, TTL, RData::SOA(soa))
    }
}

/// How the whole server behaves, whatever the zones say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Answer from the zones.
    #[default]
    Answer,
    /// SERVFAIL to every query.
    ServFail,
    /// Never answer (queries are read and dropped).
    Silent,
}

#[derive(Debug, Default)]
struct State {
    zones: Vec<Zone>,
    mode: Mode,
    chain_cname_queries: bool,
}

/// A running server on 127.0.0.1, UDP and TCP on the same port. Stops when dropped.
pub struct DnsFixture {
    addr: SocketAddr,
    state: Arc<RwLock<State>>,
    received: Arc<AtomicU64>,
    // Dropping the server drops its task set, which aborts the listeners and their requests.
    _server: Server<Authority>,
}

impl DnsFixture {
    /// Serves `zones` (several at once; the most specific origin answers for a name).
    pub async fn start(zones: Vec<Zone>) -> io::Result<Self> {
        let (udp, tcp) = bind_pair().await?;
        Self::serve(udp, tcp, zones)
    }

    /// Like [`start`](Self::start), on `addr` (a loopback address and a given port, to stand
    /// for one of a zone's authoritative servers, asked on the same port as the others).
    pub async fn start_at(addr: SocketAddr, zones: Vec<Zone>) -> io::Result<Self> {
        assert!(addr.ip().is_loopback(), "fixtures bind loopback only");
        let udp = UdpSocket::bind(addr).await?;
        let tcp = TcpListener::bind(udp.local_addr()?).await?;
        Self::serve(udp, tcp, zones)
    }

    fn serve(udp: UdpSocket, tcp: TcpListener, zones: Vec<Zone>) -> io::Result<Self> {
        let addr = udp.local_addr()?;
        let state = Arc::new(RwLock::new(State {
            zones,
            ..State::default()
        }));
        let received = Arc::new(AtomicU64::new(0));
        let mut server = Server::new(Authority {
            state: state.clone(),
            received: received.clone(),
        });
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        Ok(Self {
            addr,
            state,
            received,
            _server: server,
        })
    }

    /// A server that reads every query and never answers.
    pub async fn start_silent() -> io::Result<Self> {
        let fixture = Self::start(Vec::new()).await?;
        fixture.set_mode(Mode::Silent);
        Ok(fixture)
    }

    /// A server that answers SERVFAIL to everything.
    pub async fn start_servfail() -> io::Result<Self> {
        let fixture = Self::start(Vec::new()).await?;
        fixture.set_mode(Mode::ServFail);
        Ok(fixture)
    }

    /// UDP and TCP address (same port) of the server.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces every zone; the next query sees the new data.
    pub fn set_zones(&self, zones: Vec<Zone>) {
        self.write().zones = zones;
    }

    /// Changes the zones in place; the next query sees the new data.
    pub fn update(&self, f: impl FnOnce(&mut Vec<Zone>)) {
        f(&mut self.write().zones);
    }

    pub fn set_mode(&self, mode: Mode) {
        self.write().mode = mode;
    }

    /// When on, a CNAME query is answered with the whole chain the server knows (as some
    /// authoritative servers do) instead of the single CNAME record.
    pub fn set_chain_cname_queries(&self, on: bool) {
        self.write().chain_cname_queries = on;
    }

    /// Query messages received so far, answered or not (UDP retransmissions included).
    pub fn queries_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for DnsFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsFixture")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Binds UDP and TCP on one free loopback port; another process may take the TCP side of the
/// port the kernel picked for UDP, so pick again until both fit.
pub(crate) async fn bind_pair() -> io::Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..32 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::AddrInUse, "no free port pair")))
}

/// The request handler: simple authoritative semantics over the shared zones.
struct Authority {
    state: Arc<RwLock<State>>,
    received: Arc<AtomicU64>,
}

/// What to send back for one query.
enum Answer {
    Drop,
    Reply {
        code: ResponseCode,
        answers: Vec<Record>,
        authorities: Vec<Record>,
    },
}

impl Answer {
    fn code(code: ResponseCode) -> Self {
        Answer::Reply {
            code,
            answers: Vec::new(),
            authorities: Vec::new(),
        }
    }
}

impl Authority {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The answer from the zones.
    fn answer(&self, qname: &str, qtype: RecordType) -> Answer {
        let state = self.read();
        match state.mode {
            Mode::Answer => {}
            Mode::ServFail => return Answer::code(ResponseCode::ServFail),
            Mode::Silent => return Answer::Drop,
        }
        lookup(&state, qname, qtype).unwrap_or_else(|_| Answer::code(ResponseCode::ServFail))
    }

    /// The resolver a recursive query for `qname` is relayed to, if its zone has one.
    fn resolver_for(&self, qname: &str, recursion_desired: bool) -> Option<SocketAddr> {
        let state = self.read();
        if !recursion_desired || state.mode != Mode::Answer {
            return None;
        }
        zone_for(&state.zones, qname)?.resolver
    }

    /// The answer to `request`, from the zones or from the resolver its zone is relayed to.
    async fn respond(&self, request: &Request) -> (Answer, Source) {
        let Some(query) = request.queries.queries().first() else {
            return (Answer::code(ResponseCode::FormErr), Source::Zones);
        };
        let qname = normalize(&Name::from(query.name()).to_ascii());
        match self.resolver_for(&qname, request.metadata.recursion_desired) {
            Some(resolver) => relay(resolver, request).await,
            None => (self.answer(&qname, query.query_type()), Source::Zones),
        }
    }
}

/// Who answered a query.
#[derive(Clone, Copy)]
enum Source {
    /// The zones, authoritatively.
    Zones,
    /// The resolver the zone is relayed to, with its AD bit.
    Resolver { authentic: bool },
}

/// How long a relayed query may take.
const RELAY_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks `resolver` the question of `request` with the same RD, CD, AD and DO bits.
async fn relay(resolver: SocketAddr, request: &Request) -> (Answer, Source) {
    let mut query = Message::query();
    query.metadata.id = request.metadata.id;
    query.metadata.recursion_desired = true;
    query.metadata.checking_disabled = request.metadata.checking_disabled;
    query.metadata.authentic_data = request.metadata.authentic_data;
    for q in request.queries.queries() {
        query.add_query(q.original().clone());
    }
    if let Some(edns) = &request.edns {
        let mut relayed = Edns::new();
        relayed.set_max_payload(4096);
        relayed.set_dnssec_ok(edns.flags().dnssec_ok);
        query.set_edns(relayed);
    }
    match exchange(resolver, &query, RELAY_TIMEOUT).await {
        Ok(response) => (
            reply(
                response.metadata.response_code,
                response.answers,
                response.authorities,
            ),
            Source::Resolver {
                authentic: response.metadata.authentic_data,
            },
        ),
        Err(_) => (
            Answer::code(ResponseCode::ServFail),
            Source::Resolver { authentic: false },
        ),
    }
}

/// Sends `query` to `server` over TCP (no truncation to deal with) and reads the response.
pub async fn exchange(
    server: SocketAddr,
    query: &Message,
    timeout: Duration,
) -> io::Result<Message> {
    let bytes = query.to_vec().map_err(io::Error::other)?;
    let length = u16::try_from(bytes.len()).map_err(io::Error::other)?;
    let exchange = async {
        let mut stream = TcpStream::connect(server).await?;
        stream.write_all(&length.to_be_bytes()).await?;
        stream.write_all(&bytes).await?;
        let mut length = [0u8; 2];
        stream.read_exact(&mut length).await?;
        let mut response = vec![0; usize::from(u16::from_be_bytes(length))];
        stream.read_exact(&mut response).await?;
        Message::from_vec(&response).map_err(io::Error::other)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("no answer from {server}")))?
}

/// Answers like an authoritative server: a CNAME answers any type and is followed through the
/// served zones; NXDOMAIN and NODATA carry the zone's SOA; names outside every zone are REFUSED.
fn lookup(state: &State, qname: &str, qtype: RecordType) -> Result<Answer, String> {
    let Some(mut zone) = zone_for(&state.zones, qname) else {
        return Ok(Answer::code(ResponseCode::Refused));
    };
    match zone.faulted(qname) {
        Some(Fault::ServFail) => return Ok(Answer::code(ResponseCode::ServFail)),
        Some(Fault::Silent) => return Ok(Answer::Drop),
        None => {}
    }
    let chase = qtype != RecordType::CNAME || state.chain_cname_queries;
    let mut answers = Vec::new();
    let mut name = qname.to_owned();
    let mut seen = HashSet::new();
    loop {
        let records = zone.records_of(&name)?;
        if let Some(cname) = records
            .iter()
            .find(|r| r.record_type() == RecordType::CNAME)
        {
            answers.push(cname.clone());
            let RData::CNAME(CNAME(target)) = &cname.data else {
                return Err("CNAME record without CNAME data".into());
            };
            let target = normalize(&target.to_ascii());
            // Stop where a real server would: when only the CNAME was asked for, on a loop,
            // out of its zones, or at a name it cannot answer for.
            if !chase || !seen.insert(name.clone()) || seen.len() > MAX_CHASE {
                return Ok(reply(ResponseCode::NoError, answers, Vec::new()));
            }
            match zone_for(&state.zones, &target) {
                Some(next) if next.faulted(&target).is_none() => {
                    zone = next;
                    name = target;
                    continue;
                }
                _ => return Ok(reply(ResponseCode::NoError, answers, Vec::new())),
            }
        }
        let wanted: Vec<Record> = records
            .into_iter()
            .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
            .collect();
        if !wanted.is_empty() {
            answers.extend(wanted);
            return Ok(reply(ResponseCode::NoError, answers, Vec::new()));
        }
        // The response code speaks for the last name of the chain (RFC 6604).
        let code = if zone.exists(&name) {
            ResponseCode::NoError
        } else {
            ResponseCode::NXDomain
        };
        return Ok(reply(code, answers, vec![zone.soa()?]));
    }
}

fn reply(code: ResponseCode, answers: Vec<Record>, authorities: Vec<Record>) -> Answer {
    Answer::Reply {
        code,
        answers,
        authorities,
    }
}

#[async_trait::async_trait]
impl RequestHandler for Authority {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        self.received.fetch_add(1, Ordering::Relaxed);
        let mut metadata = Metadata::response_from_request(&request.metadata);
        let (answer, source) = self.respond(request).await;
        (metadata.authoritative, metadata.authentic_data) = match source {
            Source::Zones => (true, false),
            Source::Resolver { authentic } => (false, authentic),
        };
        metadata.checking_disabled = request.metadata.checking_disabled;
        let (code, answers, authorities) = match answer {
            Answer::Drop => {
                return ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                });
            }
            Answer::Reply {
                code,
                answers,
                authorities,
            } => (code, answers, authorities),
        };
        metadata.response_code = code;
        // Echo EDNS so that UDP answers may exceed 512 bytes, as with real servers.
        let edns = request.edns.as_ref().map(|req| {
            let mut edns = Edns::new();
            edns.set_max_payload(req.max_payload().max(512));
            edns.set_version(0);
            edns.set_dnssec_ok(req.flags().dnssec_ok);
            edns
        });
        let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            metadata,
            answers.iter(),
            authorities.iter(),
            std::iter::empty(),
            std::iter::empty(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(_) => ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            }),
        }
    }
}

/// The most specific zone containing `name`.
fn zone_for<'z>(zones: &'z [Zone], name: &str) -> Option<&'z Zone> {
    zones
        .iter()
        .filter(|z| in_zone(name, &z.origin))
        .max_by_key(|z| z.origin.len())
}

/// Whether `name` is `origin` or below it.
fn in_zone(name: &str, origin: &str) -> bool {
    name == origin
        || name
            .strip_suffix(origin)
            .is_some_and(|head| head.ends_with('.'))
}

fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn valid(name: &str) -> bool {
    absolute(name).is_ok()
}

fn absolute(name: &str) -> Result<Name, String> {
    Name::from_ascii(format!("{name}.")).map_err(|e| format!("{name}: {e}"))
}

fn rdata(data: &Data) -> Result<RData, String> {
    Ok(match data {
        Data::Cname(target) => RData::CNAME(CNAME(absolute(target)?)),
        Data::A(addr) => RData::A(A(*addr)),
        Data::Aaaa(addr) => RData::AAAA(AAAA(*addr)),
        Data::Caa(critical, tag, value) => {
            let mut caa = CAA::new_issue(*critical, None, Vec::new());
            caa.tag.clone_from(tag);
            caa.value = value.clone().into_bytes();
            RData::CAA(caa)
        }
    })
}

fn record(name: &str, ttl: u32, data: RData) -> Result<Record, String> {
    Ok(Record::from_rdata(absolute(name)?, ttl, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones() -> State {
        State {
            zones: vec![
                Zone::new("shop.example")
                    .cname("www.shop.example", "mid.shop.example")
                    .cname("mid.shop.example", "cs1.wpc.v0cdn.net")
                    .a("shop.example", Ipv4Addr::new(192, 0, 2, 1))
                    .a("deep.a.shop.example", Ipv4Addr::new(192, 0, 2, 2)),
                Zone::new("v0cdn.net").a("cs1.wpc.v0cdn.net", Ipv4Addr::new(192, 0, 2, 10)),
            ],
            ..State::default()
        }
    }

    fn parts(answer: Answer) -> (ResponseCode, Vec<String>, usize) {
        match answer {
            Answer::Drop => panic!("dropped"),
            Answer::Reply {
                code,
                answers,
                authorities,
            } => (
                code,
                answers
                    .iter()
                    .map(|r| format!("{} {}", r.name, r.data))
                    .collect(),
                authorities.len(),
            ),
        }
    }

    #[test]
    fn a_wildcard_answers_for_names_that_own_nothing() {
        let state = State {
            zones: vec![
                Zone::new("bench.example")
                    .wildcard_cname("bench.example", "edge.cdn.example")
                    .a("own.bench.example", Ipv4Addr::new(192, 0, 2, 3)),
                Zone::new("cdn.example").a("edge.cdn.example", Ipv4Addr::new(192, 0, 2, 10)),
            ],
            ..State::default()
        };
        let (code, answers, _) = parts(lookup(&state, "h42.bench.example", RecordType::A).unwrap());
        assert_eq!(code, ResponseCode::NoError);
        assert_eq!(
            answers,
            [
                "h42.bench.example. edge.cdn.example.",
                "edge.cdn.example. 192.0.2.10"
            ]
        );
        let (_, answers, _) = parts(lookup(&state, "own.bench.example", RecordType::A).unwrap());
        assert_eq!(
            answers,
            ["own.bench.example. 192.0.2.3"],
            "its own records win"
        );
    }

    #[test]
    fn cname_queries_get_the_cname_only() {
        let (code, answers, _) =
            parts(lookup(&zones(), "www.shop.example", RecordType::CNAME).unwrap());
        assert_eq!(code, ResponseCode::NoError);
        assert_eq!(answers, ["www.shop.example. mid.shop.example."]);
    }

    #[test]
    fn address_queries_follow_the_chain_across_zones() {
        let (code, answers, _) =
            parts(lookup(&zones(), "www.shop.example", RecordType::A).unwrap());
        assert_eq!(code, ResponseCode::NoError);
        assert_eq!(
            answers,
            [
                "www.shop.example. mid.shop.example.",
                "mid.shop.example. cs1.wpc.v0cdn.net.",
                "cs1.wpc.v0cdn.net. 192.0.2.10",
            ]
        );
    }

    #[test]
    fn negative_answers() {
        let state = zones();
        let (code, answers, soa) =
            parts(lookup(&state, "nope.shop.example", RecordType::A).unwrap());
        assert_eq!((code, answers.len(), soa), (ResponseCode::NXDomain, 0, 1));
        // An empty non-terminal exists.
        let (code, _, soa) = parts(lookup(&state, "a.shop.example", RecordType::A).unwrap());
        assert_eq!((code, soa), (ResponseCode::NoError, 1));
        let (code, _, _) = parts(lookup(&state, "other.example", RecordType::A).unwrap());
        assert_eq!(code, ResponseCode::Refused);
        let (code, answers, _) = parts(lookup(&state, "shop.example", RecordType::SOA).unwrap());
        assert_eq!((code, answers.len()), (ResponseCode::NoError, 1));
    }

    #[test]
    fn chained_cname_answers_on_request() {
        let mut state = zones();
        state.chain_cname_queries = true;
        let (_, answers, _) = parts(lookup(&state, "www.shop.example", RecordType::CNAME).unwrap());
        assert_eq!(
            answers,
            [
                "www.shop.example. mid.shop.example.",
                "mid.shop.example. cs1.wpc.v0cdn.net.",
            ]
        );
    }

    #[test]
    fn faults() {
        let state = State {
            zones: vec![
                Zone::new("shop.example")
                    .servfail("bad.shop.example")
                    .silent("mute.shop.example"),
            ],
            ..State::default()
        };
        let (code, _, _) = parts(lookup(&state, "bad.shop.example", RecordType::A).unwrap());
        assert_eq!(code, ResponseCode::ServFail);
        assert!(matches!(
            lookup(&state, "mute.shop.example", RecordType::A).unwrap(),
            Answer::Drop
        ));
    }
}
