//! DNSSEC on loopback: zones signed when the fixture starts (hickory-server, ECDSA P-256), some
//! with signatures broken on purpose, and a validating resolver (hickory-server's forwarder)
//! whose trust anchors are those zones' keys.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::dnssec::crypto::EcdsaSigningKey;
use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, RRSIG};
use hickory_proto::dnssec::{Algorithm, DnssecSigner, PublicKeyBuf, SigningKey, TrustAnchors};
use hickory_proto::op::{Header, HeaderCounts, Message, Metadata, Query, ResponseCode};
use hickory_proto::rr::{LowerName, Name, RData, RecordType};
use hickory_server::Server;
use hickory_server::dnssec::NxProofKind;
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::resolver::config::NameServerConfig;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::forwarder::{ForwardConfig, ForwardZoneHandler};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, MessageResponseBuilder, ZoneType};

use crate::dns::{Zone, bind_pair, exchange};

/// How long the signatures made at start stay valid.
const SIGNATURE_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// Whether a zone's signatures verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signatures {
    /// Signed at start: every RRSIG verifies against the zone's key.
    Valid,
    /// Signed at start, then every RRSIG over the zone's data (all but the DNSKEY set's) had
    /// its signature damaged: the records are intact and the key is trusted, but no signature
    /// verifies, as after a botched re-signing.
    Broken,
}

/// An authoritative server of signed zones, and a validating resolver that forwards to it and
/// trusts each zone's key (a trust anchor per zone, so no chain from the root is needed).
/// Both on 127.0.0.1, UDP and TCP. Stops when dropped.
pub struct SignedDns {
    authoritative: SocketAddr,
    resolver: SocketAddr,
    _authoritative: Server<Catalog>,
    _resolver: Server<ValidatingResolver>,
}

impl SignedDns {
    /// Signs `zones` with a fresh key each and serves them. Every name the resolver is asked
    /// about, CNAME targets included, must be in one of them: it knows no other server, and
    /// data outside a trusted zone cannot validate.
    pub async fn start(zones: &[(Zone, Signatures)]) -> io::Result<Self> {
        let mut catalog = Catalog::new();
        let mut anchors = TrustAnchors::empty();
        for (zone, signatures) in zones {
            let (handler, key) = signed(zone, *signatures).map_err(io::Error::other)?;
            let origin = LowerName::new(&absolute(zone.origin())?);
            anchors.insert_with_name(&key, origin.clone());
            catalog.upsert(origin, vec![Arc::new(handler)]);
        }
        let (udp, tcp) = bind_pair().await?;
        let authoritative = udp.local_addr()?;
        let mut authoritative_server = Server::new(catalog);
        authoritative_server.register_socket(udp);
        authoritative_server.register_listener(tcp, Duration::from_secs(5), 64);

        let (udp, tcp) = bind_pair().await?;
        let resolver_addr = udp.local_addr()?;
        let resolver = ValidatingResolver {
            validating: forwarder(authoritative, Some(Arc::new(anchors)))?,
            unchecked: forwarder(authoritative, None)?,
            own: resolver_addr,
        };
        let mut resolver_server = Server::new(resolver);
        resolver_server.register_socket(udp);
        resolver_server.register_listener(tcp, Duration::from_secs(5), 64);
        Ok(Self {
            authoritative,
            resolver: resolver_addr,
            _authoritative: authoritative_server,
            _resolver: resolver_server,
        })
    }

    /// The validating resolver (recursion desired; AD when asked, SERVFAIL for data that does
    /// not validate unless the query sets CD).
    pub fn resolver(&self) -> SocketAddr {
        self.resolver
    }

    /// The authoritative server of the signed zones.
    pub fn authoritative(&self) -> SocketAddr {
        self.authoritative
    }
}

impl std::fmt::Debug for SignedDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedDns")
            .field("authoritative", &self.authoritative)
            .field("resolver", &self.resolver)
            .finish_non_exhaustive()
    }
}

/// The resolver: hickory's forwarder validates, and its catalog answers SERVFAIL for bogus data
/// and sets AD for secure data. Two gaps of hickory 0.26 are filled here:
/// - its forwarder cannot be told about CD (the caching client fails bogus data whatever the
///   query's CD bit, see the TODO in caching_client.rs), so a query with checking disabled goes
///   to a second forwarder that does not validate: the answer a validating resolver gives then;
/// - it cannot validate an SOA query for a name that owns a CNAME (an answer holding only the
///   CNAME counts as "no records" for SOA and loses the CNAME on the way: SERVFAIL), so such a
///   query is answered with the name's CNAME, validated on its own (RFC 1034 4.3.2: the CNAME,
///   then the target's SOA, which a name below a zone apex does not have).
pub struct ValidatingResolver {
    validating: Catalog,
    unchecked: Catalog,
    /// This resolver's own address, for the CNAME query of an SOA query.
    own: SocketAddr,
}

#[async_trait::async_trait]
impl RequestHandler for ValidatingResolver {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        if request.metadata.checking_disabled {
            return self
                .unchecked
                .handle_request::<R, T>(request, response_handle)
                .await;
        }
        let soa_query = request
            .queries
            .queries()
            .first()
            .filter(|q| q.query_type() == RecordType::SOA);
        if let Some(query) = soa_query
            && let Some(cname) = self.validated_cname(query.original().name()).await
        {
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.recursion_available = true;
            metadata.authentic_data = cname.metadata.authentic_data;
            let response = MessageResponseBuilder::new(&request.queries, None).build(
                metadata,
                cname.answers.iter(),
                std::iter::empty(),
                std::iter::empty(),
                std::iter::empty(),
            );
            return match response_handle.send_response(response).await {
                Ok(info) => info,
                Err(_) => ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                }),
            };
        }
        self.validating
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

impl ValidatingResolver {
    /// The validated answer to `name`'s CNAME query, when `name` owns a CNAME.
    async fn validated_cname(&self, name: &Name) -> Option<Message> {
        let mut query = Message::query();
        query.metadata.recursion_desired = true;
        query.metadata.authentic_data = true;
        query.add_query(Query::query(name.clone(), RecordType::CNAME));
        let answer = exchange(self.own, &query, Duration::from_secs(5))
            .await
            .ok()?;
        let owns_cname = answer
            .answers
            .iter()
            .any(|r| r.record_type() == RecordType::CNAME && r.name == *name);
        (answer.metadata.response_code == ResponseCode::NoError && owns_cname).then_some(answer)
    }
}

/// A catalog that forwards every name to `upstream`, validating with `anchors` when given.
fn forwarder(upstream: SocketAddr, anchors: Option<Arc<TrustAnchors>>) -> io::Result<Catalog> {
    let mut server = NameServerConfig::udp_and_tcp(upstream.ip());
    for connection in &mut server.connections {
        connection.port = upstream.port();
    }
    let config = ForwardConfig {
        name_servers: vec![server],
        options: None,
    };
    let mut builder = ForwardZoneHandler::builder_tokio(config);
    let options = builder.options_mut();
    options.timeout = Duration::from_secs(2);
    options.attempts = 1;
    // Every query reaches the authoritative server: the zones' data is fixed, but a cached
    // answer would hide which query a test sent.
    options.cache_size = 0;
    options.validate = anchors.is_some();
    if let Some(anchors) = anchors {
        builder = builder.with_trust_anchor(anchors);
    }
    let handler = builder.build().map_err(io::Error::other)?;
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::new(&Name::root()), vec![Arc::new(handler)]);
    Ok(catalog)
}

/// `zone` as a hickory zone, signed with a new key (returned as the zone's trust anchor).
fn signed(
    zone: &Zone,
    signatures: Signatures,
) -> Result<(InMemoryZoneHandler<TokioRuntimeProvider>, PublicKeyBuf), String> {
    let origin = absolute(zone.origin()).map_err(|e| e.to_string())?;
    let mut handler = InMemoryZoneHandler::empty(
        origin.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
        Some(NxProofKind::Nsec),
    );
    for record in zone.records()? {
        if !handler.upsert_mut(record, 1) {
            return Err(format!("zone {}: a record was refused", zone.origin()));
        }
    }
    let algorithm = Algorithm::ECDSAP256SHA256;
    let pkcs8 = EcdsaSigningKey::generate_pkcs8(algorithm).map_err(|e| e.to_string())?;
    let key = EcdsaSigningKey::from_pkcs8(&pkcs8, algorithm).map_err(|e| e.to_string())?;
    let public = key.to_public_key().map_err(|e| e.to_string())?;
    let signer = DnssecSigner::new(
        DNSKEY::from_key(&public),
        Box::new(key),
        origin,
        SIGNATURE_LIFETIME,
    );
    handler
        .add_zone_signing_key_mut(signer)
        .map_err(|e| e.to_string())?;
    handler.secure_zone_mut().map_err(|e| e.to_string())?;
    if signatures == Signatures::Broken {
        break_signatures(&mut handler);
    }
    Ok((handler, public))
}

/// Flips a bit in the signature of every RRSIG but the DNSKEY set's, without re-signing.
fn break_signatures(handler: &mut InMemoryZoneHandler<TokioRuntimeProvider>) {
    for rrset in handler.records_get_mut().values_mut() {
        if rrset.record_type() == RecordType::DNSKEY {
            continue;
        }
        let rrset = Arc::make_mut(rrset);
        let damaged = rrset
            .rrsigs()
            .iter()
            .map(|rrsig| {
                let mut rrsig = rrsig.clone();
                if let RData::DNSSEC(DNSSECRData::RRSIG(sig)) = &rrsig.data {
                    let mut bytes = sig.sig().to_vec();
                    if let Some(first) = bytes.first_mut() {
                        *first ^= 0x01;
                    }
                    rrsig.data = RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(
                        sig.input().clone(),
                        bytes,
                    )));
                }
                rrsig
            })
            .collect();
        rrset.set_rrsigs(damaged);
    }
}

fn absolute(name: &str) -> io::Result<Name> {
    Name::from_ascii(format!("{name}.")).map_err(|e| io::Error::other(format!("{name}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::{Name, Record};
    use std::net::Ipv4Addr;
    use std::str::FromStr;

    async fn signed() -> SignedDns {
        let edge = Ipv4Addr::new(192, 0, 2, 10);
        SignedDns::start(&[
            (
                Zone::new("shop.example").cname("www.shop.example", "cs1.wpc.cdn.example"),
                Signatures::Valid,
            ),
            (
                Zone::new("bogus.example").cname("www.bogus.example", "cs1.wpc.cdn.example"),
                Signatures::Broken,
            ),
            (
                Zone::new("cdn.example").a("cs1.wpc.cdn.example", edge),
                Signatures::Valid,
            ),
        ])
        .await
        .expect("start the signed zones")
    }

    /// Asks `server` for `name`/`record_type` with RD and AD set (and CD as given).
    async fn ask(
        server: SocketAddr,
        name: &str,
        record_type: RecordType,
        checking_disabled: bool,
    ) -> Message {
        let mut query = Message::query();
        query.metadata.id = 7;
        query.metadata.recursion_desired = true;
        query.metadata.authentic_data = true;
        query.metadata.checking_disabled = checking_disabled;
        query.add_query(hickory_proto::op::Query::query(
            Name::from_str(name).expect("name"),
            record_type,
        ));
        exchange(server, &query, Duration::from_secs(10))
            .await
            .expect("an answer")
    }

    fn shown(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
            .collect()
    }

    #[tokio::test]
    async fn the_resolver_validates_good_signatures_and_fails_broken_ones_unless_cd() {
        let dns = signed().await;
        let resolver = dns.resolver();

        let valid = ask(resolver, "www.shop.example.", RecordType::A, false).await;
        assert_eq!(valid.metadata.response_code, ResponseCode::NoError);
        assert!(valid.metadata.authentic_data, "AD for a valid chain");
        assert_eq!(
            shown(&valid.answers),
            [
                "www.shop.example. CNAME cs1.wpc.cdn.example.",
                "cs1.wpc.cdn.example. A 192.0.2.10"
            ]
        );

        let bogus = ask(resolver, "www.bogus.example.", RecordType::A, false).await;
        assert_eq!(bogus.metadata.response_code, ResponseCode::ServFail);
        assert!(bogus.answers.is_empty(), "{bogus:?}");

        let unchecked = ask(resolver, "www.bogus.example.", RecordType::A, true).await;
        assert_eq!(unchecked.metadata.response_code, ResponseCode::NoError);
        assert!(!unchecked.metadata.authentic_data);
        assert_eq!(
            shown(&unchecked.answers),
            [
                "www.bogus.example. CNAME cs1.wpc.cdn.example.",
                "cs1.wpc.cdn.example. A 192.0.2.10"
            ]
        );
        let soa = ask(resolver, "www.shop.example.", RecordType::SOA, false).await;
        assert_eq!(soa.metadata.response_code, ResponseCode::NoError);
        assert!(soa.metadata.authentic_data);
        assert_eq!(
            shown(&soa.answers),
            ["www.shop.example. CNAME cs1.wpc.cdn.example."]
        );
        let soa = ask(resolver, "www.bogus.example.", RecordType::SOA, false).await;
        assert_eq!(soa.metadata.response_code, ResponseCode::ServFail);
        let soa = ask(resolver, "bogus.example.", RecordType::SOA, true).await;
        assert_eq!(soa.metadata.response_code, ResponseCode::NoError);
        assert_eq!(soa.answers.len(), 1, "{soa:?}");

        // Asked through a DnsFixture whose zone is relayed to the resolver: recursive queries
        // get the resolver's answer and AD bit, others the zone's own records (authoritative).
        let zone = Zone::new("bogus.example").cname("www.bogus.example", "cs1.wpc.cdn.example");
        let front = crate::dns::DnsFixture::start(vec![zone.resolved_by(resolver)])
            .await
            .expect("start the front server");
        let relayed = ask(front.addr(), "www.bogus.example.", RecordType::A, false).await;
        assert_eq!(relayed.metadata.response_code, ResponseCode::ServFail);
        let relayed = ask(front.addr(), "www.bogus.example.", RecordType::A, true).await;
        assert_eq!(shown(&relayed.answers), shown(&unchecked.answers));
        assert!(!relayed.metadata.authoritative);
        let relayed = ask(front.addr(), "www.shop.example.", RecordType::A, false).await;
        assert_eq!(
            relayed.metadata.response_code,
            ResponseCode::Refused,
            "not relayed"
        );
    }

    #[tokio::test]
    async fn queries_without_recursion_are_answered_by_the_relayed_zone_itself() {
        let dns = signed().await;
        let zone = Zone::new("bogus.example").cname("www.bogus.example", "elsewhere.example");
        let front = crate::dns::DnsFixture::start(vec![zone.resolved_by(dns.resolver())])
            .await
            .expect("start the front server");
        let mut query = Message::query();
        query.metadata.recursion_desired = false;
        query.add_query(hickory_proto::op::Query::query(
            Name::from_str("www.bogus.example.").expect("name"),
            RecordType::CNAME,
        ));
        let answer = exchange(front.addr(), &query, Duration::from_secs(10))
            .await
            .expect("an answer");
        assert!(answer.metadata.authoritative);
        assert_eq!(
            shown(&answer.answers),
            ["www.bogus.example. CNAME elsewhere.example."]
        );
    }
}
