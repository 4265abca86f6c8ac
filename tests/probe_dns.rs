//! The DNS prober against a loopback authoritative server: every way a CNAME chain can end.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use httpsdelivery_operator::checks::dns::{CnameLink, DnsObservation, DnsOutcome};
use httpsdelivery_operator::probe::dns::{DnsProber, MAX_CHAIN};
use testkit::dns::{DnsFixture, Mode, Zone};

const TIMEOUT: Duration = Duration::from_secs(3);
const CS1_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const CS1_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
const CS2_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
const APEX_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

/// The CDN's zone: two target CNAMEs with addresses.
fn cdn() -> Zone {
    Zone::new("v0cdn.net")
        .a("cs1.wpc.v0cdn.net", CS1_V4)
        .aaaa("cs1.wpc.v0cdn.net", CS1_V6)
        .a("cs2.wpc.v0cdn.net", CS2_V4)
}

fn prober(fixture: &DnsFixture) -> DnsProber {
    DnsProber::new(&[fixture.addr()], TIMEOUT).expect("prober for the fixture")
}

async fn serve(zones: Vec<Zone>) -> DnsFixture {
    DnsFixture::start(zones).await.expect("DNS fixture starts")
}

fn link(name: &str, target: &str, ttl: u32) -> CnameLink {
    CnameLink {
        name: name.into(),
        target: target.into(),
        ttl,
        validated: false,
    }
}

fn observation(name: &str, chain: Vec<CnameLink>, outcome: DnsOutcome) -> DnsObservation {
    DnsObservation {
        name: name.into(),
        chain,
        outcome,
    }
}

fn cs1_addresses() -> DnsOutcome {
    DnsOutcome::Addresses {
        name: "cs1.wpc.v0cdn.net".into(),
        addresses: vec![IpAddr::V4(CS1_V4), IpAddr::V6(CS1_V6)],
    }
}

/// One walk against a loopback server: what it serves, the name walked, what must be seen.
struct Case {
    name: &'static str,
    zones: Vec<Zone>,
    mode: Mode,
    chain_cname_queries: bool,
    timeout: Duration,
    walk: &'static str,
    expect: DnsObservation,
    /// The queries the walk may cost, where bounding them is the point of the case.
    queries: Option<u64>,
}

fn case(name: &'static str, zones: Vec<Zone>, walk: &'static str, expect: DnsObservation) -> Case {
    Case {
        name,
        zones,
        mode: Mode::Answer,
        chain_cname_queries: false,
        timeout: TIMEOUT,
        walk,
        expect,
        queries: None,
    }
}

impl Case {
    fn mode(self, mode: Mode) -> Case {
        Case { mode, ..self }
    }

    /// The server answers a CNAME query with the whole chain it knows.
    fn chained_cname_answers(self) -> Case {
        Case {
            chain_cname_queries: true,
            ..self
        }
    }

    fn timeout(self, timeout: Duration) -> Case {
        Case { timeout, ..self }
    }

    fn queries(self, queries: u64) -> Case {
        Case {
            queries: Some(queries),
            ..self
        }
    }

    /// Walks the case's name; what differs from the expectation, named after the case.
    async fn run(self) -> Option<String> {
        let fixture = serve(self.zones).await;
        fixture.set_mode(self.mode);
        fixture.set_chain_cname_queries(self.chain_cname_queries);
        let dns = DnsProber::new(&[fixture.addr()], self.timeout).expect("prober for the fixture");
        let seen = dns.walk(self.walk).await;
        let mut problems = Vec::new();
        if seen != self.expect {
            problems.push(format!("saw {seen:#?}\nexpected {:#?}", self.expect));
        }
        if let Some(queries) = self.queries
            && dns.queries() != queries
        {
            problems.push(format!("{} queries, expected {queries}", dns.queries()));
        }
        (!problems.is_empty()).then(|| {
            format!(
                "{} (walk {}): {}",
                self.name,
                self.walk,
                problems.join("; ")
            )
        })
    }
}

fn one_link(target: &str) -> Vec<CnameLink> {
    vec![link("www.shop.example", target, 60)]
}

fn addresses(name: &str, addresses: &[IpAddr]) -> DnsOutcome {
    DnsOutcome::Addresses {
        name: name.into(),
        addresses: addresses.to_vec(),
    }
}

fn www(chain: Vec<CnameLink>, outcome: DnsOutcome) -> DnsObservation {
    observation("www.shop.example", chain, outcome)
}

fn shop() -> Zone {
    Zone::new("shop.example")
}

/// A zone with `links` CNAMEs n0 -> n1 -> ... -> n{links}, the last name having an address.
fn long_chain(links: usize) -> Zone {
    let name = |i: usize| format!("n{i}.shop.example");
    (0..links)
        .fold(Zone::new("shop.example"), |zone, i| {
            zone.cname(&name(i), &name(i + 1))
        })
        .a(&name(links), CS2_V4)
}

fn chain_links(links: usize) -> Vec<CnameLink> {
    (0..links)
        .map(|i| {
            link(
                &format!("n{i}.shop.example"),
                &format!("n{}.shop.example", i + 1),
                60,
            )
        })
        .collect()
}

/// Every way a CNAME chain can end, one walk each.
fn cases() -> Vec<Case> {
    let www_to = |target: &str| shop().cname("www.shop.example", target);
    // 200 A records do not fit the 1232-byte EDNS payload: the server truncates the UDP answer.
    let many: Vec<Ipv4Addr> = (0..200u8).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
    let big_cdn = many
        .iter()
        .fold(cdn(), |zone, addr| zone.a("big.v0cdn.net", *addr));
    let many: Vec<IpAddr> = many.into_iter().map(IpAddr::V4).collect();
    let loops = shop()
        .cname("a.shop.example", "b.shop.example")
        .cname("b.shop.example", "a.shop.example")
        .cname("self.shop.example", "self.shop.example");
    let to_cs1 = || www(one_link("cs1.wpc.v0cdn.net"), cs1_addresses());
    let via_mid = || {
        www(
            vec![
                link("www.shop.example", "mid.shop.example", 60),
                link("mid.shop.example", "cs1.wpc.v0cdn.net", 120),
            ],
            cs1_addresses(),
        )
    };
    let mid_zone = || {
        www_to("mid.shop.example")
            .ttl(120)
            .cname("mid.shop.example", "cs1.wpc.v0cdn.net")
    };
    vec![
        case(
            "a CNAME straight to the target CNAME",
            vec![www_to("cs1.wpc.v0cdn.net"), cdn()],
            "www.shop.example",
            to_cs1(),
        ),
        case(
            "names are reported lower case without the trailing dot",
            vec![www_to("CS1.WPC.V0CDN.NET."), cdn()],
            "WWW.Shop.Example.",
            to_cs1(),
        ),
        case(
            "a CNAME through an intermediate name in another zone",
            vec![
                www_to("edge.shop-cdn.example"),
                Zone::new("shop-cdn.example")
                    .ttl(300)
                    .cname("edge.shop-cdn.example", "cs1.wpc.v0cdn.net"),
                cdn(),
            ],
            "www.shop.example",
            www(
                vec![
                    link("www.shop.example", "edge.shop-cdn.example", 60),
                    link("edge.shop-cdn.example", "cs1.wpc.v0cdn.net", 300),
                ],
                cs1_addresses(),
            ),
        ),
        case(
            "a server answering CNAME queries with the whole chain",
            vec![mid_zone(), cdn()],
            "www.shop.example",
            via_mid(),
        )
        .chained_cname_answers(),
        case(
            "the same chain, one CNAME per answer",
            vec![mid_zone(), cdn()],
            "www.shop.example",
            via_mid(),
        ),
        case(
            "a CNAME to the wrong target is reported as found",
            vec![www_to("cs2.wpc.v0cdn.net"), cdn()],
            "www.shop.example",
            www(
                one_link("cs2.wpc.v0cdn.net"),
                addresses("cs2.wpc.v0cdn.net", &[IpAddr::V4(CS2_V4)]),
            ),
        ),
        case(
            "address records without a CNAME, sorted whatever the server's order",
            vec![
                shop()
                    .a("www.shop.example", Ipv4Addr::new(203, 0, 113, 7))
                    .a("www.shop.example", Ipv4Addr::new(203, 0, 113, 5)),
            ],
            "www.shop.example",
            www(
                vec![],
                addresses(
                    "www.shop.example",
                    &[
                        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)),
                        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
                    ],
                ),
            ),
        ),
        case(
            "an answer too large for UDP is fetched over TCP",
            vec![www_to("big.v0cdn.net"), big_cdn],
            "www.shop.example",
            www(one_link("big.v0cdn.net"), addresses("big.v0cdn.net", &many)),
        ),
        case(
            "NXDOMAIN for the hostname",
            vec![shop(), cdn()],
            "www.shop.example",
            www(
                vec![],
                DnsOutcome::NxDomain {
                    name: "www.shop.example".into(),
                },
            ),
        ),
        case(
            "NXDOMAIN in the middle of the chain names the missing name",
            vec![www_to("cs9.wpc.v0cdn.net"), cdn()],
            "www.shop.example",
            www(
                one_link("cs9.wpc.v0cdn.net"),
                DnsOutcome::NxDomain {
                    name: "cs9.wpc.v0cdn.net".into(),
                },
            ),
        ),
        // wpc.v0cdn.net exists (names live below it) but owns no record.
        case(
            "a name without CNAME or addresses is NODATA",
            vec![www_to("wpc.v0cdn.net"), cdn()],
            "www.shop.example",
            www(
                one_link("wpc.v0cdn.net"),
                DnsOutcome::NoData {
                    name: "wpc.v0cdn.net".into(),
                },
            ),
        ),
        case(
            "the zone apex wins over its addresses",
            vec![shop().a("shop.example", APEX_V4), cdn()],
            "shop.example",
            observation(
                "shop.example",
                vec![],
                DnsOutcome::ZoneApex {
                    name: "shop.example".into(),
                    addresses: vec![IpAddr::V4(APEX_V4)],
                },
            ),
        ),
        case(
            "a zone apex without addresses",
            vec![shop().a("shop.example", APEX_V4), cdn()],
            "v0cdn.net",
            observation(
                "v0cdn.net",
                vec![],
                DnsOutcome::ZoneApex {
                    name: "v0cdn.net".into(),
                    addresses: vec![],
                },
            ),
        ),
        case(
            "an apex at the end of a chain is just addresses",
            vec![
                shop()
                    .a("shop.example", APEX_V4)
                    .cname("www.shop.example", "shop.example"),
            ],
            "www.shop.example",
            www(
                one_link("shop.example"),
                addresses("shop.example", &[IpAddr::V4(APEX_V4)]),
            ),
        ),
        case(
            "a CNAME loop names the repeated name",
            vec![loops.clone()],
            "a.shop.example",
            observation(
                "a.shop.example",
                vec![
                    link("a.shop.example", "b.shop.example", 60),
                    link("b.shop.example", "a.shop.example", 60),
                ],
                DnsOutcome::Loop {
                    name: "a.shop.example".into(),
                },
            ),
        ),
        case(
            "a CNAME to itself is a loop",
            vec![loops],
            "self.shop.example",
            observation(
                "self.shop.example",
                vec![link("self.shop.example", "self.shop.example", 60)],
                DnsOutcome::Loop {
                    name: "self.shop.example".into(),
                },
            ),
        ),
        case(
            "a chain of exactly the limit resolves",
            vec![long_chain(MAX_CHAIN)],
            "n0.shop.example",
            observation(
                "n0.shop.example",
                chain_links(MAX_CHAIN),
                DnsOutcome::Addresses {
                    name: format!("n{MAX_CHAIN}.shop.example"),
                    addresses: vec![IpAddr::V4(CS2_V4)],
                },
            ),
        ),
        // The walk stops at the limit: one CNAME query per link plus the one that found too many.
        case(
            "a chain longer than the limit is too long",
            vec![long_chain(MAX_CHAIN + 1)],
            "n0.shop.example",
            observation(
                "n0.shop.example",
                chain_links(MAX_CHAIN),
                DnsOutcome::TooLong { limit: MAX_CHAIN },
            ),
        )
        .queries(MAX_CHAIN as u64 + 1),
        case(
            "a silent name in the middle of the chain times out there",
            vec![
                www_to("cs1.wpc.v0cdn.net"),
                cdn().silent("cs1.wpc.v0cdn.net"),
            ],
            "www.shop.example",
            www(
                one_link("cs1.wpc.v0cdn.net"),
                DnsOutcome::Timeout {
                    name: "cs1.wpc.v0cdn.net".into(),
                },
            ),
        )
        .timeout(Duration::from_millis(500)),
        case(
            "SERVFAIL is a server failure, not a negative answer",
            vec![],
            "www.shop.example",
            www(
                vec![],
                DnsOutcome::ServerFailure {
                    name: "www.shop.example".into(),
                    detail: "SERVFAIL".into(),
                },
            ),
        )
        .mode(Mode::ServFail),
        case(
            "SERVFAIL for one name of the chain",
            vec![
                www_to("cs1.wpc.v0cdn.net"),
                cdn().servfail("cs1.wpc.v0cdn.net"),
            ],
            "www.shop.example",
            www(
                one_link("cs1.wpc.v0cdn.net"),
                DnsOutcome::ServerFailure {
                    name: "cs1.wpc.v0cdn.net".into(),
                    detail: "SERVFAIL".into(),
                },
            ),
        ),
        // The fixture refuses names outside its zones, as an authoritative-only server does.
        case(
            "a refusing server is a server failure",
            vec![cdn()],
            "www.shop.example",
            www(
                vec![],
                DnsOutcome::ServerFailure {
                    name: "www.shop.example".into(),
                    detail: "REFUSED".into(),
                },
            ),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_way_a_cname_chain_ends() {
    let cases = cases();
    assert_eq!(cases.len(), 22, "a case went missing");
    let problems: Vec<String> = futures::future::join_all(cases.into_iter().map(Case::run))
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Whether a walk reaches the target CNAME is judged on its chain, not on where it ended.
#[test]
fn reaching_the_target_cname_is_judged_on_the_chain() {
    let to_cs1 = www(one_link("cs1.wpc.v0cdn.net"), cs1_addresses());
    assert!(to_cs1.reaches("cs1.wpc.v0cdn.net"));
    assert!(to_cs1.reaches("CS1.wpc.v0cdn.net"));
    let to_cs2 = www(
        one_link("cs2.wpc.v0cdn.net"),
        addresses("cs2.wpc.v0cdn.net", &[IpAddr::V4(CS2_V4)]),
    );
    assert!(!to_cs2.reaches("cs1.wpc.v0cdn.net"));
}

#[tokio::test]
async fn a_silent_server_times_out_within_the_timeout() {
    let fixture = DnsFixture::start_silent().await.expect("silent fixture");
    let timeout = Duration::from_millis(500);
    let dns = DnsProber::new(&[fixture.addr()], timeout).expect("prober");

    let started = Instant::now();
    let seen = dns.walk("www.shop.example").await;
    let elapsed = started.elapsed();

    assert_eq!(
        seen,
        www(
            vec![],
            DnsOutcome::Timeout {
                name: "www.shop.example".into()
            },
        )
    );
    assert!(
        elapsed >= timeout / 2 && elapsed < timeout * 3,
        "took {elapsed:?} with a timeout of {timeout:?}"
    );
    assert!(
        fixture.queries_received() >= 1,
        "the query reached the server"
    );
}

#[tokio::test]
async fn the_query_counter_counts_every_query_sent() {
    let shop = shop()
        .cname("www.shop.example", "cs1.wpc.v0cdn.net")
        .a("api.shop.example", APEX_V4);
    let fixture = serve(vec![shop, cdn()]).await;
    let dns = prober(&fixture);
    assert_eq!(dns.queries(), 0);

    // CNAME www, CNAME cs1, then A and AAAA of cs1: no SOA query once a CNAME was found.
    dns.walk("www.shop.example").await;
    assert_eq!(dns.queries(), 4);

    // CNAME, A, AAAA and the SOA query of the apex check.
    dns.walk("api.shop.example").await;
    assert_eq!(dns.queries(), 8);

    // NXDOMAIN on the CNAME query ends the walk.
    dns.walk("nope.shop.example").await;
    assert_eq!(dns.queries(), 9);

    // Nothing is cached: the same walk costs the same again.
    dns.walk("www.shop.example").await;
    assert_eq!(dns.queries(), 13);
    assert!(
        fixture.queries_received() >= dns.queries(),
        "server saw {} queries, prober counted {}",
        fixture.queries_received(),
        dns.queries()
    );
}

#[tokio::test]
async fn changes_to_the_running_server_are_seen_by_the_next_walk() {
    let fixture = serve(vec![
        shop().cname("www.shop.example", "cs2.wpc.v0cdn.net"),
        cdn(),
    ])
    .await;
    let dns = prober(&fixture);
    let wrong = dns.walk("www.shop.example").await;
    assert_eq!(wrong.chain, one_link("cs2.wpc.v0cdn.net"));

    // Fix the record.
    fixture.update(|zones| zones[0] = shop().cname("www.shop.example", "cs1.wpc.v0cdn.net"));
    let fixed = www(one_link("cs1.wpc.v0cdn.net"), cs1_addresses());
    assert_eq!(dns.walk("www.shop.example").await, fixed);

    // Break DNS entirely, then bring it back.
    fixture.set_mode(Mode::ServFail);
    assert_eq!(
        dns.walk("www.shop.example").await.outcome,
        DnsOutcome::ServerFailure {
            name: "www.shop.example".into(),
            detail: "SERVFAIL".into(),
        }
    );
    fixture.set_mode(Mode::Answer);
    assert_eq!(dns.walk("www.shop.example").await, fixed);

    // Delete the record: NXDOMAIN right away, no negative or positive caching.
    fixture.set_zones(vec![shop(), cdn()]);
    assert_eq!(
        dns.walk("www.shop.example").await,
        www(
            vec![],
            DnsOutcome::NxDomain {
                name: "www.shop.example".into()
            },
        )
    );
    fixture.set_zones(vec![
        shop().cname("www.shop.example", "cs1.wpc.v0cdn.net"),
        cdn(),
    ]);
    assert_eq!(dns.walk("www.shop.example").await, fixed);
}

#[tokio::test]
async fn a_dead_server_among_several_does_not_fail_the_walk() {
    let silent = DnsFixture::start_silent().await.expect("silent fixture");
    let fixture = serve(vec![
        shop().cname("www.shop.example", "cs1.wpc.v0cdn.net"),
        cdn(),
    ])
    .await;
    let dns = DnsProber::new(&[silent.addr(), fixture.addr()], TIMEOUT).expect("prober");

    let seen = dns.walk("www.shop.example").await;

    assert_eq!(seen, www(one_link("cs1.wpc.v0cdn.net"), cs1_addresses()));
}

/// Without a server given, the prober asks the name servers of /etc/resolv.conf, in its order.
#[test]
fn the_system_resolver_configuration_is_used_when_no_server_is_given() {
    let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_else(|e| {
        panic!("this test needs the system resolver configuration, /etc/resolv.conf: {e}")
    });
    let listed: Vec<SocketAddr> = conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| {
            ip.split_whitespace()
                .next()?
                .split('%')
                .next()?
                .parse()
                .ok()
        })
        .map(|ip: IpAddr| SocketAddr::new(ip, 53))
        .collect();
    assert!(
        !listed.is_empty(),
        "this test needs a `nameserver` line in /etc/resolv.conf:\n{conf}"
    );

    let dns = DnsProber::new(&[], TIMEOUT).expect("prober from /etc/resolv.conf");

    assert_eq!(dns.name_servers(), listed, "/etc/resolv.conf:\n{conf}");
}

/// CAA: the hostname's set, else each parent's up to the TLD, the
/// first non-empty one decides; a CNAME's target's records answer for the name; a failed
/// query is the failure, never "no policy".
#[tokio::test]
async fn caa_lookups_climb_to_the_first_set_follow_cnames_and_never_read_a_failure_as_none() {
    use httpsdelivery_operator::checks::caa::{self, CaaDecision};
    let shop = Zone::new("shop.example")
        .cname("www.shop.example", "cs1.wpc.v0cdn.net")
        .a("api.shop.example", CS2_V4)
        .caa("shop.example", false, "issue", "letsencrypt.org")
        .servfail("broken.shop.example");
    let cdn = cdn().caa("cs1.wpc.v0cdn.net", false, "issue", "digicert.com");
    let fixture = serve(vec![shop, cdn]).await;
    let dns = prober(&fixture);

    // api: nothing at the name, the parent's set decides (and the climb stops there).
    let sets = dns.caa("api.shop.example").await.sets.expect("answered");
    let names: Vec<&str> = sets.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["api.shop.example", "shop.example"]);
    assert!(matches!(
        caa::decide(&sets, "digicert.com", false),
        CaaDecision::Forbidden { at, .. } if at == "shop.example"
    ));

    // www is a CNAME into the CDN: the target's records answer for it.
    let sets = dns.caa("www.shop.example").await.sets.expect("answered");
    assert_eq!(sets.len(), 1, "{sets:?}");
    assert!(matches!(
        caa::decide(&sets, "digicert.com", false),
        CaaDecision::Allowed { at, .. } if at == "www.shop.example"
    ));

    let failed = dns
        .caa("broken.shop.example")
        .await
        .sets
        .expect_err("SERVFAIL");
    assert!(
        matches!(failed, DnsOutcome::ServerFailure { .. }),
        "{failed:?}"
    );
}
