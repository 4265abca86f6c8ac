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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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

/// A fixed instant inside `spec`'s validity window (and so inside its CAs'): a verification at
/// it does not depend on when the test runs.
fn during(spec: &LeafSpec) -> UnixTime {
    let (from, to) = (spec.not_before.as_second(), spec.not_after.as_second());
    UnixTime::since_unix_epoch(Duration::from_secs(
        u64::try_from(from + (to - from) / 2).unwrap(),
    ))
}

/// What listens where the prober connects.
enum Listener {
    Tls(SniCerts),
    Tls12Only(SniCerts),
    PlainHttp,
    /// A service that speaks first, as SSH, SMTP or a database does: these bytes, chosen by
    /// whoever runs it, on accept.
    Banner(&'static [u8]),
    /// Reads the ClientHello, then resets the connection.
    Reset,
    HangUp,
    Nothing,
}

/// The fixture that keeps listening while a case probes it.
enum Running {
    Tls(TlsServer),
    Tcp { _fixture: fixtures::TcpFixture },
    Raw { _fixture: RawServer },
    Nothing,
}

/// A loopback server of this file's own for the non-TLS services the shared fixtures do not
/// play; stops accepting when dropped.
struct RawServer(tokio::task::JoinHandle<()>);

impl Drop for RawServer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl RawServer {
    /// `banner`: bytes sent on accept, then a graceful close once the client is done;
    /// without one, the client's first flight is read and the connection is reset.
    async fn start(bind: SocketAddr, banner: Option<&'static [u8]>) -> (SocketAddr, RawServer) {
        let listener = TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(RawServer::serve(tcp, banner));
            }
        });
        (addr, RawServer(task))
    }

    async fn serve(mut tcp: TcpStream, banner: Option<&'static [u8]>) {
        let mut buf = [0u8; 4096];
        let idle = Duration::from_secs(10);
        match banner {
            Some(banner) => {
                let _ = tcp.write_all(banner).await;
                // Read until the client closes, so that closing sends a FIN, not a reset.
                while let Ok(Ok(n)) = tokio::time::timeout(idle, tcp.read(&mut buf)).await {
                    if n == 0 {
                        break;
                    }
                }
            }
            None => {
                let _ = tokio::time::timeout(idle, tcp.read(&mut buf)).await;
                // SO_LINGER 0: closing sends a reset.
                let _ = tcp.set_zero_linger();
            }
        }
    }
}

impl Listener {
    async fn start(self, ip: &str) -> (SocketAddr, Running) {
        let bind = loopback(ip);
        match self {
            Listener::Tls(certs) => {
                let server = TlsServer::start(bind, certs).await.unwrap();
                (server.addr(), Running::Tls(server))
            }
            Listener::Tls12Only(certs) => {
                let server =
                    TlsServer::start_with_versions(bind, certs, &[&rustls::version::TLS12])
                        .await
                        .unwrap();
                (server.addr(), Running::Tls(server))
            }
            Listener::PlainHttp => {
                let server = fixtures::start_plain_tcp(bind).await.unwrap();
                (server.addr(), Running::Tcp { _fixture: server })
            }
            Listener::Banner(banner) => {
                let (addr, server) = RawServer::start(bind, Some(banner)).await;
                (addr, Running::Raw { _fixture: server })
            }
            Listener::Reset => {
                let (addr, server) = RawServer::start(bind, None).await;
                (addr, Running::Raw { _fixture: server })
            }
            Listener::HangUp => {
                let server = fixtures::start_hangup(bind).await.unwrap();
                (server.addr(), Running::Tcp { _fixture: server })
            }
            Listener::Nothing => (fixtures::refused_addr(), Running::Nothing),
        }
    }
}

/// One probe: what listens, whether the prober trusts the test root, the SNI name, and the
/// outcome it must record.
struct Case {
    name: &'static str,
    listener: Listener,
    /// Bind address: a shared edge address stands for the CDN serving many hostnames.
    ip: &'static str,
    trust_the_root: bool,
    sni: &'static str,
    expect: TlsOutcome,
}

impl Case {
    /// Probes once; what differs from the expectation, named after the case.
    async fn run(self, pki: &Pki) -> Option<String> {
        let (addr, running) = self.listener.start(self.ip).await;
        let roots = if self.trust_the_root {
            vec![pki.root.cert_der()]
        } else {
            Vec::new()
        };
        let prober = TlsProber::new(roots).unwrap();
        let seen = prober.probe(&endpoint(addr, self.sni), TIMEOUT).await;
        let mut problems = Vec::new();
        if seen != self.expect {
            problems.push(format!("saw {seen:?}\nexpected {:?}", self.expect));
        }
        // One probe, one connection: nothing retried, nothing skipped.
        if prober.handshakes() != 1 {
            problems.push(format!("{} handshakes", prober.handshakes()));
        }
        if let Running::Tls(server) = &running
            && server.connections() != 1
        {
            problems.push(format!("{} connections", server.connections()));
        }
        (!problems.is_empty())
            .then(|| format!("{} (SNI {}): {}", self.name, self.sni, problems.join("; ")))
    }
}

fn handshake(version: &str, leaf: &pki::Leaf, verified: Result<(), ChainProblem>) -> TlsOutcome {
    TlsOutcome::Handshake {
        protocol_version: version.to_owned(),
        chain: leaf.chain_der.clone(),
        verified,
    }
}

/// The timestamp of a verifier message: whole seconds.
fn seconds(t: jiff::Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_second(t.as_second()).unwrap()
}

/// Every outcome a real edge or origin can produce, one probe each.
fn cases(pki: &Pki) -> Vec<Case> {
    let issue = |spec: LeafSpec| pki.issuing.issue(spec);
    let valid = issue(LeafSpec::valid_for([HOST]));
    let self_signed = pki::self_signed([HOST]);
    let two_names = issue(LeafSpec::valid_for(["shop.example", "api.shop.example"]));
    let expired_spec = LeafSpec::valid_for([HOST]).expired();
    let expired = issue(expired_spec.clone());
    let early_spec = LeafSpec::valid_for([HOST]).not_yet_valid();
    let early = issue(early_spec.clone());
    let other = issue(LeafSpec::valid_for(["other.example"]));
    let api = issue(LeafSpec::valid_for(["api.shop.example"]));
    let fallback = pki::self_signed(["edge.cdn.example"]);
    let tls = |leaf: &pki::Leaf| Listener::Tls(SniCerts::single(leaf));
    let case = |name, listener, sni, expect| Case {
        name,
        listener,
        ip: "127.0.0.1",
        trust_the_root: true,
        sni,
        expect,
    };
    // One edge address serving several hostnames, and a default for the others.
    let on_edge = |name, sni, expect| Case {
        ip: "127.0.0.7",
        ..case(
            name,
            Listener::Tls(
                SniCerts::new()
                    .with_leaf(&valid)
                    .with_leaf(&api)
                    .with_default(&fallback),
            ),
            sni,
            expect,
        )
    };
    vec![
        case(
            "a valid chain verifies and is recorded",
            tls(&valid),
            HOST,
            handshake("TLSv1.3", &valid, Ok(())),
        ),
        case(
            "a TLS 1.2-only server reports TLS 1.2",
            Listener::Tls12Only(SniCerts::single(&valid)),
            HOST,
            handshake("TLSv1.2", &valid, Ok(())),
        ),
        case(
            "a self-signed certificate is untrusted but still recorded",
            tls(&self_signed),
            HOST,
            handshake(
                "TLSv1.3",
                &self_signed,
                Err(ChainProblem::SelfSigned("CN=www.shop.example".to_owned())),
            ),
        ),
        Case {
            trust_the_root: false,
            ..case(
                "a private CA without its root is untrusted",
                tls(&valid),
                HOST,
                handshake(
                    "TLSv1.3",
                    &valid,
                    Err(ChainProblem::Untrusted(
                        "the chain ends at \"CN=Testkit Issuing CA\", issued by \"CN=Testkit Root \
                         CA\", which is not a trusted root"
                            .to_owned(),
                    )),
                ),
            )
        },
        case(
            "a wrong name is reported with the names served",
            tls(&two_names),
            HOST,
            handshake(
                "TLSv1.3",
                &two_names,
                Err(ChainProblem::WrongName(
                    "the certificate is valid for shop.example, api.shop.example, not \
                     www.shop.example"
                        .to_owned(),
                )),
            ),
        ),
        case(
            "an expired certificate is expired",
            tls(&expired),
            HOST,
            handshake(
                "TLSv1.3",
                &expired,
                Err(ChainProblem::Expired(format!(
                    "not valid after {}",
                    seconds(expired_spec.not_after)
                ))),
            ),
        ),
        case(
            "a certificate not yet valid is not yet valid",
            tls(&early),
            HOST,
            handshake(
                "TLSv1.3",
                &early,
                Err(ChainProblem::NotYetValid(format!(
                    "not valid before {}",
                    seconds(early_spec.not_before)
                ))),
            ),
        ),
        // What a service that is not TLS said is never repeated: a fixed classification only.
        case(
            "plain HTTP on the TLS port is not TLS",
            Listener::PlainHttp,
            HOST,
            TlsOutcome::NotTls("it answered in plain HTTP".to_owned()),
        ),
        case(
            "an HTTP answer with attacker-chosen headers is only plain HTTP",
            Listener::Banner(
                b"HTTP/1.1 302 Found\r\nLocation: http://internal.example/?token=s3cret\r\n\r\n",
            ),
            HOST,
            TlsOutcome::NotTls("it answered in plain HTTP".to_owned()),
        ),
        case(
            "an SSH banner is plain text, its version string left out",
            Listener::Banner(b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n"),
            HOST,
            TlsOutcome::NotTls("it answered in plain text".to_owned()),
        ),
        case(
            "a mail server's greeting is plain text, its host name left out",
            Listener::Banner(b"220 mx1.corp.internal ESMTP Postfix (Debian/GNU)\r\n"),
            HOST,
            TlsOutcome::NotTls("it answered in plain text".to_owned()),
        ),
        case(
            "binary bytes are not TLS, and not shown",
            Listener::Banner(&[0x00, 0x00, 0x00, 0x0a, 0xff, 0x1b, b'[', b'2', b'J']),
            HOST,
            TlsOutcome::NotTls("it sent bytes that are not TLS".to_owned()),
        ),
        case(
            "a reset during the handshake fails it",
            Listener::Reset,
            HOST,
            TlsOutcome::HandshakeFailed(
                "connection reset by the server during the handshake".to_owned(),
            ),
        ),
        case(
            "a hang-up without a byte fails the handshake",
            Listener::HangUp,
            HOST,
            TlsOutcome::HandshakeFailed(
                "connection closed before the handshake finished".to_owned(),
            ),
        ),
        case(
            "nothing listening is refused",
            Listener::Nothing,
            HOST,
            TlsOutcome::Refused,
        ),
        case(
            "no certificate for the SNI name fails the handshake",
            Listener::Tls(SniCerts::new().with_leaf(&other)),
            HOST,
            TlsOutcome::HandshakeFailed("the server sent the TLS alert AccessDenied".to_owned()),
        ),
        on_edge(
            "SNI selects the certificate on a shared edge address",
            HOST,
            handshake("TLSv1.3", &valid, Ok(())),
        ),
        on_edge(
            "SNI selects another hostname's certificate on the same edge",
            "api.shop.example",
            handshake("TLSv1.3", &api, Ok(())),
        ),
        on_edge(
            "an unknown SNI name gets the edge's default certificate",
            "unknown.shop.example",
            handshake(
                "TLSv1.3",
                &fallback,
                Err(ChainProblem::SelfSigned("CN=edge.cdn.example".to_owned())),
            ),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_outcome_of_a_probe() {
    let pki = pki();
    let cases = cases(&pki);
    assert_eq!(cases.len(), 19, "a case went missing");
    let problems: Vec<String> =
        futures::future::join_all(cases.into_iter().map(|case| case.run(&pki)))
            .await
            .into_iter()
            .flatten()
            .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
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
    assert_eq!(after, handshake("TLSv1.3", &new, Ok(())));
    assert_eq!(prober.handshakes(), 2);
}

#[test]
fn verify_chain_needs_the_intermediate() {
    let pki = pki();
    let spec = LeafSpec::valid_for([HOST]);
    let now = during(&spec);
    let leaf = pki.issuing.issue(spec);
    let prober = prober(&pki);

    assert_eq!(
        prober.verify_chain(std::slice::from_ref(&leaf.cert_der), HOST, now),
        Err(ChainProblem::Untrusted(
            "the chain ends at \"CN=www.shop.example\", issued by \"CN=Testkit Issuing CA\", \
             which is not a trusted root"
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
    let during = during(&spec);
    let leaf = pki.issuing.issue(spec);
    let prober = prober(&pki);

    assert_eq!(prober.verify_chain(&leaf.chain_der, HOST, during), Ok(()));
    let later = UnixTime::since_unix_epoch(Duration::from_secs(not_after + 86_400));
    assert!(matches!(
        prober.verify_chain(&leaf.chain_der, HOST, later),
        Err(ChainProblem::Expired(_))
    ));
    assert!(matches!(
        prober.verify_chain(&leaf.chain_der, "other.example", during),
        Err(ChainProblem::WrongName(_))
    ));
}

#[test]
fn weak_rsa_leaf_chains_but_cannot_be_served_by_ring() {
    let pki = pki();
    let spec = LeafSpec::valid_for([HOST]);
    let now = during(&spec);
    let leaf = pki.issuing.issue_with_rsa_key(spec, 1024);
    let prober = prober(&pki);

    // Path validation does not judge the subject key's strength: `WeakKey` is the certificate
    // check's verdict, made from the parsed key, not the verifier's.
    assert_eq!(prober.verify_chain(&leaf.chain_der, HOST, now), Ok(()));
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
    let spec = LeafSpec::valid_for([HOST]);
    let now = during(&spec);
    let leaf = pki.issuing.issue(spec);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, pki.root.cert_pem()).unwrap();

    let roots = load_ca_file(&path).unwrap();
    assert_eq!(roots, vec![pki.root.cert_der()]);
    let prober = TlsProber::new(roots).unwrap();
    assert_eq!(prober.verify_chain(&leaf.chain_der, HOST, now), Ok(()));
}
