//! Step 1: the TLS certificate from the CDN's Certificate Provisioning System.
//!
//! Evaluated as an ordered chain of small named checks (cert-manager's `policies.Chain`): the
//! certificate under test is found and parsed, then each check may object, and the first
//! objection is the verdict.
//!
//! Decisions about certificates a verifier cannot fully judge:
//! - A key pair of a type the crypto provider (ring) cannot load (P-521, RSA over 4096 bits) is
//!   compared through the public half the key file states (an RSA key holds its modulus and
//!   exponent; EC and EdDSA key files usually hold their public key). When the file does not
//!   state it, the pair cannot be checked: this does not make `CertificateValid` False (the
//!   certificate may well be valid); the True message says "unsupported key type P-521".
//! - A certificate of 64 KiB or more (thousands of names) cannot be read by the chain verifier:
//!   `CertificateValid` is Unknown `CertificateUnparsable` with the size and the number of names,
//!   not `ChainUntrusted`, since whether it chains to a trusted root could not be decided.
//! - A tls.crt whose first certificate is an intermediate (or a root) is False
//!   `CertificateUnparsable`: the certificates are in the wrong order.

use crate::api::{CertificateEvidence, ConditionStatus, ConditionType, Reason, Verdict};
use crate::checks::ago_or_in;
use crate::checks::names::{covers, describe_names};
use crate::checks::secret::{SecretContent, SecretKey};
use crate::checks::tls::{ChainProblem, TlsEndpoint};
use crate::checks::x509::{
    self, LeafInfo, Oversized, PublicKeyInfo, WrongOrder, parse_leaf, parse_pem_chain,
};
use jiff::Timestamp;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use std::time::Duration;

/// Where the certificate under test came from and what it held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertificateInput {
    /// `spec.certificate.secretRef` is set, and this is what the Secret held.
    Secret {
        name: String,
        content: SecretContent,
    },
    /// No secretRef: the chain the CDN edge served for the hostname.
    Edge {
        endpoint: TlsEndpoint,
        chain: Vec<CertificateDer<'static>>,
    },
    /// No secretRef, and no edge probe returned a certificate.
    EdgeUnavailable { detail: String },
}

/// What the certificate step concluded, plus the parsed certificate for other steps.
#[derive(Clone, Debug)]
pub struct CertificateFinding {
    pub verdict: Verdict,
    pub evidence: Option<CertificateEvidence>,
    /// The certificate's DNS names, when it parsed.
    pub dns_names: Option<Vec<String>>,
    /// Moments at which this verdict changes on its own (expiry warning, expiry, notBefore).
    pub changes_at: Vec<Timestamp>,
}

const REMEDY: &str =
    "request or renew the certificate through the CDN's Certificate Provisioning System (step 1)";

/// A check's objection: the verdict's status, reason and message.
type Objection = (ConditionStatus, Reason, String);

/// What comparing tls.key with the certificate's public key found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyCheck {
    Matches,
    /// tls.key belongs to another public key.
    Mismatch,
    /// tls.key is not a usable private key: what is wrong with it.
    Invalid(String),
    /// A key of a type the crypto provider cannot load, whose file does not state its public
    /// half: the pair cannot be checked. The certificate's key type ("P-521").
    Unsupported(String),
}

/// Compares tls.key with the leaf's public key: through the crypto provider when it can load
/// the key (which also proves the key consistent), else through the public half the key file
/// states. Never says "cannot load": a key type the provider lacks is named.
pub fn check_key(key: &SecretKey, leaf: &LeafInfo) -> KeyCheck {
    let Ok(der) = PrivateKeyDer::from_pem_slice(key.pem()) else {
        return KeyCheck::Invalid(
            "tls.key is not a PEM private key (PKCS#8, PKCS#1 or SEC1)".to_string(),
        );
    };
    let Ok(theirs) = x509::certificate_key_half(&leaf.spki_der) else {
        return KeyCheck::Unsupported(leaf.public_key.type_name());
    };
    let verdict = |matches: Option<bool>| match matches {
        Some(true) => KeyCheck::Matches,
        Some(false) => KeyCheck::Mismatch,
        None => KeyCheck::Unsupported(leaf.public_key.type_name()),
    };
    if let Ok(signing) = rustls::crypto::ring::sign::any_supported_type(&der)
        && let Some(public) = signing.public_key()
    {
        return match x509::certificate_key_half(public.as_ref()) {
            Ok(ours) => verdict(ours.matches(&theirs)),
            Err(_) => verdict(Some(public.as_ref() == leaf.spki_der.as_slice())),
        };
    }
    match x509::private_key_half(&der) {
        Ok(ours) => verdict(ours.matches(&theirs)),
        Err(e) => KeyCheck::Invalid(e),
    }
}

/// The certificate under test, found and parsed, with what the checks compare it against.
pub struct Subject<'a> {
    pub source: String,
    pub leaf: LeafInfo,
    /// tls.key compared with the certificate, when the certificate came from a Secret that has
    /// a key.
    pub key: Option<KeyCheck>,
    pub from_secret: bool,
    /// Chain verification for `hostname` at `now` (None when not attempted).
    pub chain_verified: Option<&'a Result<(), ChainProblem>>,
    pub hostname: &'a str,
    pub now: Timestamp,
    /// From when the certificate is reported as expiring soon.
    pub warn_at: Timestamp,
    /// A certificate of the chain too large for the chain verifier.
    pub oversized: Option<Oversized>,
}

impl Subject<'_> {
    /// "certificate SOURCE (subject, DNS names, issuer, validity)": what every message names.
    fn what(&self) -> String {
        let ev = &self.leaf.evidence;
        format!(
            "certificate {} (subject {}, DNS names {}, issuer {}, valid {} to {})",
            self.source,
            ev.subject,
            describe_names(&self.leaf.dns_names),
            ev.issuer,
            ev.not_before,
            ev.not_after
        )
    }
}

/// A named check of the chain: None when it has nothing to say.
pub type Check = fn(&Subject<'_>) -> Option<Objection>;

/// The checks in the order their objections matter to a person: a weak or foreign key makes
/// everything else moot, dates before names, trust last.
pub const CHECKS: [(&str, Check); 7] = [
    ("key strength", key_strength),
    ("key pair", key_pair),
    ("not yet valid", not_yet_valid),
    ("expired", expired),
    ("hostname covered", hostname_covered),
    ("chain trusted", chain_trusted),
    ("expiring soon", expiring_soon),
];

/// Evaluates step 1. `chain_verified` is the result of verifying the chain for `hostname` at
/// `now` against the trust anchors (computed by the observer, which holds the roots).
pub fn evaluate(
    input: &CertificateInput,
    chain_verified: Option<&Result<(), ChainProblem>>,
    hostname: &str,
    expiry_warning: Duration,
    now: Timestamp,
) -> CertificateFinding {
    let (source, chain, key) = match certificate_under_test(input) {
        Ok(found) => found,
        Err((status, reason, message)) => {
            return finding_without_certificate(status, reason, message);
        }
    };
    // An intermediate put first is not the leaf: describe the leaf wherever it is.
    let order = x509::wrong_order(&chain);
    let leaf_der = match &order {
        Some(WrongOrder { leaf: Some(i), .. }) => chain.get(*i),
        _ => chain.first(),
    };
    let leaf = match leaf_der.map(|der| parse_leaf(der, &source)) {
        Some(Ok(leaf)) => leaf,
        Some(Err(e)) => {
            return finding_without_certificate(
                ConditionStatus::False,
                Reason::CertificateUnparsable,
                format!("{source}: {e}; {REMEDY}."),
            );
        }
        None => {
            return finding_without_certificate(
                ConditionStatus::False,
                Reason::CertificateUnparsable,
                format!("{source} holds no certificate."),
            );
        }
    };
    let warn_at = leaf
        .evidence
        .not_after
        .checked_sub(
            jiff::SignedDuration::try_from(expiry_warning).unwrap_or(jiff::SignedDuration::ZERO),
        )
        .unwrap_or(leaf.evidence.not_after);
    let key = key.map(|k| check_key(k, &leaf));
    let subject = Subject {
        source,
        leaf,
        key,
        from_secret: matches!(input, CertificateInput::Secret { .. }),
        chain_verified,
        hostname,
        now,
        warn_at,
        oversized: x509::oversized(&chain),
    };
    if let Some(order) = order {
        let (status, reason, message) = wrong_order(&subject, &order);
        return finding(&subject, status, reason, message);
    }
    let (status, reason, mut message) = CHECKS
        .iter()
        .find_map(|(_, check)| check(&subject))
        .unwrap_or_else(|| verified(&subject));
    if status == ConditionStatus::True
        && let Some(KeyCheck::Unsupported(key_type)) = &subject.key
    {
        message.push_str(&format!(
            " The key pair was not checked: unsupported key type {key_type} (the crypto provider of this operator does not support it, and tls.key does not state its public key)."
        ));
    }
    finding(&subject, status, reason, message)
}

/// The chain starts with a CA certificate: the leaf must come first.
fn wrong_order(s: &Subject<'_>, order: &WrongOrder) -> Objection {
    let leaf = match order.leaf {
        Some(i) => format!(
            "; the leaf ({}) is certificate #{} of {}",
            s.what(),
            i + 1,
            if s.from_secret {
                "tls.crt"
            } else {
                "the chain"
            }
        ),
        None => String::new(),
    };
    let (what, fix) = if s.from_secret {
        (
            format!(
                "the certificates in tls.crt of {} are in the wrong order",
                s.source
            ),
            "put the leaf certificate first in tls.crt, then its intermediates (issuer after issued)",
        )
    } else {
        (
            format!(
                "the certificate chain served by {} is in the wrong order",
                s.source
            ),
            "the edge must send the leaf first, then its intermediates: submit the chain in that order through the CDN's Certificate Provisioning System (step 1)",
        )
    };
    (
        ConditionStatus::False,
        Reason::CertificateUnparsable,
        format!(
            "{what}: the leaf must come first, but the first is \"{}\", {}{leaf}; {fix}.",
            order.first,
            if order.first_is_ca {
                "a CA certificate"
            } else {
                "the issuer of another certificate of the chain"
            }
        ),
    )
}

fn finding_without_certificate(
    status: ConditionStatus,
    reason: Reason,
    message: String,
) -> CertificateFinding {
    CertificateFinding {
        verdict: Verdict::new(ConditionType::CertificateValid, status, reason, message),
        evidence: None,
        dns_names: None,
        changes_at: Vec::new(),
    }
}

fn finding(
    subject: &Subject<'_>,
    status: ConditionStatus,
    reason: Reason,
    message: String,
) -> CertificateFinding {
    let ev = &subject.leaf.evidence;
    let mut changes_at: Vec<Timestamp> = [ev.not_before, subject.warn_at, ev.not_after]
        .into_iter()
        .filter(|t| *t > subject.now)
        .collect();
    changes_at.sort();
    CertificateFinding {
        verdict: Verdict::new(ConditionType::CertificateValid, status, reason, message),
        evidence: Some(ev.clone()),
        dns_names: Some(subject.leaf.dns_names.clone()),
        changes_at,
    }
}

/// The source, chain and key of the certificate under test, or why there is none to test.
fn certificate_under_test(
    input: &CertificateInput,
) -> Result<(String, Vec<CertificateDer<'static>>, Option<&SecretKey>), Objection> {
    match input {
        CertificateInput::Secret { name, content } => secret_certificate(name, content),
        CertificateInput::Edge { endpoint, chain } => {
            Ok((format!("Edge/{}", endpoint.address), chain.clone(), None))
        }
        CertificateInput::EdgeUnavailable { detail } => Err((
            ConditionStatus::Unknown,
            Reason::CertificateUnavailable,
            format!(
                "no spec.certificate.secretRef is set, so the certificate served by the CDN edge is checked, but no edge returned one: {}. Fix the edge first (see EdgeServing), or reference the certificate's Secret.",
                detail
            ),
        )),
    }
}

fn secret_certificate<'a>(
    name: &str,
    content: &'a SecretContent,
) -> Result<(String, Vec<CertificateDer<'static>>, Option<&'a SecretKey>), Objection> {
    match content {
        // The same words whether the Secret is missing or of another type: the status does not
        // tell a reader of deliveries which other Secrets exist.
        SecretContent::NotFound => Err((
            ConditionStatus::False,
            Reason::SecretNotFound,
            format!(
                "no kubernetes.io/tls Secret named {name} in this delivery's namespace (spec.certificate.secretRef); create it with the certificate from the CDN's Certificate Provisioning System, or fix the name."
            ),
        )),
        SecretContent::NotAllowed { selector } => Err((
            ConditionStatus::False,
            Reason::SecretNotAllowed,
            format!(
                "no kubernetes.io/tls Secret named {name} labelled {selector} in this delivery's namespace: this operator reads only Secrets that carry the label selector {selector} (--secret-label-selector); label the certificate's Secret, or fix the name."
            ),
        )),
        SecretContent::ReadFailed(e) => Err((
            ConditionStatus::Unknown,
            Reason::SecretInvalid,
            format!("Secret {name} could not be read: {e}; will retry."),
        )),
        SecretContent::Invalid(problem) => Err((
            ConditionStatus::False,
            Reason::SecretInvalid,
            format!(
                "Secret {name} is not a usable TLS Secret: {problem}. It must be of type kubernetes.io/tls with the PEM certificate chain in tls.crt and the key in tls.key."
            ),
        )),
        SecretContent::Tls { cert_pem, key_pem } => match parse_pem_chain(cert_pem) {
            Ok(chain) => Ok((format!("Secret/{name}"), chain, key_pem.as_ref())),
            Err(e) => Err((
                ConditionStatus::False,
                Reason::CertificateUnparsable,
                format!(
                    "Secret {name}: {e}; put the PEM certificate chain (leaf first) in tls.crt."
                ),
            )),
        },
    }
}

/// RSA under 2048 bits and EC under 256 bits are refused by browsers and CAs.
pub fn key_strength(s: &Subject<'_>) -> Option<Objection> {
    let weak = match s.leaf.public_key {
        PublicKeyInfo::Rsa { bits } if bits < 2048 => {
            format!("an RSA key of {bits} bits (at least 2048 are required)")
        }
        PublicKeyInfo::Ec { bits, .. } if bits < 256 => {
            format!("an EC key of {bits} bits (at least 256 are required)")
        }
        _ => return None,
    };
    Some((
        ConditionStatus::False,
        Reason::WeakKey,
        format!("{} has {weak}; {REMEDY} with a stronger key.", s.what()),
    ))
}

/// A Secret's tls.key must be there and belong to the certificate.
pub fn key_pair(s: &Subject<'_>) -> Option<Objection> {
    let Some(key) = &s.key else {
        return s.from_secret.then(|| {
            (
                ConditionStatus::False,
                Reason::SecretInvalid,
                format!(
                    "{} has no tls.key; a kubernetes.io/tls Secret holds the certificate's private key in tls.key.",
                    s.source
                ),
            )
        });
    };
    match key {
        KeyCheck::Matches | KeyCheck::Unsupported(_) => None,
        KeyCheck::Mismatch => Some((
            ConditionStatus::False,
            Reason::KeyMismatch,
            format!(
                "tls.key in {} does not belong to {}; put the private key that was generated with this certificate's request in tls.key.",
                s.source,
                s.what()
            ),
        )),
        KeyCheck::Invalid(e) => Some((
            ConditionStatus::False,
            Reason::SecretInvalid,
            format!("{}: {e}.", s.source),
        )),
    }
}

pub fn not_yet_valid(s: &Subject<'_>) -> Option<Objection> {
    let not_before = s.leaf.evidence.not_before;
    (s.now < not_before).then(|| {
        (
            ConditionStatus::False,
            Reason::NotYetValid,
            format!(
                "{} is not valid until {not_before} ({}); wait, or {REMEDY}.",
                s.what(),
                ago_or_in(not_before, s.now)
            ),
        )
    })
}

pub fn expired(s: &Subject<'_>) -> Option<Objection> {
    let not_after = s.leaf.evidence.not_after;
    (s.now >= not_after).then(|| {
        (
            ConditionStatus::False,
            Reason::Expired,
            format!(
                "{} expired on {not_after} ({}); {REMEDY}.",
                s.what(),
                ago_or_in(not_after, s.now)
            ),
        )
    })
}

/// RFC 6125 name matching against the delivery's hostname.
pub fn hostname_covered(s: &Subject<'_>) -> Option<Objection> {
    let hostname = s.hostname;
    (!covers(&s.leaf.dns_names, hostname)).then(|| {
        (
            ConditionStatus::False,
            Reason::HostnameNotCovered,
            format!(
                "{} does not cover {hostname} (a wildcard covers exactly one label and not the apex); {REMEDY} with {hostname} among its names.",
                s.what()
            ),
        )
    })
}

/// The chain verifies to a trusted root; the remedy depends on what is missing.
pub fn chain_trusted(s: &Subject<'_>) -> Option<Objection> {
    let problem = match s.chain_verified {
        Some(Err(problem)) => problem,
        Some(Ok(())) | None => return None,
    };
    // The verifier could not read the chain: whether it is trusted is not known.
    if let (ChainProblem::Other(_), Some(big)) = (problem, &s.oversized) {
        let which = match big.position {
            1 => "the certificate".to_string(),
            n => format!("certificate #{n} of the chain"),
        };
        return Some((
            ConditionStatus::Unknown,
            Reason::CertificateUnparsable,
            format!(
                "{}: its chain could not be verified, because {which} is too large: {} bytes with {} DNS names, and the chain verifier (rustls' webpki) reads no certificate of 64 KiB or more. Many TLS clients refuse it too (rustls and Go accept at most 64 KiB of certificates in a handshake). {REMEDY} with fewer names, spreading the hostnames over several certificates.",
                s.what(),
                big.bytes,
                big.dns_names
            ),
        ));
    }
    let remedy = match problem {
        ChainProblem::SelfSigned(_) => {
            "use a certificate issued by a trusted CA through the CDN's Certificate Provisioning System, or pass its private CA with --ca-file"
        }
        ChainProblem::Untrusted(_) if s.from_secret => {
            "include the intermediate certificates after the leaf in tls.crt, or pass the private CA with --ca-file"
        }
        ChainProblem::Untrusted(_) => {
            "submit the certificate with its intermediate certificates through the CDN's Certificate Provisioning System, or pass the private CA with --ca-file"
        }
        _ => REMEDY,
    };
    Some((
        ConditionStatus::False,
        Reason::ChainUntrusted,
        format!(
            "{} does not verify to a trusted root: {problem}; {remedy}.",
            s.what()
        ),
    ))
}

/// Still valid, but inside the expiry-warning window: True, with a nudge.
pub fn expiring_soon(s: &Subject<'_>) -> Option<Objection> {
    let not_after = s.leaf.evidence.not_after;
    (s.now >= s.warn_at).then(|| {
        (
            ConditionStatus::True,
            Reason::ExpiringSoon,
            format!(
                "{} covers {} but expires on {not_after} ({}); renew it through the CDN's Certificate Provisioning System soon.",
                s.what(),
                s.hostname,
                ago_or_in(not_after, s.now)
            ),
        )
    })
}

fn verified(s: &Subject<'_>) -> Objection {
    let message = match s.key {
        Some(KeyCheck::Matches) => format!(
            "{} covers {}, its key matches and its chain verifies.",
            s.what(),
            s.hostname
        ),
        _ => format!("{} covers {} and its chain verifies.", s.what(), s.hostname),
    };
    (ConditionStatus::True, Reason::Verified, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::tls::TlsProber;
    use testkit::pki::{EcKeyFile, Leaf, LeafSpec, TestCa, self_signed};

    const WARN: Duration = Duration::from_secs(30 * 86_400);
    const HOST: &str = "www.shop.example";
    const DAY: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

    /// The instant every test evaluates at; certificates are issued relative to it, so no
    /// assert depends on when the test runs. Whole seconds, as certificates store them.
    fn now() -> Timestamp {
        Timestamp::from_second(Timestamp::now().as_second()).unwrap()
    }

    fn valid_from(now: Timestamp, from_days: i32, to_days: i32) -> LeafSpec {
        LeafSpec::valid_for([HOST]).valid_between(now + from_days * DAY, now + to_days * DAY)
    }

    fn secret(cert_pem: &str, key_pem: Option<&str>) -> CertificateInput {
        CertificateInput::Secret {
            name: "www-tls".into(),
            content: SecretContent::Tls {
                cert_pem: cert_pem.as_bytes().to_vec(),
                key_pem: key_pem.map(|k| SecretKey::from_pem(k.as_bytes().to_vec())),
            },
        }
    }

    /// Evaluates `input` as the observer would: chain verified against `ca` at `now`.
    fn eval_at(
        input: &CertificateInput,
        ca: &TestCa,
        host: &str,
        now: Timestamp,
    ) -> CertificateFinding {
        let prober = TlsProber::new(vec![ca.cert_der()]).expect("prober");
        let at = rustls_pki_types::UnixTime::since_unix_epoch(Duration::from_secs(
            now.as_second().unsigned_abs(),
        ));
        let verified = match input {
            CertificateInput::Secret {
                content: SecretContent::Tls { cert_pem, .. },
                ..
            } => parse_pem_chain(cert_pem)
                .ok()
                .map(|c| prober.verify_chain(&c, host, at)),
            _ => None,
        };
        evaluate(input, verified.as_ref(), host, WARN, now)
    }

    fn reason_at(
        leaf: &Leaf,
        ca: &TestCa,
        host: &str,
        now: Timestamp,
    ) -> (ConditionStatus, Reason, String) {
        let f = eval_at(&secret(&leaf.chain_pem, Some(&leaf.key_pem)), ca, host, now);
        (f.verdict.status, f.verdict.reason, f.verdict.message)
    }

    /// A subject for testing one check alone.
    fn subject<'a>(
        leaf: &Leaf,
        now: Timestamp,
        chain: Option<&'a Result<(), ChainProblem>>,
    ) -> Subject<'a> {
        let parsed = parse_leaf(&leaf.cert_der, "Secret/www-tls").expect("leaf parses");
        let warn_at = parsed.evidence.not_after - jiff::SignedDuration::try_from(WARN).unwrap();
        Subject {
            source: "Secret/www-tls".into(),
            leaf: parsed,
            key: None,
            from_secret: false,
            chain_verified: chain,
            hostname: HOST,
            now,
            warn_at,
            oversized: None,
        }
    }

    #[test]
    fn valid_certificate_is_true_with_evidence() {
        use sha2::{Digest, Sha256};
        let now = now();
        let ca = TestCa::new("Test Root");
        let leaf = ca.issue(
            LeafSpec::valid_for([HOST, "shop.example"]).valid_between(now - DAY, now + 90 * DAY),
        );
        let f = eval_at(
            &secret(&leaf.chain_pem, Some(&leaf.key_pem)),
            &ca,
            HOST,
            now,
        );
        assert_eq!(
            (f.verdict.status, f.verdict.reason),
            (ConditionStatus::True, Reason::Verified),
            "{}",
            f.verdict.message
        );
        let ev = f.evidence.expect("evidence");
        assert_eq!(ev.dns_names, vec![HOST, "shop.example"]);
        assert_eq!(ev.source, "Secret/www-tls");
        assert!(ev.issuer.contains("Test Root"), "{}", ev.issuer);
        assert_eq!((ev.not_before, ev.not_after), (now - DAY, now + 90 * DAY));
        // The fingerprint is the SHA-256 of the DER leaf, as `openssl x509 -fingerprint -sha256`
        // prints it: computed here without the code under test.
        let digest: String = Sha256::digest(leaf.cert_der.as_ref())
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        assert_eq!(ev.sha256_fingerprint.replace(':', ""), digest);
        assert_eq!(ev.sha256_fingerprint.matches(':').count(), 31);
        assert!(!ev.serial.is_empty());
        assert_eq!(
            f.changes_at,
            vec![now + 60 * DAY, now + 90 * DAY],
            "the warning threshold and the expiry are ahead"
        );
    }

    #[test]
    fn expired_certificate() {
        let now = now();
        let ca = TestCa::new("Test Root");
        let (s, r, m) = reason_at(&ca.issue(valid_from(now, -91, -3)), &ca, HOST, now);
        assert_eq!((s, r), (ConditionStatus::False, Reason::Expired));
        assert!(
            m.contains("expired on") && m.contains("(3 days ago)"),
            "{m}"
        );
    }

    #[test]
    fn not_yet_valid_certificate() {
        let now = now();
        let ca = TestCa::new("Test Root");
        let (s, r, m) = reason_at(&ca.issue(valid_from(now, 2, 92)), &ca, HOST, now);
        assert_eq!((s, r), (ConditionStatus::False, Reason::NotYetValid));
        assert!(m.contains("(in 2 days)"), "{m}");
    }

    #[test]
    fn expiring_soon_is_still_true() {
        let now = now();
        let ca = TestCa::new("Test Root");
        let (s, r, m) = reason_at(&ca.issue(valid_from(now, -80, 10)), &ca, HOST, now);
        assert_eq!((s, r), (ConditionStatus::True, Reason::ExpiringSoon));
        assert!(m.contains("(in 10 days)"), "{m}");
    }

    #[test]
    fn wildcard_covers_one_label_only() {
        let now = now();
        let ca = TestCa::new("Test Root");
        let leaf = ca.issue(
            LeafSpec::valid_for(["*.shop.example"]).valid_between(now - DAY, now + 90 * DAY),
        );
        assert_eq!(reason_at(&leaf, &ca, HOST, now).1, Reason::Verified);
        let (s, r, m) = reason_at(&leaf, &ca, "a.www.shop.example", now);
        assert_eq!((s, r), (ConditionStatus::False, Reason::HostnameNotCovered));
        assert!(m.contains("*.shop.example"), "{m}");
    }

    #[test]
    fn san_mismatch() {
        let now = now();
        let ca = TestCa::new("Test Root");
        let leaf = ca.issue(
            LeafSpec::valid_for(["api.shop.example"]).valid_between(now - DAY, now + 90 * DAY),
        );
        let (s, r, m) = reason_at(&leaf, &ca, HOST, now);
        assert_eq!((s, r), (ConditionStatus::False, Reason::HostnameNotCovered));
        assert!(m.contains("api.shop.example") && m.contains(HOST), "{m}");
    }

    #[test]
    fn key_mismatch() {
        let now = now();
        let ca = TestCa::new("Test Root");
        let leaf = ca.issue(valid_from(now, -1, 90));
        let other = ca.issue(valid_from(now, -1, 90));
        let f = eval_at(
            &secret(&leaf.chain_pem, Some(&other.key_pem)),
            &ca,
            HOST,
            now,
        );
        assert_eq!(
            (f.verdict.status, f.verdict.reason),
            (ConditionStatus::False, Reason::KeyMismatch)
        );
        assert!(!f.verdict.message.contains("PRIVATE KEY"));
    }

    #[test]
    fn leaf_without_its_intermediate_is_untrusted_with_one_remedy() {
        let now = now();
        let root = TestCa::new("Test Root");
        let intermediate = root.intermediate("Test Intermediate");
        let leaf = intermediate.issue(valid_from(now, -1, 90));
        let f = eval_at(
            &secret(&leaf.cert_pem, Some(&leaf.key_pem)),
            &root,
            HOST,
            now,
        );
        assert_eq!(
            (f.verdict.status, f.verdict.reason),
            (ConditionStatus::False, Reason::ChainUntrusted),
            "{}",
            f.verdict.message
        );
        let m = &f.verdict.message;
        assert!(
            m.contains("include the intermediate certificates after the leaf in tls.crt"),
            "{m}"
        );
        assert_eq!(m.matches("--ca-file").count(), 1, "one remedy: {m}");
        assert_eq!(
            reason_at(&leaf, &root, HOST, now).1,
            Reason::Verified,
            "with the intermediate in tls.crt"
        );
    }

    #[test]
    fn self_signed_is_untrusted() {
        let now = now();
        let ca = TestCa::new("Test Root");
        let leaf = self_signed([HOST]);
        let (s, r, m) = reason_at(&leaf, &ca, HOST, now);
        assert_eq!((s, r), (ConditionStatus::False, Reason::ChainUntrusted));
        assert!(
            m.contains("is self-signed") && m.contains("issued by a trusted CA"),
            "{m}"
        );
        assert_eq!(m.matches("--ca-file").count(), 1, "one remedy: {m}");
    }

    #[test]
    fn garbage_pem_is_unparsable() {
        let ca = TestCa::new("Test Root");
        for garbage in [
            "not a certificate at all",
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        ] {
            let f = eval_at(&secret(garbage, None), &ca, HOST, now());
            assert_eq!(
                (f.verdict.status, f.verdict.reason),
                (ConditionStatus::False, Reason::CertificateUnparsable),
                "{garbage}: {}",
                f.verdict.message
            );
        }
    }

    #[test]
    fn weak_rsa_key() {
        let now = now();
        let ca = TestCa::new("Test Root");
        let leaf = ca.issue_with_rsa_key(valid_from(now, -1, 90), 1024);
        let (s, r, m) = reason_at(&leaf, &ca, HOST, now);
        assert_eq!((s, r), (ConditionStatus::False, Reason::WeakKey));
        assert!(m.contains("1024"), "{m}");
    }

    #[test]
    fn missing_key_and_bad_secrets() {
        let now = now();
        let ca = TestCa::new("Test Root");
        let leaf = ca.issue(valid_from(now, -1, 90));
        let f = eval_at(&secret(&leaf.chain_pem, None), &ca, HOST, now);
        assert_eq!(f.verdict.reason, Reason::SecretInvalid);
        let cases = [
            (
                SecretContent::NotFound,
                ConditionStatus::False,
                Reason::SecretNotFound,
            ),
            (
                SecretContent::Invalid("its type is Opaque, not kubernetes.io/tls".into()),
                ConditionStatus::False,
                Reason::SecretInvalid,
            ),
            (
                SecretContent::ReadFailed("timeout".into()),
                ConditionStatus::Unknown,
                Reason::SecretInvalid,
            ),
        ];
        for (content, status, reason) in cases {
            let input = CertificateInput::Secret {
                name: "x".into(),
                content: content.clone(),
            };
            let v = evaluate(&input, None, HOST, WARN, now).verdict;
            assert_eq!((v.status, v.reason), (status, reason), "{content:?}");
        }
    }

    #[test]
    fn each_check_objects_alone() {
        let now = now();
        let ca = TestCa::new("Test Root");
        let good = ca.issue(valid_from(now, -1, 90));
        let ok = Ok(());
        let healthy = subject(&good, now, Some(&ok));
        for (name, check) in CHECKS {
            assert_eq!(
                check(&healthy),
                None,
                "{name} objects to a healthy certificate"
            );
        }
        let late = subject(&good, now + 100 * DAY, Some(&ok));
        assert_eq!(expired(&late).map(|o| o.1), Some(Reason::Expired));
        let early = subject(&good, now - 2 * DAY, Some(&ok));
        assert_eq!(
            not_yet_valid(&early).map(|o| o.1),
            Some(Reason::NotYetValid)
        );
        let soon = subject(&good, now + 70 * DAY, Some(&ok));
        assert_eq!(
            expiring_soon(&soon).map(|o| (o.0, o.1)),
            Some((ConditionStatus::True, Reason::ExpiringSoon))
        );
        let mut other = subject(&good, now, Some(&ok));
        other.hostname = "api.other.example";
        assert_eq!(
            hostname_covered(&other).map(|o| o.1),
            Some(Reason::HostnameNotCovered)
        );
        let bad = Err(ChainProblem::Untrusted("the chain ends at X".into()));
        let untrusted = subject(&good, now, Some(&bad));
        assert_eq!(
            chain_trusted(&untrusted).map(|o| o.1),
            Some(Reason::ChainUntrusted)
        );
        let mut keyless = subject(&good, now, Some(&ok));
        keyless.from_secret = true;
        assert_eq!(key_pair(&keyless).map(|o| o.1), Some(Reason::SecretInvalid));
        keyless.from_secret = false;
        assert_eq!(
            key_pair(&keyless),
            None,
            "an edge certificate comes without a key"
        );
        let weak = ca.issue_with_rsa_key(valid_from(now, -1, 90), 1024);
        assert_eq!(
            key_strength(&subject(&weak, now, Some(&ok))).map(|o| o.1),
            Some(Reason::WeakKey)
        );
    }

    #[test]
    fn the_first_objection_wins() {
        let now = now();
        let ca = TestCa::new("Test Root");
        // Expired and for another name: the dates come first.
        let leaf = ca.issue(
            LeafSpec::valid_for(["api.shop.example"]).valid_between(now - 91 * DAY, now - DAY),
        );
        assert_eq!(reason_at(&leaf, &ca, HOST, now).1, Reason::Expired);
    }

    fn evaluate_pair(
        cert_pem: &str,
        key_pem: &str,
        ca: &TestCa,
        now: Timestamp,
    ) -> (ConditionStatus, Reason, String) {
        let f = eval_at(&secret(cert_pem, Some(key_pem)), ca, HOST, now);
        (f.verdict.status, f.verdict.reason, f.verdict.message)
    }

    #[test]
    fn p521_key_pairs_are_checked_although_ring_cannot_load_them() {
        let now = now();
        let ca = TestCa::new("Test Root");
        let p521 = |file| ca.issue_with_p521_key(valid_from(now, -1, 90), file);
        let pkcs8 = p521(EcKeyFile::Pkcs8);
        let sec1 = p521(EcKeyFile::Sec1);
        for (what, leaf) in [("PKCS#8", &pkcs8), ("SEC1", &sec1)] {
            let (s, r, m) = evaluate_pair(&leaf.chain_pem, &leaf.key_pem, &ca, now);
            assert_eq!(
                (s, r),
                (ConditionStatus::True, Reason::Verified),
                "{what}: {m}"
            );
            assert!(m.contains("its key matches"), "{what}: {m}");
            assert!(
                !m.contains("cannot load") && !m.contains("unsupported"),
                "{m}"
            );
        }
        // Another P-521 key, or a key of another type, does not belong to the certificate.
        let (s, r, m) = evaluate_pair(&pkcs8.chain_pem, &sec1.key_pem, &ca, now);
        assert_eq!((s, r), (ConditionStatus::False, Reason::KeyMismatch), "{m}");
        let p256 = ca.issue(valid_from(now, -1, 90));
        let (_, r, _) = evaluate_pair(&pkcs8.chain_pem, &p256.key_pem, &ca, now);
        assert_eq!(r, Reason::KeyMismatch);
        let (_, r, _) = evaluate_pair(&p256.chain_pem, &pkcs8.key_pem, &ca, now);
        assert_eq!(r, Reason::KeyMismatch);
    }

    #[test]
    fn a_key_that_cannot_be_checked_names_its_type_and_does_not_fail_the_step() {
        let now = now();
        let ca = TestCa::new("Test Root");
        let leaf =
            ca.issue_with_p521_key(valid_from(now, -1, 90), EcKeyFile::Pkcs8WithoutPublicKey);
        let (s, r, m) = evaluate_pair(&leaf.chain_pem, &leaf.key_pem, &ca, now);
        assert_eq!((s, r), (ConditionStatus::True, Reason::Verified), "{m}");
        assert!(m.contains("unsupported key type P-521"), "{m}");
        assert!(
            !m.contains("its key matches") && !m.contains("cannot load"),
            "{m}"
        );
        // Inside the warning window the note stays.
        let (s, r, m) = evaluate_pair(&leaf.chain_pem, &leaf.key_pem, &ca, now + 70 * DAY);
        assert_eq!((s, r), (ConditionStatus::True, Reason::ExpiringSoon));
        assert!(m.contains("unsupported key type P-521"), "{m}");
    }

    #[test]
    fn rsa_key_halves_compare_without_loading_the_key() {
        // What the check falls back to for RSA keys ring refuses (over 4096 bits): the modulus
        // and exponent in the key file, PKCS#8 or PKCS#1, against the certificate's.
        let ca = TestCa::new("Test Root");
        let leaf = ca.issue_with_rsa_key(LeafSpec::valid_for([HOST]), 2048);
        let other = ca.issue_with_rsa_key(LeafSpec::valid_for([HOST]), 2048);
        let parsed = parse_leaf(&leaf.cert_der, "Secret/www-tls").unwrap();
        let theirs = x509::certificate_key_half(&parsed.spki_der).unwrap();
        let pkcs8 = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let ours = x509::private_key_half(&pkcs8).unwrap();
        assert_eq!(ours.matches(&theirs), Some(true));
        // PKCS#1 is the RSAPrivateKey inside the PKCS#8 document.
        let pkcs1 = {
            let der = leaf.key_der.secret_pkcs8_der();
            let at = der
                .windows(2)
                .rposition(|w| w == [0x04, 0x82])
                .expect("the PKCS#8 privateKey OCTET STRING");
            PrivateKeyDer::Pkcs1(der[at + 4..].to_vec().into())
        };
        assert_eq!(
            x509::private_key_half(&pkcs1).unwrap().matches(&theirs),
            Some(true)
        );
        let foreign = PrivateKeyDer::from_pem_slice(other.key_pem.as_bytes()).unwrap();
        assert_eq!(
            x509::private_key_half(&foreign).unwrap().matches(&theirs),
            Some(false)
        );
    }

    #[test]
    fn truncated_or_garbled_keys_are_invalid_not_a_panic() {
        let now = now();
        let ca = TestCa::new("Test Root");
        let leaf = ca.issue_with_p521_key(valid_from(now, -1, 90), EcKeyFile::Pkcs8);
        let parsed = parse_leaf(&leaf.cert_der, "Secret/www-tls").unwrap();
        let der = leaf.key_der.secret_pkcs8_der().to_vec();
        for cut in 0..der.len() {
            let key = PrivateKeyDer::Pkcs8(der[..cut].to_vec().into());
            let _ = x509::private_key_half(&key);
            let mut flipped = der.clone();
            flipped[cut] ^= 0xff;
            let _ = x509::private_key_half(&PrivateKeyDer::Pkcs8(flipped.into()));
        }
        for cut in 0..parsed.spki_der.len() {
            let _ = x509::certificate_key_half(&parsed.spki_der[..cut]);
        }
        let garbled = "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n";
        let (s, r, m) = evaluate_pair(&leaf.chain_pem, garbled, &ca, now);
        assert_eq!(
            (s, r),
            (ConditionStatus::False, Reason::SecretInvalid),
            "{m}"
        );
        assert!(
            m.contains("tls.key is not a well-formed private key"),
            "{m}"
        );
    }

    #[test]
    fn a_reversed_chain_says_the_leaf_must_come_first() {
        let now = now();
        let root = TestCa::new("Test Root");
        let intermediate = root.intermediate("Test Intermediate");
        let leaf = intermediate.issue(valid_from(now, -1, 90));
        let reversed = format!("{}{}", intermediate.cert_pem(), leaf.cert_pem);
        let f = eval_at(&secret(&reversed, Some(&leaf.key_pem)), &root, HOST, now);
        let m = &f.verdict.message;
        assert_eq!(
            (f.verdict.status, f.verdict.reason),
            (ConditionStatus::False, Reason::CertificateUnparsable),
            "{m}"
        );
        assert!(
            m.contains("the certificates in tls.crt of Secret/www-tls are in the wrong order: the leaf must come first"),
            "{m}"
        );
        assert!(
            m.contains("\"CN=Test Intermediate\"") && m.contains("certificate #2"),
            "{m}"
        );
        assert!(
            !m.contains("KeyMismatch") && !m.contains("does not belong"),
            "{m}"
        );
        // The evidence is the leaf's, wherever it was.
        let ev = f.evidence.expect("evidence of the leaf");
        assert_eq!(ev.dns_names, vec![HOST]);
        // A root put first is a wrong order too; the right order is not.
        let root_first = format!("{}{}", root.cert_pem(), leaf.chain_pem);
        assert_eq!(
            eval_at(&secret(&root_first, Some(&leaf.key_pem)), &root, HOST, now)
                .verdict
                .reason,
            Reason::CertificateUnparsable
        );
        assert_eq!(reason_at(&leaf, &root, HOST, now).1, Reason::Verified);
        // An edge serving its chain reversed is told in its own words.
        let edge = CertificateInput::Edge {
            endpoint: crate::checks::tls::TlsEndpoint {
                address: "192.0.2.10:443".parse().unwrap(),
                sni: HOST.into(),
            },
            chain: vec![intermediate.cert_der(), leaf.cert_der.clone()],
        };
        let v = evaluate(&edge, None, HOST, WARN, now).verdict;
        assert_eq!(v.reason, Reason::CertificateUnparsable);
        assert!(v.message.contains("the certificate chain served by Edge/192.0.2.10:443 is in the wrong order: the leaf must come first"), "{}", v.message);
    }

    /// `names` DNS names, `HOST` last: found only by looking at every one of them.
    fn many_names(names: usize) -> LeafSpec {
        let mut all: Vec<String> = (1..names).map(|i| format!("h{i}.shop.example")).collect();
        all.push(HOST.to_string());
        LeafSpec::valid_for(all)
    }

    #[test]
    fn a_certificate_of_5000_names_is_too_large_to_verify_not_untrusted_and_stays_small() {
        let now = now();
        let root = TestCa::new("Test Root");
        let leaf = root.issue(many_names(5000).valid_between(now - DAY, now + 90 * DAY));
        assert!(leaf.cert_der.as_ref().len() > 65_536);
        let f = eval_at(
            &secret(&leaf.chain_pem, Some(&leaf.key_pem)),
            &root,
            HOST,
            now,
        );
        let m = &f.verdict.message;
        // webpki refuses to read it ("BadEncoding"): not a question of trust.
        assert_eq!(
            (f.verdict.status, f.verdict.reason),
            (ConditionStatus::Unknown, Reason::CertificateUnparsable),
            "{m}"
        );
        assert!(
            m.contains("too large") && m.contains("with 5000 DNS names"),
            "{m}"
        );
        assert!(m.contains("64 KiB") && m.contains("fewer names"), "{m}");
        assert!(m.contains("and 4995 more"), "{m}");
        assert!(
            !m.contains("BadEncoding") && !m.contains("trusted root"),
            "{m}"
        );
        // Status stays far below the 1.5 MiB object limit: evidence and message.
        let ev = f.evidence.expect("evidence");
        assert_eq!(ev.dns_names.len(), x509::MAX_EVIDENCE_NAMES);
        let serialized = serde_json::to_string(&ev).unwrap();
        assert!(serialized.len() < 16 * 1024, "{} bytes", serialized.len());
        assert!(m.len() < 16 * 1024, "{} bytes", m.len());
        // Every name still counts for coverage (the hostname is the last one).
        assert_eq!(f.dns_names.as_ref().map(Vec::len), Some(5000));
        // A smaller certificate with many names verifies as usual.
        let leaf = root.issue(many_names(1000).valid_between(now - DAY, now + 90 * DAY));
        assert_eq!(reason_at(&leaf, &root, HOST, now).1, Reason::Verified);
    }

    #[test]
    fn hostile_names_never_reach_status_or_events_raw() {
        use crate::api::text::is_hostile;
        let now = now();
        let ca = TestCa::new("Test Root");
        let hostile_name = "evil\x1b[2J\r\n.shop.example";
        let mut spec =
            LeafSpec::valid_for([HOST, hostile_name]).valid_between(now - DAY, now + 90 * DAY);
        spec.common_name = Some("CN\u{202e}moc.elpmaxe\u{9b}31m".into());
        spec.organization = Some("O\x1b]0;title\x07".into());
        let leaf = ca.issue(spec);
        let f = eval_at(
            &secret(&leaf.chain_pem, Some(&leaf.key_pem)),
            &ca,
            "other.example",
            now,
        );
        assert_eq!(f.verdict.reason, Reason::HostnameNotCovered);
        let ev = f.evidence.clone().expect("evidence");
        assert!(
            ev.subject.contains("\\u{202e}") && ev.subject.contains("\\x1b]0;title\\x07"),
            "{}",
            ev.subject
        );
        assert_eq!(ev.dns_names[1], "evil\\x1b[2j\\r\\n.shop.example");
        let all_evidence = serde_json::to_string(&ev).unwrap();
        let decoded: serde_json::Value = serde_json::from_str(&all_evidence).unwrap();
        assert!(!decoded.to_string().chars().any(is_hostile));
        // The message, as status and as an Event note.
        let conditions = crate::api::conditions::merge_conditions(
            &[],
            std::slice::from_ref(&f.verdict),
            Some(1),
            now,
        );
        let notes = crate::controller::publish::transitions(&[], std::slice::from_ref(&f.verdict));
        for text in [&conditions[0].message, &notes[0].note] {
            assert!(!text.chars().any(is_hostile), "{text:?}");
            assert!(text.contains("evil\\x1b[2j\\r\\n.shop.example"), "{text}");
        }
        // Matching uses the names as they are.
        assert_eq!(f.dns_names.unwrap()[1], "evil\x1b[2j\r\n.shop.example");
    }
}
