//! A small "internet" on loopback for the manifests in `examples/`: the DNS zones of the shop and
//! of the CDN, a CDN edge serving the shop's certificates by SNI, and the shop's HTTPS origin.
//! Used by the end-to-end tests of `check`, the benchmark and the demo.

use crate::dns::{DnsFixture, Zone};
use crate::dnssec::{Signatures, SignedDns};
use crate::edge_http::{HttpBehaviour, PlainHttpServer};
use crate::pki::{LeafSpec, TestCa};
use crate::tls::{SniCerts, TlsServer};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The port both the edge and the origin listen on (the examples' `origin.port`).
pub const PORT: u16 = 8443;

/// The edge's plain-HTTP port (`--http-port`): it redirects to HTTPS but for `plain.shop.example`.
pub const HTTP_PORT: u16 = 8080;

/// Hostnames the edge serves a valid certificate for.
pub const EDGE_HOSTNAMES: &[&str] = &[
    "www.shop.example",
    "platform.shop.example",
    "new.shop.example",
    "legacy.shop.example",
    "cdn-moved.shop.example",
    "shop.example",
    // Read from the CDN's API in provider mode (the demo's `api` delivery).
    "api.shop.example",
    // DnsHealthy's examples: each zone below breaks one thing the dig does not show.
    "www.legacy-ca.example",
    "www.strict-ca.example",
    "www.bogus.example",
    "www.split.example",
    "www.moving.example",
    "dual.shop.example",
    // EdgeHttpOk's examples: the edge answers each of these in its own wrong way.
    "down.shop.example",
    "plain.shop.example",
    "hsts.shop.example",
    "blog.shop.example",
    "slow.shop.example",
];

/// Served by the edge with an expired certificate (the broken step 1 example).
pub const EXPIRED_HOSTNAME: &str = "expired.shop.example";

pub struct World {
    /// The edge's plain-HTTP side, on `edge_ip:HTTP_PORT`.
    pub http: PlainHttpServer,
    pub dns: DnsFixture,
    /// A second authoritative server (ns2 of split.example and moving.example), on the same
    /// port as `dns` at [`World::ns2_ip`]: the resolver (`dns`) and it disagree on purpose.
    pub ns2: DnsFixture,
    pub ns2_ip: Ipv4Addr,
    /// The signed zones (bogus.example, whose signatures are broken, and a signed copy of
    /// cdn.example for its CNAME) and the validating resolver `dns` relays bogus.example to.
    pub signed: SignedDns,
    pub edge: TlsServer,
    pub origin: TlsServer,
    pub ca: TestCa,
    pub edge_ip: Ipv4Addr,
    pub origin_ip: Ipv4Addr,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl World {
    /// Starts everything on a free pair of addresses in 127.77.0.0/16.
    pub async fn start() -> io::Result<World> {
        let ca = TestCa::new("Demo CDN Root CA");
        let dir = tempfile::tempdir()?;
        let ca_file = dir.path().join("demo-ca.pem");
        std::fs::write(&ca_file, ca.cert_pem())?;

        let mut edge_certs = SniCerts::new();
        for host in EDGE_HOSTNAMES {
            edge_certs = edge_certs.with_leaf(&ca.issue(LeafSpec::valid_for([*host])));
        }
        edge_certs =
            edge_certs.with_leaf(&ca.issue(LeafSpec::valid_for([EXPIRED_HOSTNAME]).expired()));
        let origin_certs =
            SniCerts::new().with_leaf(&ca.issue(LeafSpec::valid_for(["origin.shop.example"])));

        // Parallel test binaries each get their own addresses; a busy pair is skipped.
        let seed = std::process::id() as u64
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() as u64)
                .unwrap_or(0);
        let mut last_err = None;
        for attempt in 0..64u64 {
            let n = ((seed + attempt * 7919) % 250) as u8 + 1;
            let m = ((seed / 250 + attempt) % 250) as u8 + 1;
            let edge_ip = Ipv4Addr::new(127, 77, n, m);
            let origin_ip = Ipv4Addr::new(127, 78, n, m);
            let servers = async {
                let at = |ip: Ipv4Addr| SocketAddr::new(IpAddr::V4(ip), PORT);
                let edge = TlsServer::start(at(edge_ip), edge_certs.clone()).await?;
                let origin = TlsServer::start(at(origin_ip), origin_certs.clone()).await?;
                let http =
                    PlainHttpServer::start(SocketAddr::new(IpAddr::V4(edge_ip), HTTP_PORT)).await?;
                Ok::<_, io::Error>((edge, origin, http))
            };
            let (edge, origin, http) = match servers.await {
                Ok(servers) => servers,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            let dns = DnsFixture::start(zones(edge_ip, origin_ip)).await?;
            let ns2_ip = Ipv4Addr::new(127, 79, n, m);
            let ns2_at = SocketAddr::new(IpAddr::V4(ns2_ip), dns.addr().port());
            let ns2 = match DnsFixture::start_at(ns2_at, ns2_zones()).await {
                Ok(ns2) => ns2,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            let signed = SignedDns::start(&signed_zones(edge_ip)).await?;
            dns.update(|zones| zones.extend(resolver_zones(ns2_ip, signed.resolver())));
            serve_http_examples(&edge, &http);
            return Ok(World {
                http,
                dns,
                ns2,
                ns2_ip,
                signed,
                edge,
                origin,
                ca,
                edge_ip,
                origin_ip,
                ca_file,
                _dir: dir,
            });
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("no free loopback address pair")))
    }

    /// Where everything listens, for a person.
    pub fn summary(&self) -> String {
        format!(
            "DNS {}, CDN edge {}:{PORT}, origin {}:{PORT}",
            self.dns.addr(),
            self.edge_ip,
            self.origin_ip
        )
    }

    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The probe flags that point `check` or `run` at this world.
    pub fn probe_args(&self) -> Vec<String> {
        vec![
            "--dns-server".into(),
            self.dns.addr().to_string(),
            "--ca-file".into(),
            self.ca_file.display().to_string(),
            "--https-port".into(),
            PORT.to_string(),
            "--allow-cidr".into(),
            "127.0.0.0/8".into(),
            // The zones' name servers are this same fixture (on 127.0.0.1): asked directly.
            "--dns-authoritative-port".into(),
            self.dns.addr().port().to_string(),
            // dual.shop.example's edge has an IPv6 address too (where nothing listens).
            "--allow-cidr".into(),
            "::1/128".into(),
            "--http-port".into(),
            HTTP_PORT.to_string(),
        ]
    }

    /// The zones as they are at start, for tests that change and restore them.
    pub fn zones(&self) -> Vec<Zone> {
        let mut zones = zones(self.edge_ip, self.origin_ip);
        zones.extend(resolver_zones(self.ns2_ip, self.signed.resolver()));
        zones
    }
}

/// The manifest `examples/FILE` (one document), e.g. `example::<HttpsDelivery>("healthy.yaml")`.
pub fn example<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let path = crate::controlplane::workspace_root()
        .join("examples")
        .join(file);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// The shop's zone (CNAMEs to the CDN) and the CDN's zone (target CNAMEs at the edge).
pub fn zones(edge_ip: Ipv4Addr, origin_ip: Ipv4Addr) -> Vec<Zone> {
    let shop = Zone::new("shop.example")
        .a("shop.example", edge_ip)
        .cname("www.shop.example", "cs1.wpc.cdn.example")
        .cname("expired.shop.example", "cs1.wpc.cdn.example")
        .cname("platform.shop.example", "cs1.wpc.cdn.example")
        .cname("new.shop.example", "cs1.wpc.cdn.example")
        .cname("legacy.shop.example", "cs1.wpc.cdn.example")
        .cname("api.shop.example", "cs1.wpc.cdn.example")
        // The broken step 5 example: moved to another certificate's target CNAME.
        .cname("cdn-moved.shop.example", "cs2.wpc.cdn.example")
        .a("origin.shop.example", origin_ip)
        .a("ns1.shop.example", Ipv4Addr::LOCALHOST)
        // DnsHealthy's: an edge reachable over IPv4 only, and a CNAME left dangling when its
        // edge configuration was deleted.
        .cname("dual.shop.example", "cs-dual.wpc.cdn.example")
        .cname("old.shop.example", "gone.wpc.cdn.example")
        .cname("down.shop.example", "cs1.wpc.cdn.example")
        .cname("plain.shop.example", "cs1.wpc.cdn.example")
        .cname("hsts.shop.example", "cs1.wpc.cdn.example")
        .cname("blog.shop.example", "cs1.wpc.cdn.example")
        .cname("slow.shop.example", "cs1.wpc.cdn.example");
    // The TLD, so that a climb to it (CAA, RFC 8659) gets an answer as on the internet.
    let tld = Zone::new("example");
    vec![shop, cdn_zone(edge_ip), tld]
}

/// The CDN's zone: the target CNAMEs at the edge.
pub fn cdn_zone(edge_ip: Ipv4Addr) -> Zone {
    Zone::new("cdn.example")
        .a("cs1.wpc.cdn.example", edge_ip)
        .a("cs2.wpc.cdn.example", edge_ip)
        .a("ns1.cdn.example", Ipv4Addr::LOCALHOST)
        .a("cs-dual.wpc.cdn.example", edge_ip)
        .aaaa("cs-dual.wpc.cdn.example", std::net::Ipv6Addr::LOCALHOST)
}

/// What the signed server of the world serves: bogus.example with broken signatures, and
/// cdn.example validly signed, so that the validating resolver can follow www.bogus.example's
/// CNAME (with checking disabled) to an address.
pub fn signed_zones(edge_ip: Ipv4Addr) -> Vec<(Zone, Signatures)> {
    vec![
        (bogus_zone(), Signatures::Broken),
        (cdn_zone(edge_ip), Signatures::Valid),
    ]
}

/// Signed with signatures that no longer validate (see [`signed_zones`]).
fn bogus_zone() -> Zone {
    Zone::new("bogus.example")
        .a("ns1.bogus.example", Ipv4Addr::LOCALHOST)
        .cname("www.bogus.example", "cs1.wpc.cdn.example")
}

/// How the edge answers over HTTP: `x-origin: shop` from the shop's origin, and for EdgeHttpOk's
/// examples a 503, no redirect on plain HTTP, a short HSTS, another origin, a body that stalls.
fn serve_http_examples(edge: &TlsServer, http: &PlainHttpServer) {
    edge.set_default_http(HttpBehaviour::ok().header("x-origin", "shop"));
    edge.set_http(
        "down.shop.example",
        HttpBehaviour::ok().status(503).header("x-origin", "shop"),
    );
    http.set_http("plain.shop.example", HttpBehaviour::ok());
    edge.set_http(
        "hsts.shop.example",
        HttpBehaviour::ok()
            .header("x-origin", "shop")
            .header("strict-transport-security", "max-age=300"),
    );
    edge.set_http(
        "blog.shop.example",
        HttpBehaviour::ok().header("x-origin", "blog"),
    );
    edge.set_http(
        "slow.shop.example",
        HttpBehaviour::ok()
            .header("x-origin", "shop")
            .slow_body(std::time::Duration::from_secs(120)),
    );
}

/// The zones of DnsHealthy's examples as the resolver (the world's `dns`) answers them; `dns`
/// is also ns1 of every zone, `ns2_ip` the second server of split.example and moving.example,
/// `validator` the validating resolver of the signed zones ([`signed_zones`]).
pub fn resolver_zones(ns2_ip: Ipv4Addr, validator: SocketAddr) -> Vec<Zone> {
    let zone = |origin: &str| Zone::new(origin).a(&format!("ns1.{origin}"), Ipv4Addr::LOCALHOST);
    vec![
        // CAA at the parent names another CA than the certificate's.
        zone("legacy-ca.example")
            .caa("legacy-ca.example", false, "issue", "letsencrypt.org")
            .cname("www.legacy-ca.example", "cs1.wpc.cdn.example"),
        // A critical CAA property no CA knows: nobody may issue.
        zone("strict-ca.example")
            .caa("strict-ca.example", true, "tbs", "unknown")
            .cname("www.strict-ca.example", "cs1.wpc.cdn.example"),
        // Signed with signatures that no longer validate: recursive queries go to a validating
        // resolver, which answers SERVFAIL unless checking is disabled.
        bogus_zone().resolved_by(validator),
        // ns1 (this server) and ns2 give different answers.
        zone("split.example")
            .name_servers(&["ns1.split.example", "ns2.split.example"])
            .a("ns2.split.example", ns2_ip)
            .cname("www.split.example", "cs1.wpc.cdn.example"),
        // The only authoritative server (ns2) has the new record; the resolver still answers
        // the old one from its cache.
        Zone::new("moving.example")
            .name_servers(&["ns2.moving.example"])
            .a("ns2.moving.example", ns2_ip)
            .ttl(3600)
            .cname("www.moving.example", "cs2.wpc.cdn.example"),
    ]
}

/// What ns2 serves (see [`resolver_zones`]).
fn ns2_zones() -> Vec<Zone> {
    vec![
        Zone::new("split.example")
            .name_servers(&["ns1.split.example", "ns2.split.example"])
            .cname("www.split.example", "cs2.wpc.cdn.example"),
        Zone::new("moving.example")
            .name_servers(&["ns2.moving.example"])
            .cname("www.moving.example", "cs1.wpc.cdn.example"),
    ]
}

/// Makes `cdn` (a fake Edgecast API) hold a healthy delivery of `hostname` through this world:
/// CPS certificate `certificate_id` for it, deployed on HTTP Large with the world's target CNAME
/// `cs1.wpc.cdn.example`; edge CNAME `edge_cname_id` for it, propagated, pointing at customer
/// origin `shop-origin` (ID `edge_cname_id + 1000`), HTTPS only on the world's origin port.
pub fn serve_edgecast_delivery(
    cdn: &crate::cdn::FakeCdn,
    hostname: &str,
    certificate_id: i64,
    edge_cname_id: i64,
) {
    use crate::cdn::{
        CustomerOrigin, EDGECAST_ACCOUNT, EdgeCname, EdgecastCertificate, Propagation,
    };
    let origin_id = edge_cname_id + 1000;
    cdn.edit(|s| {
        s.edgecast.put_certificate(&EdgecastCertificate::active(
            certificate_id,
            &[hostname],
            "cs1.wpc.cdn.example",
        ));
        s.edgecast.put_edge_cname(
            EDGECAST_ACCOUNT,
            &EdgeCname::new(edge_cname_id, hostname, origin_id),
        );
        s.edgecast
            .set_edge_cname_propagation(edge_cname_id, &Propagation::propagated());
        let mut origin =
            CustomerOrigin::https_only(origin_id, "shop-origin", "origin.shop.example");
        origin.https_hostnames = vec![format!("https://origin.shop.example:{PORT}")];
        s.edgecast.put_origin(EDGECAST_ACCOUNT, &origin);
    });
}
