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
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
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
    /// CPS and Origins v3.
    pub base_url: String,
    /// MCC (`/v2/mcc/...`), on its own host by default.
    pub mcc_base_url: String,
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
    /// Failed answers in a row (a success resets it): each doubles how long a failure is
    /// reused, so that a CDN API that is down is asked less and less often.
    failures: AtomicU32,
    /// Paths that failed, by cache key: no request for them before the instant, whatever
    /// freshness a caller asks for, and the failure to answer meanwhile.
    retry_at: Mutex<HashMap<String, (Instant, ProviderError)>>,
    observer: Option<RequestObserver>,
}

/// How long a failed answer is reused before the path is asked again (unless a 429 said
/// longer): failures are retried, but not by every delivery at once. It doubles with each
/// failure in a row, up to [`MAX_FAILURE_REUSE`].
const FAILURE_REUSE: Duration = Duration::from_secs(5);
const MAX_FAILURE_REUSE: Duration = Duration::from_secs(300);
/// A successful answer is dropped after this long, whatever a caller would accept, so that
/// answers no delivery asks for any more (an old property version's rule tree) do not stay.
const SUCCESS_REUSE: Duration = Duration::from_secs(600);

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
            failures: AtomicU32::new(0),
            retry_at: Mutex::new(HashMap::new()),
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
                async move { this.fetch(&path, &accept, endpoint).await }.boxed()
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

    fn lock_retries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, ProviderError)>> {
        self.retry_at.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last failure of `key` while its backoff lasts: a caller asking for a fresher answer
    /// than the backoff allows gets the failure again, and the CDN is not asked.
    fn backing_off(&self, key: &str) -> Option<Fetched<Result<Arc<Value>, ProviderError>>> {
        let retries = self.lock_retries();
        let (until, error) = retries.get(key)?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then(|| Fetched::now(Err(error.clone()), left))
    }

    /// The refusal to send while a 429's pause lasts, reused until the pause ends (not
    /// longer: the path is asked as soon as requests are allowed again).
    fn paused(&self) -> Option<Fetched<Result<Arc<Value>, ProviderError>>> {
        let pause = self.pause_left();
        // No countdown in the text: a message that changed at every look would rewrite every
        // delivery's status while the pause lasts.
        let refused = ProviderError::Unavailable(
            "rate limited by the CDN (HTTP 429): no request until its Retry-After has passed"
                .into(),
        );
        (!pause.is_zero()).then(|| Fetched::now(Err(refused), pause))
    }

    /// The answer for `path` and how long it may be reused: a success as long as callers
    /// allow, a failure for [`FAILURE_REUSE`] (or as long as a 429 asked, if longer).
    async fn fetch(
        &self,
        path: &str,
        accept: &str,
        endpoint: &'static str,
    ) -> Fetched<Result<Arc<Value>, ProviderError>> {
        if let Some(refused) = self.paused() {
            return refused;
        }
        let key = format!("{accept} {path}");
        if let Some(held) = self.backing_off(&key) {
            return held;
        }
        self.budget.until_ready().await;
        // A 429 may have come while this request waited for the budget.
        if let Some(refused) = self.paused() {
            return refused;
        }
        let value = self.request(path, accept, endpoint).await;
        let max_age = match &value {
            Ok(_) => {
                self.failures.store(0, Ordering::Relaxed);
                self.lock_retries().remove(&key);
                SUCCESS_REUSE
            }
            // A 404 is the CDN's answer (a certificate not there yet), not a failure.
            Err(ProviderError::NotFound(_)) => FAILURE_REUSE,
            Err(error) => {
                let n = self.failures.fetch_add(1, Ordering::Relaxed).min(6);
                let backoff = (FAILURE_REUSE * (1 << n)).min(MAX_FAILURE_REUSE);
                let wait = self.pause_left().max(backoff);
                let now = Instant::now();
                let mut retries = self.lock_retries();
                retries.retain(|_, (until, _)| *until > now);
                retries.insert(key, (now + wait, error.clone()));
                wait
            }
        };
        Fetched::now(value, max_age)
    }

    /// One request, observed; a 429 pauses the account for its `Retry-After`.
    async fn request(
        &self,
        path: &str,
        accept: &str,
        endpoint: &'static str,
    ) -> Result<Arc<Value>, ProviderError> {
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
                let base = match path.starts_with("/v2/mcc/") {
                    true => &t.mcc_base_url,
                    false => &t.base_url,
                };
                let url = format!("{base}{path}");
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
                    tokens.forget_refused(&auth).await;
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

#[cfg(test)]
mod tests {
    //! The account against the fake Edgecast API: shared answers, the budget, 429 pauses,
    //! OAuth2 token refresh and failure classification.

    use super::*;
    use crate::provider::edgecast_read::tests::{
        HOST, MINUTE, TARGET, account, account_with, cps, credentials, fake, healthy, mcc,
    };
    use crate::provider::view::{CdnView, CertificateState, Handles};
    use futures::future::join_all;
    use testkit::cdn::{
        CustomerOrigin, EDGECAST_ACCOUNT, EDGECAST_CLIENT_SECRET, EDGECAST_REST_TOKEN, EdgeCname,
        EdgecastCertificate, FakeCdn, Fault, Propagation,
    };

    const JSON: &str = "application/json";

    fn handles(certificate_id: i64) -> Handles {
        Handles {
            certificate_id: certificate_id.to_string(),
            edge_id: None,
        }
    }

    async fn read(
        account: &Arc<Account>,
        certificate_id: i64,
        hostname: &str,
        max_age: Duration,
    ) -> Result<CdnView, ProviderError> {
        crate::provider::read(account, &handles(certificate_id), hostname, max_age).await
    }

    /// Moves tokio's clock (the answers' ages and the 429 pause) on by `by`, at once.
    async fn skip(by: Duration) {
        tokio::time::pause();
        tokio::time::advance(by).await;
        tokio::time::resume();
    }

    /// Hosts `www{i}.shop.example`, each with its certificate `1000 + i` and edge CNAME
    /// `2000 + i` on HTTP Large, all pointing at customer origin 3000.
    fn twenty_deliveries(fake: &FakeCdn) {
        fake.edit(|s| {
            let ec = &mut s.edgecast;
            for i in 0..20 {
                let host = format!("www{i}.shop.example");
                ec.put_certificate(&EdgecastCertificate::active(1000 + i, &[&host], TARGET));
                ec.put_edge_cname(EDGECAST_ACCOUNT, &EdgeCname::new(2000 + i, &host, 3000));
                ec.set_edge_cname_propagation(2000 + i, &Propagation::propagated());
            }
            let origin = CustomerOrigin::https_only(3000, "shop-origin", "origin.shop.example");
            ec.put_origin(EDGECAST_ACCOUNT, &origin);
        });
    }

    #[tokio::test]
    async fn the_deliveries_of_an_account_share_its_answers() {
        let fake = fake().await;
        twenty_deliveries(&fake);
        let account = account(&fake);
        let reads = (0..20).map(|i| {
            let account = account.clone();
            async move { read(&account, 1000 + i, &format!("www{i}.shop.example"), MINUTE).await }
        });
        let views = join_all(reads).await;
        for (i, view) in views.into_iter().enumerate() {
            let view = view.expect("a view");
            assert_eq!(view.edge.map(|e| e.id), Some((2000 + i).to_string()));
            assert_eq!(view.origin.map(|o| o.name).as_deref(), Some("shop-origin"));
        }
        assert_eq!(fake.count("GET", &mcc("cnames/httplarge")), 1, "one list");
        assert_eq!(fake.count("GET", &mcc("origins/httplarge")), 1, "one list");
        for i in 0..20 {
            assert_eq!(fake.count("GET", &cps(1000 + i)), 1);
            assert_eq!(fake.count("GET", &format!("{}/status", cps(1000 + i))), 1);
            let status = mcc(&format!("cnames/{}/status", 2000 + i));
            assert_eq!(fake.count("GET", &status), 1);
        }
        assert_eq!(
            fake.tokens_issued(),
            1,
            "one OAuth2 token for every CPS read"
        );
        // Within max_age, a second round asks nothing.
        let again = read(&account, 1000, "www0.shop.example", MINUTE).await;
        assert!(again.is_ok());
        assert_eq!(
            fake.requests().len(),
            2 + 20 * 3 + 1,
            "20x3 paths, 2 lists, 1 token"
        );
    }

    #[tokio::test]
    async fn the_budget_spaces_requests_out() {
        let fake = fake().await;
        let credentials = credentials(EDGECAST_REST_TOKEN, EDGECAST_CLIENT_SECRET);
        let account = account_with(&fake, &credentials, 2);
        let started = tokio::time::Instant::now();
        // Six distinct paths at once: two at once (the burst), then one each half second.
        let gets = (0..6).map(|i| {
            let account = account.clone();
            async move {
                let path = mcc(&format!("cnames/{}", 5000 + i));
                account.get(&path, JSON, "test", MINUTE).await
            }
        });
        let answers = join_all(gets).await;
        let elapsed = started.elapsed();
        for answer in answers {
            assert!(
                matches!(answer, Err(ProviderError::NotFound(_))),
                "{answer:?}"
            );
        }
        assert_eq!(fake.requests().len(), 6);
        // (6 - 2) / 2 s; a little less for the rate limiter's own clock.
        assert!(elapsed >= Duration::from_millis(1950), "{elapsed:?}");
    }

    #[tokio::test]
    async fn a_429_pauses_every_path_of_the_account_for_its_retry_after() {
        let fake = fake().await;
        let account = account(&fake);
        let (list, origins) = (mcc("cnames/httplarge"), mcc("origins/httplarge"));
        let fault = Fault {
            status: 429,
            retry_after: Some(2),
        };
        fake.fail_with(&list, fault);
        let error = account.get(&list, JSON, "test", MINUTE).await;
        assert!(
            matches!(&error, Err(ProviderError::Unavailable(m)) if m.contains("429")),
            "{error:?}"
        );
        fake.clear_faults();
        let started = tokio::time::Instant::now();
        let error = account.get(&origins, JSON, "test", MINUTE).await;
        assert!(
            matches!(&error, Err(ProviderError::Unavailable(m)) if m.contains("rate limited")),
            "{error:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(500), "at once");
        assert_eq!(fake.count("GET", &origins), 0, "not sent during the pause");
        skip(Duration::from_millis(2100)).await;
        let answer = account.get(&origins, JSON, "test", MINUTE).await;
        assert!(
            answer.is_ok(),
            "asked again once the pause is over: {answer:?}"
        );
        assert_eq!(fake.count("GET", &origins), 1);
    }

    #[tokio::test]
    async fn requests_waiting_for_the_budget_are_not_sent_during_a_pause() {
        let fake = fake().await;
        let credentials = credentials(EDGECAST_REST_TOKEN, EDGECAST_CLIENT_SECRET);
        let account = account_with(&fake, &credentials, 1);
        let (list, origins) = (mcc("cnames/httplarge"), mcc("origins/httplarge"));
        let fault = Fault {
            status: 429,
            retry_after: Some(5),
        };
        fake.fail_with(&list, fault);
        // The first takes this second's one request and is answered 429; the second waits
        // for the next second, when the account is paused.
        let (first, second) = tokio::join!(
            account.get(&list, JSON, "test", MINUTE),
            account.get(&origins, JSON, "test", MINUTE),
        );
        assert!(
            matches!(first, Err(ProviderError::Unavailable(_))),
            "{first:?}"
        );
        assert!(
            matches!(second, Err(ProviderError::Unavailable(_))),
            "{second:?}"
        );
        assert_eq!(fake.count("GET", &list), 1);
        assert_eq!(fake.count("GET", &origins), 0, "not sent during the pause");
    }

    #[tokio::test]
    async fn a_revoked_token_is_replaced_once() {
        let fake = fake().await;
        healthy(&fake);
        let account = account(&fake);
        read(&account, 1234, HOST, MINUTE).await.expect("a view");
        assert_eq!(fake.tokens_issued(), 1);
        fake.revoke_tokens();
        let view = read(&account, 1234, HOST, Duration::ZERO)
            .await
            .expect("read with a new token");
        let state = view.certificate.map(|c| c.state);
        assert_eq!(state, Some(CertificateState::Active));
        assert_eq!(fake.tokens_issued(), 2, "exactly one new token");
        assert_eq!(
            fake.count("GET", &cps(1234)),
            3,
            "the refused read asked again once"
        );
    }

    #[tokio::test]
    async fn a_token_revoked_under_concurrent_reads_is_replaced_once() {
        let fake = fake().await;
        twenty_deliveries(&fake);
        let account = account(&fake);
        read(&account, 1000, "www0.shop.example", MINUTE)
            .await
            .expect("a view");
        fake.revoke_tokens();
        let reads = (0..20).map(|i| {
            let account = account.clone();
            let host = format!("www{i}.shop.example");
            async move { read(&account, 1000 + i, &host, Duration::ZERO).await }
        });
        for view in join_all(reads).await {
            assert!(view.expect("a view").certificate.is_some());
        }
        assert_eq!(fake.tokens_issued(), 2, "one new token for all");
    }

    #[tokio::test]
    async fn a_wrong_client_secret_is_unauthorized() {
        let fake = fake().await;
        healthy(&fake);
        let credentials = credentials(EDGECAST_REST_TOKEN, "not-the-client-secret");
        let account = account_with(&fake, &credentials, 1000);
        let error = read(&account, 1234, HOST, MINUTE).await;
        assert!(
            matches!(error, Err(ProviderError::Unauthorized(_))),
            "{error:?}"
        );
        assert_eq!(
            fake.count("GET", &cps(1234)),
            0,
            "no CPS read without a token"
        );
        assert_eq!(fake.tokens_issued(), 0);
    }

    #[tokio::test]
    async fn a_failure_is_reused_for_a_few_seconds_then_asked_again() {
        let fake = fake().await;
        healthy(&fake);
        let account = account(&fake);
        fake.fail(&cps(1234), 500);
        for _ in 0..3 {
            let error = read(&account, 1234, HOST, MINUTE).await;
            assert!(
                matches!(error, Err(ProviderError::Unavailable(_))),
                "{error:?}"
            );
        }
        assert_eq!(
            fake.count("GET", &cps(1234)),
            1,
            "one request for three deliveries"
        );
        fake.clear_faults();
        skip(Duration::from_secs(4)).await;
        let error = read(&account, 1234, HOST, MINUTE).await;
        assert!(error.is_err(), "still the failure");
        assert_eq!(fake.count("GET", &cps(1234)), 1);
        skip(Duration::from_millis(1100)).await;
        read(&account, 1234, HOST, MINUTE)
            .await
            .expect("asked again");
        assert_eq!(fake.count("GET", &cps(1234)), 2);
    }

    /// Every failure a wrong Secret or a failing API gives, as shown and as debugged.
    async fn failures(fake: &FakeCdn, rest_token: &str, client_secret: &str) -> Vec<String> {
        let mut errors = Vec::new();
        for credentials in [
            credentials(rest_token, EDGECAST_CLIENT_SECRET),
            credentials(EDGECAST_REST_TOKEN, client_secret),
        ] {
            let account = account_with(fake, &credentials, 1000);
            errors.push(read(&account, 1234, HOST, MINUTE).await.err());
            errors.push(crate::provider::check_access(&account).await.err());
        }
        for (pattern, status) in [("/sec/cps/*", 500), ("/v2/mcc/*", 403), ("/sec/cps/*", 429)] {
            fake.fail(pattern, status);
            errors.push(read(&account(fake), 1234, HOST, MINUTE).await.err());
            fake.clear_faults();
        }
        let mut no_rest_token = credentials("", client_secret);
        no_rest_token.remove("rest_token");
        let spec_error = crate::provider::build_account(
            &crate::api::account::CdnAccountSpec {
                provider: crate::api::account::Provider::Edgecast,
                edgecast: None,
                akamai: None,
                credentials_secret_ref: crate::api::account::CredentialsReference {
                    name: "x".into(),
                },
                requests_per_second: None,
            },
            &no_rest_token,
            crate::provider::http::test_client(true, Default::default()),
            None,
        );
        errors.push(spec_error.err());
        errors
            .into_iter()
            .map(|e| e.expect("every one fails"))
            .flat_map(|e| [e.to_string(), format!("{e:?}")])
            .collect()
    }

    #[tokio::test]
    async fn credentials_never_appear_in_errors() {
        let fake = fake().await;
        healthy(&fake);
        let (rest_token, client_secret) = ("wrong-rest-token-yyy", "wrong-client-secret-yyy");
        let shown = failures(&fake, rest_token, client_secret).await;
        assert_eq!(shown.len(), 2 * 8);
        let secrets = [
            EDGECAST_REST_TOKEN,
            EDGECAST_CLIENT_SECRET,
            rest_token,
            client_secret,
            "TOK:",
            "Bearer",
            "ec-access-token",
        ];
        for text in &shown {
            for secret in secrets {
                assert!(!text.contains(secret), "{secret:?} in {text}");
            }
        }
    }

    /// A CDN API that accepts the connection and never answers is Unavailable after the
    /// client's deadline, and the answer is not waited for again by every delivery.
    #[tokio::test]
    async fn a_hanging_api_is_unavailable_after_the_deadline() {
        let fake = fake().await;
        healthy(&fake);
        fake.set_delay(Duration::from_secs(30));
        let spec = crate::api::account::CdnAccountSpec {
            provider: crate::api::account::Provider::Edgecast,
            edgecast: Some(crate::api::account::EdgecastSettings {
                account_number: EDGECAST_ACCOUNT.into(),
                base_url: Some(fake.base_url()),
                mcc_base_url: None,
                token_url: None,
            }),
            akamai: None,
            credentials_secret_ref: crate::api::account::CredentialsReference { name: "x".into() },
            requests_per_second: Some(100),
        };
        let limits = crate::provider::http::Limits {
            timeout: Duration::from_secs(1),
            ..Default::default()
        };
        let api = crate::provider::http::test_client(true, limits);
        let rest = std::collections::BTreeMap::from([(
            "rest_token".to_string(),
            EDGECAST_REST_TOKEN.to_string(),
        )]);
        let account =
            Arc::new(crate::provider::build_account(&spec, &rest, api, None).expect("account"));
        let started = std::time::Instant::now();
        let path = mcc("cnames/httplarge");
        let error = account
            .get(&path, "application/json", "mcc.cnames", Duration::MAX)
            .await
            .expect_err("hangs");
        assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");
        assert!(
            error.to_string().contains("did not answer within 1s"),
            "{error}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        // Asked again at once, the failure is the shared answer: no second wait.
        let again = std::time::Instant::now();
        let _ = account
            .get(&path, "application/json", "mcc.cnames", Duration::MAX)
            .await;
        assert!(
            again.elapsed() < Duration::from_millis(500),
            "{:?}",
            again.elapsed()
        );
    }

    /// A CDN API that keeps failing is asked less and less often (5 s, 10 s, 20 s ... up to
    /// 5 minutes between requests for a path); one success starts over.
    #[tokio::test]
    async fn failures_in_a_row_back_off_and_a_success_starts_over() {
        let fake = fake().await;
        healthy(&fake);
        let account = account(&fake);
        fake.fail(&cps(1234), 500);
        let count = || fake.count("GET", &cps(1234));
        let _ = read(&account, 1234, HOST, MINUTE).await;
        assert_eq!(count(), 1);
        skip(Duration::from_millis(5100)).await;
        let _ = read(&account, 1234, HOST, MINUTE).await;
        assert_eq!(count(), 2, "asked again after 5 s");
        skip(Duration::from_millis(5100)).await;
        let _ = read(&account, 1234, HOST, Duration::from_secs(1)).await;
        assert_eq!(
            count(),
            2,
            "the second failure is held for 10 s, even for a caller asking for 1 s"
        );
        skip(Duration::from_millis(5100)).await;
        let _ = read(&account, 1234, HOST, MINUTE).await;
        assert_eq!(count(), 3, "asked again after 10 s");
        fake.clear_faults();
        skip(Duration::from_millis(20_100)).await;
        read(&account, 1234, HOST, MINUTE).await.expect("back");
        assert_eq!(count(), 4);
        fake.fail(&cps(1234), 500);
        skip(Duration::from_secs(61)).await;
        let _ = read(&account, 1234, HOST, MINUTE).await;
        assert_eq!(count(), 5);
        skip(Duration::from_millis(5100)).await;
        let _ = read(&account, 1234, HOST, MINUTE).await;
        assert_eq!(count(), 6, "after a success, 5 s again");
    }
}
