//! Loopback servers standing in for CDN edges and origins: TLS with certificates chosen by SNI
//! (answering HTTP after the handshake), plain TCP that is not TLS, a black hole, and an address
//! where nothing listens.

use crate::edge_http::{HttpBehaviour, HttpRoutes, serve_connection};
use crate::pki::Leaf;
use rustls::SupportedProtocolVersion;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// How long a fixture keeps an idle connection before giving up on the client.
const IDLE: Duration = Duration::from_secs(30);

/// Which certificate to serve for which SNI name, as one edge address serves many hostnames.
#[derive(Clone, Debug, Default)]
pub struct SniCerts {
    by_name: Vec<(String, Leaf)>,
    default: Option<Leaf>,
}

impl SniCerts {
    /// Serves nothing: every handshake fails until names or a default are added.
    pub fn new() -> SniCerts {
        SniCerts::default()
    }

    /// Serves `leaf` whatever the SNI (or without SNI).
    pub fn single(leaf: &Leaf) -> SniCerts {
        SniCerts::new().with_default(leaf)
    }

    /// Serves `leaf` for SNI `name` (exact, case-insensitive; `*.example` matches one label).
    pub fn with(mut self, name: impl Into<String>, leaf: &Leaf) -> SniCerts {
        self.by_name
            .push((name.into().to_ascii_lowercase(), leaf.clone()));
        self
    }

    /// Serves `leaf` for each of the names it was issued for.
    pub fn with_leaf(self, leaf: &Leaf) -> SniCerts {
        leaf.dns_names
            .iter()
            .fold(self, |certs, name| certs.with(name.clone(), leaf))
    }

    /// Serves `leaf` when the SNI matches no name, or is absent.
    pub fn with_default(mut self, leaf: &Leaf) -> SniCerts {
        self.default = Some(leaf.clone());
        self
    }

    fn resolve(&self, provider: &CryptoProvider) -> io::Result<Resolved> {
        let certified = |leaf: &Leaf| {
            CertifiedKey::from_der(leaf.chain_der.clone(), leaf.private_key(), provider)
                .map(Arc::new)
                .map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("cannot serve {:?}: {e}", leaf.dns_names),
                    )
                })
        };
        let mut by_name = HashMap::new();
        for (name, leaf) in &self.by_name {
            by_name.insert(name.clone(), certified(leaf)?);
        }
        let default = self.default.as_ref().map(certified).transpose()?;
        Ok(Resolved { by_name, default })
    }
}

#[derive(Debug, Default)]
struct Resolved {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

/// Swappable at runtime so that tests can rotate a certificate under a running server.
#[derive(Debug)]
struct SniResolver {
    current: RwLock<Arc<Resolved>>,
    /// OCSP responses stapled by SNI name (lower-cased), whichever certificate is served.
    ocsp: RwLock<HashMap<String, Vec<u8>>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let by_sni = hello.server_name().and_then(|sni| {
            let sni = sni.to_ascii_lowercase();
            let wildcard = sni.split_once('.').map(|(_, parent)| format!("*.{parent}"));
            current
                .by_name
                .get(&sni)
                .or_else(|| wildcard.and_then(|w| current.by_name.get(&w)))
                .cloned()
        });
        let key = by_sni.or_else(|| current.default.clone())?;
        let sni = hello.server_name().map(str::to_ascii_lowercase);
        let ocsp = self.ocsp.read().unwrap_or_else(PoisonError::into_inner);
        match sni.and_then(|sni| ocsp.get(&sni)) {
            Some(response) => Some(Arc::new(CertifiedKey {
                ocsp: Some(response.clone()),
                ..(*key).clone()
            })),
            None => Some(key),
        }
    }
}

/// A rustls server on loopback that answers HTTP after the handshake (HTTP/2 when ALPN chose
/// `h2`, else HTTP/1.1; see [`set_http`](Self::set_http)); stops (with its connections) when
/// dropped. A client may also only handshake and close.
pub struct TlsServer {
    addr: SocketAddr,
    provider: Arc<CryptoProvider>,
    resolver: Arc<SniResolver>,
    http: Arc<HttpRoutes>,
    connections: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl TlsServer {
    /// Binds `bind` (e.g. `127.0.0.1:0`, or `127.0.0.7:8443` to stand for one edge address)
    /// and serves TLS 1.2 and 1.3.
    pub async fn start(bind: SocketAddr, certs: SniCerts) -> io::Result<TlsServer> {
        TlsServer::start_with_versions(bind, certs, rustls::DEFAULT_VERSIONS).await
    }

    /// Like [`start`](Self::start), offering only `versions` (e.g. `&[&rustls::version::TLS12]`).
    pub async fn start_with_versions(
        bind: SocketAddr,
        certs: SniCerts,
        versions: &[&'static SupportedProtocolVersion],
    ) -> io::Result<TlsServer> {
        TlsServer::start_configured(bind, certs, versions, &[b"h2", b"http/1.1"]).await
    }

    /// Like [`start`](Self::start), agreeing only on the ALPN protocols `alpn` (e.g.
    /// `&[b"http/1.1"]` for an edge without HTTP/2, `&[]` for one that ignores ALPN).
    pub async fn start_with_alpn(
        bind: SocketAddr,
        certs: SniCerts,
        alpn: &[&[u8]],
    ) -> io::Result<TlsServer> {
        TlsServer::start_configured(bind, certs, rustls::DEFAULT_VERSIONS, alpn).await
    }

    async fn start_configured(
        bind: SocketAddr,
        certs: SniCerts,
        versions: &[&'static SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> io::Result<TlsServer> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let resolver = Arc::new(SniResolver {
            current: RwLock::new(Arc::new(certs.resolve(&provider)?)),
            ocsp: RwLock::new(HashMap::new()),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(AtomicU64::new(0));
        let counter = connections.clone();
        let http = Arc::new(HttpRoutes::new(Some(HttpBehaviour::ok())));
        let routes = http.clone();
        let task = spawn_accept_loop(listener, move |tcp| {
            counter.fetch_add(1, Ordering::Relaxed);
            serve_tls(acceptor.clone(), tcp, routes.clone())
        });
        Ok(TlsServer {
            addr,
            provider,
            resolver,
            http,
            connections,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the certificates served from the next handshake on.
    pub fn set_certs(&self, certs: SniCerts) -> io::Result<()> {
        let resolved = Arc::new(certs.resolve(&self.provider)?);
        *self
            .resolver
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = resolved;
        Ok(())
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Answers HTTP requests for `host` (the `Host` header or HTTP/2 `:authority`, port
    /// stripped, case-insensitive) with `behaviour`.
    pub fn set_http(&self, host: &str, behaviour: HttpBehaviour) {
        self.http.set(host, behaviour);
    }

    /// Answers requests for hosts without a behaviour of their own with `behaviour` (at first
    /// [`HttpBehaviour::ok`]).
    pub fn set_default_http(&self, behaviour: HttpBehaviour) {
        self.http.set_default(behaviour);
    }

    /// HTTP requests answered so far.
    pub fn requests(&self) -> u64 {
        self.http.requests()
    }

    /// Staples `response` (any non-empty bytes: rustls does not read it) as the OCSP response
    /// of handshakes with SNI `name` (exact, case-insensitive) from the next handshake on,
    /// whichever certificate they get; `None` stops stapling for that name. Only clients that
    /// ask for OCSP (rustls clients always do) receive it.
    pub fn set_ocsp(&self, name: &str, response: Option<Vec<u8>>) {
        let mut ocsp = self
            .resolver
            .ocsp
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match response {
            Some(r) => ocsp.insert(name.to_ascii_lowercase(), r),
            None => ocsp.remove(&name.to_ascii_lowercase()),
        };
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A plain TCP fixture (not TLS, or a black hole); stops when dropped.
pub struct TcpFixture {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TcpFixture {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for TcpFixture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers every connection with `HTTP/1.1 400 Bad Request` and closes it: an HTTP server on
/// the port where TLS was expected.
pub async fn start_plain_tcp(bind: SocketAddr) -> io::Result<TcpFixture> {
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let task = spawn_accept_loop(listener, serve_bad_request);
    Ok(TcpFixture { addr, task })
}

/// Accepts TCP connections and never sends a byte: a handshake against it can only time out.
pub async fn start_blackhole(bind: SocketAddr) -> io::Result<TcpFixture> {
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let task = spawn_accept_loop(listener, |mut tcp: TcpStream| async move {
        let mut sink = [0u8; 4096];
        while let Ok(n) = tcp.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    });
    Ok(TcpFixture { addr, task })
}

/// Reads what the client sends, then closes without a byte in return, as some TLS terminators
/// do for a name they do not serve.
pub async fn start_hangup(bind: SocketAddr) -> io::Result<TcpFixture> {
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let task = spawn_accept_loop(listener, |mut tcp: TcpStream| async move {
        let mut buf = [0u8; 4096];
        if let Ok(Ok(n)) = tokio::time::timeout(IDLE, tcp.read(&mut buf)).await
            && n > 0
        {
            close_gracefully(tcp, &mut buf).await;
        }
    });
    Ok(TcpFixture { addr, task })
}

/// A loopback address where nothing listens, so a connect is refused.
pub fn refused_addr() -> SocketAddr {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener
        .local_addr()
        .expect("local address of a bound socket")
}

/// Connections live in a `JoinSet` owned by the accept task, so aborting that task on drop
/// closes them too.
pub(crate) fn spawn_accept_loop<F, Fut>(listener: TcpListener, mut serve: F) -> JoinHandle<()>
where
    F: FnMut(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => {
                        // As real edges do: without it, a response written in two pieces
                        // waits for the client's delayed ACK (40 ms on Linux).
                        let _ = tcp.set_nodelay(true);
                        connections.spawn(serve(tcp));
                    }
                    // Out of file descriptors and the like: let the tests' clients time out
                    // rather than spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    })
}

async fn serve_tls(acceptor: TlsAcceptor, tcp: TcpStream, routes: Arc<HttpRoutes>) {
    let Ok(Ok(tls)) = tokio::time::timeout(IDLE, acceptor.accept(tcp)).await else {
        return;
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    // Serves until the client is done (a client that only handshakes closes at once), then
    // closes with a close_notify, as a real server would.
    serve_connection(tls, h2, routes).await;
}

async fn serve_bad_request(mut tcp: TcpStream) {
    let mut buf = [0u8; 4096];
    // Answer only once the client has spoken, as an HTTP server would.
    if tokio::time::timeout(IDLE, tcp.read(&mut buf))
        .await
        .is_err()
    {
        return;
    }
    let _ = tcp
        .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await;
    close_gracefully(tcp, &mut buf).await;
}

/// FIN, then wait for the client's: closing with unread data would send a reset instead, and
/// the client could see that reset before what was sent.
async fn close_gracefully(mut tcp: TcpStream, buf: &mut [u8]) {
    let _ = tcp.shutdown().await;
    while let Ok(Ok(n)) = tokio::time::timeout(IDLE, tcp.read(buf)).await {
        if n == 0 {
            break;
        }
    }
}
