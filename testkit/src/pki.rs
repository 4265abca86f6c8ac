//! Test PKI: CAs, intermediates and leaves made with rcgen at test time (nothing is committed).
//!
//! Keys are ECDSA P-256 (fast to generate with ring) except where a test needs an RSA subject
//! key, which ring can neither generate nor sign with at 1024 bits: those come from the `rsa`
//! crate and are only ever the *subject* key, the issuing CA still signs with ECDSA.
//!
//! ECDSA P-521 subject keys (which neither ring nor rcgen with ring can make) are made here with
//! the `rsa` crate's big integers ([`TestCa::issue_with_p521_key`]). Large RSA keys are slow to
//! generate (an RSA-8192 key takes 30 s to 3 min on 2 cores): [`TestCa::issue_with_shared_rsa_key`]
//! makes one per size and process.

use jiff::{SignedDuration, Timestamp};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SerialNumber, SignatureAlgorithm,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

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
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits)
            .expect("generate the test RSA key");
        self.issue_for_rsa_key(spec, &key)
    }

    /// Like [`issue_with_rsa_key`](Self::issue_with_rsa_key), but every leaf of this size in the
    /// process shares one key, generated on first use: for sizes that take long to generate
    /// (RSA-8192: 30 s to 3 min on 2 cores).
    pub fn issue_with_shared_rsa_key(&self, spec: LeafSpec, bits: usize) -> Leaf {
        static KEYS: OnceLock<Mutex<HashMap<usize, Arc<OnceLock<rsa::RsaPrivateKey>>>>> =
            OnceLock::new();
        let slot = KEYS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(bits)
            .or_default()
            .clone();
        let key = slot.get_or_init(|| {
            rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits)
                .expect("generate the test RSA key")
        });
        self.issue_for_rsa_key(spec, key)
    }

    fn issue_for_rsa_key(&self, spec: LeafSpec, key: &rsa::RsaPrivateKey) -> Leaf {
        use rsa::pkcs1::EncodeRsaPublicKey;
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};

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

    /// Issues a leaf whose subject key is a fresh ECDSA P-521 key, with tls.key written as
    /// `file` says. Neither ring nor rcgen (built on ring) can make or use P-521 keys, so the key
    /// is made by [`p521`] and the certificate is issued for it with the P-384 curve OID as a
    /// placeholder, which is then set to P-521 and the certificate signed again by this CA.
    pub fn issue_with_p521_key(&self, spec: LeafSpec, file: EcKeyFile) -> Leaf {
        let key = p521::KeyPair::generate();
        let placeholder = leaf_params(&spec, false)
            .signed_by(&P521SubjectKey(key.public_point()), &self.issuer)
            .expect("sign the test P-521 leaf");
        let cert = resign_with_curve(placeholder.der(), &der::OID_P384, &der::OID_P521, self);
        let pkcs8 = key.pkcs8(true);
        let (label, file_der) = match file {
            EcKeyFile::Pkcs8 => ("PRIVATE KEY", pkcs8.clone()),
            EcKeyFile::Pkcs8WithoutPublicKey => ("PRIVATE KEY", key.pkcs8(false)),
            EcKeyFile::Sec1 => ("EC PRIVATE KEY", key.sec1()),
        };
        let intermediates: Vec<(String, CertificateDer<'static>)> = self
            .intermediates
            .iter()
            .map(|c| (c.pem(), c.der().clone()))
            .collect();
        Leaf::assemble_der(
            spec.dns_names,
            (pem("CERTIFICATE", &cert), CertificateDer::from(cert)),
            &intermediates,
            pkcs8,
            pem(label, &file_der),
        )
    }
}

/// How a test EC private key is written to tls.key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcKeyFile {
    /// PKCS#8 ("PRIVATE KEY") holding the public key, as OpenSSL writes it.
    Pkcs8,
    /// SEC1 ("EC PRIVATE KEY") naming the curve and holding the public key, as
    /// `openssl ecparam -genkey` writes it.
    Sec1,
    /// PKCS#8 without the public key, which RFC 5915 makes optional.
    Pkcs8WithoutPublicKey,
}

/// A P-521 subject key as rcgen sees it: the public point, under the P-384 OID (see
/// [`TestCa::issue_with_p521_key`]).
struct P521SubjectKey(Vec<u8>);

impl PublicKeyData for P521SubjectKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P384_SHA384
    }
}

/// `cert` with the curve OID `from` of its subject public key replaced by `to` (of the same
/// length), signed again by `ca`.
fn resign_with_curve(cert: &CertificateDer<'_>, from: &[u8], to: &[u8], ca: &TestCa) -> Vec<u8> {
    use rcgen::SigningKey;
    let (certificate, _) = der::split(cert.as_ref());
    let (tbs, rest) = der::split(der::value(certificate));
    let (signature_algorithm, _) = der::split(rest);
    let spki_algorithm = [&der::OID_EC_PUBLIC_KEY[..], from].concat();
    let at = tbs
        .windows(spki_algorithm.len())
        .position(|w| w == spki_algorithm)
        .expect("the placeholder curve OID is in the certificate");
    let mut tbs = tbs.to_vec();
    tbs[at + der::OID_EC_PUBLIC_KEY.len()..at + spki_algorithm.len()].copy_from_slice(to);
    let signature = ca
        .issuer
        .key()
        .sign(&tbs)
        .expect("sign the test leaf again");
    der::tlv(
        0x30,
        &[
            &tbs[..],
            signature_algorithm,
            &der::tlv(0x03, &[&[0][..], &signature].concat()),
        ]
        .concat(),
    )
}

fn pem(label: &str, der: &[u8]) -> String {
    rsa::pkcs8::der::pem::encode_string(label, rsa::pkcs8::LineEnding::LF, der)
        .expect("PEM-encode test data")
}

/// Just enough DER for the P-521 keys and the certificate surgery above.
mod der {
    /// id-ecPublicKey and the curves, each as a whole DER element.
    pub const OID_EC_PUBLIC_KEY: [u8; 9] = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    pub const OID_P384: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    pub const OID_P521: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];

    /// One element: tag, length, value.
    pub fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = value.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(value);
        out
    }

    /// The first element of `input` (whole) and what follows it.
    pub fn split(input: &[u8]) -> (&[u8], &[u8]) {
        let (header, len) = header(input);
        input.split_at(header + len)
    }

    /// The value of the element `element`.
    pub fn value(element: &[u8]) -> &[u8] {
        let (header, len) = header(element);
        &element[header..header + len]
    }

    fn header(input: &[u8]) -> (usize, usize) {
        let first = input[1];
        if first < 0x80 {
            return (2, usize::from(first));
        }
        let n = usize::from(first & 0x7f);
        let len = input[2..2 + n]
            .iter()
            .fold(0, |len, b| (len << 8) | usize::from(*b));
        (2 + n, len)
    }
}

/// ECDSA P-521 (secp521r1, SEC 2 section 2.6.1) key generation, on the `rsa` crate's big
/// integers: enough for test keys, not constant-time.
pub mod p521 {
    use super::der;
    use rsa::BigUint;
    use rsa::rand_core::{OsRng, RngCore};

    const B: &str = "0051953eb9618e1c9a1f929a21a0b68540eea2da725b99b315f3b8b489918ef109e156193951ec7e937b1652c0bd3bb1bf073573df883d2c34f1ef451fd46b503f00";
    const GX: &str = "00c6858e06b70404e9cd9e3ecb662395b4429c648139053fb521f828af606b4d3dbaa14b5e77efe75928fe1dc127a2ffa8de3348b3c1856a429bf97e7e31c2e5bd66";
    const GY: &str = "011839296a789a3bc0045c8a5fb42c7d1bd998f54449579b446817afbd17273e662c97ee72995ef42640c550b9013fad0761353c7086a272c24088be94769fd16650";
    const N: &str = "01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409";
    /// Bytes of a coordinate or a scalar.
    const LEN: usize = 66;

    fn hex(s: &str) -> BigUint {
        BigUint::parse_bytes(s.as_bytes(), 16).expect("a P-521 constant")
    }

    /// The field prime 2^521 - 1.
    pub fn p() -> BigUint {
        (BigUint::from(1u32) << 521usize) - BigUint::from(1u32)
    }

    pub fn b() -> BigUint {
        hex(B)
    }

    /// The base point.
    pub fn g() -> Point {
        Some((hex(GX), hex(GY)))
    }

    /// The order of the base point.
    pub fn n() -> BigUint {
        hex(N)
    }

    /// An affine point; None is the point at infinity.
    pub type Point = Option<(BigUint, BigUint)>;

    fn sub(a: &BigUint, b: &BigUint, p: &BigUint) -> BigUint {
        (a + p - b) % p
    }

    fn inverse(a: &BigUint, p: &BigUint) -> BigUint {
        a.modpow(&(p - BigUint::from(2u32)), p)
    }

    pub fn add(a: &Point, b: &Point) -> Point {
        let p = p();
        let (Some((x1, y1)), Some((x2, y2))) = (a, b) else {
            return a.clone().or_else(|| b.clone());
        };
        let slope = if x1 == x2 {
            if (y1 + y2) % &p == BigUint::from(0u32) {
                return None;
            }
            // Doubling: (3x^2 + a) / 2y with a = -3.
            let three_x2 = BigUint::from(3u32) * x1 * x1 % &p;
            sub(&three_x2, &BigUint::from(3u32), &p) * inverse(&(BigUint::from(2u32) * y1), &p) % &p
        } else {
            sub(y2, y1, &p) * inverse(&sub(x2, x1, &p), &p) % &p
        };
        let x3 = sub(&sub(&(&slope * &slope % &p), x1, &p), x2, &p);
        let y3 = sub(&(&slope * sub(x1, &x3, &p) % &p), y1, &p);
        Some((x3, y3))
    }

    /// k·point, by double and add.
    pub fn mul(k: &BigUint, point: &Point) -> Point {
        let mut acc: Point = None;
        for i in (0..k.bits()).rev() {
            acc = add(&acc, &acc);
            if (k >> i) % BigUint::from(2u32) == BigUint::from(1u32) {
                acc = add(&acc, point);
            }
        }
        acc
    }

    /// Whether `point` satisfies y^2 = x^3 - 3x + b (mod p).
    pub fn on_curve(point: &Point) -> bool {
        let p = p();
        let Some((x, y)) = point else {
            return false;
        };
        let right = sub(
            &((x * x % &p) * x % &p),
            &(BigUint::from(3u32) * x % &p),
            &p,
        ) + b();
        y * y % &p == right % &p
    }

    fn fixed(n: &BigUint) -> Vec<u8> {
        let bytes = n.to_bytes_be();
        [vec![0; LEN - bytes.len()], bytes].concat()
    }

    /// A P-521 private scalar and its public point.
    pub struct KeyPair {
        pub d: BigUint,
        pub public: Point,
    }

    impl KeyPair {
        pub fn generate() -> KeyPair {
            let mut bytes = [0u8; LEN];
            OsRng.fill_bytes(&mut bytes);
            let d =
                BigUint::from_bytes_be(&bytes) % (n() - BigUint::from(1u32)) + BigUint::from(1u32);
            let public = mul(&d, &g());
            KeyPair { d, public }
        }

        /// The uncompressed public point: 04 || X || Y.
        pub fn public_point(&self) -> Vec<u8> {
            let (x, y) = self
                .public
                .as_ref()
                .expect("a public key is a finite point");
            [vec![4], fixed(x), fixed(y)].concat()
        }

        /// ECPrivateKey (RFC 5915), with the curve when `curve` and the public key when `public`.
        fn ec_private_key(&self, curve: bool, public: bool) -> Vec<u8> {
            let mut body = [der::tlv(0x02, &[1]), der::tlv(0x04, &fixed(&self.d))].concat();
            if curve {
                body.extend(der::tlv(0xa0, &der::OID_P521));
            }
            if public {
                let bits = der::tlv(0x03, &[vec![0], self.public_point()].concat());
                body.extend(der::tlv(0xa1, &bits));
            }
            der::tlv(0x30, &body)
        }

        /// PKCS#8 (RFC 5208), with or without the public key inside, as OpenSSL writes it.
        pub fn pkcs8(&self, public: bool) -> Vec<u8> {
            let algorithm = der::tlv(
                0x30,
                &[&der::OID_EC_PUBLIC_KEY[..], &der::OID_P521].concat(),
            );
            der::tlv(
                0x30,
                &[
                    der::tlv(0x02, &[0]),
                    algorithm,
                    der::tlv(0x04, &self.ec_private_key(false, public)),
                ]
                .concat(),
            )
        }

        /// SEC1 ("EC PRIVATE KEY"), naming the curve and holding the public key.
        pub fn sec1(&self) -> Vec<u8> {
            self.ec_private_key(true, true)
        }
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
        let intermediates: Vec<(String, CertificateDer<'static>)> = intermediates
            .iter()
            .map(|c| (c.pem(), c.der().clone()))
            .collect();
        Leaf::assemble_der(
            dns_names,
            (cert.pem(), cert.der().clone()),
            &intermediates,
            key_der,
            key_pem,
        )
    }

    /// From the leaf and its intermediates, each as (PEM, DER).
    fn assemble_der(
        dns_names: Vec<String>,
        cert: (String, CertificateDer<'static>),
        intermediates: &[(String, CertificateDer<'static>)],
        key_der: Vec<u8>,
        key_pem: String,
    ) -> Leaf {
        let chain = || std::iter::once(&cert).chain(intermediates);
        Leaf {
            dns_names,
            cert_pem: cert.0.clone(),
            key_pem,
            cert_der: cert.1.clone(),
            key_der: PrivatePkcs8KeyDer::from(key_der),
            chain_pem: chain().map(|(pem, _)| pem.as_str()).collect(),
            chain_der: chain().map(|(_, der)| der.clone()).collect(),
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
    fn p521_arithmetic_follows_the_curve() {
        use rsa::BigUint;
        // The constants agree: G is on the curve and has order n.
        assert!(p521::on_curve(&p521::g()));
        assert_eq!(p521::mul(&p521::n(), &p521::g()), None);
        assert_eq!(
            p521::mul(&BigUint::from(2u32), &p521::g()),
            p521::add(&p521::g(), &p521::g())
        );
        let key = p521::KeyPair::generate();
        assert!(p521::on_curve(&key.public));
        assert_eq!(key.public_point().len(), 133);
    }

    #[test]
    fn p521_leaves_carry_a_p521_key_and_verify_to_their_ca() {
        use rustls::client::WebPkiServerVerifier;
        use rustls::client::danger::ServerCertVerifier;
        use rustls_pki_types::{ServerName, UnixTime};
        let root = TestCa::new("Test Root");
        let ca = root.intermediate("Test Intermediate");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root.cert_der()).unwrap();
        let verifier = WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        for file in [
            EcKeyFile::Pkcs8,
            EcKeyFile::Sec1,
            EcKeyFile::Pkcs8WithoutPublicKey,
        ] {
            let leaf = ca.issue_with_p521_key(LeafSpec::valid_for(["www.shop.example"]), file);
            let der: &[u8] = leaf.cert_der.as_ref();
            let has = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
            let spki_algorithm = [&der::OID_EC_PUBLIC_KEY[..], &der::OID_P521].concat();
            assert!(has(&spki_algorithm), "{file:?}: a P-521 key");
            assert!(
                !has(&der::OID_P384),
                "{file:?}: no trace of the placeholder"
            );
            // The CA's signature covers the certificate as it is now.
            verifier
                .verify_server_cert(
                    &leaf.chain_der[0],
                    &leaf.chain_der[1..],
                    &ServerName::try_from("www.shop.example").unwrap(),
                    &[],
                    UnixTime::now(),
                )
                .unwrap_or_else(|e| panic!("{file:?}: {e}"));
            let label = match file {
                EcKeyFile::Sec1 => "-----BEGIN EC PRIVATE KEY-----\n",
                _ => "-----BEGIN PRIVATE KEY-----\n",
            };
            assert!(leaf.key_pem.starts_with(label), "{file:?}");
            assert!(leaf.chain_pem.starts_with(&leaf.cert_pem));
            assert!(leaf.cert_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        }
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
