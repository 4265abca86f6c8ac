//! The TLS prober against loopback fixture servers: every outcome a real edge or origin can
//! produce, asserted exactly.

use httpsdelivery_operator::checks::tls::{ChainProblem, TlsEndpoint, TlsOutcome};
use httpsdelivery_operator::probe::guard::TargetGuard;
use httpsdelivery_operator::probe::tls::{TlsProber, load_ca_file};
use rustls_pki_types::UnixTime;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use testkit::pki::{self, LeafSpec, TestCa};
use testkit::tls::{self as fixtures, SniCerts, TlsServer};

const TIMEOUT: Duration = Duration::from_secs(5);
const HOST: &str = "www.shop.example";

fn loopback(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 0)
}

fn endpoint(address: SocketAddr, sni: &str) -> TlsEndpoint {
    TlsEndpoint {
        address,
        sni: sni.to_owned(),
    }
}

/// A root trusted through the prober's extra roots (as with `--ca-file`) and an intermediate
/// that issues the leaves, like a public CA.
struct Pki {
    root: TestCa,
    issuing: TestCa,
}

fn pki() -> Pki {
    let root = TestCa::new("Testkit Root CA");
    let issuing = root.intermediate("Testkit Issuing CA");
    Pki { root, issuing }
}

fn prober(pki: &Pki) -> TlsProber {
    TlsProber::new(vec![pki.root.cert_der()]).unwrap()
}

async fn serve(leaf: &pki::Leaf) -> TlsServer {
    TlsServer::start(loopback("127.0.0.1"), SniCerts::single(leaf))
        .await
        .unwrap()
}

#[tokio::test]
async fn valid_chain_verifies_and_is_recorded() {
    let pki = pki();
    let leaf = pki.issuing.issue(LeafSpec::valid_for([HOST]));
    let server = serve(&leaf).await;
    let prober = prober(&pki);

    let outcome = prober.probe(&endpoint(server.addr(), HOST), TIMEOUT).await;

    assert_eq!(
        outcome,
        TlsOutcome::Handshake {
            protocol_version: "TLSv1.3".to_owned(),
            chain: leaf.chain_der.clone(),
            verified: Ok(()),
        }
    );
    assert_eq!(prober.handshakes(), 1);
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn tls12_only_server_reports_tls12() {
    let pki = pki();
    let leaf = pki.issuing.issue(LeafSpec::valid_for([HOST]));
    let server = TlsServer::start_with_versions(
        loopback("127.0.0.1"),
        SniCerts::single(&leaf),
        &[&rustls::version::TLS12],
    )
    .await
    .unwrap();

    let outcome = prober(&pki)
        .probe(&endpoint(server.addr(), HOST), TIMEOUT)
        .await;

    assert_eq!(
        outcome,
        TlsOutcome::Handshake {
            protocol_version: "TLSv1.2".to_owned(),
            chain: leaf.chain_der.clone(),
            verified: Ok(()),
        }
    );
}

#[tokio::test]
async fn self_signed_is_untrusted_but_still_recorded() {
    let pki = pki();
    let leaf = pki::self_signed([HOST]);
    let server = serve(&leaf).await;

    let outcome = prober(&pki)
        .probe(&endpoint(server.addr(), HOST), TIMEOUT)
        .await;

    assert_eq!(
        outcome,
        TlsOutcome::Handshake {
            protocol_version: "TLSv1.3".to_owned(),
            chain: vec![leaf.cert_der.clone()],
            verified: Err(ChainProblem::Untrusted(
                "the certificate \"CN=www.shop.example\" is self-signed; serve one issued by a \
                 public CA (or pass its CA with --ca-file)"
                    .to_owned()
            )),
        }
    );
}

#[tokio::test]
async fn private_ca_without_its_root_is_untrusted() {
    let pki = pki();
    let leaf = pki.issuing.issue(LeafSpec::valid_for([HOST]));
    let server = serve(&leaf).await;
    let prober = TlsProber::new(Vec::new()).unwrap();

    let outcome = prober.probe(&endpoint(server.addr(), HOST), TIMEOUT).await;

    assert_eq!(
        outcome,
        TlsOutcome::Handshake {
            protocol_version: "TLSv1.3".to_owned(),
            chain: leaf.chain_der.clone(),
            verified: Err(ChainProblem::Untrusted(
                "the chain ends at \"CN=Testkit Issuing CA\", issued by \"CN=Testkit Root CA\", \
                 which is not a trusted root; serve the missing intermediate, or pass a private \
                 CA with --ca-file"
                    .to_owned()
            )),
        }
    );
}

#[tokio::test]
async fn wrong_name_is_reported_with_the_names_served() {
    let pki = pki();
    let leaf = pki
        .issuing
        .issue(LeafSpec::valid_for(["shop.example", "api.shop.example"]));
    let server = serve(&leaf).await;

    let outcome = prober(&pki)
        .probe(&endpoint(server.addr(), HOST), TIMEOUT)
        .await;

    assert_eq!(
        outcome,
        TlsOutcome::Handshake {
            protocol_version: "TLSv1.3".to_owned(),
            chain: leaf.chain_der.clone(),
            verified: Err(ChainProblem::WrongName(
                "the certificate is valid for shop.example, api.shop.example, not www.shop.example"
                    .to_owned()
            )),
        }
    );
}

#[tokio::test]
async fn expired_certificate_is_expired() {
    let pki = pki();
    let spec = LeafSpec::valid_for([HOST]).expired();
    let not_after = spec.not_after;
    let leaf = pki.issuing.issue(spec);
    let server = serve(&leaf).await;

    let outcome = prober(&pki)
        .probe(&endpoint(server.addr(), HOST), TIMEOUT)
        .await;

    let TlsOutcome::Handshake {
        protocol_version,
        chain,
        verified: Err(ChainProblem::Expired(detail)),
    } = outcome
    else {
        panic!("expected an expired chain, got {outcome:?}");
    };
    assert_eq!(protocol_version, "TLSv1.3");
    assert_eq!(chain, leaf.chain_der);
    let not_after = jiff::Timestamp::from_second(not_after.as_second()).unwrap();
    assert!(detail == format!("not valid after {not_after}"), "{detail}");
}

#[tokio::test]
async fn not_yet_valid_certificate_is_not_yet_valid() {
    let pki = pki();
    let leaf = pki
        .issuing
        .issue(LeafSpec::valid_for([HOST]).not_yet_valid());
    let server = serve(&leaf).await;

    let outcome = prober(&pki)
        .probe(&endpoint(server.addr(), HOST), TIMEOUT)
        .await;

    assert!(
        matches!(
            &outcome,
            TlsOutcome::Handshake { verified: Err(ChainProblem::NotYetValid(d)), .. }
                if d.starts_with("not valid before ")
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn plain_http_on_the_tls_port_is_not_tls() {
    let server = fixtures::start_plain_tcp(loopback("127.0.0.1"))
        .await
        .unwrap();

    let outcome = prober(&pki())
        .probe(&endpoint(server.addr(), HOST), TIMEOUT)
        .await;

    assert_eq!(
        outcome,
        TlsOutcome::NotTls("it answered in plain HTTP: \"HTTP/1.1 400 Bad Request\"".to_owned())
    );
}

#[tokio::test]
async fn hang_up_without_a_byte_fails_the_handshake() {
    let server = fixtures::start_hangup(loopback("127.0.0.1")).await.unwrap();

    let outcome = prober(&pki())
        .probe(&endpoint(server.addr(), HOST), TIMEOUT)
        .await;

    assert_eq!(
        outcome,
        TlsOutcome::HandshakeFailed("connection closed before the handshake finished".to_owned())
    );
}

#[tokio::test]
async fn silent_server_times_out_within_the_bound() {
    let server = fixtures::start_blackhole(loopback("127.0.0.1"))
        .await
        .unwrap();
    let prober = prober(&pki());

    let started = Instant::now();
    let outcome = prober
        .probe(&endpoint(server.addr(), HOST), Duration::from_millis(500))
        .await;
    let elapsed = started.elapsed();

    assert_eq!(outcome, TlsOutcome::HandshakeTimeout);
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[tokio::test]
async fn nothing_listening_is_refused() {
    let outcome = prober(&pki())
        .probe(&endpoint(fixtures::refused_addr(), HOST), TIMEOUT)
        .await;

    assert_eq!(outcome, TlsOutcome::Refused);
}

#[tokio::test]
async fn no_certificate_for_the_sni_name_fails_the_handshake() {
    let pki = pki();
    let leaf = pki.issuing.issue(LeafSpec::valid_for(["other.example"]));
    let server = TlsServer::start(loopback("127.0.0.1"), SniCerts::new().with_leaf(&leaf))
        .await
        .unwrap();

    let outcome = prober(&pki)
        .probe(&endpoint(server.addr(), HOST), TIMEOUT)
        .await;

    assert_eq!(
        outcome,
        TlsOutcome::HandshakeFailed("the server sent the TLS alert AccessDenied".to_owned())
    );
}

#[tokio::test]
async fn guard_refuses_loopback_without_connecting() {
    let pki = pki();
    let leaf = pki.issuing.issue(LeafSpec::valid_for([HOST]));
    let server = serve(&leaf).await;
    let prober = prober(&pki);
    let target = endpoint(server.addr(), HOST);

    let outcome = prober
        .probe_guarded(&TargetGuard::default(), &target, TIMEOUT)
        .await;

    assert_eq!(
        outcome,
        TlsOutcome::Forbidden(
            "127.0.0.1 is a loopback address; pass --allow-cidr 127.0.0.0/8 to permit it"
                .to_owned()
        )
    );
    assert_eq!(prober.handshakes(), 0);
    assert_eq!(server.connections(), 0);

    let allowing = TargetGuard::new(vec!["127.0.0.0/8".parse().unwrap()]);
    let outcome = prober.probe_guarded(&allowing, &target, TIMEOUT).await;
    assert!(
        matches!(
            outcome,
            TlsOutcome::Handshake {
                verified: Ok(()),
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(prober.handshakes(), 1);
}

#[tokio::test]
async fn sni_selects_the_certificate_on_a_shared_edge_address() {
    let pki = pki();
    let www = pki.issuing.issue(LeafSpec::valid_for([HOST]));
    let api = pki.issuing.issue(LeafSpec::valid_for(["api.shop.example"]));
    let fallback = pki::self_signed(["edge.cdn.example"]);
    let edge = TlsServer::start(
        loopback("127.0.0.7"),
        SniCerts::new()
            .with_leaf(&www)
            .with_leaf(&api)
            .with_default(&fallback),
    )
    .await
    .unwrap();
    let prober = prober(&pki);

    for (sni, leaf) in [(HOST, &www), ("api.shop.example", &api)] {
        let outcome = prober.probe(&endpoint(edge.addr(), sni), TIMEOUT).await;
        assert_eq!(
            outcome,
            TlsOutcome::Handshake {
                protocol_version: "TLSv1.3".to_owned(),
                chain: leaf.chain_der.clone(),
                verified: Ok(()),
            },
            "SNI {sni}"
        );
    }
    let outcome = prober
        .probe(&endpoint(edge.addr(), "unknown.shop.example"), TIMEOUT)
        .await;
    assert!(
        matches!(
            &outcome,
            TlsOutcome::Handshake { chain, verified: Err(ChainProblem::Untrusted(_)), .. }
                if chain == &fallback.chain_der
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn rotated_certificate_is_served_on_the_next_handshake() {
    let pki = pki();
    let old = pki.issuing.issue(LeafSpec::valid_for([HOST]).expired());
    let new = pki.issuing.issue(LeafSpec::valid_for([HOST]));
    let server = serve(&old).await;
    let prober = prober(&pki);
    let target = endpoint(server.addr(), HOST);

    let before = prober.probe(&target, TIMEOUT).await;
    assert!(
        matches!(
            &before,
            TlsOutcome::Handshake {
                verified: Err(ChainProblem::Expired(_)),
                ..
            }
        ),
        "{before:?}"
    );

    server.set_certs(SniCerts::single(&new)).unwrap();
    let after = prober.probe(&target, TIMEOUT).await;
    assert_eq!(
        after,
        TlsOutcome::Handshake {
            protocol_version: "TLSv1.3".to_owned(),
            chain: new.chain_der.clone(),
            verified: Ok(()),
        }
    );
    assert_eq!(prober.handshakes(), 2);
}

#[test]
fn verify_chain_needs_the_intermediate() {
    let pki = pki();
    let leaf = pki.issuing.issue(LeafSpec::valid_for([HOST]));
    let prober = prober(&pki);
    let now = UnixTime::now();

    assert_eq!(
        prober.verify_chain(std::slice::from_ref(&leaf.cert_der), HOST, now),
        Err(ChainProblem::Untrusted(
            "the chain ends at \"CN=www.shop.example\", issued by \"CN=Testkit Issuing CA\", \
             which is not a trusted root; serve the missing intermediate, or pass a private CA \
             with --ca-file"
                .to_owned()
        ))
    );
    assert_eq!(prober.verify_chain(&leaf.chain_der, HOST, now), Ok(()));
}

#[test]
fn verify_chain_judges_at_the_given_time() {
    let pki = pki();
    let spec = LeafSpec::valid_for([HOST]);
    let not_after = u64::try_from(spec.not_after.as_second()).unwrap();
    let leaf = pki.issuing.issue(spec);
    let prober = prober(&pki);

    let later = UnixTime::since_unix_epoch(Duration::from_secs(not_after + 86_400));
    assert!(matches!(
        prober.verify_chain(&leaf.chain_der, HOST, later),
        Err(ChainProblem::Expired(_))
    ));
    assert!(matches!(
        prober.verify_chain(&leaf.chain_der, "other.example", UnixTime::now()),
        Err(ChainProblem::WrongName(_))
    ));
}

#[test]
fn weak_rsa_leaf_chains_but_cannot_be_served_by_ring() {
    let pki = pki();
    let leaf = pki
        .issuing
        .issue_with_rsa_key(LeafSpec::valid_for([HOST]), 1024);
    let prober = prober(&pki);

    // Path validation does not judge the subject key's strength: `WeakKey` is the certificate
    // check's verdict, made from the parsed key, not the verifier's.
    assert_eq!(
        prober.verify_chain(&leaf.chain_der, HOST, UnixTime::now()),
        Ok(())
    );
    assert!(leaf.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let served = runtime.block_on(TlsServer::start(
        loopback("127.0.0.1"),
        SniCerts::single(&leaf),
    ));
    assert_eq!(
        served.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::InvalidInput)
    );
}

#[test]
fn ca_file_roots_are_trusted() {
    let pki = pki();
    let leaf = pki.issuing.issue(LeafSpec::valid_for([HOST]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, pki.root.cert_pem()).unwrap();

    let roots = load_ca_file(&path).unwrap();
    assert_eq!(roots, vec![pki.root.cert_der()]);
    let prober = TlsProber::new(roots).unwrap();
    assert_eq!(
        prober.verify_chain(&leaf.chain_der, HOST, UnixTime::now()),
        Ok(())
    );
}
