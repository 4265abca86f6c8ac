//! Akamai EdgeGrid request signing (`EG1-HMAC-SHA256`), as Akamai's own Go SDK does it
//! (`pkg/edgegrid/signer.go`; the steps and test vectors are in
//! `docs/design/provider-apis.md`, B.2). No crate on crates.io is a maintained implementation
//! of it, so it is written here, on ring's HMAC and SHA-256.
//!
//! The client secret and tokens never reach a log or an error: [`Credentials`]' `Debug` hides
//! them, and nothing here returns them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::{digest, hmac};

/// What an EdgeGrid API client is given (an `.edgerc` section).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The API host, e.g. `akab-....luna.akamaiapis.net` (no scheme).
    pub host: String,
    pub client_token: String,
    pub client_secret: String,
    pub access_token: String,
    /// Bytes of a POST body that are hashed (Akamai's default: 131,072).
    pub max_body: usize,
    /// Request headers that are signed, in the form `X-Header-Name` (none by default).
    pub headers_to_sign: Vec<String>,
}

/// Akamai's default for `max_body`.
pub const DEFAULT_MAX_BODY: usize = 131_072;

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("host", &self.host)
            .field("client_token", &"<redacted>")
            .field("client_secret", &"<redacted>")
            .field("access_token", &"<redacted>")
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

/// The parts of a request that are signed.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// `GET`, `POST`...
    pub method: &'a str,
    /// The path and query exactly as they are sent (percent-encoded, query keys in the order
    /// they go out).
    pub path_and_query: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// The EdgeGrid timestamp of `now`: `yyyyMMddTHH:mm:ss+0000`, in UTC.
pub fn timestamp(now: jiff::Timestamp) -> String {
    now.strftime("%Y%m%dT%H:%M:%S+0000").to_string()
}

/// A new nonce (a random UUID): one per request, and per retry.
pub fn nonce() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The `Authorization` header value for `request`, signed at `timestamp` with `nonce`.
pub fn authorization(
    credentials: &Credentials,
    request: &Request<'_>,
    timestamp: &str,
    nonce: &str,
) -> String {
    let prefix = format!(
        "EG1-HMAC-SHA256 client_token={};access_token={};timestamp={timestamp};nonce={nonce};",
        credentials.client_token, credentials.access_token
    );
    let data = [
        request.method.to_ascii_uppercase().as_str(),
        "https",
        &credentials.host,
        request.path_and_query,
        &canonical_headers(&credentials.headers_to_sign, request.headers),
        &content_hash(request, credentials.max_body),
        &prefix,
    ]
    .join("\t");
    let signing_key = hmac_base64(credentials.client_secret.as_bytes(), timestamp.as_bytes());
    let signature = hmac_base64(signing_key.as_bytes(), data.as_bytes());
    format!("{prefix}signature={signature}")
}

fn hmac_base64(key: &[u8], message: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    STANDARD.encode(hmac::sign(&key, message).as_ref())
}

/// Only a non-empty POST body is hashed, and only its first `max_body` bytes.
fn content_hash(request: &Request<'_>, max_body: usize) -> String {
    if !request.method.eq_ignore_ascii_case("POST") || request.body.is_empty() {
        return String::new();
    }
    let hashed = &request.body[..request.body.len().min(max_body)];
    STANDARD.encode(digest::digest(&digest::SHA256, hashed).as_ref())
}

/// The signed headers, sorted by name, as `name:value` in lower case, the value trimmed and
/// each run of two or more whitespace characters made one space; joined by tabs.
fn canonical_headers(to_sign: &[String], headers: &[(&str, &str)]) -> String {
    let mut signed: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| (canonical_name(name), *value))
        .filter(|(name, _)| to_sign.iter().any(|s| s == name))
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                collapse(value.trim()).to_lowercase(),
            )
        })
        .collect();
    signed.sort();
    signed
        .iter()
        .map(|(name, value)| format!("{name}:{value}"))
        .collect::<Vec<_>>()
        .join("\t")
}

/// A header name as Go writes it (`x-test1` -> `X-Test1`), which is what `headers_to_sign`
/// is compared with.
fn canonical_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Runs of two or more whitespace characters become one space; a single one is kept as it is.
fn collapse(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut run = String::new();
    for c in value.chars() {
        if c.is_whitespace() {
            run.push(c);
            continue;
        }
        flush(&mut out, &mut run);
        out.push(c);
    }
    flush(&mut out, &mut run);
    out
}

fn flush(out: &mut String, run: &mut String) {
    match run.chars().count() {
        0 => {}
        1 => out.push_str(run),
        _ => out.push(' '),
    }
    run.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixed inputs of Akamai's own signer test data (placeholders, not a real account).
    fn credentials() -> Credentials {
        Credentials {
            host: "akaa-baseurl-xxxxxxxxxxx-xxxxxxxxxxxxx.luna.akamaiapis.net".into(),
            client_token: "akab-client-token-xxx-xxxxxxxxxxxxxxxx".into(),
            client_secret: format!("{}=", "x".repeat(43)),
            access_token: "akab-access-token-xxx-xxxxxxxxxxxxxxxx".into(),
            max_body: 2048,
            headers_to_sign: vec!["X-Test1".into(), "X-Test2".into(), "X-Test3".into()],
        }
    }

    const TIMESTAMP: &str = "20140321T19:34:21+0000";
    const NONCE: &str = "nonce-xx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

    fn signature(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> String {
        let request = Request {
            method,
            path_and_query: path,
            headers,
            body,
        };
        let header = authorization(&credentials(), &request, TIMESTAMP, NONCE);
        let prefix = "EG1-HMAC-SHA256 client_token=akab-client-token-xxx-xxxxxxxxxxxxxxxx;access_token=akab-access-token-xxx-xxxxxxxxxxxxxxxx;timestamp=20140321T19:34:21+0000;nonce=nonce-xx-xxxx-xxxx-xxxx-xxxxxxxxxxxx;signature=";
        header
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("header shape: {header}"))
            .to_string()
    }

    /// Method, path and query, headers, body, expected signature.
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Vec<u8>, &'a str);

    #[test]
    fn akamai_test_vectors() {
        let d = |n| "d".repeat(n).into_bytes();
        let three = [("X-Test2", "t2"), ("X-Test1", "t1"), ("X-Test3", "t3")];
        let with_extra = [
            ("X-Test2", "t2"),
            ("X-Test1", "t1"),
            ("X-Test3", "t3"),
            ("X-Extra", "this won't be included"),
        ];
        let spaced = format!("{}first-thing{}second-thing", " ".repeat(5), " ".repeat(6));
        let cases: Vec<Case<'_>> = vec![
            (
                "GET",
                "/",
                vec![],
                vec![],
                "tL+y4hxyHxgWVD30X3pWnGKHcPzmrIF+LThiAOhMxYU=",
            ),
            (
                "GET",
                "/testapi/v1/t1?p1=1&p2=2",
                vec![],
                vec![],
                "hKDH1UlnQySSHjvIcZpDMbQHihTQ0XyVAKZaApabdeA=",
            ),
            (
                "POST",
                "/testapi/v1/t3",
                vec![],
                b"datadatadatadatadatadatadatadata".to_vec(),
                "hXm4iCxtpN22m4cbZb4lVLW5rhX8Ca82vCFqXzSTPe4=",
            ),
            (
                "POST",
                "/testapi/v1/t3",
                vec![],
                d(2049),
                "6Q6PiTipLae6n4GsSIDTCJ54bEbHUBp+4MUXrbQCBoY=",
            ),
            (
                "POST",
                "/testapi/v1/t3",
                vec![],
                d(2048),
                "6Q6PiTipLae6n4GsSIDTCJ54bEbHUBp+4MUXrbQCBoY=",
            ),
            (
                "POST",
                "/testapi/v1/t6",
                vec![],
                vec![],
                "1gEDxeQGD5GovIkJJGcBaKnZ+VaPtrc4qBUHixjsPCQ=",
            ),
            (
                "GET",
                "/testapi/v1/t4",
                vec![("X-Test1", "test-simple-header")],
                vec![],
                "8F9AybcRw+PLxnvT+H0JRkjROrrUgsxJTnRXMzqvcwY=",
            ),
            (
                "GET",
                "/testapi/v1/t%204",
                vec![("X-Test1", "test-simple-header")],
                vec![],
                "nks5K9Q96uegodgNmzAhLQMgAKaP48dAcKTX+T7Xu8k=",
            ),
            (
                "GET",
                "/testapi/v1/t4",
                vec![("X-Test1", "\"     test-header-with-spaces     \"")],
                vec![],
                "ucq2AbjCNtobHfCTuS38fdkl5UDdWHZhQX46fYR8CqI=",
            ),
            (
                "GET",
                "/testapi/v1/t4",
                vec![("X-Test1", spaced.as_str())],
                vec![],
                "WtnneL539UadAAOJwnsXvPqT4Kt6z7HMgBEwAFpt3+c=",
            ),
            (
                "GET",
                "/testapi/v1/t4",
                three.to_vec(),
                vec![],
                "Wus73Nx8jOYM+kkBFF2q8D1EATRIMr0WLWwpLBgkBqY=",
            ),
            (
                "GET",
                "/testapi/v1/t5",
                with_extra.to_vec(),
                vec![],
                "Knd/jc0A5Ghhizjayr0AUUvl2MZjBpS3FDSzvtq4Ixc=",
            ),
            (
                "PUT",
                "/testapi/v1/t6",
                vec![],
                b"PPPPPPPPPPPPPPPPPPPPPPPPPPPPPPP".to_vec(),
                "GNBWEYSEWOLtu+7dD52da2C39aX/Jchpon3K/AmBqBU=",
            ),
        ];
        for (method, path, headers, body, expected) in &cases {
            assert_eq!(
                signature(method, path, headers, body),
                *expected,
                "{method} {path} {headers:?}"
            );
        }
    }

    #[test]
    fn the_signing_key_is_the_hmac_of_the_timestamp() {
        assert_eq!(
            hmac_base64(credentials().client_secret.as_bytes(), TIMESTAMP.as_bytes()),
            "znsRMDBRqTXGJ7Ojip3/h2FGPu3LuoMYWgv9PKEnE/o="
        );
    }

    #[test]
    fn header_names_and_whitespace_are_canonical() {
        assert_eq!(canonical_name("x-test1"), "X-Test1");
        assert_eq!(canonical_name("CONTENT-type"), "Content-Type");
        assert_eq!(collapse("a\tb"), "a\tb");
        assert_eq!(collapse("a \t b   c"), "a b c");
    }

    #[test]
    fn timestamps_and_nonces_have_the_wire_form() {
        let at: jiff::Timestamp = "2014-03-21T19:34:21Z".parse().expect("time");
        assert_eq!(timestamp(at), TIMESTAMP);
        let (a, b) = (nonce(), nonce());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
    }

    #[test]
    fn debug_shows_no_secret() {
        let shown = format!("{:?}", credentials());
        assert!(shown.contains("luna.akamaiapis.net"), "{shown}");
        for secret in ["akab-client-token", "akab-access-token", "xxxxxxxxxx="] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
