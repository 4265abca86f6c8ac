//! The health server: `/healthz`, `/readyz` and Prometheus `/metrics`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use super::metrics::{Metrics, OPENMETRICS_CONTENT_TYPE};

#[derive(Clone)]
struct ServerState {
    metrics: Metrics,
    ready: Arc<AtomicBool>,
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
/// `/readyz` answers 200 only while `ready` is true, so the process can report itself
/// unready (e.g. before its caches are synced) without stopping the server.
pub async fn serve_listener(
    listener: TcpListener,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(ServerState { metrics, ready });
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

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<ServerState>) -> (StatusCode, &'static str) {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics_handler(State(state): State<ServerState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        state.metrics.encode(),
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
        (status, head.to_owned(), body.to_owned())
    }

    #[tokio::test]
    async fn health_server_answers_and_shuts_down() {
        let metrics = Metrics::new();
        metrics.set_conditions("shop", "www", &[("Ready".to_string(), "True".to_string())]);
        let ready = Arc::new(AtomicBool::new(false));
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_listener(listener, metrics, ready.clone(), async {
            let _ = stopped.await;
        }));

        let (status, _, body) = get_once(addr, "/healthz").await;
        assert_eq!((status, body.as_str()), (200, "ok"));

        let (status, _, body) = get_once(addr, "/readyz").await;
        assert_eq!((status, body.as_str()), (503, "not ready"));
        ready.store(true, Ordering::Release);
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
