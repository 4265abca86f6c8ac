//! DnsHealthy against real DNS servers on loopback (hickory-server fixtures): CAA, DNSSEC
//! (SERVFAIL, then an answer with checking disabled), authoritative servers that disagree or
//! run ahead of the resolver's cache, a dangling CNAME, and an edge that serves IPv4 only.

use httpsdelivery_operator::api::{
    ConditionStatus, ConditionType, DnsEvidence, HttpsDelivery, Reason, Verdict,
};
use httpsdelivery_operator::checks::secret::SecretContent;
use httpsdelivery_operator::checks::{self, Memory, Targets};
use httpsdelivery_operator::probe::{Limits, ProbeConfig, Prober};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use testkit::dns::{DnsFixture, Zone};
use testkit::dnssec::{Signatures, SignedDns};
use testkit::world::{PORT, World, example};

const LIMITS: Limits = Limits {
    timeout: Duration::from_secs(5),
    max_age: Duration::ZERO,
};

fn config(world: &World) -> ProbeConfig {
    ProbeConfig {
        dns_servers: vec![world.dns.addr()],
        ca_files: vec![world.ca_file().into()],
        https_port: PORT,
        allow_cidrs: vec![
            "127.0.0.0/8".parse().expect("cidr"),
            "::1/128".parse().expect("cidr"),
        ],
        authoritative_port: world.dns.addr().port(),
        http_port: testkit::world::HTTP_PORT,
        cache_window: Duration::ZERO,
        ..ProbeConfig::default()
    }
}

/// The healthy example (www.shop.example), `edit`ed, judged against the world as it is now.
async fn judge(
    prober: &Prober,
    edit: impl FnOnce(&mut HttpsDelivery),
) -> (Vec<Verdict>, DnsEvidence) {
    judge_with_secret(prober, edit, None).await
}

/// Like [`judge`], with `secret` as the content of the delivery's Secret.
async fn judge_with_secret(
    prober: &Prober,
    edit: impl FnOnce(&mut HttpsDelivery),
    secret: Option<SecretContent>,
) -> (Vec<Verdict>, DnsEvidence) {
    let mut delivery: HttpsDelivery = example("healthy.yaml");
    edit(&mut delivery);
    let desired = delivery.spec.declared().expect("declared");
    let now = jiff::Timestamp::now();
    let observed = prober
        .observe(&Targets::of(&desired), secret, LIMITS, now)
        .await;
    let settings = delivery.spec.settings().expect("settings");
    let e = checks::evaluate(
        &desired,
        &settings,
        &observed,
        &Memory::default(),
        None,
        now,
    );
    (e.verdicts, e.dns)
}

fn get(verdicts: &[Verdict], t: ConditionType) -> &Verdict {
    verdicts
        .iter()
        .find(|v| v.type_ == t)
        .unwrap_or_else(|| panic!("no {t} in {verdicts:#?}"))
}

fn said(v: &Verdict) -> (ConditionStatus, Reason) {
    (v.status, v.reason)
}

fn issuer(domain: &str) -> impl FnOnce(&mut HttpsDelivery) + '_ {
    move |d| d.spec.certificate.issuer_domain = Some(domain.into())
}

/// Signs shop.example (with `signatures`) and the CDN's zone (`cdn` edits it) on a signed
/// server, and makes the world's resolver relay recursive queries for shop.example to that
/// server's validating resolver. Keep the result alive while judging.
async fn sign_shop(
    world: &World,
    signatures: Signatures,
    cdn: impl FnOnce(Zone) -> Zone,
) -> SignedDns {
    let mut zones = world.zones();
    zones[1] = cdn(zones[1].clone());
    let signed = SignedDns::start(&[
        (zones[0].clone(), signatures),
        (zones[1].clone(), Signatures::Valid),
    ])
    .await
    .expect("start the signed zones");
    zones[0] = zones[0].clone().resolved_by(signed.resolver());
    world.dns.set_zones(zones);
    signed
}

#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_world_is_dns_healthy_with_its_evidence() {
    let world = World::start().await.expect("world");
    let prober = Prober::new(&config(&world)).expect("prober");
    let (verdicts, evidence) = judge(&prober, issuer("digicert.com")).await;
    let health = get(&verdicts, ConditionType::DnsHealthy);
    assert_eq!(
        said(health),
        (ConditionStatus::True, Reason::Verified),
        "{health:?}"
    );
    assert!(
        health.message.contains("no record restricts issuance"),
        "{health:?}"
    );
    assert_eq!(
        said(get(&verdicts, ConditionType::Ready)),
        (ConditionStatus::True, Reason::Verified)
    );
    assert_eq!(
        evidence.authoritative,
        ["ns1.shop.example (127.0.0.1): CNAME cs1.wpc.cdn.example."]
    );
    assert_eq!(evidence.dnssec_validated, Some(false));
    assert_eq!(
        evidence.edge_addresses,
        [format!("{}:{PORT}: valid certificate", world.edge_ip)]
    );

    // A signed zone: the validating resolver's AD bit is reported, read from the answer to
    // the hostname's own CNAME query (its CAA set is empty here: a negative answer, whose AD
    // bit the operator does not get).
    let _signed = sign_shop(&world, Signatures::Valid, |cdn| cdn).await;
    let (verdicts, evidence) = judge(&prober, issuer("digicert.com")).await;
    assert_eq!(evidence.dnssec_validated, Some(true));
    let health = get(&verdicts, ConditionType::DnsHealthy);
    assert!(
        health
            .message
            .contains("validated by the resolver (AD bit)"),
        "{health:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn caa_forbids_warns_without_gating_and_allows_through_a_cname_target_or_a_parent() {
    let world = World::start().await.expect("world");
    let prober = Prober::new(&config(&world)).expect("prober");
    let with = |f: &dyn Fn(Zone) -> Zone| {
        let mut zones = world.zones();
        zones[0] = f(zones[0].clone());
        world.dns.set_zones(zones);
    };

    // The parent's set names another CA: renewal would fail; delivery works today.
    with(&|z| z.caa("shop.example", false, "issue", "letsencrypt.org"));
    let (verdicts, evidence) = judge(&prober, issuer("digicert.com")).await;
    let health = get(&verdicts, ConditionType::DnsHealthy);
    assert_eq!(
        said(health),
        (ConditionStatus::False, Reason::CaaForbidsIssuer)
    );
    assert!(
        health.message.contains("\"letsencrypt.org\"")
            && health.message.contains("renewal")
            && health
                .message
                .contains("add `shop.example. CAA 0 issue \"digicert.com\"`"),
        "{health:?}"
    );
    assert_eq!(
        evidence.caa,
        ["shop.example. CAA 0 issue \"letsencrypt.org\""]
    );
    let ready = get(&verdicts, ConditionType::Ready);
    assert_eq!(said(ready), (ConditionStatus::True, Reason::Verified));
    assert!(ready.message.contains("Note: "), "{ready:?}");

    // The same parent set allows the CA the spec names.
    let (verdicts, _) = judge(&prober, issuer("letsencrypt.org")).await;
    assert_eq!(
        said(get(&verdicts, ConditionType::DnsHealthy)),
        (ConditionStatus::True, Reason::Verified)
    );

    // A set on the CNAME's target answers for the hostname (and the parent's is not looked at).
    let mut zones = world.zones();
    zones[0] = zones[0]
        .clone()
        .caa("shop.example", false, "issue", "letsencrypt.org");
    zones[1] = zones[1]
        .clone()
        .caa("cs1.wpc.cdn.example", false, "issue", "digicert.com");
    world.dns.set_zones(zones);
    let (verdicts, evidence) = judge(&prober, issuer("digicert.com")).await;
    assert_eq!(
        said(get(&verdicts, ConditionType::DnsHealthy)),
        (ConditionStatus::True, Reason::Verified),
        "{verdicts:#?}"
    );
    assert_eq!(
        evidence.caa,
        ["www.shop.example. CAA 0 issue \"digicert.com\""]
    );

    // A critical property no CA knows forbids every CA.
    with(&|z| z.caa("shop.example", true, "tbs", "x"));
    let (verdicts, _) = judge(&prober, issuer("digicert.com")).await;
    let health = get(&verdicts, ConditionType::DnsHealthy);
    assert_eq!(
        said(health),
        (ConditionStatus::False, Reason::CaaCriticalUnknown)
    );
    assert!(health.message.contains("\"tbs\""), "{health:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bogus_signature_is_named_after_the_cd_retry_and_gates_ready() {
    let world = World::start().await.expect("world");
    let prober = Prober::new(&config(&world)).expect("prober");
    let _signed = sign_shop(&world, Signatures::Broken, |cdn| cdn).await;
    let (verdicts, _) = judge(&prober, issuer("digicert.com")).await;
    // Step 6 sees a server failure, as dig does.
    assert_eq!(
        said(get(&verdicts, ConditionType::DnsConfigured)),
        (ConditionStatus::Unknown, Reason::DnsServerFailure)
    );
    let health = get(&verdicts, ConditionType::DnsHealthy);
    assert_eq!(
        said(health),
        (ConditionStatus::False, Reason::DnssecValidationFailed)
    );
    assert!(
        health.message.contains("zone shop.example do not validate"),
        "{health:?}"
    );
    assert_eq!(
        said(get(&verdicts, ConditionType::Ready)),
        (ConditionStatus::False, Reason::DnssecValidationFailed)
    );
}

/// Two authoritative servers of shop.example on two loopback addresses and one port.
async fn two_authoritative_servers(
    world: &World,
    first: &str,
    second: &str,
) -> (DnsFixture, DnsFixture, u16) {
    let base = world.edge_ip.octets();
    let ns = |last: u8| Ipv4Addr::new(127, 79, base[2], last);
    let zone = |target: &str| {
        Zone::new("shop.example")
            .name_servers(&["ns1.shop.example", "ns2.shop.example"])
            .cname("www.shop.example", target)
    };
    for _ in 0..16 {
        let port = testkit::free_port();
        let Ok(a) =
            DnsFixture::start_at(SocketAddr::new(ns(1).into(), port), vec![zone(first)]).await
        else {
            continue;
        };
        let Ok(b) =
            DnsFixture::start_at(SocketAddr::new(ns(2).into(), port), vec![zone(second)]).await
        else {
            continue;
        };
        let mut zones = world.zones();
        zones[0] = zones[0]
            .clone()
            .name_servers(&["ns1.shop.example", "ns2.shop.example"])
            .remove("ns1.shop.example")
            .a("ns1.shop.example", ns(1))
            .a("ns2.shop.example", ns(2));
        world.dns.set_zones(zones);
        return (a, b, port);
    }
    panic!("no free port on both authoritative addresses");
}

#[tokio::test(flavor = "multi_thread")]
async fn disagreeing_authoritative_servers_gate_and_a_stale_resolver_says_wait() {
    let world = World::start().await.expect("world");
    let (a, b, port) =
        two_authoritative_servers(&world, "cs1.wpc.cdn.example", "cs2.wpc.cdn.example").await;
    let prober = Prober::new(&ProbeConfig {
        authoritative_port: port,
        ..config(&world)
    })
    .expect("prober");

    let (verdicts, evidence) = judge(&prober, issuer("digicert.com")).await;
    let health = get(&verdicts, ConditionType::DnsHealthy);
    assert_eq!(
        said(health),
        (ConditionStatus::False, Reason::AuthoritativeServersDisagree)
    );
    for expected in [
        "ns1.shop.example (127.79.",
        "CNAME cs1.wpc.cdn.example.",
        "ns2.shop.example (127.79.",
        "CNAME cs2.wpc.cdn.example.",
    ] {
        assert!(health.message.contains(expected), "{expected}: {health:?}");
    }
    assert_eq!(evidence.authoritative.len(), 2, "{evidence:?}");
    assert_eq!(
        said(get(&verdicts, ConditionType::Ready)),
        (ConditionStatus::False, Reason::AuthoritativeServersDisagree)
    );

    // Both servers moved to cs2; the resolver (the world's server) still answers cs1.
    let moved = Zone::new("shop.example")
        .name_servers(&["ns1.shop.example", "ns2.shop.example"])
        .cname("www.shop.example", "cs2.wpc.cdn.example");
    a.set_zones(vec![moved.clone()]);
    b.set_zones(vec![moved]);
    let (verdicts, _) = judge(&prober, issuer("digicert.com")).await;
    let health = get(&verdicts, ConditionType::DnsHealthy);
    assert_eq!(
        said(health),
        (ConditionStatus::False, Reason::RecursiveAnswerStale)
    );
    assert!(
        health
            .message
            .contains("still answers CNAME cs1.wpc.cdn.example.")
            && health.message.contains("within 60s")
            && health.message.contains("wait"),
        "{health:?}"
    );
    // Waiting is the answer: Ready does not turn False for it.
    assert_eq!(
        said(get(&verdicts, ConditionType::Ready)),
        (ConditionStatus::True, Reason::Verified)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cname_to_a_target_that_no_longer_exists_is_dangling() {
    let world = World::start().await.expect("world");
    let prober = Prober::new(&config(&world)).expect("prober");
    let mut zones = world.zones();
    zones[0] = zones[0]
        .clone()
        .remove("www.shop.example")
        .cname("www.shop.example", "gone.wpc.cdn.example");
    world.dns.set_zones(zones);
    let (verdicts, _) = judge(&prober, issuer("digicert.com")).await;
    let health = get(&verdicts, ConditionType::DnsHealthy);
    assert_eq!(
        said(health),
        (ConditionStatus::False, Reason::DanglingCname)
    );
    assert!(
        health
            .message
            .contains("gone.wpc.cdn.example does not exist (NXDOMAIN)")
            && health.message.contains("subdomain takeover"),
        "{health:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edge_that_serves_ipv4_only_is_an_address_family_mismatch() {
    let world = World::start().await.expect("world");
    let prober = Prober::new(&config(&world)).expect("prober");
    // The target also has an IPv6 address, where nothing listens.
    let mut zones = world.zones();
    zones[1] = zones[1]
        .clone()
        .aaaa("cs1.wpc.cdn.example", Ipv6Addr::LOCALHOST);
    world.dns.set_zones(zones);
    let (verdicts, evidence) = judge(&prober, issuer("digicert.com")).await;
    let health = get(&verdicts, ConditionType::DnsHealthy);
    assert_eq!(
        said(health),
        (ConditionStatus::False, Reason::AddressFamilyMismatch)
    );
    assert!(
        health.message.contains("valid certificate over IPv4")
            && health.message.contains(&format!("[::1]:{PORT}"))
            && health.message.contains("AAAA"),
        "{health:?}"
    );
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), PORT);
    assert_eq!(evidence.edge_addresses.len(), 2, "{evidence:?}");
    assert!(
        evidence.edge_addresses[1].starts_with(&format!("{v6}: ")),
        "{evidence:?}"
    );
    assert_eq!(
        said(get(&verdicts, ConditionType::Ready)).0,
        ConditionStatus::False
    );
}

/// A wildcard certificate (from the Secret) is judged by the parent's `issuewild`; the same
/// records let an exact-name certificate through by `issue`.
#[tokio::test(flavor = "multi_thread")]
async fn a_wildcard_certificate_is_judged_by_issuewild_at_the_parent() {
    use httpsdelivery_operator::api::SecretReference;
    use httpsdelivery_operator::checks::secret::SecretKey;
    use testkit::pki::LeafSpec;
    let world = World::start().await.expect("world");
    let prober = Prober::new(&config(&world)).expect("prober");
    let mut zones = world.zones();
    zones[0] = zones[0]
        .clone()
        .caa("shop.example", false, "issue", "digicert.com")
        .caa("shop.example", false, "issuewild", ";");
    world.dns.set_zones(zones);

    let judged = |names: &[&str]| {
        let leaf = world.ca.issue(LeafSpec::valid_for(names.iter().copied()));
        let secret = SecretContent::Tls {
            cert_pem: leaf.chain_pem.into_bytes(),
            key_pem: Some(SecretKey::from_pem(leaf.key_pem.into_bytes())),
        };
        let edit = |d: &mut HttpsDelivery| {
            d.spec.certificate.issuer_domain = Some("digicert.com".into());
            d.spec.certificate.secret_ref = Some(SecretReference {
                name: "www-tls".into(),
            });
        };
        let prober = &prober;
        async move {
            let (verdicts, _) = judge_with_secret(prober, edit, Some(secret)).await;
            get(&verdicts, ConditionType::DnsHealthy).clone()
        }
    };
    let wildcard = judged(&["*.shop.example"]).await;
    assert_eq!(
        said(&wildcard),
        (ConditionStatus::False, Reason::CaaForbidsIssuer),
        "{wildcard:?}"
    );
    assert!(
        wildcard.message.contains("issuewild") && wildcard.message.contains("\";\""),
        "{wildcard:?}"
    );
    let exact = judged(&["www.shop.example"]).await;
    assert_eq!(
        said(&exact),
        (ConditionStatus::True, Reason::Verified),
        "{exact:?}"
    );
}
