//! TLS prober: one TCP connect and one TLS handshake to an endpoint, reporting the served chain.
//!
//! The handshake is always completed when the peer speaks TLS, even with an untrusted or
//! mismatched certificate, because the conditions have to say *what* was served, not only that
//! it was wrong. Chain verification is therefore recorded instead of enforced; the handshake
//! signatures are still verified, so the recorded chain is the one the peer holds the key of.

use crate::checks::tls::{ChainProblem, TlsEndpoint, TlsOutcome};
use crate::checks::x509::{self, UntrustedChain, ValidityEdge};
use crate::probe::guard::TargetGuard;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, InvalidMessage, ProtocolVersion,
    RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;

/// Why the prober could not be set up (bad `--ca-file`, unusable trust anchor).
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read CA file {path}: {source}")]
    CaFileUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("CA file {path} is not valid PEM: {detail}")]
    CaFileInvalid { path: PathBuf, detail: String },
    #[error("CA file {path} contains no PEM CERTIFICATE block")]
    CaFileEmpty { path: PathBuf },
    #[error("certificate #{index} of CA file {path} is not a usable trust anchor: {source}")]
    CaFileBadCertificate {
        path: PathBuf,
        index: usize,
        #[source]
        source: rustls::Error,
    },
    #[error("extra trust anchor #{index} is not a usable CA certificate: {source}")]
    InvalidRoot {
        index: usize,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot build the certificate verifier: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
    #[error("cannot build the TLS client configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Reads the extra trust anchors of `--ca-file` (PEM, one or more CERTIFICATE blocks).
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let pem = std::fs::read(path).map_err(|source| TlsSetupError::CaFileUnreadable {
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::CaFileInvalid {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::CaFileEmpty {
            path: path.to_owned(),
        });
    }
    // Parse each one now so that a broken block is reported with the file it came from
    // instead of later as an anonymous "extra trust anchor".
    for (i, der) in certs.iter().enumerate() {
        RootCertStore::empty().add(der.clone()).map_err(|source| {
            TlsSetupError::CaFileBadCertificate {
                path: path.to_owned(),
                index: i + 1,
                source,
            }
        })?;
    }
    Ok(certs)
}

/// Probes TLS endpoints; trusts the bundled web roots plus the extra roots it was given.
#[derive(Debug)]
pub struct TlsProber {
    verifier: Arc<WebPkiServerVerifier>,
    algorithms: WebPkiSupportedAlgorithms,
    /// Cloned per probe, with that probe's recording verifier swapped in.
    base_config: ClientConfig,
    handshakes: AtomicU64,
}

impl TlsProber {
    pub fn new(extra_roots: Vec<CertificateDer<'static>>) -> Result<Self, TlsSetupError> {
        // ring is the provider of the whole binary (kube's client uses it too); never rely on a
        // process-wide default that another crate's features could change.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for (i, der) in extra_roots.into_iter().enumerate() {
            roots
                .add(der)
                .map_err(|source| TlsSetupError::InvalidRoot {
                    index: i + 1,
                    source,
                })?;
        }
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()?;
        let mut base_config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        base_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // A resumed session skips certificate verification and would report a chain from an
        // earlier connection: every probe must see what the server serves now.
        base_config.resumption = Resumption::disabled();
        Ok(Self {
            verifier,
            algorithms: provider.signature_verification_algorithms,
            base_config,
            handshakes: AtomicU64::new(0),
        })
    }

    /// Connections opened so far (one per probe that passed its own checks and went to the
    /// network), so that callers can prove probes are deduplicated.
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::Relaxed)
    }

    /// Verifies a chain (leaf first, then intermediates) for `name` at `now`, exactly as a probe
    /// verifies what a server serves; for certificates read from a Secret.
    pub fn verify_chain(
        &self,
        chain: &[CertificateDer<'static>],
        name: &str,
        now: UnixTime,
    ) -> Result<(), ChainProblem> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(ChainProblem::Other("no certificate".to_owned()));
        };
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|e| ChainProblem::Other(format!("{name:?} is not a valid name: {e}")))?;
        self.verifier
            .verify_server_cert(leaf, intermediates, &server_name, &[], now)
            .map(|_| ())
            .map_err(|e| chain_problem(&e, chain, name))
    }

    /// Like [`probe`](Self::probe), but refuses (without connecting) what the guard refuses.
    pub async fn probe_guarded(
        &self,
        guard: &TargetGuard,
        endpoint: &TlsEndpoint,
        timeout: Duration,
    ) -> TlsOutcome {
        match guard.check(endpoint.address.ip()) {
            Ok(()) => self.probe(endpoint, timeout).await,
            Err(reason) => TlsOutcome::Forbidden(reason),
        }
    }

    /// Connects and handshakes with SNI = `endpoint.sni`. `timeout` bounds the whole probe:
    /// the TCP connect and the handshake share it.
    pub async fn probe(&self, endpoint: &TlsEndpoint, timeout: Duration) -> TlsOutcome {
        let (outcome, _) = self.probe_inner(endpoint, timeout, None).await;
        tracing::debug!(%endpoint, %outcome, "TLS probe");
        outcome
    }

    /// Like [`probe`](Self::probe), and when the served chain verifies, the connection is
    /// handed over open (with the probe's deadline) instead of closed: the HTTP exchange of
    /// EdgeHttpOk goes over it, one handshake for both.
    pub(crate) async fn probe_keeping(
        &self,
        endpoint: &TlsEndpoint,
        timeout: Duration,
        when: KeepOpen,
    ) -> (TlsOutcome, Option<OpenConnection>) {
        let (outcome, open) = self.probe_inner(endpoint, timeout, Some(when)).await;
        tracing::debug!(%endpoint, %outcome, "TLS probe");
        (outcome, open)
    }

    async fn probe_inner(
        &self,
        endpoint: &TlsEndpoint,
        timeout: Duration,
        keep: Option<KeepOpen>,
    ) -> (TlsOutcome, Option<OpenConnection>) {
        let deadline = Instant::now() + timeout;
        let server_name = match ServerName::try_from(endpoint.sni.clone()) {
            Ok(name) => name,
            Err(e) => {
                let outcome = TlsOutcome::HandshakeFailed(format!(
                    "{:?} is not a valid SNI name: {e}",
                    endpoint.sni
                ));
                return (outcome, None);
            }
        };

        self.handshakes.fetch_add(1, Ordering::Relaxed);
        let tcp = match connect(endpoint.address, deadline).await {
            Ok(tcp) => tcp,
            Err(outcome) => return (outcome, None),
        };

        let recorder = Arc::new(RecordingVerifier {
            inner: self.verifier.clone(),
            algorithms: self.algorithms,
            served: Mutex::new(None),
            stapled: AtomicBool::new(false),
        });
        let mut config = self.base_config.clone();
        config
            .dangerous()
            .set_certificate_verifier(recorder.clone());
        let connector = TlsConnector::from(Arc::new(config));
        let stream = FirstBytes::new(tcp);

        let handshake = connector.connect(server_name, stream).into_fallible();
        match timeout_at(deadline, handshake).await {
            Err(_) => (TlsOutcome::HandshakeTimeout, None),
            Ok(Err((e, stream))) => (handshake_error(&e, &stream.first), None),
            Ok(Ok(mut tls)) => {
                let (_, conn) = tls.get_ref();
                let protocol_version = conn
                    .protocol_version()
                    .map(version_name)
                    .unwrap_or_else(|| "TLS".to_owned());
                let (chain, verified) = self.served(&recorder, conn, &endpoint.sni);
                let keep = match keep {
                    None => false,
                    Some(KeepOpen::IfVerified) => verified.is_ok(),
                    Some(KeepOpen::Always) => true,
                };
                let outcome = TlsOutcome::Handshake {
                    protocol_version,
                    chain,
                    verified,
                };
                if keep {
                    let open = OpenConnection {
                        stream: tls,
                        ocsp_stapled: recorder.stapled.load(Ordering::Relaxed),
                        deadline,
                    };
                    return (outcome, Some(open));
                }
                // Best effort close_notify so the server does not log a truncated connection.
                let _ = timeout_at(deadline, tls.shutdown()).await;
                (outcome, None)
            }
        }
    }
}

impl TlsProber {
    /// The chain the server sent and whether it verifies for `sni`, as the verifier recorded it.
    fn served(
        &self,
        recorder: &RecordingVerifier,
        conn: &rustls::ClientConnection,
        sni: &str,
    ) -> Served {
        let served = recorder
            .served
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match served {
            Some(served) => served,
            // Unreachable with resumption disabled, but the peer's chain is still the truth to
            // report if rustls ever completes without asking the verifier.
            None => {
                let chain: Vec<_> = conn
                    .peer_certificates()
                    .unwrap_or_default()
                    .iter()
                    .map(|c| c.clone().into_owned())
                    .collect();
                let verified = self.verify_chain(&chain, sni, UnixTime::now());
                (chain, verified)
            }
        }
    }
}

pub(crate) fn version_name(version: ProtocolVersion) -> String {
    match version {
        ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
        ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
        ProtocolVersion::TLSv1_1 => "TLSv1.1".to_owned(),
        ProtocolVersion::TLSv1_0 => "TLSv1.0".to_owned(),
        other => format!("{other:?}"),
    }
}

/// A TCP connection to `address` by `deadline`, with Nagle off (a handshake or a request is a
/// few small flights), or the outcome that says why not.
pub(crate) async fn connect(
    address: SocketAddr,
    deadline: Instant,
) -> Result<TcpStream, TlsOutcome> {
    let tcp = match timeout_at(deadline, TcpStream::connect(address)).await {
        Err(_) => return Err(TlsOutcome::ConnectTimeout),
        Ok(Err(e)) => return Err(connect_error(&e)),
        Ok(Ok(tcp)) => tcp,
    };
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

fn connect_error(e: &io::Error) -> TlsOutcome {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => TlsOutcome::Refused,
        io::ErrorKind::TimedOut => TlsOutcome::ConnectTimeout,
        _ => TlsOutcome::Unreachable(e.to_string()),
    }
}

fn handshake_error(e: &io::Error, first: &[u8]) -> TlsOutcome {
    let tls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls_error {
        // Record-layer garbage: the first bytes were not a TLS record header.
        Some(rustls::Error::InvalidMessage(
            InvalidMessage::InvalidContentType
            | InvalidMessage::UnknownProtocolVersion
            | InvalidMessage::MessageTooLarge,
        )) => TlsOutcome::NotTls(describe_non_tls(first)),
        Some(rustls::Error::InvalidMessage(_)) if !looks_like_tls(first) => {
            TlsOutcome::NotTls(describe_non_tls(first))
        }
        // In a handshake, the one message that large is the server's certificate chain.
        Some(rustls::Error::InvalidMessage(InvalidMessage::HandshakePayloadTooLarge)) => {
            TlsOutcome::ChainTooLarge
        }
        Some(rustls::Error::InvalidMessage(m)) => {
            TlsOutcome::HandshakeFailed(format!("the server sent a malformed TLS message ({m:?})"))
        }
        Some(rustls::Error::AlertReceived(alert)) => {
            TlsOutcome::HandshakeFailed(format!("the server sent the TLS alert {alert:?}"))
        }
        Some(other) => TlsOutcome::HandshakeFailed(other.to_string()),
        // The peer gave up before a whole TLS record arrived; if what it did send cannot start
        // one, it is some other protocol that answered and hung up.
        None if !first.is_empty() && !looks_like_tls(first) => {
            TlsOutcome::NotTls(describe_non_tls(first))
        }
        None => match e.kind() {
            io::ErrorKind::UnexpectedEof => TlsOutcome::HandshakeFailed(
                "connection closed before the handshake finished".to_owned(),
            ),
            io::ErrorKind::ConnectionReset => TlsOutcome::HandshakeFailed(
                "connection reset by the server during the handshake".to_owned(),
            ),
            _ => TlsOutcome::HandshakeFailed(e.to_string()),
        },
    }
}

/// A TLS record starts with a content type (20..=24) and a 3.x version byte.
fn looks_like_tls(first: &[u8]) -> bool {
    match first {
        [] => true,
        [typ] => (20..=24).contains(typ),
        [typ, major, ..] => (20..=24).contains(typ) && *major == 3,
    }
}

// What a peer that does not speak TLS is described as: fixed texts, never its bytes.
const PLAIN_HTTP: &str = "it answered in plain HTTP";
const PLAIN_TEXT: &str = "it answered in plain text";
const NOT_TLS_BYTES: &str = "it sent bytes that are not TLS";
const NO_RECORD: &str = "it sent no TLS record";

/// What answered on the TLS port, as one of a few fixed classifications. The bytes themselves
/// are chosen by whoever runs the peer (an SSH version string, an HTTP status line, anything a
/// hostile DNS answer points the probe at), so none of them is ever copied into status, Events,
/// logs or errors.
fn describe_non_tls(first: &[u8]) -> String {
    let start = first
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(first.len());
    let line = first[start..].split(|b| *b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = !line.is_empty()
        && line
            .iter()
            .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\t');
    let class = if first.is_empty() {
        NO_RECORD
    } else if first.starts_with(b"HTTP/") {
        PLAIN_HTTP
    } else if text {
        PLAIN_TEXT
    } else {
        NOT_TLS_BYTES
    };
    class.to_owned()
}

/// Records what the server served and whether it verifies, and lets the handshake go on.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    algorithms: WebPkiSupportedAlgorithms,
    served: Mutex<Option<Served>>,
    /// The server stapled an OCSP response.
    stapled: AtomicBool,
}

/// When a probe leaves its connection open for an HTTP exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeepOpen {
    /// Only when the served chain verifies (EdgeHttpOk's request after the edge probe).
    IfVerified,
    /// Whatever was served (an HTTP probe of its own: the certificate is not its business).
    Always,
}

/// A TLS connection a probe made and left open for an HTTP exchange, with the probe's deadline.
pub(crate) struct OpenConnection {
    pub(crate) stream: tokio_rustls::client::TlsStream<FirstBytes>,
    pub(crate) ocsp_stapled: bool,
    pub(crate) deadline: Instant,
}

/// The chain a server sent (leaf first) and whether it verifies for the SNI name.
type Served = (Vec<CertificateDer<'static>>, Result<(), ChainProblem>);

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.stapled
            .store(!ocsp_response.is_empty(), Ordering::Relaxed);
        let chain: Vec<CertificateDer<'static>> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        let verified = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map(|_| ())
            .map_err(|e| chain_problem(&e, &chain, &server_name.to_str()));
        *self.served.lock().unwrap_or_else(PoisonError::into_inner) = Some((chain, verified));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Turns a verifier error into what was wrong, naming the certificates seen.
fn chain_problem(err: &rustls::Error, chain: &[CertificateDer<'_>], name: &str) -> ChainProblem {
    let rustls::Error::InvalidCertificate(cert_err) = err else {
        return ChainProblem::Other(err.to_string());
    };
    match cert_err {
        CertificateError::UnknownIssuer => match x509::untrusted_chain(chain) {
            UntrustedChain::SelfSigned { subject } => ChainProblem::SelfSigned(subject),
            UntrustedChain::EndsAt { subject, issuer } => ChainProblem::Untrusted(format!(
                "the chain ends at \"{subject}\", issued by \"{issuer}\", which is not a trusted root"
            )),
            UntrustedChain::Unreadable => ChainProblem::Untrusted("issuer unknown".to_owned()),
        },
        CertificateError::BadSignature => ChainProblem::Untrusted(
            "a certificate's signature does not verify with its issuer's key".to_owned(),
        ),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            ChainProblem::WrongName(match x509::leaf_names(chain) {
                names if names.is_empty() => {
                    format!("the certificate has no subjectAltName covering {name}")
                }
                names => format!(
                    "the certificate is valid for {}, not {name}",
                    names.join(", ")
                ),
            })
        }
        // The check time is left out: it changes every probe, and status must not churn.
        CertificateError::ExpiredContext { not_after, .. } => ChainProblem::Expired(format!(
            "{}not valid after {}",
            which_certificate(chain, not_after, ValidityEdge::NotAfter),
            timestamp(*not_after),
        )),
        CertificateError::Expired => ChainProblem::Expired(cert_err.to_string()),
        CertificateError::NotValidYetContext { not_before, .. } => {
            ChainProblem::NotYetValid(format!(
                "{}not valid before {}",
                which_certificate(chain, not_before, ValidityEdge::NotBefore),
                timestamp(*not_before),
            ))
        }
        CertificateError::NotValidYet => ChainProblem::NotYetValid(cert_err.to_string()),
        other => ChainProblem::Other(other.to_string()),
    }
}

fn timestamp(t: UnixTime) -> String {
    i64::try_from(t.as_secs())
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(|| format!("{} (UNIX)", t.as_secs()), |ts| ts.to_string())
}

/// "intermediate CN=... is " when the date belongs to a certificate other than the leaf.
fn which_certificate(chain: &[CertificateDer<'_>], at: &UnixTime, edge: ValidityEdge) -> String {
    let at = i64::try_from(at.as_secs()).unwrap_or(i64::MAX);
    match x509::intermediate_with_date(chain, at, edge) {
        Some(subject) => format!("intermediate \"{subject}\" is "),
        None => String::new(),
    }
}

/// Keeps the first bytes the peer sent, to classify what answered when it is not TLS (they are
/// only classified, never reported).
pub(crate) struct FirstBytes {
    inner: TcpStream,
    first: Vec<u8>,
}

impl FirstBytes {
    const KEEP: usize = 64;

    fn new(inner: TcpStream) -> Self {
        Self {
            inner,
            first: Vec::new(),
        }
    }
}

impl AsyncRead for FirstBytes {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        let room = Self::KEEP.saturating_sub(this.first.len());
        if room > 0 {
            let new = &buf.filled()[before..];
            this.first.extend_from_slice(&new[..new.len().min(room)]);
        }
        result
    }
}

impl AsyncWrite for FirstBytes {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_tls_peers_are_classified_without_their_bytes() {
        let cases: [(&[u8], &str); 11] = [
            (b"HTTP/1.1 400 Bad Request\r\n\r\n", PLAIN_HTTP),
            (b"HTTP/1.0 200 OK\n<script>alert(1)</script>", PLAIN_HTTP),
            (b"SSH-2.0-OpenSSH_9.6\r\n", PLAIN_TEXT),
            (b"220 mail.internal.example ESMTP Postfix\r\n", PLAIN_TEXT),
            (b"+OK Redis ready\tkey=AKIAIOSFODNN7EXAMPLE", PLAIN_TEXT),
            (&[0, 0xff, 7], NOT_TLS_BYTES),
            (b"\r\n\r\n", NOT_TLS_BYTES),
            (b"\x1b[31mred\x1b[0m\n", NOT_TLS_BYTES),
            ("caf\u{e9} \u{202e}txt.exe".as_bytes(), NOT_TLS_BYTES),
            (b"\r\n-ERR after an empty line\r\n", PLAIN_TEXT),
            (b"", NO_RECORD),
        ];
        for (first, class) in cases {
            assert_eq!(describe_non_tls(first), class, "{first:?}");
        }
    }

    #[test]
    fn tls_record_headers_are_recognised() {
        assert!(looks_like_tls(&[0x16, 0x03, 0x03]));
        assert!(looks_like_tls(&[0x15]));
        assert!(!looks_like_tls(b"HTTP/1.1"));
        assert!(!looks_like_tls(&[0x16, 0x48]));
    }

    #[test]
    fn versions_are_named_as_people_write_them() {
        assert_eq!(version_name(ProtocolVersion::TLSv1_3), "TLSv1.3");
        assert_eq!(version_name(ProtocolVersion::TLSv1_2), "TLSv1.2");
    }

    #[test]
    fn connect_errors_map_to_outcomes() {
        assert_eq!(
            connect_error(&io::Error::from(io::ErrorKind::ConnectionRefused)),
            TlsOutcome::Refused
        );
        assert_eq!(
            connect_error(&io::Error::from(io::ErrorKind::TimedOut)),
            TlsOutcome::ConnectTimeout
        );
        assert!(matches!(
            connect_error(&io::Error::other("no route to host")),
            TlsOutcome::Unreachable(d) if d == "no route to host"
        ));
    }

    #[test]
    fn handshake_errors_map_to_outcomes() {
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert_eq!(
            handshake_error(&eof, b""),
            TlsOutcome::HandshakeFailed("connection closed before the handshake finished".into())
        );
        assert_eq!(
            handshake_error(&eof, b"HI"),
            TlsOutcome::NotTls("it answered in plain text".into())
        );
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(
            handshake_error(&reset, b""),
            TlsOutcome::HandshakeFailed(
                "connection reset by the server during the handshake".into()
            )
        );
        assert_eq!(
            handshake_error(&reset, b"SSH-2.0-OpenSSH_9.6\r\n"),
            TlsOutcome::NotTls("it answered in plain text".into())
        );
        let alert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
        );
        assert_eq!(
            handshake_error(&alert, &[0x15, 0x03, 0x03]),
            TlsOutcome::HandshakeFailed("the server sent the TLS alert HandshakeFailure".into())
        );
        let too_large = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(InvalidMessage::HandshakePayloadTooLarge),
        );
        assert_eq!(
            handshake_error(&too_large, &[0x16, 0x03, 0x03]),
            TlsOutcome::ChainTooLarge
        );
        let garbage = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType),
        );
        assert_eq!(
            handshake_error(&garbage, b"HTTP/1.0 200 OK\n"),
            TlsOutcome::NotTls("it answered in plain HTTP".into())
        );
        // A record-layer error on bytes that cannot start a TLS record: classified, and the
        // parser's verdict (which varies with the peer's bytes) is left out too.
        let malformed = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(InvalidMessage::MessageTooShort),
        );
        assert_eq!(
            handshake_error(&malformed, &[0x00, 0x01]),
            TlsOutcome::NotTls("it sent bytes that are not TLS".into())
        );
        assert_eq!(
            handshake_error(&malformed, &[0x16, 0x03, 0x01]),
            TlsOutcome::HandshakeFailed(
                "the server sent a malformed TLS message (MessageTooShort)".into()
            )
        );
    }

    #[test]
    fn empty_chain_and_bad_name_are_reported_not_panicked_on() {
        let prober = TlsProber::new(Vec::new()).unwrap();
        assert_eq!(
            prober.verify_chain(&[], "www.example", UnixTime::now()),
            Err(ChainProblem::Other("no certificate".into()))
        );
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
        assert!(matches!(
            prober.verify_chain(&[garbage], "www.example", UnixTime::now()),
            Err(ChainProblem::Other(_))
        ));
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let missing = dir.join("missing.pem");
        let err = load_ca_file(&missing).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read CA file {}", missing.display()))
        );

        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        assert_eq!(
            load_ca_file(&empty).unwrap_err().to_string(),
            format!(
                "CA file {} contains no PEM CERTIFICATE block",
                empty.display()
            )
        );

        let broken = dir.join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = load_ca_file(&broken).unwrap_err().to_string();
        assert!(err.contains(&broken.display().to_string()), "{err}");
    }
}
