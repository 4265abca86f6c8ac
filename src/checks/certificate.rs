//! Step 1: the TLS certificate from the CDN's Certificate Provisioning System.

use crate::api::{CertificateEvidence, ConditionStatus, ConditionType, Reason, Verdict, hex};
use crate::checks::tls::{ChainProblem, TlsEndpoint};
use crate::checks::{ago_or_in, describe_names};
use jiff::Timestamp;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use std::time::Duration;

/// A private key read from a Secret. Its `Debug` never shows the key: keys must not reach
/// logs, status, Events, metrics or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(Vec<u8>);

impl SecretKey {
    pub fn from_pem(pem: Vec<u8>) -> Self {
        SecretKey(pem)
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

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

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretContent {
    NotFound,
    /// The Secret could not be read for a reason that may pass (API error, forbidden).
    ReadFailed(String),
    /// The Secret exists but is not a usable kubernetes.io/tls Secret.
    Invalid(String),
    Tls {
        cert_pem: Vec<u8>,
        key_pem: Option<SecretKey>,
    },
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

/// The parsed identity of a leaf certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafInfo {
    pub evidence: CertificateEvidence,
    pub public_key: PublicKeyInfo,
    pub spki_der: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKeyInfo {
    Rsa { bits: usize },
    Ec { bits: usize },
    Ed25519,
    Other(String),
}

impl std::fmt::Display for PublicKeyInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublicKeyInfo::Rsa { bits } => write!(f, "RSA {bits}-bit"),
            PublicKeyInfo::Ec { bits } => write!(f, "EC {bits}-bit"),
            PublicKeyInfo::Ed25519 => f.write_str("Ed25519"),
            PublicKeyInfo::Other(d) => f.write_str(d),
        }
    }
}

/// Parses the PEM blocks of a certificate chain, leaf first.
pub fn parse_pem_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut chain = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem) {
        chain.push(item.map_err(|e| format!("tls.crt is not valid PEM: {e}"))?);
    }
    if chain.is_empty() {
        return Err("tls.crt holds no PEM CERTIFICATE block".into());
    }
    Ok(chain)
}

/// SHA-256 fingerprint as openssl prints it (upper-case hex pairs separated by colons).
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(der);
    let h = hex(&digest).to_uppercase();
    h.as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses a DER leaf with x509-parser.
pub fn parse_leaf(der: &CertificateDer<'_>, source: &str) -> Result<LeafInfo, String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| format!("the certificate is not valid X.509 DER: {e}"))?;
    let dns_names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(format!("the subjectAltName extension is malformed: {e}")),
    };
    let ts = |t: &ASN1Time| {
        Timestamp::from_second(t.timestamp())
            .map_err(|e| format!("certificate date out of range: {e}"))
    };
    let public_key = match cert.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => PublicKeyInfo::Rsa {
            bits: rsa.key_size(),
        },
        Ok(x509_parser::public_key::PublicKey::EC(ec)) => PublicKeyInfo::Ec {
            bits: ec.key_size(),
        },
        Ok(x509_parser::public_key::PublicKey::Unknown(_))
            if cert.public_key().algorithm.algorithm
                == x509_parser::oid_registry::OID_SIG_ED25519 =>
        {
            PublicKeyInfo::Ed25519
        }
        Ok(other) => PublicKeyInfo::Other(format!("{other:?}").chars().take(40).collect()),
        Err(e) => PublicKeyInfo::Other(format!("unparsable public key: {e}")),
    };
    Ok(LeafInfo {
        evidence: CertificateEvidence {
            source: source.to_string(),
            subject: cert.subject().to_string(),
            dns_names,
            issuer: cert.issuer().to_string(),
            serial: cert.raw_serial_as_string(),
            sha256_fingerprint: fingerprint(der.as_ref()),
            not_before: ts(&cert.validity().not_before)?,
            not_after: ts(&cert.validity().not_after)?,
        },
        public_key,
        spki_der: cert.public_key().raw.to_vec(),
    })
}

/// RFC 6125 section 6.4: a presented name matches `hostname` exactly (case-insensitively), or
/// it is a wildcard `*.rest` whose `*` is the whole left-most label and stands for exactly one
/// label. A wildcard never matches the apex (`*.example.com` does not match `example.com`) and
/// needs at least two labels after it.
pub fn name_matches(presented: &str, hostname: &str) -> bool {
    let presented = presented.trim_end_matches('.').to_ascii_lowercase();
    let hostname = hostname.trim_end_matches('.').to_ascii_lowercase();
    if let Some(rest) = presented.strip_prefix("*.") {
        if rest.contains('*') || rest.split('.').count() < 2 {
            return false;
        }
        match hostname.split_once('.') {
            Some((first, host_rest)) => !first.is_empty() && host_rest == rest,
            None => false,
        }
    } else {
        !presented.contains('*') && presented == hostname
    }
}

/// Whether any of `names` covers `hostname`.
pub fn covers(names: &[String], hostname: &str) -> bool {
    names.iter().any(|n| name_matches(n, hostname))
}

/// RSA under 2048 bits and EC under 256 bits are refused by browsers and CAs.
fn weakness(key: &PublicKeyInfo) -> Option<String> {
    match key {
        PublicKeyInfo::Rsa { bits } if *bits < 2048 => Some(format!(
            "an RSA key of {bits} bits (at least 2048 are required)"
        )),
        PublicKeyInfo::Ec { bits } if *bits < 256 => Some(format!(
            "an EC key of {bits} bits (at least 256 are required)"
        )),
        _ => None,
    }
}

/// Whether the private key belongs to the certificate's public key.
fn key_matches(key: &SecretKey, spki_der: &[u8]) -> Result<bool, String> {
    let der = PrivateKeyDer::from_pem_slice(&key.0)
        .map_err(|_| "tls.key is not a PEM private key (PKCS#8, PKCS#1 or SEC1)".to_string())?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&der).map_err(|_| {
        "tls.key is a private key of a type or size this operator cannot load".to_string()
    })?;
    let public = signing
        .public_key()
        .ok_or_else(|| "the public half of tls.key cannot be derived".to_string())?;
    Ok(public.as_ref() == spki_der)
}

const REMEDY: &str =
    "request or renew the certificate through the CDN's Certificate Provisioning System (step 1)";

/// Evaluates step 1. `chain_verified` is the result of verifying the chain for `hostname` at
/// `now` against the trust anchors (computed by the observer, which holds the roots).
pub fn evaluate(
    input: &CertificateInput,
    chain_verified: Option<&Result<(), ChainProblem>>,
    hostname: &str,
    expiry_warning: Duration,
    now: Timestamp,
) -> CertificateFinding {
    let finding = |status, reason, message: String| CertificateFinding {
        verdict: Verdict::new(ConditionType::CertificateValid, status, reason, message),
        evidence: None,
        dns_names: None,
        changes_at: Vec::new(),
    };
    let (source, chain, key) = match input {
        CertificateInput::Secret { name, content } => match content {
            SecretContent::NotFound => {
                return finding(
                    ConditionStatus::False,
                    Reason::SecretNotFound,
                    format!(
                        "Secret {name} named in spec.certificate.secretRef does not exist in this namespace; create it as a kubernetes.io/tls Secret with the certificate from the CDN's Certificate Provisioning System, or fix the name."
                    ),
                );
            }
            SecretContent::ReadFailed(e) => {
                return finding(
                    ConditionStatus::Unknown,
                    Reason::SecretInvalid,
                    format!("Secret {name} could not be read: {e}; will retry."),
                );
            }
            SecretContent::Invalid(problem) => {
                return finding(
                    ConditionStatus::False,
                    Reason::SecretInvalid,
                    format!(
                        "Secret {name} is not a usable TLS Secret: {problem}. It must be of type kubernetes.io/tls with the PEM certificate chain in tls.crt and the key in tls.key."
                    ),
                );
            }
            SecretContent::Tls { cert_pem, key_pem } => match parse_pem_chain(cert_pem) {
                Ok(chain) => (format!("Secret/{name}"), chain, key_pem.as_ref()),
                Err(e) => {
                    return finding(
                        ConditionStatus::False,
                        Reason::CertificateUnparsable,
                        format!(
                            "Secret {name}: {e}; put the PEM certificate chain (leaf first) in tls.crt."
                        ),
                    );
                }
            },
        },
        CertificateInput::Edge { endpoint, chain } => {
            (format!("Edge/{}", endpoint.address), chain.clone(), None)
        }
        CertificateInput::EdgeUnavailable { detail } => {
            return finding(
                ConditionStatus::Unknown,
                Reason::CertificateUnavailable,
                format!(
                    "no spec.certificate.secretRef is set, so the certificate served by the CDN edge is checked, but no edge returned one: {detail}. Fix the edge first (see EdgeServing), or reference the certificate's Secret."
                ),
            );
        }
    };
    let Some(leaf_der) = chain.first() else {
        return finding(
            ConditionStatus::False,
            Reason::CertificateUnparsable,
            format!("{source} holds no certificate."),
        );
    };
    let leaf = match parse_leaf(leaf_der, &source) {
        Ok(l) => l,
        Err(e) => {
            return finding(
                ConditionStatus::False,
                Reason::CertificateUnparsable,
                format!("{source}: {e}; {REMEDY}."),
            );
        }
    };
    let ev = &leaf.evidence;
    let what = format!(
        "certificate {} (subject {}, DNS names {}, issuer {}, valid {} to {})",
        source,
        ev.subject,
        describe_names(&ev.dns_names),
        ev.issuer,
        ev.not_before,
        ev.not_after
    );
    let warn_at = ev
        .not_after
        .checked_sub(
            jiff::SignedDuration::try_from(expiry_warning).unwrap_or(jiff::SignedDuration::ZERO),
        )
        .unwrap_or(ev.not_after);
    let mut changes_at: Vec<Timestamp> = [ev.not_before, warn_at, ev.not_after]
        .into_iter()
        .filter(|t| *t > now)
        .collect();
    changes_at.sort();
    let done = |status, reason, message: String| CertificateFinding {
        verdict: Verdict::new(ConditionType::CertificateValid, status, reason, message),
        evidence: Some(leaf.evidence.clone()),
        dns_names: Some(leaf.evidence.dns_names.clone()),
        changes_at: changes_at.clone(),
    };

    if let Some(weak) = weakness(&leaf.public_key) {
        return done(
            ConditionStatus::False,
            Reason::WeakKey,
            format!("{what} has {weak}; {REMEDY} with a stronger key."),
        );
    }
    if let Some(key) = key {
        match key_matches(key, &leaf.spki_der) {
            Ok(true) => {}
            Ok(false) => {
                return done(
                    ConditionStatus::False,
                    Reason::KeyMismatch,
                    format!(
                        "tls.key in {source} does not belong to {what}; put the private key that was generated with this certificate's request in tls.key."
                    ),
                );
            }
            Err(e) => {
                return done(
                    ConditionStatus::False,
                    Reason::SecretInvalid,
                    format!("{source}: {e}."),
                );
            }
        }
    } else if matches!(input, CertificateInput::Secret { .. }) {
        return done(
            ConditionStatus::False,
            Reason::SecretInvalid,
            format!(
                "{source} has no tls.key; a kubernetes.io/tls Secret holds the certificate's private key in tls.key."
            ),
        );
    }
    if now < ev.not_before {
        return done(
            ConditionStatus::False,
            Reason::NotYetValid,
            format!(
                "{what} is not valid until {} ({}); wait, or {REMEDY}.",
                ev.not_before,
                ago_or_in(ev.not_before, now)
            ),
        );
    }
    if now >= ev.not_after {
        return done(
            ConditionStatus::False,
            Reason::Expired,
            format!(
                "{what} expired on {} ({}); {REMEDY}.",
                ev.not_after,
                ago_or_in(ev.not_after, now)
            ),
        );
    }
    if !covers(&ev.dns_names, hostname) {
        return done(
            ConditionStatus::False,
            Reason::HostnameNotCovered,
            format!(
                "{what} does not cover {hostname} (a wildcard covers exactly one label and not the apex); {REMEDY} with {hostname} among its names."
            ),
        );
    }
    match chain_verified {
        Some(Ok(())) | None => {}
        Some(Err(problem)) => {
            return done(
                ConditionStatus::False,
                Reason::ChainUntrusted,
                format!(
                    "{what} does not verify to a trusted root: {problem}; include the intermediate certificates after the leaf in tls.crt, or pass the private CA with --ca-file."
                ),
            );
        }
    }
    if now >= warn_at {
        return done(
            ConditionStatus::True,
            Reason::ExpiringSoon,
            format!(
                "{what} covers {hostname} but expires on {} ({}); renew it through the CDN's Certificate Provisioning System soon.",
                ev.not_after,
                ago_or_in(ev.not_after, now)
            ),
        );
    }
    done(
        ConditionStatus::True,
        Reason::Verified,
        match key {
            Some(_) => format!("{what} covers {hostname}, its key matches and its chain verifies."),
            None => format!("{what} covers {hostname} and its chain verifies."),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::tls::TlsProber;
    use testkit::pki::{Leaf, LeafSpec, TestCa, self_signed};

    const WARN: Duration = Duration::from_secs(30 * 86_400);
    const HOST: &str = "www.shop.example";

    fn secret(cert_pem: &str, key_pem: Option<&str>) -> CertificateInput {
        CertificateInput::Secret {
            name: "www-tls".into(),
            content: SecretContent::Tls {
                cert_pem: cert_pem.as_bytes().to_vec(),
                key_pem: key_pem.map(|k| SecretKey::from_pem(k.as_bytes().to_vec())),
            },
        }
    }

    /// Evaluates `input` as the observer would: chain verified against `ca` at now.
    fn eval_with(input: &CertificateInput, ca: &TestCa, host: &str) -> CertificateFinding {
        let now = Timestamp::now();
        let prober = TlsProber::new(vec![ca.cert_der()]).expect("prober");
        let verified = match input {
            CertificateInput::Secret {
                content: SecretContent::Tls { cert_pem, .. },
                ..
            } => parse_pem_chain(cert_pem)
                .ok()
                .map(|c| prober.verify_chain(&c, host, rustls_pki_types::UnixTime::now())),
            _ => None,
        };
        evaluate(input, verified.as_ref(), host, WARN, now)
    }

    fn reason_of(leaf: &Leaf, ca: &TestCa, host: &str) -> (ConditionStatus, Reason, String) {
        let f = eval_with(&secret(&leaf.chain_pem, Some(&leaf.key_pem)), ca, host);
        (f.verdict.status, f.verdict.reason, f.verdict.message)
    }

    #[test]
    fn valid_certificate_is_true_with_evidence() {
        let ca = TestCa::new("Test Root");
        let leaf = ca.issue(LeafSpec::valid_for([HOST, "shop.example"]));
        let f = eval_with(&secret(&leaf.chain_pem, Some(&leaf.key_pem)), &ca, HOST);
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
        assert_eq!(ev.sha256_fingerprint, fingerprint(leaf.cert_der.as_ref()));
        assert!(!ev.serial.is_empty());
        assert!(
            f.changes_at.len() == 2,
            "warning threshold and expiry are ahead: {:?}",
            f.changes_at
        );
    }

    #[test]
    fn expired() {
        let ca = TestCa::new("Test Root");
        let (s, r, m) = reason_of(&ca.issue(LeafSpec::valid_for([HOST]).expired()), &ca, HOST);
        assert_eq!((s, r), (ConditionStatus::False, Reason::Expired));
        assert!(m.contains("expired on") && m.contains("ago"), "{m}");
    }

    #[test]
    fn not_yet_valid() {
        let ca = TestCa::new("Test Root");
        let (s, r, _) = reason_of(
            &ca.issue(LeafSpec::valid_for([HOST]).not_yet_valid()),
            &ca,
            HOST,
        );
        assert_eq!((s, r), (ConditionStatus::False, Reason::NotYetValid));
    }

    #[test]
    fn expiring_soon_is_still_true() {
        let ca = TestCa::new("Test Root");
        let (s, r, m) = reason_of(
            &ca.issue(LeafSpec::valid_for([HOST]).expiring_in(10)),
            &ca,
            HOST,
        );
        assert_eq!((s, r), (ConditionStatus::True, Reason::ExpiringSoon));
        assert!(m.contains("in 9 days") || m.contains("in 10 days"), "{m}");
    }

    #[test]
    fn wildcard_covers_one_label_only() {
        let ca = TestCa::new("Test Root");
        let leaf = ca.issue(LeafSpec::valid_for(["*.shop.example"]));
        assert_eq!(reason_of(&leaf, &ca, HOST).1, Reason::Verified);
        let (s, r, m) = reason_of(&leaf, &ca, "a.www.shop.example");
        assert_eq!((s, r), (ConditionStatus::False, Reason::HostnameNotCovered));
        assert!(m.contains("*.shop.example"), "{m}");
    }

    #[test]
    fn san_mismatch() {
        let ca = TestCa::new("Test Root");
        let (s, r, m) = reason_of(
            &ca.issue(LeafSpec::valid_for(["api.shop.example"])),
            &ca,
            HOST,
        );
        assert_eq!((s, r), (ConditionStatus::False, Reason::HostnameNotCovered));
        assert!(m.contains("api.shop.example") && m.contains(HOST), "{m}");
    }

    #[test]
    fn key_mismatch() {
        let ca = TestCa::new("Test Root");
        let leaf = ca.issue(LeafSpec::valid_for([HOST]));
        let other = ca.issue(LeafSpec::valid_for([HOST]));
        let f = eval_with(&secret(&leaf.chain_pem, Some(&other.key_pem)), &ca, HOST);
        assert_eq!(
            (f.verdict.status, f.verdict.reason),
            (ConditionStatus::False, Reason::KeyMismatch)
        );
        assert!(!f.verdict.message.contains("PRIVATE KEY"));
    }

    #[test]
    fn leaf_without_its_intermediate_is_untrusted() {
        let root = TestCa::new("Test Root");
        let intermediate = root.intermediate("Test Intermediate");
        let leaf = intermediate.issue(LeafSpec::valid_for([HOST]));
        let f = eval_with(&secret(&leaf.cert_pem, Some(&leaf.key_pem)), &root, HOST);
        assert_eq!(
            (f.verdict.status, f.verdict.reason),
            (ConditionStatus::False, Reason::ChainUntrusted),
            "{}",
            f.verdict.message
        );
        assert!(
            f.verdict.message.contains("intermediate"),
            "{}",
            f.verdict.message
        );
        assert_eq!(
            reason_of(&leaf, &root, HOST).1,
            Reason::Verified,
            "with the intermediate in tls.crt"
        );
    }

    #[test]
    fn self_signed_is_untrusted() {
        let ca = TestCa::new("Test Root");
        let leaf = self_signed([HOST]);
        assert_eq!(reason_of(&leaf, &ca, HOST).1, Reason::ChainUntrusted);
    }

    #[test]
    fn garbage_pem_is_unparsable() {
        let ca = TestCa::new("Test Root");
        for garbage in [
            "not a certificate at all",
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        ] {
            let f = eval_with(&secret(garbage, None), &ca, HOST);
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
        let ca = TestCa::new("Test Root");
        let leaf = ca.issue_with_rsa_key(LeafSpec::valid_for([HOST]), 1024);
        let (s, r, m) = reason_of(&leaf, &ca, HOST);
        assert_eq!((s, r), (ConditionStatus::False, Reason::WeakKey));
        assert!(m.contains("1024"), "{m}");
    }

    #[test]
    fn missing_key_and_bad_secrets() {
        let ca = TestCa::new("Test Root");
        let leaf = ca.issue(LeafSpec::valid_for([HOST]));
        let f = eval_with(&secret(&leaf.chain_pem, None), &ca, HOST);
        assert_eq!(f.verdict.reason, Reason::SecretInvalid);
        let nf = CertificateInput::Secret {
            name: "gone".into(),
            content: SecretContent::NotFound,
        };
        let f = evaluate(&nf, None, HOST, WARN, Timestamp::now());
        assert_eq!(
            (f.verdict.status, f.verdict.reason),
            (ConditionStatus::False, Reason::SecretNotFound)
        );
        let inv = CertificateInput::Secret {
            name: "opaque".into(),
            content: SecretContent::Invalid("its type is Opaque, not kubernetes.io/tls".into()),
        };
        assert_eq!(
            evaluate(&inv, None, HOST, WARN, Timestamp::now())
                .verdict
                .reason,
            Reason::SecretInvalid
        );
        let rf = CertificateInput::Secret {
            name: "x".into(),
            content: SecretContent::ReadFailed("timeout".into()),
        };
        assert_eq!(
            evaluate(&rf, None, HOST, WARN, Timestamp::now())
                .verdict
                .status,
            ConditionStatus::Unknown
        );
    }

    #[test]
    fn wildcards_follow_rfc_6125() {
        assert!(name_matches("www.shop.example", "WWW.shop.example"));
        assert!(name_matches("*.shop.example", "www.shop.example"));
        assert!(!name_matches("*.shop.example", "shop.example"), "apex");
        assert!(
            !name_matches("*.shop.example", "a.b.shop.example"),
            "two labels"
        );
        assert!(!name_matches("*.example", "shop.example"), "too broad");
        assert!(
            !name_matches("w*.shop.example", "www.shop.example"),
            "partial"
        );
        assert!(
            !name_matches("www.*.example", "www.shop.example"),
            "not left-most"
        );
        assert!(!name_matches("shop.example", "www.shop.example"));
    }

    #[test]
    fn fingerprint_is_openssl_style() {
        let f = fingerprint(b"abc");
        assert!(f.starts_with("BA:78:16:BF"), "{f}");
        assert_eq!(f.len(), 32 * 3 - 1);
    }

    #[test]
    fn secret_key_debug_is_redacted() {
        let k = SecretKey::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n".to_vec());
        assert_eq!(format!("{k:?}"), "SecretKey(<redacted>)");
        let input = SecretContent::Tls {
            cert_pem: vec![],
            key_pem: Some(k),
        };
        assert!(!format!("{input:?}").contains("PRIVATE"));
    }
}
