//! The DNS prober against a loopback authoritative server: every way a CNAME chain can end.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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

#[tokio::test]
async fn cname_straight_to_the_target_cname() {
    let shop = Zone::new("shop.example").cname("www.shop.example", "cs1.wpc.v0cdn.net");
    let fixture = serve(vec![shop, cdn()]).await;
    let dns = prober(&fixture);

    let seen = dns.walk("www.shop.example").await;

    assert_eq!(
        seen,
        observation(
            "www.shop.example",
            vec![link("www.shop.example", "cs1.wpc.v0cdn.net", 60)],
            cs1_addresses(),
        )
    );
    assert!(seen.reaches("cs1.wpc.v0cdn.net"));
}

#[tokio::test]
async fn names_are_reported_lower_case_without_trailing_dot() {
    let shop = Zone::new("shop.example").cname("www.shop.example", "CS1.WPC.V0CDN.NET.");
    let fixture = serve(vec![shop, cdn()]).await;

    let seen = prober(&fixture).walk("WWW.Shop.Example.").await;

    assert_eq!(
        seen,
        observation(
            "www.shop.example",
            vec![link("www.shop.example", "cs1.wpc.v0cdn.net", 60)],
            cs1_addresses(),
        )
    );
}

#[tokio::test]
async fn cname_through_an_intermediate_name_in_another_zone() {
    let shop = Zone::new("shop.example").cname("www.shop.example", "edge.shop-cdn.example");
    let intermediate = Zone::new("shop-cdn.example")
        .ttl(300)
        .cname("edge.shop-cdn.example", "cs1.wpc.v0cdn.net");
    let fixture = serve(vec![shop, intermediate, cdn()]).await;

    let seen = prober(&fixture).walk("www.shop.example").await;

    assert_eq!(
        seen,
        observation(
            "www.shop.example",
            vec![
                link("www.shop.example", "edge.shop-cdn.example", 60),
                link("edge.shop-cdn.example", "cs1.wpc.v0cdn.net", 300),
            ],
            cs1_addresses(),
        )
    );
}

#[tokio::test]
async fn a_server_answering_cname_queries_with_the_whole_chain_gives_the_same_walk() {
    let shop = Zone::new("shop.example")
        .cname("www.shop.example", "mid.shop.example")
        .ttl(120)
        .cname("mid.shop.example", "cs1.wpc.v0cdn.net");
    let fixture = serve(vec![shop, cdn()]).await;
    fixture.set_chain_cname_queries(true);
    let expected = observation(
        "www.shop.example",
        vec![
            link("www.shop.example", "mid.shop.example", 60),
            link("mid.shop.example", "cs1.wpc.v0cdn.net", 120),
        ],
        cs1_addresses(),
    );

    assert_eq!(prober(&fixture).walk("www.shop.example").await, expected);
    fixture.set_chain_cname_queries(false);
    assert_eq!(prober(&fixture).walk("www.shop.example").await, expected);
}

#[tokio::test]
async fn cname_to_the_wrong_target_is_reported_as_found() {
    let shop = Zone::new("shop.example").cname("www.shop.example", "cs2.wpc.v0cdn.net");
    let fixture = serve(vec![shop, cdn()]).await;

    let seen = prober(&fixture).walk("www.shop.example").await;

    assert_eq!(
        seen,
        observation(
            "www.shop.example",
            vec![link("www.shop.example", "cs2.wpc.v0cdn.net", 60)],
            DnsOutcome::Addresses {
                name: "cs2.wpc.v0cdn.net".into(),
                addresses: vec![IpAddr::V4(CS2_V4)],
            },
        )
    );
    assert!(!seen.reaches("cs1.wpc.v0cdn.net"));
}

#[tokio::test]
async fn address_records_without_a_cname() {
    let shop = Zone::new("shop.example")
        .a("www.shop.example", Ipv4Addr::new(203, 0, 113, 7))
        .a("www.shop.example", Ipv4Addr::new(203, 0, 113, 5));
    let fixture = serve(vec![shop]).await;

    let seen = prober(&fixture).walk("www.shop.example").await;

    assert_eq!(
        seen,
        observation(
            "www.shop.example",
            vec![],
            DnsOutcome::Addresses {
                name: "www.shop.example".into(),
                // Sorted, whatever order the server used.
                addresses: vec![
                    IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)),
                    IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
                ],
            },
        )
    );
}

#[tokio::test]
async fn an_answer_too_large_for_udp_is_fetched_over_tcp() {
    // 200 A records do not fit the 1232-byte EDNS payload: the server truncates the UDP answer.
    let addresses: Vec<Ipv4Addr> = (0..200u8).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
    let cdn = addresses
        .iter()
        .fold(cdn(), |zone, addr| zone.a("big.v0cdn.net", *addr));
    let shop = Zone::new("shop.example").cname("www.shop.example", "big.v0cdn.net");
    let fixture = serve(vec![shop, cdn]).await;

    let seen = prober(&fixture).walk("www.shop.example").await;

    assert_eq!(
        seen,
        observation(
            "www.shop.example",
            vec![link("www.shop.example", "big.v0cdn.net", 60)],
            DnsOutcome::Addresses {
                name: "big.v0cdn.net".into(),
                addresses: addresses.into_iter().map(IpAddr::V4).collect(),
            },
        )
    );
}

#[tokio::test]
async fn nxdomain_for_the_hostname() {
    let fixture = serve(vec![Zone::new("shop.example"), cdn()]).await;

    let seen = prober(&fixture).walk("www.shop.example").await;

    assert_eq!(
        seen,
        observation(
            "www.shop.example",
            vec![],
            DnsOutcome::NxDomain {
                name: "www.shop.example".into()
            },
        )
    );
}

#[tokio::test]
async fn nxdomain_in_the_middle_of_the_chain_names_the_missing_name() {
    let shop = Zone::new("shop.example").cname("www.shop.example", "cs9.wpc.v0cdn.net");
    let fixture = serve(vec![shop, cdn()]).await;

    let seen = prober(&fixture).walk("www.shop.example").await;

    assert_eq!(
        seen,
        observation(
            "www.shop.example",
            vec![link("www.shop.example", "cs9.wpc.v0cdn.net", 60)],
            DnsOutcome::NxDomain {
                name: "cs9.wpc.v0cdn.net".into()
            },
        )
    );
}

#[tokio::test]
async fn a_name_without_cname_or_addresses_is_nodata() {
    // wpc.v0cdn.net exists (names live below it) but owns no record.
    let shop = Zone::new("shop.example").cname("www.shop.example", "wpc.v0cdn.net");
    let fixture = serve(vec![shop, cdn()]).await;

    let seen = prober(&fixture).walk("www.shop.example").await;

    assert_eq!(
        seen,
        observation(
            "www.shop.example",
            vec![link("www.shop.example", "wpc.v0cdn.net", 60)],
            DnsOutcome::NoData {
                name: "wpc.v0cdn.net".into()
            },
        )
    );
}

#[tokio::test]
async fn zone_apex_wins_over_its_addresses() {
    let shop = Zone::new("shop.example").a("shop.example", APEX_V4);
    let fixture = serve(vec![shop, cdn()]).await;
    let dns = prober(&fixture);

    assert_eq!(
        dns.walk("shop.example").await,
        observation(
            "shop.example",
            vec![],
            DnsOutcome::ZoneApex {
                name: "shop.example".into(),
                addresses: vec![IpAddr::V4(APEX_V4)],
            },
        )
    );
    assert_eq!(
        dns.walk("v0cdn.net").await,
        observation(
            "v0cdn.net",
            vec![],
            DnsOutcome::ZoneApex {
                name: "v0cdn.net".into(),
                addresses: vec![],
            },
        )
    );
}

#[tokio::test]
async fn an_apex_at_the_end_of_a_chain_is_just_addresses() {
    let shop = Zone::new("shop.example")
        .a("shop.example", APEX_V4)
        .cname("www.shop.example", "shop.example");
    let fixture = serve(vec![shop]).await;

    let seen = prober(&fixture).walk("www.shop.example").await;

    assert_eq!(
        seen,
        observation(
            "www.shop.example",
            vec![link("www.shop.example", "shop.example", 60)],
            DnsOutcome::Addresses {
                name: "shop.example".into(),
                addresses: vec![IpAddr::V4(APEX_V4)],
            },
        )
    );
}

#[tokio::test]
async fn cname_loop_names_the_repeated_name() {
    let shop = Zone::new("shop.example")
        .cname("a.shop.example", "b.shop.example")
        .cname("b.shop.example", "a.shop.example")
        .cname("self.shop.example", "self.shop.example");
    let fixture = serve(vec![shop]).await;
    let dns = prober(&fixture);

    assert_eq!(
        dns.walk("a.shop.example").await,
        observation(
            "a.shop.example",
            vec![
                link("a.shop.example", "b.shop.example", 60),
                link("b.shop.example", "a.shop.example", 60),
            ],
            DnsOutcome::Loop {
                name: "a.shop.example".into()
            },
        )
    );
    assert_eq!(
        dns.walk("self.shop.example").await,
        observation(
            "self.shop.example",
            vec![link("self.shop.example", "self.shop.example", 60)],
            DnsOutcome::Loop {
                name: "self.shop.example".into()
            },
        )
    );
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

#[tokio::test]
async fn a_chain_of_exactly_the_limit_resolves() {
    let fixture = serve(vec![long_chain(MAX_CHAIN)]).await;

    let seen = prober(&fixture).walk("n0.shop.example").await;

    assert_eq!(
        seen,
        observation(
            "n0.shop.example",
            chain_links(MAX_CHAIN),
            DnsOutcome::Addresses {
                name: format!("n{MAX_CHAIN}.shop.example"),
                addresses: vec![IpAddr::V4(CS2_V4)],
            },
        )
    );
}

#[tokio::test]
async fn a_chain_longer_than_the_limit_is_too_long() {
    let fixture = serve(vec![long_chain(MAX_CHAIN + 1)]).await;
    let dns = prober(&fixture);

    let seen = dns.walk("n0.shop.example").await;

    assert_eq!(
        seen,
        observation(
            "n0.shop.example",
            chain_links(MAX_CHAIN),
            DnsOutcome::TooLong { limit: MAX_CHAIN },
        )
    );
    // The walk stops at the limit: one CNAME query per link plus the one that found too many.
    assert_eq!(dns.queries(), MAX_CHAIN as u64 + 1);
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
        observation(
            "www.shop.example",
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
async fn a_silent_name_in_the_middle_of_the_chain_times_out_there() {
    let shop = Zone::new("shop.example").cname("www.shop.example", "cs1.wpc.v0cdn.net");
    let fixture = serve(vec![shop, cdn().silent("cs1.wpc.v0cdn.net")]).await;
    let dns = DnsProber::new(&[fixture.addr()], Duration::from_millis(500)).expect("prober");

    let seen = dns.walk("www.shop.example").await;

    assert_eq!(
        seen,
        observation(
            "www.shop.example",
            vec![link("www.shop.example", "cs1.wpc.v0cdn.net", 60)],
            DnsOutcome::Timeout {
                name: "cs1.wpc.v0cdn.net".into()
            },
        )
    );
}

#[tokio::test]
async fn servfail_is_a_server_failure_not_a_negative_answer() {
    let fixture = DnsFixture::start_servfail()
        .await
        .expect("servfail fixture");

    let seen = prober(&fixture).walk("www.shop.example").await;

    assert_eq!(
        seen,
        observation(
            "www.shop.example",
            vec![],
            DnsOutcome::ServerFailure {
                name: "www.shop.example".into(),
                detail: "SERVFAIL".into(),
            },
        )
    );
}

#[tokio::test]
async fn servfail_for_one_name_of_the_chain() {
    let shop = Zone::new("shop.example").cname("www.shop.example", "cs1.wpc.v0cdn.net");
    let fixture = serve(vec![shop, cdn().servfail("cs1.wpc.v0cdn.net")]).await;

    let seen = prober(&fixture).walk("www.shop.example").await;

    assert_eq!(
        seen,
        observation(
            "www.shop.example",
            vec![link("www.shop.example", "cs1.wpc.v0cdn.net", 60)],
            DnsOutcome::ServerFailure {
                name: "cs1.wpc.v0cdn.net".into(),
                detail: "SERVFAIL".into(),
            },
        )
    );
}

#[tokio::test]
async fn a_refusing_server_is_a_server_failure() {
    // The fixture refuses names outside its zones, as an authoritative-only server does.
    let fixture = serve(vec![cdn()]).await;

    let seen = prober(&fixture).walk("www.shop.example").await;

    assert_eq!(
        seen,
        observation(
            "www.shop.example",
            vec![],
            DnsOutcome::ServerFailure {
                name: "www.shop.example".into(),
                detail: "REFUSED".into(),
            },
        )
    );
}

#[tokio::test]
async fn the_query_counter_counts_every_query_sent() {
    let shop = Zone::new("shop.example")
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
    let shop = || Zone::new("shop.example");
    let fixture = serve(vec![
        shop().cname("www.shop.example", "cs2.wpc.v0cdn.net"),
        cdn(),
    ])
    .await;
    let dns = prober(&fixture);
    let wrong = dns.walk("www.shop.example").await;
    assert_eq!(
        wrong.chain,
        [link("www.shop.example", "cs2.wpc.v0cdn.net", 60)]
    );

    // Fix the record.
    fixture.update(|zones| zones[0] = shop().cname("www.shop.example", "cs1.wpc.v0cdn.net"));
    let fixed = observation(
        "www.shop.example",
        vec![link("www.shop.example", "cs1.wpc.v0cdn.net", 60)],
        cs1_addresses(),
    );
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
        observation(
            "www.shop.example",
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
    let shop = Zone::new("shop.example").cname("www.shop.example", "cs1.wpc.v0cdn.net");
    let fixture = serve(vec![shop, cdn()]).await;
    let dns = DnsProber::new(&[silent.addr(), fixture.addr()], TIMEOUT).expect("prober");

    let seen = dns.walk("www.shop.example").await;

    assert_eq!(
        seen,
        observation(
            "www.shop.example",
            vec![link("www.shop.example", "cs1.wpc.v0cdn.net", 60)],
            cs1_addresses(),
        )
    );
}

#[test]
fn the_system_resolver_configuration_is_used_when_no_server_is_given() {
    if !std::path::Path::new("/etc/resolv.conf").exists() {
        return;
    }
    let dns = DnsProber::new(&[], TIMEOUT).expect("prober from /etc/resolv.conf");
    assert!(!dns.name_servers().is_empty());
}
