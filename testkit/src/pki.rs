//! Test PKI: CAs, intermediates and leaves made with rcgen at test time (nothing is committed).
//!
//! Keys are ECDSA P-256 (fast to generate with ring) except where a test needs an RSA subject
//! key, which ring can neither generate nor sign with at 1024 bits: those come from the `rsa`
//! crate and are only ever the *subject* key, the issuing CA still signs with ECDSA.

use jiff::{SignedDuration, Timestamp};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SerialNumber, SignatureAlgorithm,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::atomic::{AtomicU64, Ordering};

const DAY: SignedDuration = SignedDuration::from_hours(24);

/// A certificate authority (root or intermediate) that issues test certificates.
pub struct TestCa {
    name: String,
    issuer: Issuer<'static, KeyPair>,
    cert: rcgen::Certificate,
    /// This CA's certificate and those above it, up to but excluding the root: what a server
    /// must send after a leaf issued here. Empty for a root.
    intermediates: Vec<rcgen::Certificate>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TestCa {
    /// A self-signed root CA with an ECDSA P-256 key, valid from yesterday for ten years.
    pub fn new(name: &str) -> TestCa {
        let key = ecdsa_key();
        let params = ca_params(name);
        let cert = params
            .self_signed(&key)
            .expect("self-sign the test root CA");
        TestCa {
            name: name.to_owned(),
            issuer: Issuer::new(params, key),
            cert,
            intermediates: Vec::new(),
        }
    }

    /// An intermediate CA signed by this one.
    pub fn intermediate(&self, name: &str) -> TestCa {
        let key = ecdsa_key();
        let params = ca_params(name);
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign the test intermediate CA");
        let mut intermediates = vec![cert.clone()];
        intermediates.extend(self.intermediates.iter().cloned());
        TestCa {
            name: name.to_owned(),
            issuer: Issuer::new(params, key),
            cert,
            intermediates,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// Issues a leaf with a fresh ECDSA P-256 key.
    pub fn issue(&self, spec: LeafSpec) -> Leaf {
        let key = ecdsa_key();
        let cert = leaf_params(&spec, false)
            .signed_by(&key, &self.issuer)
            .expect("sign the test leaf");
        Leaf::assemble(
            spec.dns_names,
            &cert,
            &self.intermediates,
            key.serialize_der(),
            key.serialize_pem(),
        )
    }

    /// Issues a leaf whose subject key is a fresh RSA key of `bits` bits (1024 for a weak key).
    /// Such a leaf serves for certificate checks (e.g. from a Secret); a rustls server cannot
    /// use it when `bits < 2048`, since ring refuses to sign with such keys.
    pub fn issue_with_rsa_key(&self, spec: LeafSpec, bits: usize) -> Leaf {
        use rsa::pkcs1::EncodeRsaPublicKey;
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};

        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits)
            .expect("generate the test RSA key");
        let public = RsaSubjectKey(
            key.to_public_key()
                .to_pkcs1_der()
                .expect("encode the test RSA public key")
                .into_vec(),
        );
        let cert = leaf_params(&spec, true)
            .signed_by(&public, &self.issuer)
            .expect("sign the test RSA leaf");
        let key_der = key
            .to_pkcs8_der()
            .expect("encode the test RSA private key")
            .as_bytes()
            .to_vec();
        let key_pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("encode the test RSA private key")
            .to_string();
        Leaf::assemble(spec.dns_names, &cert, &self.intermediates, key_der, key_pem)
    }
}

/// A self-signed leaf (no CA), valid from yesterday for 90 days: what a misconfigured edge or
/// origin serves.
pub fn self_signed<I, S>(names: I) -> Leaf
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let spec = LeafSpec::valid_for(names);
    let key = ecdsa_key();
    let cert = leaf_params(&spec, false)
        .self_signed(&key)
        .expect("self-sign the test leaf");
    Leaf::assemble(
        spec.dns_names,
        &cert,
        &[],
        key.serialize_der(),
        key.serialize_pem(),
    )
}

/// What to put in a leaf: its DNS names (or IP addresses), validity window and subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafSpec {
    pub dns_names: Vec<String>,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    /// Subject CN; without it, the first name.
    pub common_name: Option<String>,
    /// Subject O: for a Kubernetes client certificate, the user's group.
    pub organization: Option<String>,
    /// A TLS client certificate (extended key usage clientAuth) instead of a server's.
    pub client: bool,
}

impl LeafSpec {
    /// Valid from yesterday for 90 days, like a freshly issued ACME certificate.
    pub fn valid_for<I, S>(names: I) -> LeafSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let now = Timestamp::now();
        LeafSpec {
            dns_names: names.into_iter().map(Into::into).collect(),
            not_before: now - DAY,
            not_after: now + 90 * DAY,
            common_name: None,
            organization: None,
            client: false,
        }
    }

    /// A client certificate for the user `common_name` in the group `organization` (as
    /// Kubernetes reads a client certificate's subject), valid from yesterday for 90 days.
    pub fn client(common_name: &str, organization: &str) -> LeafSpec {
        LeafSpec {
            common_name: Some(common_name.to_owned()),
            organization: Some(organization.to_owned()),
            client: true,
            ..LeafSpec::valid_for(Vec::<String>::new())
        }
    }

    /// Expired yesterday, after 90 days of validity.
    pub fn expired(self) -> LeafSpec {
        let now = Timestamp::now();
        self.valid_between(now - 91 * DAY, now - DAY)
    }

    /// Valid from tomorrow.
    pub fn not_yet_valid(self) -> LeafSpec {
        let now = Timestamp::now();
        self.valid_between(now + DAY, now + 91 * DAY)
    }

    /// Expires `days` days from now (negative: expired that long ago), after 90 days of validity.
    pub fn expiring_in(self, days: i32) -> LeafSpec {
        let not_after = Timestamp::now() + days * DAY;
        self.valid_between(not_after - 90 * DAY, not_after)
    }

    pub fn valid_between(mut self, not_before: Timestamp, not_after: Timestamp) -> LeafSpec {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }
}

/// An issued certificate and its private key, in the forms tests, servers and Secrets need.
pub struct Leaf {
    /// The names the leaf was issued for, as given in its [`LeafSpec`].
    pub dns_names: Vec<String>,
    /// The leaf alone.
    pub cert_pem: String,
    /// PKCS#8 PEM ("PRIVATE KEY").
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_der: PrivatePkcs8KeyDer<'static>,
    /// The leaf then its intermediates (not the root): what `tls.crt` holds and a server sends.
    pub chain_pem: String,
    pub chain_der: Vec<CertificateDer<'static>>,
}

impl Leaf {
    fn assemble(
        dns_names: Vec<String>,
        cert: &rcgen::Certificate,
        intermediates: &[rcgen::Certificate],
        key_der: Vec<u8>,
        key_pem: String,
    ) -> Leaf {
        let chain = || std::iter::once(cert).chain(intermediates);
        Leaf {
            dns_names,
            cert_pem: cert.pem(),
            key_pem,
            cert_der: cert.der().clone(),
            key_der: PrivatePkcs8KeyDer::from(key_der),
            chain_pem: chain().map(rcgen::Certificate::pem).collect(),
            chain_der: chain().map(|c| c.der().clone()).collect(),
        }
    }

    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone_key())
    }
}

impl Clone for Leaf {
    fn clone(&self) -> Leaf {
        Leaf {
            dns_names: self.dns_names.clone(),
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
            cert_der: self.cert_der.clone(),
            key_der: self.key_der.clone_key(),
            chain_pem: self.chain_pem.clone(),
            chain_der: self.chain_der.clone(),
        }
    }
}

/// Never prints the key, so that a failing assertion cannot leak it into test logs either.
impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf")
            .field("dns_names", &self.dns_names)
            .field("chain_len", &self.chain_der.len())
            .finish_non_exhaustive()
    }
}

/// rcgen signs a certificate for any subject key given as its public half; ring cannot load
/// RSA-1024 keys, so this one never goes through a `KeyPair`.
struct RsaSubjectKey(Vec<u8>);

impl PublicKeyData for RsaSubjectKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

/// A fresh ECDSA P-256 key pair, e.g. for signing service-account tokens.
pub fn ecdsa_key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("generate a P-256 key")
}

fn ca_params(name: &str) -> CertificateParams {
    let now = Timestamp::now();
    let mut params = CertificateParams::default();
    params.distinguished_name.remove(DnType::CommonName);
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = offset(now - DAY);
    params.not_after = offset(now + 3650 * DAY);
    params.serial_number = Some(unique_serial());
    params.use_authority_key_identifier_extension = true;
    params
}

fn leaf_params(spec: &LeafSpec, rsa: bool) -> CertificateParams {
    let mut params =
        CertificateParams::new(spec.dns_names.clone()).expect("valid DNS names in the LeafSpec");
    if let Some(cn) = spec.common_name.as_ref().or(spec.dns_names.first()) {
        params.distinguished_name.remove(DnType::CommonName);
        params
            .distinguished_name
            .push(DnType::CommonName, cn.as_str());
    }
    if let Some(o) = &spec.organization {
        params
            .distinguished_name
            .push(DnType::OrganizationName, o.as_str());
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if rsa {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = vec![if spec.client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    params.not_before = offset(spec.not_before);
    params.not_after = offset(spec.not_after);
    params.serial_number = Some(unique_serial());
    params.use_authority_key_identifier_extension = true;
    params
}

/// rcgen derives the serial from the public key by default; two certificates for the same
/// key (a renewal) must still differ, as real CAs make them.
fn unique_serial() -> SerialNumber {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let mut bytes = vec![0x1f];
    bytes.extend_from_slice(&Timestamp::now().as_nanosecond().to_be_bytes()[8..]);
    bytes.extend_from_slice(&NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    SerialNumber::from_slice(&bytes)
}

fn offset(ts: Timestamp) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(ts.as_second()).expect("test dates are in range")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_pem_holds_leaf_then_intermediates() {
        let root = TestCa::new("Test Root");
        let inter = root.intermediate("Test Intermediate");
        let leaf = inter.issue(LeafSpec::valid_for(["www.shop.example"]));
        assert_eq!(leaf.chain_der.len(), 2);
        assert_eq!(leaf.chain_der[0], leaf.cert_der);
        assert_eq!(leaf.chain_der[1], inter.cert_der());
        assert!(leaf.chain_pem.starts_with(&leaf.cert_pem));
        assert!(leaf.chain_pem.ends_with(&inter.cert_pem()));
        assert!(leaf.key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    }

    #[test]
    fn client_certificates_carry_user_and_group_and_no_names() {
        let ca = TestCa::new("Test Root");
        let spec = LeafSpec::client("admin", "system:masters");
        assert!(spec.dns_names.is_empty() && spec.client);
        let leaf = ca.issue(spec);
        let der: &[u8] = leaf.cert_der.as_ref();
        // The subject's CN and O, and the clientAuth OID (1.3.6.1.5.5.7.3.2), are in the DER.
        let has = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"admin") && has(b"system:masters"));
        assert!(has(&[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02]));
        assert!(
            !has(&[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01]),
            "no serverAuth"
        );
    }

    #[test]
    fn spec_windows() {
        let now = Timestamp::now();
        let s = LeafSpec::valid_for(["a.example"]).expired();
        assert!(s.not_after < now);
        let s = LeafSpec::valid_for(["a.example"]).not_yet_valid();
        assert!(s.not_before > now);
        let s = LeafSpec::valid_for(["a.example"]).expiring_in(10);
        assert!(s.not_after > now + 9 * DAY && s.not_after < now + 11 * DAY);
    }
}
