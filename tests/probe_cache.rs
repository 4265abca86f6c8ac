//! The process-wide probe cache: deliveries that share a DNS name or a TLS endpoint share one
//! walk or handshake per cycle, and a cycle later the world is looked at again.

use httpsdelivery_operator::api::HttpsDelivery;
use httpsdelivery_operator::checks::Targets;
use httpsdelivery_operator::checks::dns::DnsOutcome;
use httpsdelivery_operator::probe::{Limits, ProbeConfig, Prober};
use std::time::Duration;
use testkit::world::{PORT, World, example};

fn prober(world: &World, window: Duration) -> Prober {
    Prober::new(&ProbeConfig {
        dns_servers: vec![world.dns.addr()],
        authoritative_port: world.dns.addr().port(),
        http_port: testkit::world::HTTP_PORT,
        ca_files: vec![world.ca_file().into()],
        https_port: PORT,
        allow_cidrs: vec!["127.0.0.0/8".parse().expect("cidr")],
        cache_window: window,
        ..ProbeConfig::default()
    })
    .expect("prober")
}

/// Two deliveries of the healthy example's origin: www and another hostname on the same edge.
fn targets() -> [Targets; 2] {
    let www: HttpsDelivery = example("healthy.yaml");
    let mut other = www.clone();
    other.spec.hostname = "platform.shop.example".into();
    other.spec.edge_cname.as_mut().expect("declared").hostname = "platform.shop.example".into();
    [
        Targets::of(&www.spec.declared().expect("declared")),
        Targets::of(&other.spec.declared().expect("declared")),
    ]
}

/// A prober of names only, asking `dns`, with a cache window of 30 s.
fn dns_only(dns: &testkit::dns::DnsFixture) -> Prober {
    Prober::new(&ProbeConfig {
        dns_servers: vec![dns.addr()],
        cache_window: Duration::from_secs(30),
        ..ProbeConfig::default()
    })
    .expect("prober")
}

const CYCLE: Limits = Limits {
    timeout: Duration::from_secs(5),
    max_age: Duration::from_secs(600),
};

#[tokio::test(flavor = "multi_thread")]
async fn two_deliveries_sharing_an_origin_make_one_origin_handshake_per_cycle() {
    let world = World::start().await.expect("world");
    let prober = prober(&world, Duration::from_secs(30));
    let [www, other] = targets();
    assert_eq!(www.origin, other.origin, "the fixture shares the origin");
    let now = jiff::Timestamp::now();
    let (a, b) = tokio::join!(
        prober.observe(&www, None, CYCLE, now),
        prober.observe(&other, None, CYCLE, now)
    );
    for o in [&a, &b] {
        let origin = o.origin.as_ref().expect("the origin was probed");
        assert_eq!(origin.probes.len(), 1, "{origin:?}");
    }
    assert_eq!(
        world.origin.connections(),
        1,
        "one origin handshake for both"
    );
    assert_eq!(
        world.edge.connections(),
        2,
        "per SNI name (www and platform): one connection, for the TLS probe and then \
         EdgeHttpOk's HTTPS request"
    );
    assert_eq!(world.edge.requests(), 2, "one HTTPS request per hostname");
    assert_eq!(prober.counters().http_requests, 4, "2 HTTPS, 2 plain HTTP");
    assert_eq!(
        world.http.requests(),
        2,
        "one plain-HTTP redirect check per hostname"
    );
    // The same cycle again (a reconcile of either): nothing new leaves the process.
    let queries = prober.counters().dns_queries;
    prober.observe(&www, None, CYCLE, now).await;
    assert_eq!(world.origin.connections(), 1);
    assert_eq!(world.edge.connections(), 2);
    assert_eq!(world.edge.requests(), 2);
    assert_eq!(world.http.requests(), 2);
    assert_eq!(
        prober.counters().dns_queries,
        queries,
        "DNS walks are shared too"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_never_sees_an_observation_older_than_it_accepts() {
    let world = World::start().await.expect("world");
    let prober = prober(&world, Duration::from_secs(30));
    let [www, _] = targets();
    let now = jiff::Timestamp::now();
    prober.observe(&www, None, CYCLE, now).await;
    assert_eq!(world.origin.connections(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = Limits {
        max_age: Duration::from_millis(100),
        ..CYCLE
    };
    prober.observe(&www, None, fresh, now).await;
    assert_eq!(
        world.origin.connections(),
        2,
        "older than the delivery's recheck interval: probed again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_reused_past_the_cache_window() {
    let world = World::start().await.expect("world");
    let prober = prober(&world, Duration::from_millis(100));
    let [www, _] = targets();
    let now = jiff::Timestamp::now();
    prober.observe(&www, None, CYCLE, now).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    prober.observe(&www, None, CYCLE, now).await;
    assert_eq!(world.origin.connections(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_hanging_address_cannot_take_every_probe_slot() {
    use httpsdelivery_operator::checks::tls::TlsEndpoint;
    use httpsdelivery_operator::probe::PER_ADDRESS;
    let world = World::start().await.expect("world");
    let hole = testkit::tls::start_blackhole("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("black hole");
    // Twice as many probe slots as one address may hold, and three times that many probes
    // hanging on one address.
    let prober = Prober::new(&ProbeConfig {
        concurrency: 2 * PER_ADDRESS,
        ..config_for(&world)
    })
    .expect("prober");
    let hanging: Vec<_> = (0..3 * 2 * PER_ADDRESS)
        .map(|i| {
            let prober = prober.clone();
            let endpoint = TlsEndpoint {
                address: hole.addr(),
                sni: format!("h{i}.shop.example"),
            };
            tokio::spawn(async move {
                prober
                    .probe(endpoint, Duration::from_secs(3), Duration::MAX)
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let healthy = prober
        .probe(
            TlsEndpoint {
                address: world.origin.addr(),
                sni: "origin.shop.example".into(),
            },
            Duration::from_secs(3),
            Duration::MAX,
        )
        .await;
    assert!(
        matches!(
            healthy.outcome,
            httpsdelivery_operator::checks::tls::TlsOutcome::Handshake {
                verified: Ok(()),
                ..
            }
        ),
        "{:?}",
        healthy.outcome
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the healthy origin waited behind the hanging address: {:?}",
        started.elapsed()
    );
    for h in hanging {
        h.abort();
    }
}

fn config_for(world: &World) -> ProbeConfig {
    ProbeConfig {
        dns_servers: vec![world.dns.addr()],
        authoritative_port: world.dns.addr().port(),
        http_port: testkit::world::HTTP_PORT,
        ca_files: vec![world.ca_file().into()],
        https_port: PORT,
        allow_cidrs: vec!["127.0.0.0/8".parse().expect("cidr")],
        ..ProbeConfig::default()
    }
}

/// EdgeHttpOk's HTTPS request goes over the TLS probe's own connection (one handshake), and
/// reports what that handshake negotiated, an OCSP response stapled to it included.
#[tokio::test(flavor = "multi_thread")]
async fn the_https_request_rides_the_probes_connection_and_reports_stapling() {
    use httpsdelivery_operator::probe::http::HttpOutcome;
    let world = World::start().await.expect("world");
    world.edge.set_ocsp(
        "www.shop.example",
        Some(b"a stapled OCSP response".to_vec()),
    );
    let prober = prober(&world, Duration::from_secs(30));
    let [www, _] = targets();
    let observed = prober
        .observe(&www, None, CYCLE, jiff::Timestamp::now())
        .await;
    let (target, outcome) = observed.http.https.expect("an HTTPS exchange");
    assert_eq!(target.host, "www.shop.example");
    let HttpOutcome::Response(response) = outcome else {
        panic!("{outcome}");
    };
    assert_eq!(
        (response.status, response.http_version.as_str()),
        (200, "HTTP/2")
    );
    assert!(response.ocsp_stapled, "{response:?}");
    assert_eq!(
        world.edge.connections(),
        1,
        "one handshake for the probe and the request"
    );
    assert_eq!(
        prober.counters().tls_handshakes,
        2,
        "the edge's and the origin's"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn names_pointing_at_one_target_walk_the_rest_of_its_chain_once() {
    use std::net::Ipv4Addr;
    use testkit::dns::{DnsFixture, Zone};
    let dns = DnsFixture::start(vec![
        Zone::new("shop.example")
            .cname("a.shop.example", "t.cdn.example")
            .cname("b.shop.example", "t.cdn.example")
            .cname("self.shop.example", "self.shop.example")
            .cname("back.shop.example", "round.cdn.example"),
        Zone::new("cdn.example")
            .cname("t.cdn.example", "edge.cdn.example")
            .a("edge.cdn.example", Ipv4Addr::new(192, 0, 2, 10))
            .cname("round.cdn.example", "back.shop.example"),
    ])
    .await
    .expect("dns");
    let prober = dns_only(&dns);
    let walk = |name: &'static str| prober.walk(name, CYCLE.timeout, CYCLE.max_age);

    let a = walk("a.shop.example").await;
    assert_eq!(
        a.dig_lines(),
        [
            "a.shop.example. IN CNAME t.cdn.example.",
            "t.cdn.example. IN CNAME edge.cdn.example.",
            "edge.cdn.example. IN A 192.0.2.10",
        ]
    );
    // a's CNAME, then the tail from t: two CNAMEs, A and AAAA.
    assert_eq!(prober.counters().dns_queries, 5);
    let b = walk("b.shop.example").await;
    assert_eq!(b.name, "b.shop.example");
    assert_eq!(b.chain[0].name, "b.shop.example");
    assert_eq!(b.chain[1..], a.chain[1..]);
    assert_eq!(b.outcome, a.outcome);
    assert_eq!(
        prober.counters().dns_queries,
        6,
        "only b's own CNAME query: the rest of the chain was walked once for both"
    );

    // Loops read as a walk from the first name does.
    let own = walk("self.shop.example").await;
    assert_eq!(
        own.outcome,
        DnsOutcome::Loop {
            name: "self.shop.example".into()
        }
    );
    assert_eq!(own.chain.len(), 1);
    let back = walk("back.shop.example").await;
    assert_eq!(
        back.outcome,
        DnsOutcome::Loop {
            name: "back.shop.example".into()
        }
    );
    assert_eq!(back.chain.len(), 2, "{back:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_walk_keeps_its_own_timeout_and_a_failed_tail_is_not_kept_for_others() {
    use std::net::Ipv4Addr;
    use testkit::dns::{DnsFixture, Zone};
    let zones = |target: Zone| {
        vec![
            Zone::new("shop.example")
                .cname("a.shop.example", "t.cdn.example")
                .cname("b.shop.example", "t.cdn.example"),
            target,
        ]
    };
    let dns = DnsFixture::start(zones(Zone::new("cdn.example").silent("t.cdn.example")))
        .await
        .expect("dns");
    let prober = dns_only(&dns);

    // a's tail (started with a longer timeout) hangs; b, with a short one, is not held by it.
    let first = prober.clone();
    let slow = tokio::spawn(async move {
        first
            .walk("a.shop.example", Duration::from_secs(3), CYCLE.max_age)
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let b = prober
        .walk("b.shop.example", Duration::from_millis(600), CYCLE.max_age)
        .await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2000), "b took {took:?}");
    assert_eq!(
        b.outcome,
        DnsOutcome::Timeout {
            name: "t.cdn.example".into()
        }
    );
    assert_eq!(b.chain.len(), 1, "b's own link is kept: {b:?}");
    let a = slow.await.expect("a's walk");
    assert!(matches!(a.outcome, DnsOutcome::Timeout { .. }), "{a:?}");

    // The target answers now (once the tail a started has timed out too, just after a's own
    // deadline): b is asked again, not served a kept failure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    dns.set_zones(zones(
        Zone::new("cdn.example").a("t.cdn.example", Ipv4Addr::new(192, 0, 2, 10)),
    ));
    let b = prober
        .walk("b.shop.example", Duration::from_secs(5), CYCLE.max_age)
        .await;
    assert!(
        matches!(b.outcome, DnsOutcome::Addresses { .. }),
        "a failed tail is not kept: {b:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_walk_built_on_an_older_tail_is_as_old_as_that_tail() {
    use std::net::Ipv4Addr;
    use testkit::dns::{DnsFixture, Zone};
    let dns = DnsFixture::start(vec![
        Zone::new("shop.example")
            .cname("a.shop.example", "t.cdn.example")
            .cname("b.shop.example", "t.cdn.example"),
        Zone::new("cdn.example").a("t.cdn.example", Ipv4Addr::new(192, 0, 2, 10)),
    ])
    .await
    .expect("dns");
    let prober = dns_only(&dns);
    let walk = |name: &'static str, max_age: Duration| prober.walk(name, CYCLE.timeout, max_age);
    let long = Duration::from_secs(30);

    walk("a.shop.example", long).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    // b joins the tail a's walk observed 0.7 s ago.
    walk("b.shop.example", long).await;
    let queries = prober.counters().dns_queries;
    walk("b.shop.example", long).await;
    assert_eq!(prober.counters().dns_queries, queries, "reused within 30 s");
    tokio::time::sleep(Duration::from_millis(700)).await;
    // 0.7 s after b's walk, 1.4 s after its tail: too old for a caller accepting 1 s.
    walk("b.shop.example", Duration::from_secs(1)).await;
    assert!(
        prober.counters().dns_queries > queries,
        "b's walk is as old as its tail, not as its join"
    );
}
