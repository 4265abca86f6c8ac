//! The HTTP an edge answers: per-host responses served over the TLS fixtures' connections
//! (HTTP/2 or HTTP/1.1, as ALPN decided), and a plain-HTTP edge (port 80) that redirects to
//! HTTPS.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How long a connection may wait for a request's head (and an HTTP/2 peer for a ping answer)
/// before the fixture gives up on the client.
const IDLE: Duration = Duration::from_secs(30);

/// What an edge answers for one host.
#[derive(Clone, Debug)]
pub struct HttpBehaviour {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The head is sent at once, the body only after this long: a slow body.
    pub body_delay: Option<Duration>,
}

impl HttpBehaviour {
    /// `200` with the body `ok\n` and `x-served-by: testkit-edge`.
    pub fn ok() -> Self {
        HttpBehaviour {
            status: 200,
            headers: vec![("x-served-by".to_owned(), "testkit-edge".to_owned())],
            body: b"ok\n".to_vec(),
            body_delay: None,
        }
    }

    /// The same with status `status`.
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The same with one more header (names and values must be valid HTTP, or the edge
    /// answers 500 naming the bad one).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The same with body `body`.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The same with the body held back `delay` after the head.
    pub fn slow_body(mut self, delay: Duration) -> Self {
        self.body_delay = Some(delay);
        self
    }

    /// `301` to `location`, with an empty body.
    pub fn redirect_to(self, location: impl Into<String>) -> Self {
        self.status(301)
            .header("location", location)
            .body(Vec::new())
    }
}

/// The behaviours of one server by host, and the requests it served.
#[derive(Debug)]
pub(crate) struct HttpRoutes {
    by_host: RwLock<HashMap<String, HttpBehaviour>>,
    /// `None`: redirect to `https://{host}{path}` (the plain-HTTP edge's default).
    default: RwLock<Option<HttpBehaviour>>,
    requests: AtomicU64,
}

impl HttpRoutes {
    pub(crate) fn new(default: Option<HttpBehaviour>) -> Self {
        HttpRoutes {
            by_host: RwLock::new(HashMap::new()),
            default: RwLock::new(default),
            requests: AtomicU64::new(0),
        }
    }

    pub(crate) fn set(&self, host: &str, behaviour: HttpBehaviour) {
        self.by_host
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(host.to_ascii_lowercase(), behaviour);
    }

    pub(crate) fn set_default(&self, behaviour: HttpBehaviour) {
        *self.default.write().unwrap_or_else(PoisonError::into_inner) = Some(behaviour);
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// What to answer `request`: the behaviour of its host (the `:authority` of HTTP/2, else
    /// the `Host` header, port stripped), or the default.
    fn respond<B>(&self, request: &Request<B>) -> Response<EdgeBody> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let host = request_host(request);
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let chosen = self
            .by_host
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&host)
            .cloned();
        let behaviour = chosen
            .or_else(|| {
                self.default
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
            })
            .unwrap_or_else(|| HttpBehaviour::ok().redirect_to(format!("https://{host}{path}")));
        build_response(&behaviour)
    }
}

/// The request's host, lower-cased and without its port.
fn request_host<B>(request: &Request<B>) -> String {
    let authority = request.uri().authority().map(|a| a.as_str().to_owned());
    let header = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let raw = authority.or(header).unwrap_or_default();
    let host = match raw.parse::<http::uri::Authority>() {
        Ok(a) => a.host().to_owned(),
        Err(_) => raw,
    };
    host.to_ascii_lowercase()
}

fn build_response(behaviour: &HttpBehaviour) -> Response<EdgeBody> {
    let mut response = Response::new(EdgeBody::new(behaviour.body.clone(), behaviour.body_delay));
    let problem = match StatusCode::from_u16(behaviour.status) {
        Ok(status) => {
            *response.status_mut() = status;
            add_headers(&mut response, &behaviour.headers).err()
        }
        Err(_) => Some(format!("invalid status {}", behaviour.status)),
    };
    match problem {
        None => response,
        Some(problem) => {
            let mut broken = Response::new(EdgeBody::new(problem.into_bytes(), None));
            *broken.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            broken
        }
    }
}

fn add_headers<B>(response: &mut Response<B>, headers: &[(String, String)]) -> Result<(), String> {
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?}"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("invalid value of header {name}: {value:?}"))?;
        response.headers_mut().append(name, value);
    }
    Ok(())
}

/// A response body sent in one frame, after an optional delay.
pub(crate) struct EdgeBody {
    data: Option<Bytes>,
    delay: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl EdgeBody {
    fn new(data: Vec<u8>, delay: Option<Duration>) -> Self {
        EdgeBody {
            data: Some(Bytes::from(data)),
            delay: delay.map(|d| Box::pin(tokio::time::sleep(d))),
        }
    }
}

impl Body for EdgeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(delay) = self.delay.as_mut() {
            if delay.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.delay = None;
        }
        Poll::Ready(self.data.take().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // Exact, so that the head carries a content-length even for a slow body.
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// Serves HTTP on one connection (HTTP/2 when `h2`, else HTTP/1.1) until the client closes,
/// then closes its side too (a TLS close_notify on TLS streams).
pub(crate) async fn serve_connection<IO>(mut io: IO, h2: bool, routes: Arc<HttpRoutes>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let response = routes.respond(&request);
        async move { Ok::<_, Infallible>(response) }
    });
    // Errors are the client's doing (a probe that only handshakes, or hangs up mid-body):
    // the connection simply ends.
    if h2 {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(IDLE)
            .keep_alive_timeout(IDLE)
            .serve_connection(TokioIo::new(&mut io), service)
            .await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(IDLE)
            .serve_connection(TokioIo::new(&mut io), service)
            .await;
    }
    let _ = io.shutdown().await;
}

/// A plain-HTTP edge (HTTP/1.1 only, port 80's role) on loopback: redirects every request to
/// `https://{host}{path}` unless a behaviour was set for its host. Stops when dropped.
pub struct PlainHttpServer {
    addr: SocketAddr,
    routes: Arc<HttpRoutes>,
    task: JoinHandle<()>,
}

impl PlainHttpServer {
    /// Binds `bind` (e.g. `127.0.0.1:0`).
    pub async fn start(bind: SocketAddr) -> io::Result<PlainHttpServer> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let routes = Arc::new(HttpRoutes::new(None));
        let shared = routes.clone();
        let task = crate::tls::spawn_accept_loop(listener, move |tcp| {
            serve_connection(tcp, false, shared.clone())
        });
        Ok(PlainHttpServer { addr, routes, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers requests for `host` (port stripped, case-insensitive) with `behaviour`.
    pub fn set_http(&self, host: &str, behaviour: HttpBehaviour) {
        self.routes.set(host, behaviour);
    }

    /// Answers requests for hosts without a behaviour of their own with `behaviour` instead
    /// of the redirect to HTTPS.
    pub fn set_default_http(&self, behaviour: HttpBehaviour) {
        self.routes.set_default(behaviour);
    }

    /// HTTP requests answered so far.
    pub fn requests(&self) -> u64 {
        self.routes.requests()
    }
}

impl Drop for PlainHttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{LeafSpec, TestCa};
    use crate::tls::{SniCerts, TlsServer};
    use http_body_util::{BodyExt, Empty};
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    use std::sync::Mutex;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::client::TlsStream;

    const HOST: &str = "www.shop.example";

    /// Verifies for real (the test CA) and keeps the OCSP response the server stapled.
    #[derive(Debug)]
    struct OcspSeen {
        inner: Arc<WebPkiServerVerifier>,
        ocsp: Mutex<Option<Vec<u8>>>,
    }

    impl ServerCertVerifier for OcspSeen {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            *self.ocsp.lock().unwrap() = Some(ocsp.to_vec());
            self.inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    }

    struct Edge {
        ca: TestCa,
        server: TlsServer,
    }

    async fn edge() -> Edge {
        let ca = TestCa::new("Edge Test CA");
        let leaf = ca.issue(LeafSpec::valid_for([HOST, "api.shop.example"]));
        let server = TlsServer::start("127.0.0.1:0".parse().unwrap(), SniCerts::single(&leaf))
            .await
            .unwrap();
        Edge { ca, server }
    }

    /// Handshakes with `sni`, offering `alpn`; returns the stream and the stapled OCSP bytes.
    async fn connect(edge: &Edge, sni: &str, alpn: &[&[u8]]) -> (TlsStream<TcpStream>, Vec<u8>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(edge.ca.cert_der()).unwrap();
        let verifier = Arc::new(OcspSeen {
            inner: WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .unwrap(),
            ocsp: Mutex::new(None),
        });
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let tcp = TcpStream::connect(edge.server.addr()).await.unwrap();
        let name = ServerName::try_from(sni.to_owned()).unwrap();
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        let ocsp = verifier.ocsp.lock().unwrap().take().unwrap();
        (tls, ocsp)
    }

    /// Sends one GET over `io`: HTTP/2 when `h2` (with `uri` absolute), else HTTP/1.1 with
    /// `host`; returns the head as soon as it arrives.
    async fn send<IO>(io: IO, h2: bool, host: &str, uri: &str) -> Response<Incoming>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let request = Request::get(uri)
            .header("host", host)
            .body(Empty::<Bytes>::new())
            .unwrap();
        if h2 {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            send.send_request(request).await.unwrap()
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
                .await
                .unwrap();
            tokio::spawn(conn);
            send.send_request(request).await.unwrap()
        }
    }

    /// [`send`], then the whole body.
    async fn get<IO>(io: IO, h2: bool, host: &str, uri: &str) -> Response<Bytes>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (parts, body) = send(io, h2, host, uri).await.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Response::from_parts(parts, body)
    }

    #[tokio::test]
    async fn tls_edge_answers_http2_when_alpn_chose_h2() {
        let edge = edge().await;
        let (tls, _) = connect(&edge, HOST, &[b"h2", b"http/1.1"]).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
        let response = get(tls, true, HOST, &format!("https://{HOST}/")).await;
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-served-by"], "testkit-edge");
        assert_eq!(response.body().as_ref(), b"ok\n");
        assert_eq!(edge.server.requests(), 1);
    }

    #[tokio::test]
    async fn tls_edge_answers_http1_and_chooses_the_behaviour_by_host() {
        let edge = edge().await;
        edge.server.set_http(
            "API.shop.example",
            HttpBehaviour::ok()
                .status(404)
                .header("strict-transport-security", "max-age=300")
                .body("gone"),
        );
        let (tls, _) = connect(&edge, HOST, &[b"http/1.1"]).await;
        assert_eq!(
            tls.get_ref().1.alpn_protocol(),
            Some(b"http/1.1".as_slice())
        );
        // The Host header decides, port stripped, whatever the SNI was.
        let response = get(tls, false, "api.shop.example:443", "/x").await;
        assert_eq!(response.version(), http::Version::HTTP_11);
        assert_eq!(response.status(), 404);
        assert_eq!(
            response.headers()["strict-transport-security"],
            "max-age=300"
        );
        assert_eq!(response.body().as_ref(), b"gone");

        edge.server
            .set_default_http(HttpBehaviour::ok().redirect_to("https://elsewhere.example/"));
        let (tls, _) = connect(&edge, HOST, &[b"h2"]).await;
        let response = get(tls, true, HOST, &format!("https://{HOST}/")).await;
        assert_eq!(response.status(), 301);
        assert_eq!(response.headers()["location"], "https://elsewhere.example/");
        assert!(response.body().is_empty());
        assert_eq!(edge.server.requests(), 2);
    }

    #[tokio::test]
    async fn a_client_that_only_handshakes_sees_a_clean_close() {
        let edge = edge().await;
        for alpn in [&[b"h2".as_slice(), b"http/1.1"][..], &[b"http/1.1"], &[]] {
            let (mut tls, _) = connect(&edge, HOST, alpn).await;
            tls.shutdown().await.unwrap();
            let mut rest = Vec::new();
            // A close without close_notify would be an UnexpectedEof error here.
            let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest))
                .await
                .expect("the server closes after the client's close_notify");
            let read = read.unwrap_or_else(|e| panic!("{alpn:?}: {e}"));
            // An HTTP/2 server speaks first (its SETTINGS); an HTTP/1.1 one never does.
            if tls.get_ref().1.alpn_protocol() != Some(b"h2".as_slice()) {
                assert_eq!(read, 0, "{alpn:?}");
            }
        }
        assert_eq!(edge.server.connections(), 3);
        assert_eq!(edge.server.requests(), 0);
    }

    #[tokio::test]
    async fn ocsp_is_stapled_only_for_the_names_it_was_set_for() {
        let edge = edge().await;
        edge.server
            .set_ocsp("WWW.shop.example", Some(b"stapled".to_vec()));
        assert_eq!(connect(&edge, HOST, &[]).await.1, b"stapled");
        assert!(connect(&edge, "api.shop.example", &[]).await.1.is_empty());
        edge.server.set_ocsp(HOST, None);
        assert!(connect(&edge, HOST, &[]).await.1.is_empty());
    }

    #[tokio::test]
    async fn a_slow_body_follows_the_head_after_its_delay() {
        let edge = edge().await;
        let delay = Duration::from_millis(400);
        edge.server
            .set_default_http(HttpBehaviour::ok().body("late").slow_body(delay));
        for h2 in [true, false] {
            let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
            let (tls, _) = connect(&edge, HOST, alpn).await;
            let uri = format!("https://{HOST}/");
            let head = send(tls, h2, HOST, &uri);
            let response = tokio::time::timeout(delay / 2, head)
                .await
                .expect("the head comes at once");
            let started = tokio::time::Instant::now();
            assert_eq!(response.headers()["content-length"], "4");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body.as_ref(), b"late");
            assert!(started.elapsed() >= delay / 3, "h2={h2}");
        }
    }

    async fn plain_get(addr: SocketAddr, host: &str, path: &str) -> Response<Bytes> {
        get(TcpStream::connect(addr).await.unwrap(), false, host, path).await
    }

    #[tokio::test]
    async fn plain_edge_redirects_to_https_unless_told_otherwise() {
        let server = PlainHttpServer::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let response = plain_get(server.addr(), "WWW.shop.example:80", "/a/b?c=d").await;
        assert_eq!(response.status(), 301);
        assert_eq!(
            response.headers()["location"],
            "https://www.shop.example/a/b?c=d"
        );

        server.set_http("api.shop.example", HttpBehaviour::ok().status(403));
        let response = plain_get(server.addr(), "api.shop.example", "/").await;
        assert_eq!(response.status(), 403);
        assert_eq!(response.body().as_ref(), b"ok\n");
        assert_eq!(server.requests(), 2);

        server.set_default_http(HttpBehaviour::ok());
        assert_eq!(
            plain_get(server.addr(), "other.example", "/")
                .await
                .status(),
            200
        );

        let addr = server.addr();
        drop(server);
        let mut refused = false;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if TcpStream::connect(addr).await.is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused, "the server still accepts after it was dropped");
    }

    #[test]
    fn an_invalid_behaviour_answers_500_naming_the_problem() {
        let response = build_response(&HttpBehaviour::ok().header("bad name", "v"));
        assert_eq!(response.status(), 500);
        let response = build_response(&HttpBehaviour::ok().status(42));
        assert_eq!(response.status(), 500);
        let response = build_response(&HttpBehaviour::ok().redirect_to("/there"));
        assert_eq!(response.status(), 301);
        assert_eq!(response.headers()["location"], "/there");
    }
}
