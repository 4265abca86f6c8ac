//! What a referenced kubernetes.io/tls Secret holds, read the same way by the operator and `check`.

use k8s_openapi::api::core::v1::Secret;
use std::collections::BTreeMap;

/// A private key read from a Secret. Its `Debug` never shows the key: keys must not reach
/// logs, status, Events, metrics or errors.
/// The only type of Secret the operator reads.
pub const TLS_TYPE: &str = "kubernetes.io/tls";

#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(Vec<u8>);

impl SecretKey {
    pub fn from_pem(pem: Vec<u8>) -> Self {
        SecretKey(pem)
    }

    /// The PEM text, for loading the key; never for printing.
    pub(crate) fn pem(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// What a referenced Secret offered. A Secret of another type than kubernetes.io/tls reads as
/// `NotFound`: the status must not tell a reader of deliveries what else exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretContent {
    /// No kubernetes.io/tls Secret of that name (missing, or of another type).
    NotFound,
    /// The operator reads only Secrets with this label selector, and the named one is not
    /// among them (whether it exists is not known to the operator).
    NotAllowed { selector: String },
    /// The Secret could not be read for a reason that may pass (API error, forbidden).
    ReadFailed(String),
    /// The Secret exists but is not a usable kubernetes.io/tls Secret.
    Invalid(String),
    Tls {
        cert_pem: Vec<u8>,
        key_pem: Option<SecretKey>,
    },
}

impl SecretContent {
    /// What a Secret offers as a TLS certificate. Only kubernetes.io/tls Secrets are read;
    /// any other type is `NotFound`.
    pub fn from_secret(secret: &Secret) -> SecretContent {
        let mut data: BTreeMap<String, Vec<u8>> = secret
            .data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        // stringData is how people write Secrets by hand in a repository; the API server merges it.
        for (k, v) in secret.string_data.clone().unwrap_or_default() {
            data.insert(k, v.into_bytes());
        }
        if secret.type_.as_deref() != Some(TLS_TYPE) {
            return SecretContent::NotFound;
        }
        let Some(cert_pem) = data.remove("tls.crt").filter(|c| !c.is_empty()) else {
            return SecretContent::Invalid("it has no tls.crt".into());
        };
        let key_pem = data
            .remove("tls.key")
            .filter(|k| !k.is_empty())
            .map(SecretKey::from_pem);
        SecretContent::Tls { cert_pem, key_pem }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(type_: Option<&str>, data: &[(&str, &str)], string_data: &[(&str, &str)]) -> Secret {
        Secret {
            type_: type_.map(str::to_string),
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            string_data: Some(
                string_data
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn a_tls_secret_gives_its_certificate_and_key() {
        let s = secret(
            Some("kubernetes.io/tls"),
            &[("tls.crt", "CERT"), ("tls.key", "KEY")],
            &[],
        );
        assert_eq!(
            SecretContent::from_secret(&s),
            SecretContent::Tls {
                cert_pem: b"CERT".to_vec(),
                key_pem: Some(SecretKey::from_pem(b"KEY".to_vec())),
            }
        );
    }

    #[test]
    fn string_data_overrides_data_as_the_api_server_merges_it() {
        let s = secret(
            Some("kubernetes.io/tls"),
            &[("tls.crt", "OLD")],
            &[("tls.crt", "NEW")],
        );
        assert_eq!(
            SecretContent::from_secret(&s),
            SecretContent::Tls {
                cert_pem: b"NEW".to_vec(),
                key_pem: None,
            }
        );
    }

    #[test]
    fn other_types_read_as_missing_and_missing_certificates_are_invalid() {
        // A Secret of another type is not read: the status must not be a Secret oracle.
        for type_ in [None, Some("Opaque"), Some("kubernetes.io/dockerconfigjson")] {
            assert_eq!(
                SecretContent::from_secret(&secret(type_, &[("tls.crt", "C")], &[])),
                SecretContent::NotFound,
                "{type_:?}"
            );
        }
        assert_eq!(
            SecretContent::from_secret(&secret(Some("kubernetes.io/tls"), &[("tls.crt", "")], &[])),
            SecretContent::Invalid("it has no tls.crt".into())
        );
    }

    #[test]
    fn the_key_is_redacted_in_debug_output() {
        let k = SecretKey::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n".to_vec());
        assert_eq!(format!("{k:?}"), "SecretKey(<redacted>)");
        let input = SecretContent::Tls {
            cert_pem: vec![],
            key_pem: Some(k),
        };
        assert!(!format!("{input:?}").contains("PRIVATE"));
    }
}
