//! Requests to Akamai's APIs (CPS, PAPI), each signed with EdgeGrid at the moment it is sent
//! (a fresh timestamp and nonce per request, and per retry), through the guarded API client.

use super::edgegrid::{self, Credentials, Request};
use super::http::{ApiClient, ApiError};

/// CPS answers an enrollment only in its versioned media type (doc B.4).
pub const CPS_ENROLLMENT: &str = "application/vnd.akamai.cps.enrollment.v11+json";

/// An Akamai API client for one set of credentials.
#[derive(Clone, Debug)]
pub struct AkamaiClient {
    api: ApiClient,
    credentials: Credentials,
    /// `https://{host}` unless overridden (a test's loopback fake).
    base_url: String,
}

impl AkamaiClient {
    pub fn new(api: ApiClient, credentials: Credentials, base_url: Option<&str>) -> Self {
        let base_url = match base_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("https://{}", credentials.host),
        };
        AkamaiClient {
            api,
            credentials,
            base_url,
        }
    }

    /// GETs `path_and_query` (as sent: percent-encoded) asking for `accept`.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path_and_query: &str,
        accept: &str,
    ) -> Result<T, ApiError> {
        let timestamp = edgegrid::timestamp(jiff::Timestamp::now());
        let authorization = edgegrid::authorization(
            &self.credentials,
            &Request {
                method: "GET",
                path_and_query,
                headers: &[],
                body: &[],
            },
            &timestamp,
            &edgegrid::nonce(),
        );
        self.api
            .get_json(
                &format!("{}{path_and_query}", self.base_url),
                &[("authorization", &authorization), ("accept", accept)],
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::http::Limits;
    use testkit::cdn::{CdnConfig, EdgeGridCredentials, Enrollment, FakeCdn};

    fn client(fake: &FakeCdn, secret: Option<&str>) -> AkamaiClient {
        let api = crate::provider::http::test_client(true, Limits::default());
        let known = EdgeGridCredentials::placeholder();
        let credentials = Credentials {
            // What the client sends as Host, which the fake verifies the signature with.
            host: fake.addr().to_string(),
            client_token: known.client_token,
            client_secret: secret.map_or(known.client_secret, str::to_string),
            access_token: known.access_token,
            max_body: edgegrid::DEFAULT_MAX_BODY,
            headers_to_sign: Vec::new(),
        };
        AkamaiClient::new(api, credentials, Some(&fake.base_url()))
    }

    #[tokio::test]
    async fn signed_requests_read_an_enrollment_and_a_wrong_secret_is_refused() {
        let fake = FakeCdn::start(CdnConfig::default()).await.expect("fake");
        let enrollment = Enrollment::new(10, "shop.example.com", &["shop.example.com"]);
        fake.edit(|s| s.akamai.put_enrollment(&enrollment));

        let read: serde_json::Value = client(&fake, None)
            .get_json("/cps/v2/enrollments/10", CPS_ENROLLMENT)
            .await
            .expect("the enrollment");
        assert_eq!(read, enrollment.to_json());
        // Each request is signed anew (a second read is not refused as a replay).
        let again: serde_json::Value = client(&fake, None)
            .get_json("/cps/v2/enrollments/10", CPS_ENROLLMENT)
            .await
            .expect("the enrollment again");
        assert_eq!(again, read);

        let wrong = client(&fake, Some("yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy="))
            .get_json::<serde_json::Value>("/cps/v2/enrollments/10", CPS_ENROLLMENT)
            .await
            .expect_err("a bad signature");
        assert!(
            matches!(wrong, ApiError::Status { status: 401, .. }),
            "{wrong:?}"
        );
        assert!(!wrong.to_string().contains("yyyy"), "{wrong}");
        let log = fake.requests();
        assert_eq!(
            log.iter().map(|r| r.authorized).collect::<Vec<_>>(),
            [true, true, false]
        );
    }
}
