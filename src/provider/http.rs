//! The HTTPS client of provider mode. A CDN account's base URL comes from an object in the
//! cluster, so every request is held to what a probe is: the target guard decides every
//! address before a socket is opened (an IP in the URL, and each address a name resolves to),
//! redirects are not followed, each request has a deadline, and a response is read only up to
//! a size limit. Errors name the URL's host and what went wrong, never a header (credentials
//! travel in headers).

use crate::probe::guard::TargetGuard;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Limits of one API request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub timeout: Duration,
    /// Bytes of a response body read at most.
    pub max_response: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(10),
            max_response: 4 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    #[error("{url} is not a usable API URL: {why}")]
    BadUrl { url: String, why: String },
    #[error("{host}: {why}")]
    Forbidden { host: String, why: String },
    #[error("{host} did not answer within {seconds}s")]
    Timeout { host: String, seconds: u64 },
    #[error("{host} cannot be reached: {why}")]
    Unreachable { host: String, why: String },
    #[error("{host} answered HTTP {status}")]
    Status { host: String, status: u16 },
    /// 429 Too Many Requests, with the `Retry-After` seconds when the server gave them.
    #[error("{host} is rate limiting (HTTP 429){}", retry_after.map(|s| format!(", retry after {s}s")).unwrap_or_default())]
    RateLimited {
        host: String,
        retry_after: Option<u64>,
    },
    #[error("{host} sent more than {limit} bytes")]
    TooLarge { host: String, limit: usize },
    #[error("{host} sent a body that is not the expected JSON: {why}")]
    Decode { host: String, why: String },
}

/// The clients of provider mode. A namespaced CdnAccount's base URL is a namespace user's
/// input: its requests pass the probes' target guard (`--allow-cidr`), so that it cannot aim
/// the operator at the cluster's private network. A ClusterCdnAccount is the cluster
/// administrators' configuration, like the operator's flags: its base URLs may be any address
/// (an egress proxy on a private network, say).
#[derive(Clone, Debug)]
pub struct ApiClients {
    pub namespaced: ApiClient,
    pub cluster: ApiClient,
}

impl ApiClients {
    pub fn for_probe_config(probe: &crate::probe::ProbeConfig) -> Result<Self, String> {
        let anywhere = vec![
            ipnet::IpNet::V4(ipnet::Ipv4Net::default()),
            ipnet::IpNet::V6(ipnet::Ipv6Net::default()),
        ];
        Ok(ApiClients {
            namespaced: ApiClient::for_probe_config(
                probe,
                TargetGuard::new(probe.allow_cidrs.clone()),
            )?,
            cluster: ApiClient::for_probe_config(probe, TargetGuard::new(anywhere))?,
        })
    }

    /// The client for an account of `kind`.
    pub fn for_kind(&self, kind: crate::api::AccountKind) -> &ApiClient {
        match kind {
            crate::api::AccountKind::CdnAccount => &self.namespaced,
            crate::api::AccountKind::ClusterCdnAccount => &self.cluster,
        }
    }
}

/// An HTTPS client for one CDN API.
#[derive(Clone, Debug)]
pub struct ApiClient {
    http: reqwest::Client,
    guard: Arc<TargetGuard>,
    limits: Limits,
}

/// Resolves names as the system does, then keeps only the addresses the guard allows.
struct GuardedResolver {
    guard: Arc<TargetGuard>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved: Vec<_> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refusals = Vec::new();
            let allowed: Vec<_> = resolved
                .into_iter()
                .filter(|a| match guard.check(a.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refusals.push(why);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = refusals
                    .first()
                    .cloned()
                    .unwrap_or_else(|| format!("{host} has no addresses"));
                return Err(why.into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

impl ApiClient {
    /// A client verifying servers with `tls` (the operator's roots), refusing what `guard`
    /// refuses.
    pub fn new(
        tls: rustls::ClientConfig,
        guard: TargetGuard,
        limits: Limits,
    ) -> Result<Self, reqwest::Error> {
        let guard = Arc::new(guard);
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .dns_resolver(Arc::new(GuardedResolver {
                guard: guard.clone(),
            }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(limits.timeout)
            .build()?;
        Ok(ApiClient {
            http,
            guard,
            limits,
        })
    }

    /// A client of provider mode, for the operator and `check` alike: the bundled web roots
    /// and `--ca-file`s, `guard`, the default limits.
    fn for_probe_config(
        probe: &crate::probe::ProbeConfig,
        guard: TargetGuard,
    ) -> Result<Self, String> {
        let mut roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for file in &probe.ca_files {
            for der in crate::probe::tls::load_ca_file(file).map_err(|e| e.to_string())? {
                roots.add(der).map_err(|e| e.to_string())?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        ApiClient::new(tls, guard, Limits::default()).map_err(|e| e.to_string())
    }

    /// GETs `url` with `headers` and decodes the JSON answer.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<T, ApiError> {
        self.send_json(url, |http, url| {
            headers
                .iter()
                .fold(http.get(url), |request, (name, value)| {
                    request.header(*name, *value)
                })
        })
        .await
    }

    /// POSTs `form` (`application/x-www-form-urlencoded`) to `url` and decodes the JSON answer.
    pub async fn post_form_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<T, ApiError> {
        self.send_json(url, |http, url| http.post(url).form(form))
            .await
    }

    async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        build: impl FnOnce(&reqwest::Client, reqwest::Url) -> reqwest::RequestBuilder,
    ) -> Result<T, ApiError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| ApiError::BadUrl {
            url: url.to_string(),
            why: e.to_string(),
        })?;
        let host = self.admit(&parsed)?;
        let response = build(&self.http, parsed)
            .send()
            .await
            .map_err(|e| self.failed(&host, &e))?;
        let status = response.status();
        if status.as_u16() == 429 {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            return Err(ApiError::RateLimited { host, retry_after });
        }
        if !status.is_success() {
            return Err(ApiError::Status {
                host,
                status: status.as_u16(),
            });
        }
        let body = self.read_bounded(&host, response).await?;
        // A shape change names the JSON path that no longer fits.
        let mut decoder = serde_json::Deserializer::from_slice(&body);
        serde_path_to_error::deserialize(&mut decoder).map_err(|e| ApiError::Decode {
            host,
            why: e.to_string(),
        })
    }

    /// The URL's host, when the scheme is HTTP(S) and an IP written in it is allowed (reqwest
    /// does not resolve an IP, so the resolver's guard would not see it).
    fn admit(&self, url: &reqwest::Url) -> Result<String, ApiError> {
        let bad = |why: &str| ApiError::BadUrl {
            url: url.to_string(),
            why: why.to_string(),
        };
        let host = url.host_str().ok_or_else(|| bad("it has no host"))?;
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let ip = literal.parse::<IpAddr>().ok();
        match url.scheme() {
            "https" => {}
            // Credentials travel in headers: plain HTTP only to this machine (a test's fake).
            "http" if ip.is_some_and(|ip| ip.is_loopback()) => {}
            _ => return Err(bad("the scheme must be https")),
        }
        if let Some(ip) = ip {
            self.guard.check(ip).map_err(|why| ApiError::Forbidden {
                host: host.to_string(),
                why,
            })?;
        }
        Ok(host.to_string())
    }

    fn failed(&self, host: &str, e: &reqwest::Error) -> ApiError {
        if e.is_timeout() {
            return ApiError::Timeout {
                host: host.to_string(),
                seconds: self.limits.timeout.as_secs(),
            };
        }
        // The innermost cause says what happened (refused, guard, TLS), without the URL.
        let mut why = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            why = s.to_string();
            source = s.source();
        }
        if why.contains("--allow-cidr") {
            return ApiError::Forbidden {
                host: host.to_string(),
                why,
            };
        }
        ApiError::Unreachable {
            host: host.to_string(),
            why,
        }
    }

    async fn read_bounded(
        &self,
        host: &str,
        mut response: reqwest::Response,
    ) -> Result<Vec<u8>, ApiError> {
        let limit = self.limits.max_response;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.failed(host, &e))? {
            if body.len() + chunk.len() > limit {
                return Err(ApiError::TooLarge {
                    host: host.to_string(),
                    limit,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// A client for tests: no roots (the fakes speak plain HTTP on loopback), the guard allowing
/// loopback or nothing.
#[cfg(test)]
pub(crate) fn test_client(allow_loopback: bool, limits: Limits) -> ApiClient {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let allow = match allow_loopback {
        true => vec![
            "127.0.0.0/8".parse().expect("net"),
            "::1/128".parse().expect("net"),
        ],
        false => Vec::new(),
    };
    ApiClient::new(tls, TargetGuard::new(allow), limits).expect("client")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A plain-HTTP API on 127.0.0.1 counting the requests it gets.
    async fn server() -> (u16, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let app = Router::new()
            .route("/ok", get(|| async { r#"{"a": 1}"# }))
            .route("/big", get(|| async { "x".repeat(4096) }))
            .route("/text", get(|| async { "not json" }))
            .route("/denied", get(|| async { StatusCode::UNAUTHORIZED }))
            .route(
                "/moved",
                get(|| async { (StatusCode::FOUND, [("location", "/ok")]).into_response() }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    let counted = counted.clone();
                    async move {
                        counted.fetch_add(1, Ordering::SeqCst);
                        next.run(req).await
                    }
                },
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (port, hits)
    }

    type Json = serde_json::Value;

    #[tokio::test]
    async fn answers_are_read_within_bounds() {
        let (port, _) = server().await;
        let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
        let limits = Limits {
            timeout: Duration::from_secs(1),
            max_response: 1024,
        };
        let api = test_client(true, limits);
        let host = "127.0.0.1".to_string();
        let ok: Json = api
            .get_json(&url("/ok"), &[("accept", "application/json")])
            .await
            .expect("ok");
        assert_eq!(ok, serde_json::json!({"a": 1}));
        let get = |path: &'static str| {
            let api = api.clone();
            let url = url(path);
            async move { api.get_json::<Json>(&url, &[]).await.expect_err(path) }
        };
        assert_eq!(
            get("/denied").await,
            ApiError::Status {
                host: host.clone(),
                status: 401
            }
        );
        // Redirects are not followed.
        assert_eq!(
            get("/moved").await,
            ApiError::Status {
                host: host.clone(),
                status: 302
            }
        );
        assert_eq!(
            get("/big").await,
            ApiError::TooLarge {
                host: host.clone(),
                limit: 1024
            }
        );
        assert!(matches!(get("/text").await, ApiError::Decode { .. }));
        assert_eq!(get("/slow").await, ApiError::Timeout { host, seconds: 1 });
    }

    #[tokio::test]
    async fn the_guard_decides_before_any_connection() {
        let (port, hits) = server().await;
        let api = test_client(false, Limits::default());
        // An address in the URL.
        let refused = api
            .get_json::<Json>(&format!("http://127.0.0.1:{port}/ok"), &[])
            .await
            .expect_err("loopback is refused");
        assert!(
            matches!(&refused, ApiError::Forbidden { why, .. } if why.contains("--allow-cidr")),
            "{refused:?}"
        );
        // A name, refused by the resolver for every address it has.
        let refused = api
            .get_json::<Json>(&format!("https://localhost:{port}/ok"), &[])
            .await
            .expect_err("localhost is refused");
        assert!(
            matches!(&refused, ApiError::Forbidden { why, .. } if why.contains("--allow-cidr")),
            "{refused:?}"
        );
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "no request reached the server"
        );
    }

    #[tokio::test]
    async fn only_https_except_to_this_machine() {
        let api = test_client(true, Limits::default());
        for url in ["ftp://127.0.0.1/x", "http://api.cdn.example/x", "not a url"] {
            assert!(
                matches!(
                    api.get_json::<Json>(url, &[]).await,
                    Err(ApiError::BadUrl { .. })
                ),
                "{url}"
            );
        }
    }
}
