//! HTTP prober: one GET to an edge (HTTP/2 or HTTP/1.1 over TLS as ALPN decides, or plain
//! HTTP), reporting the status, headers and how the body ended. Redirects are never followed.
//!
//! The certificate is not judged here (the TLS probe does that): the handshake completes
//! whatever the chain, but its signatures are still verified, so the answer comes from the
//! holder of the served certificate's key.

use crate::checks::tls::{TlsEndpoint, TlsOutcome};
use crate::probe::guard::TargetGuard;
use crate::probe::tls::{self, KeepOpen, OpenConnection, TlsProber, version_name};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Buf, Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, timeout_at};

/// How much of a body a probe reads by default: enough to fingerprint an error page.
pub const DEFAULT_BODY_LIMIT: usize = 16 * 1024;
/// At most this many response headers are kept.
const MAX_HEADERS: usize = 64;

/// Headers kept beyond [`MAX_HEADERS`]: the redirect's target and HSTS.
const ALWAYS_KEPT: [&str; 2] = ["location", "strict-transport-security"];

/// Bounds of a response head the prober accepts (hyper's own are smaller than real sites).
const MAX_HEADER_BYTES: u32 = 64 * 1024;
const MAX_HEADER_LINES: usize = 256;
/// Each header value kept is cut to this many bytes.
const MAX_HEADER_VALUE: usize = 256;
/// Error texts from the stack are cut to this many bytes.
const MAX_DETAIL: usize = 256;
const USER_AGENT: &str = concat!("httpsdelivery-operator/", env!("CARGO_PKG_VERSION"));

/// One HTTP probe: where to connect and what to ask.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HttpTarget {
    pub address: SocketAddr,
    /// The `Host` header (HTTP/1.1) or `:authority` (HTTP/2), and the SNI name when `tls`.
    pub host: String,
    /// The request target, starting with `/` (a query may follow).
    pub path: String,
    pub tls: bool,
}

impl fmt::Display for HttpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(
            f,
            "{scheme}://{}{} at {}",
            self.host, self.path, self.address
        )
    }
}

/// How reading the response body ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyEnd {
    /// The whole body was read.
    Complete,
    /// Reading stopped at the body limit (not an error: the rest was not needed).
    LimitReached,
    /// The body did not finish before the probe's deadline.
    TimedOut,
    /// The body broke off (reset, protocol error...).
    Failed(String),
}

/// What the edge answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// `HTTP/2` or `HTTP/1.1` (`HTTP/1.0` for a server that answers in it).
    pub http_version: String,
    /// The negotiated ALPN protocol (`h2`, `http/1.1`); `None` for plain HTTP or none agreed.
    pub alpn: Option<String>,
    /// `TLSv1.3`, `TLSv1.2`...; `None` for plain HTTP.
    pub tls_version: Option<String>,
    /// The server stapled an OCSP response to its certificate.
    pub ocsp_stapled: bool,
    pub status: u16,
    /// Names lower-cased, values lossy UTF-8; at most 64 entries, each value cut to 256 bytes.
    pub headers: Vec<(String, String)>,
    /// Body bytes read, never more than the limit.
    pub body_bytes: usize,
    pub body: BodyEnd,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The result of one HTTP probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpOutcome {
    /// A response head arrived (the body may still have ended badly: see [`HttpResponse::body`]).
    Response(HttpResponse),
    /// The target guard refused the address; nothing was sent.
    Forbidden(String),
    /// The TCP connection was refused.
    Refused,
    /// The TCP connect failed otherwise.
    Unreachable(String),
    /// The TCP connect did not finish before the deadline.
    ConnectTimeout,
    /// The TLS handshake failed or did not finish before the deadline.
    TlsFailed(String),
    /// No response head before the deadline.
    Timeout,
    /// Protocol error, reset, malformed response, invalid target...
    Failed(String),
}

impl fmt::Display for HttpOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpOutcome::Response(r) => {
                write!(f, "{} {}", r.http_version, r.status)?;
                match (&r.alpn, &r.tls_version) {
                    (Some(alpn), Some(tls)) => write!(f, " (ALPN {alpn}, {tls})")?,
                    (None, Some(tls)) => write!(f, " (no ALPN, {tls})")?,
                    (Some(alpn), None) => write!(f, " (ALPN {alpn})")?,
                    (None, None) => f.write_str(" (plain HTTP)")?,
                }
                match &r.body {
                    BodyEnd::Complete | BodyEnd::LimitReached => Ok(()),
                    BodyEnd::TimedOut => f.write_str(", but the body did not finish in time"),
                    BodyEnd::Failed(d) => write!(f, ", but the body broke off: {d}"),
                }
            }
            HttpOutcome::Forbidden(d) => write!(f, "probe refused by the target guard: {d}"),
            HttpOutcome::Refused => f.write_str("connection refused"),
            HttpOutcome::Unreachable(d) => write!(f, "unreachable: {d}"),
            HttpOutcome::ConnectTimeout => f.write_str("TCP connect timed out"),
            HttpOutcome::TlsFailed(d) => write!(f, "TLS handshake failed: {d}"),
            HttpOutcome::Timeout => f.write_str("no response within the timeout"),
            HttpOutcome::Failed(d) => write!(f, "HTTP request failed: {d}"),
        }
    }
}

/// Sends HTTP probes; over TLS, the TLS prober makes the connection (and records the chain and
/// the stapling) and leaves it open for the request, whatever the chain.
#[derive(Debug)]
pub struct HttpProber {
    tls: Arc<TlsProber>,
    requests: AtomicU64,
}

/// What TLS agreed on, for the response.
#[derive(Default)]
struct Negotiated {
    alpn: Option<String>,
    tls_version: Option<String>,
    ocsp_stapled: bool,
}

/// The validated pieces of a request, checked before any socket is opened.
struct RequestParts {
    authority: Authority,
    path: PathAndQuery,
    host: HeaderValue,
}

impl HttpProber {
    /// Makes its TLS connections through `tls`.
    pub fn new(tls: Arc<TlsProber>) -> Self {
        HttpProber {
            tls,
            requests: AtomicU64::new(0),
        }
    }

    /// Requests attempted so far (each one that passed the guard and went to the network).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Sends `GET target.path` to `target.address` and reads at most `body_limit` body bytes.
    /// `timeout` bounds the whole probe (connect, handshake, request, head and body). What the
    /// guard refuses is answered [`HttpOutcome::Forbidden`] without a socket.
    pub async fn get(
        &self,
        guard: &TargetGuard,
        target: &HttpTarget,
        timeout: Duration,
        body_limit: usize,
    ) -> HttpOutcome {
        let outcome = match guard.check(target.address.ip()) {
            Ok(()) => {
                let deadline = Instant::now() + timeout;
                self.get_inner(target, deadline, body_limit).await
            }
            Err(reason) => HttpOutcome::Forbidden(reason),
        };
        tracing::debug!(%target, %outcome, "HTTP probe");
        outcome
    }

    /// Sends `GET target.path` over `open`, the TLS probe's own connection to `target` (its
    /// SNI is `target.host`): the exchange of [`get`](Self::get) without a second handshake,
    /// within the probe's deadline. The guard judged the address before the probe connected.
    pub(crate) async fn get_on(
        &self,
        open: OpenConnection,
        target: &HttpTarget,
        limit: usize,
    ) -> HttpOutcome {
        let parts = match request_parts(target) {
            Ok(parts) => parts,
            Err(e) => return HttpOutcome::Failed(e),
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        let outcome = exchange_open(open, &parts, limit).await;
        tracing::debug!(%target, %outcome, "HTTP probe on the TLS probe's connection");
        outcome
    }

    async fn get_inner(&self, target: &HttpTarget, deadline: Instant, limit: usize) -> HttpOutcome {
        let parts = match request_parts(target) {
            Ok(parts) => parts,
            Err(e) => return HttpOutcome::Failed(e),
        };
        // Checked before any socket, as the request's pieces are.
        if let Err(e) = ServerName::try_from(target.host.clone()) {
            return HttpOutcome::Failed(format!("{:?} is not a valid host: {e}", target.host));
        }

        self.requests.fetch_add(1, Ordering::Relaxed);
        if !target.tls {
            return match tls::connect(target.address, deadline).await {
                Ok(tcp) => {
                    exchange(tcp, false, &parts, Negotiated::default(), deadline, limit).await
                }
                Err(outcome) => failed_connection(outcome),
            };
        }
        let endpoint = TlsEndpoint {
            address: target.address,
            sni: target.host.clone(),
        };
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self
            .tls
            .probe_keeping(&endpoint, timeout, KeepOpen::Always)
            .await
        {
            (_, Some(open)) => exchange_open(open, &parts, limit).await,
            (outcome, None) => failed_connection(outcome),
        }
    }
}

/// The exchange on a TLS connection a probe left open, HTTP/2 when ALPN agreed on it.
async fn exchange_open(open: OpenConnection, parts: &RequestParts, limit: usize) -> HttpOutcome {
    let (_, conn) = open.stream.get_ref();
    let negotiated = Negotiated {
        alpn: conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        tls_version: conn.protocol_version().map(version_name),
        ocsp_stapled: open.ocsp_stapled,
    };
    let h2 = conn.alpn_protocol() == Some(b"h2".as_slice());
    exchange(open.stream, h2, parts, negotiated, open.deadline, limit).await
}

/// What a connection or handshake that did not end in an open connection reads as.
fn failed_connection(outcome: TlsOutcome) -> HttpOutcome {
    match outcome {
        TlsOutcome::Refused => HttpOutcome::Refused,
        TlsOutcome::Unreachable(detail) => HttpOutcome::Unreachable(detail),
        TlsOutcome::ConnectTimeout => HttpOutcome::ConnectTimeout,
        // Out of time, like a response that does not come: transient.
        TlsOutcome::HandshakeTimeout => HttpOutcome::Timeout,
        TlsOutcome::Forbidden(reason) => HttpOutcome::Forbidden(reason),
        other => HttpOutcome::TlsFailed(other.to_string()),
    }
}

/// Checks the host and path of `target` and makes them the request's pieces.
fn request_parts(target: &HttpTarget) -> Result<RequestParts, String> {
    let authority = match target.host.parse::<Ipv6Addr>() {
        Ok(ip) => format!("[{ip}]"),
        Err(_) => target.host.clone(),
    };
    let authority = Authority::try_from(authority.as_str())
        .ok()
        .filter(|a| a.port().is_none())
        .ok_or_else(|| format!("{:?} is not a valid host", target.host))?;
    let path = PathAndQuery::try_from(target.path.as_str())
        .ok()
        .filter(|p| p.as_str().starts_with('/'))
        .ok_or_else(|| format!("{:?} is not a valid request path", target.path))?;
    let host = HeaderValue::from_str(authority.as_str())
        .map_err(|_| format!("{:?} is not a valid host", target.host))?;
    Ok(RequestParts {
        authority,
        path,
        host,
    })
}

/// `GET`: origin-form with a `Host` header for HTTP/1.1, an absolute `https` URI (whose
/// authority becomes `:authority`) for HTTP/2.
fn build_request(parts: &RequestParts, h2: bool) -> Result<Request<Empty<Bytes>>, String> {
    let uri = if h2 {
        Uri::builder()
            .scheme(Scheme::HTTPS)
            .authority(parts.authority.clone())
            .path_and_query(parts.path.clone())
            .build()
            .map_err(|e| e.to_string())?
    } else {
        Uri::from(parts.path.clone())
    };
    let mut builder = Request::get(uri)
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::ACCEPT, "*/*");
    if h2 {
        builder = builder.version(Version::HTTP_2);
    } else {
        builder = builder.header(header::HOST, parts.host.clone());
    }
    builder
        .body(Empty::new())
        .map_err(|e| format!("cannot build the request: {e}"))
}

/// One request and its response over `io`, HTTP/2 when `h2`. The connection is driven here,
/// not in a task of its own, so it closes as soon as the probe is done with it.
async fn exchange<IO>(
    io: IO,
    h2: bool,
    parts: &RequestParts,
    negotiated: Negotiated,
    deadline: Instant,
    limit: usize,
) -> HttpOutcome
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let request = match build_request(parts, h2) {
        Ok(r) => r,
        Err(e) => return HttpOutcome::Failed(e),
    };
    let io = TokioIo::new(io);
    if h2 {
        // Real sites send big headers (policies, cookies): hyper's 16 KiB default would reset
        // the stream, a failure of the probe and not of the edge.
        let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .max_header_list_size(MAX_HEADER_BYTES)
            .handshake(io);
        let send =
            |sender: &mut hyper::client::conn::http2::SendRequest<_>| sender.send_request(request);
        over(handshake, send, negotiated, deadline, limit).await
    } else {
        let handshake = hyper::client::conn::http1::Builder::new()
            .max_headers(MAX_HEADER_LINES)
            .handshake(io);
        let send =
            |sender: &mut hyper::client::conn::http1::SendRequest<_>| sender.send_request(request);
        over(handshake, send, negotiated, deadline, limit).await
    }
}

/// The HTTP `handshake` (either version), then the request `send` makes on its sender, read
/// while the connection is driven, all before `deadline`.
async fn over<S, C, R>(
    handshake: impl Future<Output = hyper::Result<(S, C)>>,
    send: impl FnOnce(&mut S) -> R,
    negotiated: Negotiated,
    deadline: Instant,
    limit: usize,
) -> HttpOutcome
where
    C: Future,
    R: Future<Output = hyper::Result<Response<Incoming>>>,
{
    // The sender lives until the response is read, as the connection's user.
    let (mut sender, conn) = match timeout_at(deadline, handshake).await {
        Err(_) => return HttpOutcome::Timeout,
        Ok(Err(e)) => return HttpOutcome::Failed(describe(&e)),
        Ok(Ok(pair)) => pair,
    };
    let response = send(&mut sender);
    alongside(conn, read_response(response, negotiated, deadline, limit)).await
}

/// Runs `work` while polling `conn` (a connection that must be driven for `work` to progress),
/// and drops both once `work` is done.
async fn alongside<C: Future, W: Future>(conn: C, work: W) -> W::Output {
    tokio::pin!(conn, work);
    let mut conn_done = false;
    loop {
        tokio::select! {
            out = &mut work => return out,
            // A connection that ended (or failed) fails the pending request, which `work` sees.
            _ = &mut conn, if !conn_done => conn_done = true,
        }
    }
}

/// Waits for the response head, then reads its body up to `limit`, all before `deadline`.
async fn read_response(
    response: impl Future<Output = hyper::Result<Response<Incoming>>>,
    negotiated: Negotiated,
    deadline: Instant,
    limit: usize,
) -> HttpOutcome {
    let response = match timeout_at(deadline, response).await {
        Err(_) => return HttpOutcome::Timeout,
        Ok(Err(e)) => return HttpOutcome::Failed(describe(&e)),
        Ok(Ok(r)) => r,
    };
    let (head, mut body) = response.into_parts();
    let (body_bytes, body) = read_body(&mut body, deadline, limit).await;
    HttpOutcome::Response(HttpResponse {
        http_version: http_version(head.version),
        alpn: negotiated.alpn,
        tls_version: negotiated.tls_version,
        ocsp_stapled: negotiated.ocsp_stapled,
        status: head.status.as_u16(),
        // The first MAX_HEADERS, and those EdgeHttpOk judges wherever they come.
        headers: head
            .headers
            .iter()
            .enumerate()
            .filter(|(i, (name, _))| *i < MAX_HEADERS || ALWAYS_KEPT.contains(&name.as_str()))
            .map(|(_, pair)| pair)
            .map(|(name, value)| {
                let value = cut(String::from_utf8_lossy(value.as_bytes()), MAX_HEADER_VALUE);
                (name.as_str().to_ascii_lowercase(), value)
            })
            .collect(),
        body_bytes,
        body,
    })
}

/// Counts body bytes frame by frame, keeping none of them, until the end, `limit`, an error or
/// `deadline`.
async fn read_body<B>(body: &mut B, deadline: Instant, limit: usize) -> (usize, BodyEnd)
where
    B: Body + Unpin,
    B::Data: Buf,
    B::Error: std::error::Error,
{
    let mut read = 0usize;
    loop {
        if read >= limit {
            let end = if body.is_end_stream() {
                BodyEnd::Complete
            } else {
                BodyEnd::LimitReached
            };
            return (read, end);
        }
        match timeout_at(deadline, body.frame()).await {
            Err(_) => return (read, BodyEnd::TimedOut),
            Ok(None) => return (read, BodyEnd::Complete),
            Ok(Some(Err(e))) => return (read, BodyEnd::Failed(describe(&e))),
            Ok(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, Buf::remaining);
                if len > limit - read {
                    return (limit, BodyEnd::LimitReached);
                }
                read += len;
            }
        }
    }
}

fn http_version(version: Version) -> String {
    match version {
        Version::HTTP_2 => "HTTP/2".to_owned(),
        Version::HTTP_11 => "HTTP/1.1".to_owned(),
        Version::HTTP_10 => "HTTP/1.0".to_owned(),
        Version::HTTP_09 => "HTTP/0.9".to_owned(),
        other => format!("{other:?}"),
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: Cow<'_, str>, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// An error and its sources, as one bounded line.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    cut(Cow::Owned(text), MAX_DETAIL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use testkit::edge_http::{HttpBehaviour, PlainHttpServer};
    use testkit::pki::{Leaf, LeafSpec, TestCa};
    use testkit::tls::{SniCerts, TlsServer, refused_addr, start_blackhole, start_plain_tcp};

    const HOST: &str = "www.shop.example";
    const TIMEOUT: Duration = Duration::from_secs(5);

    /// Lets the probes reach the loopback fixtures, as `--allow-cidr 127.0.0.0/8` would.
    fn loopback_guard() -> TargetGuard {
        TargetGuard::new(vec!["127.0.0.0/8".parse().unwrap()])
    }

    fn prober() -> HttpProber {
        HttpProber::new(Arc::new(TlsProber::new(Vec::new()).unwrap()))
    }

    /// A leaf from a private CA: no probe trusts it, and none may fail for that.
    fn leaf() -> Leaf {
        TestCa::new("Edge Test CA").issue(LeafSpec::valid_for([HOST, "api.shop.example"]))
    }

    async fn edge() -> TlsServer {
        TlsServer::start("127.0.0.1:0".parse().unwrap(), SniCerts::single(&leaf()))
            .await
            .unwrap()
    }

    fn target(address: SocketAddr, tls: bool) -> HttpTarget {
        HttpTarget {
            address,
            host: HOST.to_owned(),
            path: "/".to_owned(),
            tls,
        }
    }

    async fn get(prober: &HttpProber, target: &HttpTarget, limit: usize) -> HttpResponse {
        match prober.get(&loopback_guard(), target, TIMEOUT, limit).await {
            HttpOutcome::Response(r) => r,
            other => panic!("no response from {target}: {other}"),
        }
    }

    #[tokio::test]
    async fn http2_is_negotiated_and_reported_whatever_the_certificate() {
        let server = edge().await;
        let prober = prober();
        let outcome = prober
            .get(
                &loopback_guard(),
                &target(server.addr(), true),
                TIMEOUT,
                1024,
            )
            .await;
        assert_eq!(outcome.to_string(), "HTTP/2 200 (ALPN h2, TLSv1.3)");
        let HttpOutcome::Response(r) = outcome else {
            unreachable!()
        };
        assert_eq!(r.http_version, "HTTP/2");
        assert_eq!(r.alpn.as_deref(), Some("h2"));
        assert_eq!(r.tls_version.as_deref(), Some("TLSv1.3"));
        assert!(!r.ocsp_stapled);
        assert_eq!(r.header("X-Served-By"), Some("testkit-edge"));
        assert_eq!(r.header("content-length"), Some("3"));
        assert_eq!((r.body_bytes, r.body), (3, BodyEnd::Complete));
        assert_eq!((prober.requests(), server.requests()), (1, 1));
    }

    #[tokio::test]
    async fn http1_is_used_when_the_server_does_not_agree_on_h2() {
        let certs = SniCerts::single(&leaf());
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let only_http1 = TlsServer::start_with_alpn(bind, certs.clone(), &[b"http/1.1"])
            .await
            .unwrap();
        let no_alpn = TlsServer::start_with_alpn(bind, certs.clone(), &[])
            .await
            .unwrap();
        let tls12 = TlsServer::start_with_versions(bind, certs, &[&rustls::version::TLS12])
            .await
            .unwrap();
        let prober = prober();
        let r = get(&prober, &target(only_http1.addr(), true), 1024).await;
        assert_eq!(r.http_version, "HTTP/1.1");
        assert_eq!(r.alpn.as_deref(), Some("http/1.1"));
        assert_eq!(r.header("x-served-by"), Some("testkit-edge"));
        let r = get(&prober, &target(no_alpn.addr(), true), 1024).await;
        assert_eq!((r.http_version.as_str(), r.alpn), ("HTTP/1.1", None));
        assert_eq!(only_http1.requests() + no_alpn.requests(), 2);
        let r = get(&prober, &target(tls12.addr(), true), 1024).await;
        assert_eq!(r.tls_version.as_deref(), Some("TLSv1.2"));
        assert_eq!(r.http_version, "HTTP/2");
    }

    #[tokio::test]
    async fn the_judged_headers_are_kept_after_many_others_and_a_big_head_is_read() {
        let server = edge().await;
        let mut behaviour = HttpBehaviour::ok();
        for i in 0..150 {
            // 150 headers of 200 bytes: 30 KB, over hyper's 16 KiB default for HTTP/2.
            behaviour = behaviour.header(format!("x-cookie-{i:03}"), "c".repeat(200));
        }
        behaviour = behaviour
            .header("x-late", "dropped")
            .header("strict-transport-security", "max-age=31536000");
        server.set_http(HOST, behaviour);
        let prober = prober();
        let r = get(&prober, &target(server.addr(), true), 1024).await;
        assert_eq!((r.http_version.as_str(), r.status), ("HTTP/2", 200));
        assert_eq!(
            r.header("strict-transport-security"),
            Some("max-age=31536000")
        );
        assert_eq!(r.header("x-late"), None);
        assert_eq!(r.headers.len(), MAX_HEADERS + 1);
    }

    #[tokio::test]
    async fn status_and_headers_are_read_and_redirects_not_followed() {
        let server = edge().await;
        let long = "é".repeat(200);
        let mut behaviour = HttpBehaviour::ok()
            .redirect_to(format!("https://{HOST}/home"))
            .header("Strict-Transport-Security", "max-age=31536000")
            .header("x-long", long.as_str());
        for i in 0..100 {
            behaviour = behaviour.header(format!("x-filler-{i:03}"), "1");
        }
        server.set_http(HOST, behaviour);
        server.set_default_http(HttpBehaviour::ok().status(503));
        let prober = prober();
        let r = get(&prober, &target(server.addr(), true), 1024).await;
        assert_eq!(r.status, 301);
        assert_eq!(r.header("location"), Some("https://www.shop.example/home"));
        assert_eq!(
            r.header("strict-transport-security"),
            Some("max-age=31536000")
        );
        // "é" is two bytes: 128 of them fill the 256 bytes exactly.
        assert_eq!(r.header("x-long"), Some("é".repeat(128).as_str()));
        assert_eq!(r.headers.len(), MAX_HEADERS);
        assert!(r.headers.iter().all(|(n, _)| *n == n.to_ascii_lowercase()));
        assert_eq!(server.requests(), 1, "the redirect was followed");

        // Host (and SNI) decide which behaviour answers.
        let other = HttpTarget {
            host: "api.shop.example".to_owned(),
            ..target(server.addr(), true)
        };
        assert_eq!(get(&prober, &other, 1024).await.status, 503);
    }

    #[tokio::test]
    async fn the_body_limit_stops_reading() {
        let server = edge().await;
        server.set_default_http(HttpBehaviour::ok().body(vec![b'x'; 200_000]));
        let plain = PlainHttpServer::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        plain.set_default_http(HttpBehaviour::ok().body(vec![b'x'; 200_000]));
        let prober = prober();
        for target in [target(server.addr(), true), target(plain.addr(), false)] {
            let r = get(&prober, &target, 1000).await;
            assert_eq!(
                (r.body_bytes, &r.body),
                (1000, &BodyEnd::LimitReached),
                "{target}"
            );
            let r = get(&prober, &target, 200_000).await;
            assert_eq!(
                (r.body_bytes, &r.body),
                (200_000, &BodyEnd::Complete),
                "{target}"
            );
            let r = get(&prober, &target, 0).await;
            assert_eq!(
                (r.body_bytes, &r.body),
                (0, &BodyEnd::LimitReached),
                "{target}"
            );
            assert_eq!(r.status, 200);
        }
    }

    #[tokio::test]
    async fn a_slow_body_times_out_with_the_probe() {
        let server = edge().await;
        server.set_default_http(HttpBehaviour::ok().slow_body(Duration::from_secs(30)));
        let prober = prober();
        let timeout = Duration::from_millis(600);
        let started = std::time::Instant::now();
        let outcome = prober
            .get(
                &loopback_guard(),
                &target(server.addr(), true),
                timeout,
                1024,
            )
            .await;
        let elapsed = started.elapsed();
        assert!(
            elapsed >= timeout - Duration::from_millis(50) && elapsed < timeout * 3,
            "{elapsed:?}"
        );
        assert_eq!(
            outcome.to_string(),
            "HTTP/2 200 (ALPN h2, TLSv1.3), but the body did not finish in time"
        );
        let HttpOutcome::Response(r) = outcome else {
            unreachable!()
        };
        assert_eq!((r.body_bytes, r.body), (0, BodyEnd::TimedOut));
    }

    #[tokio::test]
    async fn plain_http_works() {
        let server = PlainHttpServer::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let prober = prober();
        let target = HttpTarget {
            path: "/shop?id=1".to_owned(),
            ..target(server.addr(), false)
        };
        let outcome = prober.get(&loopback_guard(), &target, TIMEOUT, 1024).await;
        assert_eq!(outcome.to_string(), "HTTP/1.1 301 (plain HTTP)");
        let HttpOutcome::Response(r) = outcome else {
            unreachable!()
        };
        assert_eq!(
            r.header("location"),
            Some("https://www.shop.example/shop?id=1")
        );
        assert_eq!((r.alpn, r.tls_version, r.ocsp_stapled), (None, None, false));
        assert_eq!(server.requests(), 1);
    }

    #[tokio::test]
    async fn the_guard_refuses_before_any_socket() {
        let server = edge().await;
        let plain = PlainHttpServer::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let prober = prober();
        // No --allow-cidr: loopback is refused.
        let guard = TargetGuard::new(Vec::new());
        for target in [target(server.addr(), true), target(plain.addr(), false)] {
            let outcome = prober.get(&guard, &target, TIMEOUT, 1024).await;
            let HttpOutcome::Forbidden(reason) = &outcome else {
                panic!("{outcome}");
            };
            assert!(reason.contains("loopback"), "{reason}");
        }
        assert_eq!(prober.requests(), 0);
        assert_eq!((server.connections(), plain.requests()), (0, 0));
    }

    #[tokio::test]
    async fn a_stapled_ocsp_response_is_reported() {
        let server = edge().await;
        server.set_ocsp(HOST, Some(b"any OCSP response".to_vec()));
        let prober = prober();
        assert!(
            get(&prober, &target(server.addr(), true), 1024)
                .await
                .ocsp_stapled
        );
        let other = HttpTarget {
            host: "api.shop.example".to_owned(),
            ..target(server.addr(), true)
        };
        assert!(!get(&prober, &other, 1024).await.ocsp_stapled);
    }

    #[tokio::test]
    async fn connection_failures_are_classified() {
        let prober = prober();
        let guard = loopback_guard();
        let refused = prober
            .get(&guard, &target(refused_addr(), true), TIMEOUT, 1024)
            .await;
        assert_eq!(refused, HttpOutcome::Refused);

        let not_tls = start_plain_tcp("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let outcome = prober
            .get(&guard, &target(not_tls.addr(), true), TIMEOUT, 1024)
            .await;
        assert!(matches!(outcome, HttpOutcome::TlsFailed(_)), "{outcome}");

        let hole = start_blackhole("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let timeout = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let outcome = prober
            .get(&guard, &target(hole.addr(), false), timeout, 1024)
            .await;
        assert_eq!(outcome, HttpOutcome::Timeout);
        assert_eq!(outcome.to_string(), "no response within the timeout");
        let outcome = prober
            .get(&guard, &target(hole.addr(), true), timeout, 1024)
            .await;
        // A handshake that does not finish in time is a timeout (transient), not a failure.
        assert_eq!(outcome, HttpOutcome::Timeout, "{outcome}");
        assert!(started.elapsed() < timeout * 4, "{:?}", started.elapsed());
        assert_eq!(prober.requests(), 4);
    }

    #[tokio::test]
    async fn invalid_targets_fail_without_a_socket() {
        let prober = prober();
        let server = edge().await;
        for (host, path) in [
            ("www.shop.example", "no-slash"),
            ("bad host", "/"),
            ("", "/"),
        ] {
            let target = HttpTarget {
                host: host.to_owned(),
                path: path.to_owned(),
                ..target(server.addr(), true)
            };
            let outcome = prober.get(&loopback_guard(), &target, TIMEOUT, 1024).await;
            assert!(matches!(outcome, HttpOutcome::Failed(_)), "{outcome}");
        }
        assert_eq!((prober.requests(), server.connections()), (0, 0));
    }

    #[test]
    fn values_are_cut_on_character_boundaries() {
        assert_eq!(cut(Cow::Borrowed("abc"), 2), "ab");
        assert_eq!(cut(Cow::Borrowed("aé"), 2), "a");
        assert_eq!(cut(Cow::Borrowed("aé"), 3), "aé");
    }

    #[test]
    fn requests_carry_host_or_authority() {
        let parts = request_parts(&HttpTarget {
            host: "::1".to_owned(),
            path: "/p?q".to_owned(),
            ..target("[::1]:443".parse().unwrap(), true)
        })
        .unwrap();
        let h1 = build_request(&parts, false).unwrap();
        assert_eq!(h1.uri().to_string(), "/p?q");
        assert_eq!(h1.headers()[header::HOST], "[::1]");
        assert_eq!(h1.headers()[header::USER_AGENT], USER_AGENT);
        assert_eq!(h1.headers()[header::ACCEPT], "*/*");
        let h2 = build_request(&parts, true).unwrap();
        assert_eq!(h2.uri().to_string(), "https://[::1]/p?q");
        assert!(h2.headers().get(header::HOST).is_none());
    }
}
