//! What a TLS probe saw: shared by step 1 (edge-served certificate), step 4 and the end-to-end check.

use rustls_pki_types::CertificateDer;
use std::net::SocketAddr;

/// Where a TLS probe went: one address, one port, one SNI name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TlsEndpoint {
    pub address: SocketAddr,
    pub sni: String,
}

impl std::fmt::Display for TlsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (SNI {})", self.address, self.sni)
    }
}

/// Why the served chain did not verify for the SNI name against the trust anchors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainProblem {
    /// A lone self-signed certificate (its subject).
    SelfSigned(String),
    /// Not issued by a trusted root (missing intermediate, private CA not given): where the
    /// chain ends.
    Untrusted(String),
    /// The certificate's names do not cover the SNI name.
    WrongName(String),
    Expired(String),
    NotYetValid(String),
    /// Anything else the verifier rejected (bad signature, bad encoding, revoked...).
    Other(String),
}

impl std::fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainProblem::SelfSigned(subject) => write!(
                f,
                "certificate chain is not trusted: the certificate \"{subject}\" is self-signed"
            ),
            ChainProblem::Untrusted(d) => write!(f, "certificate chain is not trusted: {d}"),
            ChainProblem::WrongName(d) => write!(f, "certificate is not valid for the name: {d}"),
            ChainProblem::Expired(d) => write!(f, "certificate has expired: {d}"),
            ChainProblem::NotYetValid(d) => write!(f, "certificate is not valid yet: {d}"),
            ChainProblem::Other(d) => write!(f, "certificate rejected: {d}"),
        }
    }
}

impl ChainProblem {
    /// Whether the chain fails for want of a trust anchor (rather than a date or a name).
    pub fn is_untrusted(&self) -> bool {
        matches!(
            self,
            ChainProblem::SelfSigned(_) | ChainProblem::Untrusted(_)
        )
    }
}

/// The outcome of one TLS probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsOutcome {
    /// The handshake completed. `chain` is what the server sent (leaf first); `verified` says
    /// whether it verifies for the SNI name against the bundled roots plus `--ca-file`.
    Handshake {
        protocol_version: String,
        chain: Vec<CertificateDer<'static>>,
        verified: Result<(), ChainProblem>,
    },
    /// TCP connection refused (nothing listens there).
    Refused,
    /// No route, host down, or another connect error.
    Unreachable(String),
    /// The TCP connect did not finish in time.
    ConnectTimeout,
    /// Connected, but the TLS handshake did not finish in time.
    HandshakeTimeout,
    /// The peer answered with something that is not TLS.
    NotTls(String),
    /// The TLS handshake failed (alert, protocol error...).
    HandshakeFailed(String),
    /// The server's certificate chain is over the 64 KiB TLS clients accept in one handshake
    /// message (rustls and Go alike): it cannot be served to them at all.
    ChainTooLarge,
    /// The target guard refused the address (loopback, link-local, cloud metadata).
    Forbidden(String),
}

impl std::fmt::Display for TlsOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsOutcome::Handshake {
                protocol_version,
                verified,
                ..
            } => match verified {
                Ok(()) => write!(f, "{protocol_version} handshake, certificate verified"),
                Err(p) => write!(f, "{protocol_version} handshake, {p}"),
            },
            TlsOutcome::Refused => f.write_str("connection refused"),
            TlsOutcome::Unreachable(d) => write!(f, "unreachable: {d}"),
            TlsOutcome::ConnectTimeout => f.write_str("TCP connect timed out"),
            TlsOutcome::HandshakeTimeout => f.write_str("TLS handshake timed out"),
            TlsOutcome::NotTls(d) => write!(f, "the server does not speak TLS: {d}"),
            TlsOutcome::HandshakeFailed(d) => write!(f, "TLS handshake failed: {d}"),
            TlsOutcome::ChainTooLarge => f.write_str(
                "TLS handshake failed: the server sent a certificate chain larger than 64 KiB, more than TLS clients such as rustls and Go accept in one handshake message",
            ),
            TlsOutcome::Forbidden(d) => write!(f, "probe refused by the target guard: {d}"),
        }
    }
}

/// What to do about [`TlsOutcome::ChainTooLarge`], wherever it is met: the size is the
/// problem, and this is the only fix that applies.
pub const CHAIN_TOO_LARGE_FIX: &str = "; serve only the leaf and its intermediates (no root, no unrelated certificates), with a certificate of fewer names if the leaf alone is that large";

/// One probe: where it went and what came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsObservation {
    pub endpoint: TlsEndpoint,
    pub outcome: TlsOutcome,
}
