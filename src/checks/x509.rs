//! X.509 description: what a certificate or chain is, in the words a person reads (x509-parser).
//!
//! Certificates come from the outside world: the evidence built here is bounded (at most
//! [`MAX_EVIDENCE_NAMES`] DNS names, each name and distinguished name cut to a fixed size) and
//! escaped ([`escape_controls`]), so that whatever a certificate holds, the status stays small
//! and `kubectl describe` prints no terminal controls.

use crate::api::CertificateEvidence;
use crate::api::text::{escape_controls, truncate};
use jiff::Timestamp;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use x509_parser::prelude::*;

/// DNS names of a certificate listed in status evidence; the rest are counted in messages.
pub const MAX_EVIDENCE_NAMES: usize = 32;
/// Longest DNS name kept in evidence and messages (a valid one has at most 253 characters).
pub const MAX_NAME_BYTES: usize = 256;
/// Longest subject or issuer distinguished name kept in evidence and messages.
pub const MAX_DN_BYTES: usize = 1024;

/// The parsed identity of a leaf certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafInfo {
    /// What status shows: bounded and escaped.
    pub evidence: CertificateEvidence,
    /// Every DNS name of the certificate, lower-case and as it is: what names are matched
    /// against. Messages show a few and count the rest ([`describe_names`](super::names)).
    pub dns_names: Vec<String>,
    pub public_key: PublicKeyInfo,
    pub spki_der: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKeyInfo {
    Rsa {
        bits: usize,
    },
    /// `curve` is the NIST name (P-256, P-384, P-521) or the curve's OID.
    Ec {
        bits: usize,
        curve: Option<String>,
    },
    Ed25519,
    Other(String),
}

impl std::fmt::Display for PublicKeyInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublicKeyInfo::Rsa { bits } => write!(f, "RSA {bits}-bit"),
            PublicKeyInfo::Ec {
                curve: Some(curve), ..
            } => write!(f, "EC {curve}"),
            PublicKeyInfo::Ec { bits, curve: None } => write!(f, "EC {bits}-bit"),
            PublicKeyInfo::Ed25519 => f.write_str("Ed25519"),
            PublicKeyInfo::Other(d) => f.write_str(d),
        }
    }
}

impl PublicKeyInfo {
    /// The key type as a person names it: "P-521", "RSA 8192-bit", "Ed25519".
    pub fn type_name(&self) -> String {
        match self {
            PublicKeyInfo::Ec {
                curve: Some(curve), ..
            } => curve.clone(),
            other => other.to_string(),
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

/// A name from a certificate as evidence and messages show it: escaped and bounded.
pub fn shown(text: &str, max_bytes: usize) -> String {
    truncate(&escape_controls(text), max_bytes)
}

/// Parses a DER leaf. `source` says where it came from (`Secret/NAME`, `Edge/ADDRESS`).
pub fn parse_leaf(der: &CertificateDer<'_>, source: &str) -> Result<LeafInfo, String> {
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| format!("the certificate is not valid X.509 DER: {e}"))?;
    let dns_names: Vec<String> = match cert.subject_alternative_name() {
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
            source: shown(source, MAX_DN_BYTES),
            subject: shown(&cert.subject().to_string(), MAX_DN_BYTES),
            dns_names: dns_names
                .iter()
                .take(MAX_EVIDENCE_NAMES)
                .map(|n| shown(n, MAX_NAME_BYTES))
                .collect(),
            dns_names_omitted: u32::try_from(dns_names.len().saturating_sub(MAX_EVIDENCE_NAMES))
                .unwrap_or(u32::MAX),
            issuer: shown(&cert.issuer().to_string(), MAX_DN_BYTES),
            serial: truncate(&cert.raw_serial_as_string(), MAX_NAME_BYTES),
            sha256_fingerprint: fingerprint(der.as_ref()),
            not_before: ts(&cert.validity().not_before)?,
            not_after: ts(&cert.validity().not_after)?,
        },
        dns_names,
        public_key: public_key(&cert),
        spki_der: cert.public_key().raw.to_vec(),
    })
}

fn public_key(cert: &X509Certificate<'_>) -> PublicKeyInfo {
    use x509_parser::public_key::PublicKey;
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => PublicKeyInfo::Rsa {
            bits: unsigned_bits(rsa.modulus),
        },
        Ok(PublicKey::EC(ec)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| {
                    curve_name(oid.as_bytes()).map_or_else(|| oid.to_id_string(), str::to_owned)
                });
            let bits = match curve.as_deref() {
                Some("P-256") => 256,
                Some("P-384") => 384,
                Some("P-521") => 521,
                _ => ec.key_size(),
            };
            PublicKeyInfo::Ec { bits, curve }
        }
        Ok(_) if spki.algorithm.algorithm == x509_parser::oid_registry::OID_SIG_ED25519 => {
            PublicKeyInfo::Ed25519
        }
        Ok(_) => PublicKeyInfo::Other(
            algorithm_name(spki.algorithm.algorithm.as_bytes()).map_or_else(
                || {
                    format!(
                        "public key algorithm {}",
                        spki.algorithm.algorithm.to_id_string()
                    )
                },
                str::to_owned,
            ),
        ),
        Err(e) => PublicKeyInfo::Other(format!("unparsable public key: {e}")),
    }
}

/// Bits of a DER INTEGER's magnitude (x509-parser's count assumes a leading zero byte).
fn unsigned_bits(integer: &[u8]) -> usize {
    let magnitude = strip_zeros(integer);
    magnitude.first().map_or(0, |first| {
        8 * magnitude.len() - first.leading_zeros() as usize
    })
}

fn strip_zeros(integer: &[u8]) -> &[u8] {
    let start = integer
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(integer.len());
    &integer[start..]
}

// OIDs as their DER content bytes.
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_ED448: &[u8] = &[0x2b, 0x65, 0x71];

fn curve_name(oid: &[u8]) -> Option<&'static str> {
    match oid {
        OID_P256 => Some("P-256"),
        OID_P384 => Some("P-384"),
        OID_P521 => Some("P-521"),
        _ => None,
    }
}

fn algorithm_name(oid: &[u8]) -> Option<&'static str> {
    match oid {
        OID_ED25519 => Some("Ed25519"),
        OID_ED448 => Some("Ed448"),
        _ => None,
    }
}

/// The public half of a key, as a certificate states it and as a private key file can state it
/// without any cryptography: RSA's modulus and exponent are part of the private key, and EC and
/// EdDSA key files usually carry their public key. Integers without leading zeros.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyHalf {
    Rsa {
        modulus: Vec<u8>,
        exponent: Vec<u8>,
    },
    /// `curve`: the curve OID (None: a SEC1 key that does not name it); `point`: the public
    /// point (None: a key file without it).
    Ec {
        curve: Option<Vec<u8>>,
        point: Option<Vec<u8>>,
    },
    /// Any other algorithm (Ed25519, Ed448...): its OID and public key when known.
    Other {
        algorithm: Vec<u8>,
        key: Option<Vec<u8>>,
    },
}

impl KeyHalf {
    /// Whether this half (from a private key) and `certificate`'s are of one key pair. None when
    /// it cannot be told: same type, but the private key file does not state its public key.
    pub fn matches(&self, certificate: &KeyHalf) -> Option<bool> {
        match (self, certificate) {
            (KeyHalf::Rsa { .. }, KeyHalf::Rsa { .. }) => Some(self == certificate),
            (
                KeyHalf::Ec { curve: c1, point },
                KeyHalf::Ec {
                    curve: c2,
                    point: Some(theirs),
                },
            ) => {
                if let (Some(c1), Some(c2)) = (c1, c2)
                    && c1 != c2
                {
                    return Some(false);
                }
                point.as_ref().map(|ours| same_point(ours, theirs))
            }
            (
                KeyHalf::Other { algorithm: a1, key },
                KeyHalf::Other {
                    algorithm: a2,
                    key: Some(theirs),
                },
            ) => {
                if a1 != a2 {
                    return Some(false);
                }
                key.as_ref().map(|ours| ours == theirs)
            }
            _ => Some(false),
        }
    }
}

/// Two encodings of an EC point: equal, or one compressed (02/03 || X) and one not (04 || X || Y)
/// with the same X and the parity of Y the prefix says.
fn same_point(a: &[u8], b: &[u8]) -> bool {
    let compressed_matches = |c: &[u8], u: &[u8]| match (c.split_first(), u.split_first()) {
        (Some((&prefix @ (2 | 3), x)), Some((&4, xy))) if xy.len() == 2 * x.len() => {
            xy[..x.len()] == *x && xy.last().map(|y| y & 1) == Some(prefix - 2)
        }
        _ => false,
    };
    a == b || compressed_matches(a, b) || compressed_matches(b, a)
}

/// The public half of a certificate's SubjectPublicKeyInfo.
pub fn certificate_key_half(spki_der: &[u8]) -> Result<KeyHalf, String> {
    let bad = |what: &str| format!("the certificate's public key is malformed ({what})");
    let spki = Der::new(spki_der).only(SEQUENCE).map_err(|e| bad(&e))?;
    let mut spki = Der::new(spki);
    let mut algorithm = Der::new(spki.expect(SEQUENCE).map_err(|e| bad(&e))?);
    let oid = algorithm.expect(OID).map_err(|e| bad(&e))?;
    let parameters = algorithm.next_if(OID);
    let key = bit_string(spki.expect(BIT_STRING).map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    Ok(match oid {
        OID_RSA_ENCRYPTION => {
            let mut rsa = Der::new(Der::new(key).only(SEQUENCE).map_err(|e| bad(&e))?);
            KeyHalf::Rsa {
                modulus: strip_zeros(rsa.expect(INTEGER).map_err(|e| bad(&e))?).to_vec(),
                exponent: strip_zeros(rsa.expect(INTEGER).map_err(|e| bad(&e))?).to_vec(),
            }
        }
        OID_EC_PUBLIC_KEY => KeyHalf::Ec {
            curve: parameters.map(<[u8]>::to_vec),
            point: Some(key.to_vec()),
        },
        other => KeyHalf::Other {
            algorithm: other.to_vec(),
            key: Some(key.to_vec()),
        },
    })
}

/// The public half a private key states (PKCS#8, PKCS#1 or SEC1), read without loading the
/// key: for key types or sizes a crypto provider cannot load (P-521, RSA over 4096 bits).
pub fn private_key_half(key: &PrivateKeyDer<'_>) -> Result<KeyHalf, String> {
    let bad = |e: String| format!("tls.key is not a well-formed private key ({e})");
    match key {
        PrivateKeyDer::Pkcs1(der) => rsa_private_half(der.secret_pkcs1_der()).map_err(bad),
        PrivateKeyDer::Sec1(der) => ec_private_half(der.secret_sec1_der(), None).map_err(bad),
        PrivateKeyDer::Pkcs8(der) => pkcs8_half(der.secret_pkcs8_der()).map_err(bad),
        _ => Err("tls.key is a private key of an unknown kind".into()),
    }
}

/// OneAsymmetricKey (RFC 5958): version, algorithm, privateKey, [0] attributes, [1] publicKey.
fn pkcs8_half(der: &[u8]) -> Result<KeyHalf, String> {
    let mut key = Der::new(Der::new(der).only(SEQUENCE)?);
    key.expect(INTEGER)?;
    let mut algorithm = Der::new(key.expect(SEQUENCE)?);
    let oid = algorithm.expect(OID)?;
    let parameters = algorithm.next_if(OID);
    let private = key.expect(OCTET_STRING)?;
    key.next_if(0xa0);
    let public = match key.next_if(0x81) {
        Some(bits) => Some(bit_string(bits)?.to_vec()),
        None => None,
    };
    match oid {
        OID_RSA_ENCRYPTION => rsa_private_half(private),
        OID_EC_PUBLIC_KEY => match ec_private_half(private, parameters)? {
            KeyHalf::Ec { curve, point: None } => Ok(KeyHalf::Ec {
                curve,
                point: public,
            }),
            half => Ok(half),
        },
        other => Ok(KeyHalf::Other {
            algorithm: other.to_vec(),
            key: public,
        }),
    }
}

/// RSAPrivateKey (RFC 8017): version, modulus, publicExponent, ...
fn rsa_private_half(der: &[u8]) -> Result<KeyHalf, String> {
    let mut rsa = Der::new(Der::new(der).only(SEQUENCE)?);
    rsa.expect(INTEGER)?;
    Ok(KeyHalf::Rsa {
        modulus: strip_zeros(rsa.expect(INTEGER)?).to_vec(),
        exponent: strip_zeros(rsa.expect(INTEGER)?).to_vec(),
    })
}

/// ECPrivateKey (RFC 5915): version, privateKey, [0] parameters, [1] publicKey.
fn ec_private_half(der: &[u8], curve: Option<&[u8]>) -> Result<KeyHalf, String> {
    let mut ec = Der::new(Der::new(der).only(SEQUENCE)?);
    ec.expect(INTEGER)?;
    ec.expect(OCTET_STRING)?;
    let named = match ec.next_if(0xa0) {
        Some(parameters) => Some(Der::new(parameters).only(OID)?),
        None => None,
    };
    let point = match ec.next_if(0xa1) {
        Some(public) => Some(bit_string(Der::new(public).only(BIT_STRING)?)?.to_vec()),
        None => None,
    };
    Ok(KeyHalf::Ec {
        curve: named.or(curve).map(<[u8]>::to_vec),
        point,
    })
}

/// The bytes of a BIT STRING's value without its unused-bits count (which must be 0 for keys).
fn bit_string(value: &[u8]) -> Result<&[u8], String> {
    match value.split_first() {
        Some((0, bits)) => Ok(bits),
        _ => Err("a bit string of whole bytes was expected".into()),
    }
}

const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const SEQUENCE: u8 = 0x30;

/// A minimal DER reader (single-byte tags, definite lengths): enough for key structures.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Der { rest }
    }

    /// The next element's tag and value.
    fn read(&mut self) -> Result<(u8, &'a [u8]), String> {
        let [tag, first, rest @ ..] = self.rest else {
            return Err("it ends early".into());
        };
        if tag & 0x1f == 0x1f {
            return Err("multi-byte tags are not expected".into());
        }
        let (len, rest) = if *first < 0x80 {
            (usize::from(*first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err("a length is malformed".into());
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |len, b| (len << 8) | usize::from(*b));
            (len, &rest[n..])
        };
        if rest.len() < len {
            return Err("it ends early".into());
        }
        let (value, rest) = rest.split_at(len);
        self.rest = rest;
        Ok((*tag, value))
    }

    fn expect(&mut self, tag: u8) -> Result<&'a [u8], String> {
        match self.read()? {
            (t, value) if t == tag => Ok(value),
            (t, _) => Err(format!("tag {t:#04x} where {tag:#04x} was expected")),
        }
    }

    /// The value of the next element when it has `tag`; nothing is consumed otherwise.
    fn next_if(&mut self, tag: u8) -> Option<&'a [u8]> {
        if self.rest.first() != Some(&tag) {
            return None;
        }
        let mut ahead = Der { rest: self.rest };
        let (_, value) = ahead.read().ok()?;
        self.rest = ahead.rest;
        Some(value)
    }

    /// The value of the only element, which must have `tag`.
    fn only(mut self, tag: u8) -> Result<&'a [u8], String> {
        let value = self.expect(tag)?;
        if !self.rest.is_empty() {
            return Err("trailing data".into());
        }
        Ok(value)
    }
}

/// A certificate too large for the verifier: rustls' webpki refuses a certificate whose
/// to-be-signed part is 64 KiB or more (it reads DER lengths of at most two bytes) and reports it
/// as a bad encoding. Thousands of DNS names make such a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Oversized {
    /// 1 for the leaf.
    pub position: usize,
    pub bytes: usize,
    /// DNS names it holds.
    pub dns_names: usize,
}

/// The webpki limit: a DER length that needs more than two bytes.
const VERIFIER_MAX_TBS: usize = 0xffff;

/// The first certificate of `chain` too large for the verifier, if any.
pub fn oversized(chain: &[CertificateDer<'_>]) -> Option<Oversized> {
    chain.iter().enumerate().find_map(|(i, der)| {
        let mut outer = Der::new(Der::new(der.as_ref()).read().ok()?.1);
        let (_, tbs) = outer.read().ok()?;
        (tbs.len() >= VERIFIER_MAX_TBS).then(|| Oversized {
            position: i + 1,
            bytes: der.as_ref().len(),
            dns_names: parse_x509_certificate(der)
                .ok()
                .and_then(|(_, c)| {
                    c.subject_alternative_name().ok().flatten().map(|san| {
                        san.value
                            .general_names
                            .iter()
                            .filter(|n| matches!(n, GeneralName::DNSName(_)))
                            .count()
                    })
                })
                .unwrap_or(0),
        })
    })
}

/// A chain whose first certificate is not its leaf: an intermediate (or root) put first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrongOrder {
    /// Subject of the certificate found first.
    pub first: String,
    /// Whether that one is a CA certificate (basicConstraints cA); else it issued a later one.
    pub first_is_ca: bool,
    /// Index in the chain of the certificate that looks like the leaf, if one does.
    pub leaf: Option<usize>,
}

/// Whether `chain` starts with a CA certificate instead of its leaf: the first certificate
/// issued a later one, or it is a CA and a later one is not.
pub fn wrong_order(chain: &[CertificateDer<'_>]) -> Option<WrongOrder> {
    if chain.len() < 2 {
        return None;
    }
    let parsed: Vec<X509Certificate<'_>> = chain
        .iter()
        .map(|der| parse_x509_certificate(der).ok().map(|(_, c)| c))
        .collect::<Option<_>>()?;
    let is_ca =
        |c: &X509Certificate<'_>| matches!(c.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    // `issuer` signed `cert`: its name is cert's issuer, and cert is not self-issued.
    let issued = |issuer: usize, cert: usize| {
        issuer != cert
            && chain[issuer] != chain[cert]
            && parsed[cert].issuer().as_raw() == parsed[issuer].subject().as_raw()
            && parsed[cert].issuer().as_raw() != parsed[cert].subject().as_raw()
    };
    let first_issued_a_later = (1..chain.len()).any(|j| issued(0, j));
    let ca_before_leaf = is_ca(&parsed[0]) && parsed[1..].iter().any(|c| !is_ca(c));
    if !first_issued_a_later && !ca_before_leaf {
        return None;
    }
    let issues_none = |j: usize| !(0..chain.len()).any(|k| issued(j, k));
    let leaf = (0..chain.len())
        .find(|&j| !is_ca(&parsed[j]) && issues_none(j))
        .or_else(|| (1..chain.len()).find(|&j| issues_none(j)));
    Some(WrongOrder {
        first: shown(&parsed[0].subject().to_string(), MAX_DN_BYTES),
        first_is_ca: is_ca(&parsed[0]),
        leaf,
    })
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
            subject: shown(&leaf.subject().to_string(), MAX_DN_BYTES),
        };
    }
    UntrustedChain::EndsAt {
        subject: shown(&last.subject().to_string(), MAX_DN_BYTES),
        issuer: shown(&last.issuer().to_string(), MAX_DN_BYTES),
    }
}

/// The names (DNS and IP) the leaf of `chain` is valid for, for messages: at most
/// [`MAX_EVIDENCE_NAMES`], each escaped and bounded, then one "and N more" entry for the rest.
pub fn leaf_names(chain: &[CertificateDer<'_>]) -> Vec<String> {
    let all: Vec<String> = chain
        .first()
        .and_then(|der| parse_x509_certificate(der).ok())
        .and_then(|(_, cert)| {
            let san = cert.subject_alternative_name().ok()??;
            Some(
                san.value
                    .general_names
                    .iter()
                    .map(|n| match n {
                        GeneralName::DNSName(d) => shown(d, MAX_NAME_BYTES),
                        GeneralName::IPAddress(ip) => ip_name(ip),
                        other => shown(&other.to_string(), MAX_NAME_BYTES),
                    })
                    .collect(),
            )
        })
        .unwrap_or_default();
    let more = all.len().saturating_sub(MAX_EVIDENCE_NAMES);
    let mut names: Vec<String> = all.into_iter().take(MAX_EVIDENCE_NAMES).collect();
    if more > 0 {
        names.push(format!("and {more} more"));
    }
    names
}

fn ip_name(raw: &[u8]) -> String {
    if let Ok(v4) = <[u8; 4]>::try_from(raw) {
        return std::net::Ipv4Addr::from(v4).to_string();
    }
    if let Ok(v6) = <[u8; 16]>::try_from(raw) {
        return std::net::Ipv6Addr::from(v6).to_string();
    }
    format!("{:02x?}", &raw[..raw.len().min(16)])
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
        (date == at).then(|| (i, shown(&cert.subject().to_string(), MAX_DN_BYTES)))
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
    fn key_types_are_named_as_people_name_them() {
        use testkit::pki::{EcKeyFile, LeafSpec, TestCa};
        let ca = TestCa::new("Test Root");
        let p521 = ca.issue_with_p521_key(LeafSpec::valid_for(["a.example"]), EcKeyFile::Pkcs8);
        let leaf = parse_leaf(&p521.cert_der, "Secret/x").unwrap();
        assert_eq!(
            leaf.public_key,
            PublicKeyInfo::Ec {
                bits: 521,
                curve: Some("P-521".into())
            }
        );
        assert_eq!(leaf.public_key.type_name(), "P-521");
        assert_eq!(leaf.public_key.to_string(), "EC P-521");
        let p256 = parse_leaf(&ca.issue(LeafSpec::valid_for(["a.example"])).cert_der, "x").unwrap();
        assert_eq!(p256.public_key.type_name(), "P-256");
        assert_eq!(
            PublicKeyInfo::Rsa { bits: 8192 }.type_name(),
            "RSA 8192-bit"
        );
        assert_eq!(unsigned_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(unsigned_bits(&[0x7f, 0xff]), 15, "no leading zero byte");
        assert_eq!(unsigned_bits(&[0, 0]), 0);
    }

    #[test]
    fn ec_points_compare_across_encodings() {
        let x = [7u8; 4];
        let y_odd = [9u8; 4];
        let uncompressed = [&[4u8][..], &x, &y_odd].concat();
        let compressed_odd = [&[3u8][..], &x].concat();
        let compressed_even = [&[2u8][..], &x].concat();
        assert!(same_point(&uncompressed, &uncompressed));
        assert!(same_point(&compressed_odd, &uncompressed));
        assert!(same_point(&uncompressed, &compressed_odd));
        assert!(!same_point(&compressed_even, &uncompressed));
        assert!(!same_point(&[4, 1, 2], &uncompressed));
        let curve = |c: &[u8]| Some(c.to_vec());
        let ours = KeyHalf::Ec {
            curve: curve(OID_P521),
            point: Some(uncompressed.clone()),
        };
        let theirs = |c: &[u8]| KeyHalf::Ec {
            curve: curve(c),
            point: Some(uncompressed.clone()),
        };
        assert_eq!(ours.matches(&theirs(OID_P521)), Some(true));
        assert_eq!(
            ours.matches(&theirs(OID_P384)),
            Some(false),
            "another curve"
        );
        let pointless = KeyHalf::Ec {
            curve: curve(OID_P521),
            point: None,
        };
        assert_eq!(pointless.matches(&theirs(OID_P521)), None, "cannot tell");
        let rsa = KeyHalf::Rsa {
            modulus: vec![1],
            exponent: vec![3],
        };
        assert_eq!(rsa.matches(&theirs(OID_P521)), Some(false), "another type");
    }

    #[test]
    fn chains_in_the_wrong_order_are_recognised() {
        use testkit::pki::{LeafSpec, TestCa};
        let root = TestCa::new("Test Root");
        let intermediate = root.intermediate("Test Intermediate");
        let leaf = intermediate.issue(LeafSpec::valid_for(["a.example"]));
        assert_eq!(wrong_order(&leaf.chain_der), None, "leaf, intermediate");
        assert_eq!(wrong_order(std::slice::from_ref(&leaf.cert_der)), None);
        assert_eq!(
            wrong_order(&[intermediate.cert_der(), leaf.cert_der.clone()]),
            Some(WrongOrder {
                first: "CN=Test Intermediate".into(),
                first_is_ca: true,
                leaf: Some(1),
            })
        );
        let root_first = [
            root.cert_der(),
            leaf.cert_der.clone(),
            intermediate.cert_der(),
        ];
        assert_eq!(wrong_order(&root_first).and_then(|w| w.leaf), Some(1));
        // Two unrelated leaves (an extra certificate) are not a question of order.
        let other = intermediate.issue(LeafSpec::valid_for(["b.example"]));
        assert_eq!(
            wrong_order(&[leaf.cert_der.clone(), other.cert_der.clone()]),
            None
        );
        // The same certificate twice is not "issued by itself".
        assert_eq!(
            wrong_order(&[root.cert_der(), root.cert_der()]),
            None,
            "only CAs: nothing comes before a leaf"
        );
        assert_eq!(
            wrong_order(&vec![CertificateDer::from(vec![0x30, 0x00]); 2]),
            None
        );
    }

    #[test]
    fn oversized_certificates_are_those_webpki_cannot_read() {
        use testkit::pki::{LeafSpec, TestCa};
        let ca = TestCa::new("Test Root");
        let names = |n: usize| {
            (0..n)
                .map(|i| format!("h{i}.shop.example"))
                .collect::<Vec<_>>()
        };
        let big = ca.issue(LeafSpec::valid_for(names(5000)));
        let found = oversized(&big.chain_der).expect("oversized");
        assert_eq!((found.position, found.dns_names), (1, 5000));
        assert_eq!(found.bytes, big.cert_der.as_ref().len());
        assert_eq!(
            oversized(&ca.issue(LeafSpec::valid_for(names(2000))).chain_der),
            None
        );
        assert_eq!(oversized(&[CertificateDer::from(vec![0x30])]), None);
    }

    #[test]
    fn names_for_messages_are_bounded_and_counted() {
        use testkit::pki::{LeafSpec, TestCa};
        let ca = TestCa::new("Test Root");
        let names: Vec<String> = (0..100).map(|i| format!("h{i}.shop.example")).collect();
        let leaf = ca.issue(LeafSpec::valid_for(names));
        let listed = leaf_names(&leaf.chain_der);
        assert_eq!(listed.len(), MAX_EVIDENCE_NAMES + 1);
        assert_eq!(listed.last().unwrap(), "and 68 more");
        let parsed = parse_leaf(&leaf.cert_der, "Secret/x").unwrap();
        assert_eq!(parsed.dns_names.len(), 100, "every name is matched against");
        assert_eq!(parsed.evidence.dns_names.len(), MAX_EVIDENCE_NAMES);
        assert_eq!(
            parsed.evidence.dns_names_omitted as usize,
            100 - MAX_EVIDENCE_NAMES,
            "the status counts the names it does not list"
        );
    }

    #[test]
    fn ip_names_read_as_addresses() {
        assert_eq!(ip_name(&[192, 0, 2, 1]), "192.0.2.1");
        assert_eq!(ip_name(&[0; 16]), "::");
    }
}
