//! One CDN account as the operator uses it: how its requests are authenticated, the answers
//! shared by every delivery of the account (one request per path per cycle), and its request
//! budget (requests per second), so that a thousand deliveries never burst a thousand requests.

use super::akamai::AkamaiClient;
use super::edgecast_auth::TokenSource;
use super::http::{ApiClient, ApiError};
use super::view::ProviderError;
use crate::probe::cache::{Fetched, SharedCache};
use futures::FutureExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::Value;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The identifiers a provider's paths need, from the account's spec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountSettings {
    /// Edgecast's customer account number (the `{AN}` of MCC paths).
    pub edgecast_account_number: Option<String>,
    /// Akamai's contract and group (PAPI needs both on every property read).
    pub akamai_contract_id: Option<String>,
    pub akamai_group_id: Option<String>,
}

/// How requests reach the provider.
pub enum Transport {
    Edgecast(Box<EdgecastTransport>),
    Akamai(Box<AkamaiClient>),
}

/// Edgecast: MCC with the REST token (`TOK:`); CPS and Origins v3 with OAuth2 Bearer tokens
/// (one source per scope), else the REST token.
pub struct EdgecastTransport {
    pub api: ApiClient,
    pub base_url: String,
    pub rest_token: Option<String>,
    /// Token sources for the `sec.cps.certificates` and `cdn.origins` scopes.
    pub cps_tokens: Option<TokenSource>,
    pub origin_tokens: Option<TokenSource>,
}

/// Called once per request: provider, endpoint (a path template), outcome, seconds.
pub type RequestObserver = Arc<dyn Fn(&'static str, &'static str, &'static str, f64) + Send + Sync>;

/// A CDN account the deliveries read through.
pub struct Account {
    /// `edgecast` or `akamai`.
    pub provider: &'static str,
    pub settings: AccountSettings,
    transport: Transport,
    /// Answers by path, shared by every delivery of the account.
    answers: SharedCache<String, Result<Arc<Value>, ProviderError>>,
    budget: DefaultDirectRateLimiter,
    /// No request before this instant (a 429's `Retry-After`).
    paused_until: Mutex<Option<Instant>>,
    observer: Option<RequestObserver>,
}

/// How long a failed answer is reused before the path is asked again (unless a 429 said
/// longer): failures are retried, but not by every delivery at once.
const FAILURE_REUSE: Duration = Duration::from_secs(5);

impl Account {
    /// `requests_per_second`: the account's budget (at least 1).
    pub fn new(
        transport: Transport,
        settings: AccountSettings,
        requests_per_second: u32,
        observer: Option<RequestObserver>,
    ) -> Account {
        let provider = match transport {
            Transport::Edgecast(_) => "edgecast",
            Transport::Akamai(_) => "akamai",
        };
        let rate = NonZeroU32::new(requests_per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        Account {
            provider,
            settings,
            transport,
            answers: SharedCache::new(Duration::MAX),
            budget: RateLimiter::direct(Quota::per_second(rate)),
            paused_until: Mutex::new(None),
            observer,
        }
    }

    /// The answer for `path` (as sent, percent-encoded), shared with every other caller asking
    /// within `max_age`. `accept`: the media type (Akamai CPS needs its versioned one).
    /// `endpoint` names the path's template for metrics (no IDs).
    pub async fn get(
        self: &Arc<Self>,
        path: &str,
        accept: &str,
        endpoint: &'static str,
        max_age: Duration,
    ) -> Result<Arc<Value>, ProviderError> {
        let this = self.clone();
        let key = format!("{accept} {path}");
        let (path, accept) = (path.to_string(), accept.to_string());
        self.answers
            .get(key, max_age, move || {
                async move {
                    let value = this.fetch(&path, &accept, endpoint).await;
                    let max_age = match &value {
                        Ok(_) => Duration::MAX,
                        Err(_) => this.pause_left().max(FAILURE_REUSE),
                    };
                    Fetched { value, max_age }
                }
                .boxed()
            })
            .await
    }

    /// Decodes an answer into `T`, naming the JSON path that does not fit.
    pub fn decode<T: serde::de::DeserializeOwned>(
        value: &Value,
        what: &str,
    ) -> Result<T, ProviderError> {
        serde_path_to_error::deserialize(value)
            .map_err(|e| ProviderError::Unexpected(format!("{what}: {e}")))
    }

    fn pause_left(&self) -> Duration {
        let paused = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        paused.map_or(Duration::ZERO, |until| {
            until.saturating_duration_since(Instant::now())
        })
    }

    async fn fetch(
        &self,
        path: &str,
        accept: &str,
        endpoint: &'static str,
    ) -> Result<Arc<Value>, ProviderError> {
        let pause = self.pause_left();
        if !pause.is_zero() {
            return Err(ProviderError::Unavailable(format!(
                "rate limited by the CDN; the next request is allowed in {}s",
                pause.as_secs().max(1)
            )));
        }
        self.budget.until_ready().await;
        let started = std::time::Instant::now();
        let answer = self.send(path, accept).await;
        let outcome = match &answer {
            Ok(_) => "ok",
            Err(ApiError::Status { status: 401, .. }) => "unauthorized",
            Err(ApiError::Status { status: 403, .. }) => "forbidden",
            Err(ApiError::Status { status: 404, .. }) => "not_found",
            Err(ApiError::RateLimited { .. }) => "rate_limited",
            Err(ApiError::Timeout { .. }) => "timeout",
            Err(ApiError::Decode { .. }) => "unexpected",
            Err(_) => "error",
        };
        if let Some(observe) = &self.observer {
            observe(
                self.provider,
                endpoint,
                outcome,
                started.elapsed().as_secs_f64(),
            );
        }
        if let Err(ApiError::RateLimited { retry_after, .. }) = &answer {
            let wait = Duration::from_secs(retry_after.unwrap_or(30).min(3600));
            *self.paused_until.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + wait);
        }
        answer.map(Arc::new).map_err(classify)
    }

    async fn send(&self, path: &str, accept: &str) -> Result<Value, ApiError> {
        match &self.transport {
            Transport::Akamai(client) => client.get_json(path, accept).await,
            Transport::Edgecast(t) => {
                let tokens = if path.starts_with("/sec/cps/") {
                    t.cps_tokens.as_ref()
                } else if path.starts_with("/cdn/origins/") {
                    t.origin_tokens.as_ref()
                } else {
                    None
                };
                let url = format!("{}{path}", t.base_url);
                let rest = t.rest_token.as_ref().map(|token| format!("TOK:{token}"));
                let Some(tokens) = tokens else {
                    let auth = rest.unwrap_or_default();
                    return t
                        .api
                        .get_json(&url, &[("authorization", &auth), ("accept", accept)])
                        .await;
                };
                // A token revoked before its expiry is answered 401: fetch a new one, once.
                let mut answer = Err(ApiError::Status {
                    host: String::new(),
                    status: 401,
                });
                for _ in 0..2 {
                    let auth = tokens.authorization().await.map_err(token_refused)?;
                    answer = t
                        .api
                        .get_json(&url, &[("authorization", &auth), ("accept", accept)])
                        .await;
                    if !matches!(answer, Err(ApiError::Status { status: 401, .. })) {
                        break;
                    }
                    tokens.forget().await;
                }
                answer
            }
        }
    }
}

/// The token endpoint answers a wrong client ID or secret with 400 `invalid_client` (RFC 6749
/// 5.2): for the account that is a refusal of its credentials, as a 401 is.
fn token_refused(error: ApiError) -> ApiError {
    match error {
        ApiError::Status { host, status: 400 } => ApiError::Status { host, status: 401 },
        other => other,
    }
}

/// What an API failure means for the deliveries.
fn classify(error: ApiError) -> ProviderError {
    match &error {
        ApiError::Status { status: 401, .. } => ProviderError::Unauthorized(error.to_string()),
        ApiError::Status { status: 403, .. } | ApiError::Forbidden { .. } => {
            ProviderError::Forbidden(error.to_string())
        }
        ApiError::Status { status: 404, .. } => ProviderError::NotFound(error.to_string()),
        ApiError::Decode { .. } => ProviderError::Unexpected(error.to_string()),
        ApiError::BadUrl { .. } => ProviderError::Account(error.to_string()),
        _ => ProviderError::Unavailable(error.to_string()),
    }
}
