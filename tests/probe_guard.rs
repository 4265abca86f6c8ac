//! The target guard in the probe path: the addresses DNS answers lead to are judged before a
//! socket is opened, and `--allow-cidr` opens exactly what it names.
//!
//! Only loopback is ever dialled here. The guard's decisions for every other range (private,
//! metadata, NAT64, 6to4...) are unit tests of `TargetGuard::check` in src/probe/guard.rs, which
//! open no socket, so that even a broken guard can never send a packet off this host.

use httpsdelivery_operator::api::HttpsDelivery;
use httpsdelivery_operator::checks::Targets;
use httpsdelivery_operator::checks::dns_health::AuthoritativeAnswer;
use httpsdelivery_operator::checks::tls::{TlsObservation, TlsOutcome};
use httpsdelivery_operator::probe::{Limits, ProbeConfig, Prober};
use std::net::Ipv4Addr;
use std::time::Duration;
use testkit::world::{PORT, World, example};

const CYCLE: Limits = Limits {
    timeout: Duration::from_secs(5),
    max_age: Duration::from_secs(600),
};

fn prober(world: &World, allow: Vec<ipnet::IpNet>) -> Prober {
    Prober::new(&ProbeConfig {
        dns_servers: vec![world.dns.addr()],
        authoritative_port: world.dns.addr().port(),
        http_port: testkit::world::HTTP_PORT,
        ca_files: vec![world.ca_file().into()],
        https_port: PORT,
        allow_cidrs: allow,
        ..ProbeConfig::default()
    })
    .expect("prober")
}

fn refused_as_loopback(ip: Ipv4Addr) -> TlsOutcome {
    TlsOutcome::Forbidden(format!(
        "{ip} is a loopback address; pass --allow-cidr 127.0.0.0/8 to permit it"
    ))
}

/// The outcomes of `probes`, after checking that each went to `ip`.
fn outcomes(probes: &[TlsObservation], ip: Ipv4Addr) -> Vec<TlsOutcome> {
    assert!(!probes.is_empty(), "nothing was probed");
    for p in probes {
        assert_eq!(p.endpoint.address.ip(), ip, "{p:?}");
    }
    probes.iter().map(|p| p.outcome.clone()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_answers_leading_to_a_refused_address_open_no_connection() {
    let world = World::start().await.expect("world");
    let prober = prober(&world, Vec::new());
    let www: HttpsDelivery = example("healthy.yaml");

    let observed = prober
        .observe(
            &Targets::of(&www.spec.declared().expect("declared")),
            None,
            CYCLE,
            jiff::Timestamp::now(),
        )
        .await;

    // The names resolved (the DNS server is configuration, not a probe target)...
    assert_eq!(
        outcomes(&observed.edge.probes, world.edge_ip),
        vec![refused_as_loopback(world.edge_ip)]
    );
    let origin = observed.origin.expect("the origin is HTTPS Only: probed");
    assert_eq!(
        outcomes(&origin.probes, world.origin_ip),
        vec![refused_as_loopback(world.origin_ip)]
    );
    // ...and no probe left the process.
    assert_eq!(prober.counters().tls_handshakes, 0);
    assert_eq!(world.edge.connections(), 0);
    assert_eq!(world.origin.connections(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_allow_cidr_opens_exactly_its_addresses() {
    let world = World::start().await.expect("world");
    let edge_only = format!("{}/32", world.edge_ip).parse().expect("cidr");
    let prober = prober(&world, vec![edge_only]);
    let www: HttpsDelivery = example("healthy.yaml");

    let observed = prober
        .observe(
            &Targets::of(&www.spec.declared().expect("declared")),
            None,
            CYCLE,
            jiff::Timestamp::now(),
        )
        .await;

    let edge = outcomes(&observed.edge.probes, world.edge_ip);
    assert!(
        matches!(
            edge.as_slice(),
            [TlsOutcome::Handshake {
                verified: Ok(()),
                ..
            }]
        ),
        "{edge:?}"
    );
    let origin = observed.origin.expect("the origin is HTTPS Only: probed");
    assert_eq!(
        outcomes(&origin.probes, world.origin_ip),
        vec![refused_as_loopback(world.origin_ip)]
    );
    assert_eq!(prober.counters().tls_handshakes, 1);
    // The TLS probe, then EdgeHttpOk's HTTPS request on its connection; the plain-HTTP one
    // on the same address.
    assert_eq!(world.edge.connections(), 1);
    assert_eq!(world.edge.requests(), 1);
    assert_eq!(world.http.requests(), 1);
    assert_eq!(world.origin.connections(), 0);
    // The zones' name server (127.0.0.1) is outside the allowed range: not asked.
    let refused = observed
        .dns_health
        .authoritative
        .as_ref()
        .expect("the NS set was read");
    assert!(
        refused
            .iter()
            .all(|r| matches!(r.answer, AuthoritativeAnswer::Forbidden(_))),
        "{refused:?}"
    );
}
