//! Edgecast's OAuth2 tokens (client credentials, `POST {id}/connect/token`, doc A.2): fetched
//! once and shared by every request of the account until a minute before they expire (the
//! SDK keeps them to the last second, which races the expiry). Callers that ask while a token
//! is being fetched wait for that one fetch.

use super::http::{ApiClient, ApiError};
use std::time::{Duration, Instant};

/// Edgecast's identity service (doc A.1).
pub const DEFAULT_TOKEN_URL: &str = "https://id.vdms.io/connect/token";

/// The longest a token is kept, in seconds, whatever `expires_in` says.
const MAX_TOKEN_LIFETIME: u64 = 86_400;

/// A token is fetched again this long before it expires.
const REFRESH_BEFORE: Duration = Duration::from_secs(60);

/// The OAuth2 client of one account, for one scope.
pub struct TokenSource {
    api: ApiClient,
    token_url: String,
    client_id: String,
    client_secret: String,
    scope: String,
    cached: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

impl TokenSource {
    pub fn new(
        api: ApiClient,
        token_url: &str,
        client_id: &str,
        client_secret: &str,
        scope: &str,
    ) -> Self {
        TokenSource {
            api,
            token_url: token_url.to_string(),
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            scope: scope.to_string(),
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// The `Authorization` header value: `Bearer <token>`, from the cache while it is fresh.
    pub async fn authorization(&self) -> Result<String, ApiError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, fresh_until)) = cached.as_ref()
            && Instant::now() < *fresh_until
        {
            return Ok(format!("Bearer {token}"));
        }
        let fetched: TokenResponse = self
            .api
            .post_form_json(
                &self.token_url,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &self.client_id),
                    ("client_secret", &self.client_secret),
                    ("scope", &self.scope),
                ],
            )
            .await?;
        // `expires_in` is the token endpoint's to choose: a day at most, so that no answer can
        // overflow the clock (or keep a token forever).
        let lifetime = Duration::from_secs(fetched.expires_in.min(MAX_TOKEN_LIFETIME))
            .saturating_sub(REFRESH_BEFORE);
        let header = format!("Bearer {}", fetched.access_token);
        let now = Instant::now();
        *cached = Some((
            fetched.access_token,
            now.checked_add(lifetime).unwrap_or(now),
        ));
        Ok(header)
    }

    /// Drops the cached token (the API answered 401: it was revoked or expired early).
    pub async fn forget(&self) {
        *self.cached.lock().await = None;
    }

    /// Drops the cached token if it is still the one `authorization` (a header this source
    /// gave) carried and the API refused: of many requests refused with one revoked token,
    /// the first makes the source fetch a new one, and the others use that one.
    pub async fn forget_refused(&self, authorization: &str) {
        let mut cached = self.cached.lock().await;
        let refused = authorization.strip_prefix("Bearer ");
        if cached
            .as_ref()
            .is_some_and(|(token, _)| Some(token.as_str()) == refused)
        {
            *cached = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::http::Limits;
    use std::sync::Arc;
    use testkit::cdn::{CdnConfig, EDGECAST_CLIENT_ID, EDGECAST_CLIENT_SECRET, FakeCdn, SCOPE_CPS};

    fn api() -> ApiClient {
        crate::provider::http::test_client(true, Limits::default())
    }

    async fn fake(lifetime: Duration) -> FakeCdn {
        let config = CdnConfig {
            token_lifetime: lifetime,
            ..CdnConfig::default()
        };
        FakeCdn::start(config).await.expect("the fake CDN")
    }

    fn source(cdn: &FakeCdn, secret: &str) -> TokenSource {
        TokenSource::new(
            api(),
            &format!("{}/connect/token", cdn.base_url()),
            EDGECAST_CLIENT_ID,
            secret,
            SCOPE_CPS,
        )
    }

    #[tokio::test]
    async fn one_token_is_shared_until_a_minute_before_it_expires() {
        let cdn = fake(Duration::from_secs(3600)).await;
        let tokens = Arc::new(source(&cdn, EDGECAST_CLIENT_SECRET));
        let asks: Vec<_> = (0..8)
            .map(|_| {
                let tokens = tokens.clone();
                tokio::spawn(async move { tokens.authorization().await })
            })
            .collect();
        let mut headers = Vec::new();
        for ask in asks {
            headers.push(ask.await.expect("task").expect("a token"));
        }
        assert!(
            headers
                .iter()
                .all(|h| h == &headers[0] && h.starts_with("Bearer "))
        );
        assert_eq!(
            cdn.count("POST", "/connect/token"),
            1,
            "one fetch for 8 callers"
        );

        // A token that lives 61 s is fresh for 1 s only.
        let cdn = fake(Duration::from_secs(61)).await;
        let tokens = source(&cdn, EDGECAST_CLIENT_SECRET);
        tokens.authorization().await.expect("a token");
        tokens.authorization().await.expect("the same token");
        assert_eq!(cdn.count("POST", "/connect/token"), 1);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        tokens.authorization().await.expect("a new token");
        assert_eq!(cdn.count("POST", "/connect/token"), 2);
        tokens.forget().await;
        tokens.authorization().await.expect("fetched again");
        assert_eq!(cdn.count("POST", "/connect/token"), 3);
    }

    #[tokio::test]
    async fn only_the_refused_token_is_forgotten() {
        let cdn = fake(Duration::from_secs(3600)).await;
        let tokens = source(&cdn, EDGECAST_CLIENT_SECRET);
        let refused = tokens.authorization().await.expect("a token");
        tokens.forget_refused(&refused).await;
        let current = tokens.authorization().await.expect("a new token");
        assert_ne!(current, refused);
        // A request that was refused the old token, answered after the new one came.
        tokens.forget_refused(&refused).await;
        assert_eq!(tokens.authorization().await.expect("kept"), current);
        assert_eq!(cdn.count("POST", "/connect/token"), 2);
    }

    #[tokio::test]
    async fn a_wrong_secret_is_an_error_that_does_not_repeat_it() {
        let cdn = fake(Duration::from_secs(3600)).await;
        let secret = "not-the-secret-xxx";
        let tokens = source(&cdn, secret);
        let error = tokens.authorization().await.expect_err("refused");
        assert_eq!(
            error,
            ApiError::Status {
                host: "127.0.0.1".into(),
                status: 400
            }
        );
        assert!(!error.to_string().contains(secret), "{error}");
        assert!(!format!("{tokens:?}").contains(secret));
    }

    /// The token endpoint chooses `expires_in`: an absurd one is a day, never a crash.
    #[tokio::test]
    async fn an_absurd_expires_in_is_capped_not_a_panic() {
        let cdn = fake(Duration::from_secs(u64::MAX)).await;
        let tokens = source(&cdn, EDGECAST_CLIENT_SECRET);
        tokens.authorization().await.expect("a token");
        let cached = tokens.cached.lock().await.clone().expect("cached");
        assert!(cached.1 <= Instant::now() + Duration::from_secs(MAX_TOKEN_LIFETIME));
    }
}
