//! The accept loop under the router. `axum::serve` has no timeouts, so a
//! client that opens a connection and never finishes its headers, or sends
//! its body a byte a minute, would hold a connection and a task forever;
//! here both are dropped after a bound, and stopping waits for the
//! requests in flight. With a certificate configured, every connection is
//! TLS (docs/security.md, "TLS").

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::error::ApiError;

/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's body, once its headers
/// are in.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest body accepted (a SQL statement in JSON).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// How long stopping waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads the whole body within [`BODY_READ_TIMEOUT`] and [`MAX_BODY_BYTES`]
/// before any handler sees the request.
pub async fn read_body_in_time(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(
        BODY_READ_TIMEOUT,
        axum::body::to_bytes(body, MAX_BODY_BYTES),
    )
    .await
    {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(_)) => ApiError::PayloadTooLarge(format!(
            "the request body is larger than {MAX_BODY_BYTES} bytes or was cut off"
        ))
        .into_response(),
        Err(_) => ApiError::RequestTimeout(format!(
            "the request body did not arrive within {} s",
            BODY_READ_TIMEOUT.as_secs()
        ))
        .into_response(),
    }
}

/// The router for one connection: it hands each request the peer's address
/// (as axum's [`ConnectInfo`], for the audit log).
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    peer: SocketAddr,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnectionService {
    type Response = Response;
    type Error = Infallible;
    type Future = RouteFuture<Infallible>;

    fn call(&self, mut request: hyper::Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        // A router is always ready.
        self.router.clone().call(request.map(Body::new))
    }
}

/// Serves HTTP/1.1 on one accepted connection (plain or TLS) until it
/// closes or stopping has drained it.
async fn serve_connection<I>(io: I, service: ConnectionService, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = service.peer;
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%error, %peer, "http: connection ended");
    }
}

/// Serves `router` on `listener` (over TLS when `tls` is given) until
/// `shutdown` completes, then finishes the requests in flight (for up to
/// [`DRAIN_TIMEOUT`]).
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause, keep serving.
                    tracing::warn!(%error, "http: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = ConnectionService {
            router: router.clone(),
            peer,
        };
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(tls) = tls else {
                return serve_connection(stream, service, watcher).await;
            };
            // The handshake is bounded like the headers that follow it.
            match tokio::time::timeout(HEADER_READ_TIMEOUT, tls.accept(stream)).await {
                Ok(Ok(stream)) => serve_connection(stream, service, watcher).await,
                Ok(Err(error)) => tracing::debug!(%error, %peer, "http: TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "http: TLS handshake timed out"),
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("http: requests still running after the drain timeout were dropped");
    }
    Ok(())
}
