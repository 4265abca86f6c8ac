//! The health server: `/healthz`, `/readyz` and Prometheus `/metrics`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use super::metrics::{Metrics, OPENMETRICS_CONTENT_TYPE};

/// What `/healthz` and `/readyz` answer from: readiness (caches synced and the watch to the API
/// server working), and a watchdog on the reconcile loop.
#[derive(Debug)]
pub struct Health {
    synced: AtomicBool,
    watching: AtomicBool,
    in_flight: AtomicUsize,
    last_progress: Mutex<Instant>,
    stall_after: Duration,
}

impl Health {
    /// `stall_after`: how long reconciles may be in flight with none finishing before the
    /// process calls itself unhealthy (and is restarted).
    pub fn new(stall_after: Duration) -> Health {
        Health {
            synced: AtomicBool::new(false),
            watching: AtomicBool::new(true),
            in_flight: AtomicUsize::new(0),
            last_progress: Mutex::new(Instant::now()),
            stall_after,
        }
    }

    /// The caches were filled once (or, for a standby replica, it is ready to take over).
    pub fn set_synced(&self, synced: bool) {
        self.synced.store(synced, Ordering::Release);
    }

    /// Whether the watch on the API server currently works.
    pub fn set_watching(&self, ok: bool) {
        self.watching.store(ok, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.synced.load(Ordering::Acquire) && self.watching.load(Ordering::Acquire)
    }

    /// Marks a reconcile in flight until the guard is dropped.
    pub fn start_work(self: &Arc<Self>) -> WorkGuard {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            // Idle until now: the stall clock starts with this piece of work.
            self.progress();
        }
        WorkGuard(self.clone())
    }

    fn progress(&self) {
        *self
            .last_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    /// None when healthy; otherwise why not.
    pub fn stalled(&self) -> Option<String> {
        let in_flight = self.in_flight.load(Ordering::Acquire);
        let since = self
            .last_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed();
        (in_flight > 0 && since > self.stall_after).then(|| {
            format!(
                "stalled: {in_flight} reconciles in flight and none finished for {}s",
                since.as_secs()
            )
        })
    }
}

/// A reconcile in flight; dropping it (finished, failed or cancelled) counts as progress.
pub struct WorkGuard(Arc<Health>);

impl Drop for WorkGuard {
    fn drop(&mut self) {
        self.0.progress();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Clone)]
struct ServerState {
    metrics: Metrics,
    health: Arc<Health>,
}

/// Binds the health and metrics listener; split from [`serve_listener`] so that callers can
/// bind port 0 and learn the address before serving.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|error| {
        std::io::Error::new(
            error.kind(),
            format!("binding the health and metrics server to {addr}: {error}"),
        )
    })
}

/// Serves `/healthz`, `/readyz` and `/metrics` on an already bound listener until `shutdown`
/// completes; requests in flight at that moment are answered first.
///
/// `/readyz` answers 200 only while `health` is ready (caches synced, watch working);
/// `/healthz` answers 503 when the reconcile loop has stalled.
pub async fn serve_listener(
    listener: TcpListener,
    metrics: Metrics,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(ServerState { metrics, health });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

fn router(state: ServerState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(state)
}

async fn healthz(State(state): State<ServerState>) -> (StatusCode, String) {
    match state.health.stalled() {
        None => (StatusCode::OK, "ok".into()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

async fn readyz(State(state): State<ServerState>) -> (StatusCode, &'static str) {
    if state.health.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Streams the text a chunk at a time (see [`Metrics::chunks`]).
async fn metrics_handler(State(state): State<ServerState>) -> impl IntoResponse {
    let chunks = state
        .metrics
        .chunks()
        .map(Ok::<_, std::convert::Infallible>);
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        axum::body::Body::from_stream(futures::stream::iter(chunks)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// One HTTP/1.1 request on a fresh connection; returns (status, headers, body).
    async fn get_once(addr: SocketAddr, path: &str) -> (u16, String, String) {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .expect("read response");
        let (head, body) = response.split_once("\r\n\r\n").expect("header end");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("status code");
        let body = testkit::http::body_of(head, body).expect("a whole body");
        (status, head.to_owned(), body)
    }

    #[tokio::test]
    async fn health_server_answers_and_shuts_down() {
        let metrics = Metrics::new();
        metrics.set_conditions("shop", "www", &[("Ready".to_string(), "True".to_string())]);
        let health = Arc::new(Health::new(Duration::from_secs(60)));
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_listener(listener, metrics, health.clone(), async {
            let _ = stopped.await;
        }));

        let (status, _, body) = get_once(addr, "/healthz").await;
        assert_eq!((status, body.as_str()), (200, "ok"));

        let (status, _, body) = get_once(addr, "/readyz").await;
        assert_eq!((status, body.as_str()), (503, "not ready"));
        health.set_synced(true);
        let (status, _, body) = get_once(addr, "/readyz").await;
        assert_eq!((status, body.as_str()), (200, "ready"));

        let (status, head, body) = get_once(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("content-type: {OPENMETRICS_CONTENT_TYPE}")),
            "{head}"
        );
        assert!(
            body.contains(
                r#"httpsdelivery_condition_status{namespace="shop",name="www",type="Ready",status="True"} 1"#
            ),
            "{body}"
        );
        assert!(body.ends_with("# EOF\n"));

        let (status, _, _) = get_once(addr, "/nowhere").await;
        assert_eq!(status, 404);

        stop.send(()).expect("server still running");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("server stops after shutdown")
            .expect("server task")
            .expect("server result");
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "listener closed after shutdown"
        );
    }

    #[test]
    fn readiness_needs_synced_caches_and_a_working_watch() {
        let health = Health::new(Duration::from_secs(60));
        assert!(!health.is_ready(), "not synced yet");
        health.set_synced(true);
        assert!(health.is_ready());
        health.set_watching(false);
        assert!(!health.is_ready(), "the API server is unreachable");
        health.set_watching(true);
        assert!(health.is_ready());
    }

    #[test]
    fn the_watchdog_fires_only_when_work_is_in_flight_and_nothing_finishes() {
        let health = Arc::new(Health::new(Duration::from_millis(50)));
        assert_eq!(health.stalled(), None, "idle is healthy");
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(health.stalled(), None, "idle for long is healthy too");
        let stuck = health.start_work();
        assert_eq!(health.stalled(), None, "just started");
        std::thread::sleep(Duration::from_millis(80));
        let why = health.stalled().expect("stalled");
        assert!(why.contains("1 reconciles in flight"), "{why}");
        let other = health.start_work();
        drop(other);
        assert_eq!(health.stalled(), None, "a finished reconcile is progress");
        drop(stuck);
        assert_eq!(health.stalled(), None);
    }

    #[tokio::test]
    async fn bind_error_names_the_address() {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local address");
        let error = bind(addr).await.expect_err("port in use");
        assert!(error.to_string().contains(&addr.to_string()), "{error}");
    }
}
