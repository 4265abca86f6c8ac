//! X.509 description: what a certificate or chain is, in the words a person reads (x509-parser).

use crate::api::CertificateEvidence;
use jiff::Timestamp;
use rustls_pki_types::{CertificateDer, pem::PemObject};
use x509_parser::prelude::*;

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
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses a DER leaf. `source` says where it came from (`Secret/NAME`, `Edge/ADDRESS`).
pub fn parse_leaf(der: &CertificateDer<'_>, source: &str) -> Result<LeafInfo, String> {
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
        public_key: public_key(&cert),
        spki_der: cert.public_key().raw.to_vec(),
    })
}

fn public_key(cert: &X509Certificate<'_>) -> PublicKeyInfo {
    use x509_parser::public_key::PublicKey;
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) => PublicKeyInfo::Rsa {
            bits: rsa.key_size(),
        },
        Ok(PublicKey::EC(ec)) => PublicKeyInfo::Ec {
            bits: ec.key_size(),
        },
        Ok(PublicKey::Unknown(_))
            if cert.public_key().algorithm.algorithm
                == x509_parser::oid_registry::OID_SIG_ED25519 =>
        {
            PublicKeyInfo::Ed25519
        }
        Ok(other) => PublicKeyInfo::Other(format!("{other:?}").chars().take(40).collect()),
        Err(e) => PublicKeyInfo::Other(format!("unparsable public key: {e}")),
    }
}

/// Whether an untrusted chain is a lone self-signed certificate, and what it ends at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UntrustedChain {
    SelfSigned { subject: String },
    EndsAt { subject: String, issuer: String },
    Unreadable,
}

/// What an untrusted chain ends at.
pub fn untrusted_chain(chain: &[CertificateDer<'_>]) -> UntrustedChain {
    let parsed: Vec<_> = chain
        .iter()
        .filter_map(|der| parse_x509_certificate(der).ok().map(|(_, c)| c))
        .collect();
    let (Some(leaf), Some(last)) = (parsed.first(), parsed.last()) else {
        return UntrustedChain::Unreadable;
    };
    if parsed.len() == 1 && leaf.subject() == leaf.issuer() {
        return UntrustedChain::SelfSigned {
            subject: leaf.subject().to_string(),
        };
    }
    UntrustedChain::EndsAt {
        subject: last.subject().to_string(),
        issuer: last.issuer().to_string(),
    }
}

/// The names (DNS and IP) the leaf of `chain` is valid for.
pub fn leaf_names(chain: &[CertificateDer<'_>]) -> Vec<String> {
    chain
        .first()
        .and_then(|der| parse_x509_certificate(der).ok())
        .and_then(|(_, cert)| {
            let san = cert.subject_alternative_name().ok()??;
            Some(
                san.value
                    .general_names
                    .iter()
                    .map(|n| match n {
                        GeneralName::DNSName(d) => (*d).to_owned(),
                        GeneralName::IPAddress(ip) => ip_name(ip),
                        other => other.to_string(),
                    })
                    .collect(),
            )
        })
        .unwrap_or_default()
}

fn ip_name(raw: &[u8]) -> String {
    if let Ok(v4) = <[u8; 4]>::try_from(raw) {
        return std::net::Ipv4Addr::from(v4).to_string();
    }
    if let Ok(v6) = <[u8; 16]>::try_from(raw) {
        return std::net::Ipv6Addr::from(v6).to_string();
    }
    format!("{raw:02x?}")
}

/// Which validity date of a certificate a verifier complained about.
#[derive(Clone, Copy, Debug)]
pub enum ValidityEdge {
    NotBefore,
    NotAfter,
}

/// The subject of the intermediate (not the leaf) whose `edge` date is `at` (UNIX seconds):
/// renewing the leaf would not fix an expired intermediate.
pub fn intermediate_with_date(
    chain: &[CertificateDer<'_>],
    at: i64,
    edge: ValidityEdge,
) -> Option<String> {
    let (index, subject) = chain.iter().enumerate().find_map(|(i, der)| {
        let (_, cert) = parse_x509_certificate(der).ok()?;
        let date = match edge {
            ValidityEdge::NotBefore => cert.validity().not_before.timestamp(),
            ValidityEdge::NotAfter => cert.validity().not_after.timestamp(),
        };
        (date == at).then(|| (i, cert.subject().to_string()))
    })?;
    (index > 0).then_some(subject)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_openssl_style() {
        // SHA-256("abc") = ba7816bf 8f01cfea ... 15ad
        let f = fingerprint(b"abc");
        assert!(f.starts_with("BA:78:16:BF:8F:01:CF:EA"), "{f}");
        assert!(f.ends_with(":15:AD"), "{f}");
        assert_eq!(f.len(), 32 * 3 - 1);
    }

    #[test]
    fn pem_chain_errors_say_what_is_wrong() {
        assert_eq!(
            parse_pem_chain(b"not a certificate"),
            Err("tls.crt holds no PEM CERTIFICATE block".into())
        );
    }

    #[test]
    fn unreadable_chains_are_said_to_be() {
        assert_eq!(untrusted_chain(&[]), UntrustedChain::Unreadable);
        assert!(leaf_names(&[CertificateDer::from(vec![0x30, 0x00])]).is_empty());
    }

    #[test]
    fn ip_names_read_as_addresses() {
        assert_eq!(ip_name(&[192, 0, 2, 1]), "192.0.2.1");
        assert_eq!(ip_name(&[0; 16]), "::");
    }
}
