//! The HTTP server loop: every connection is budgeted in time and number,
//! so clients that connect and then send slowly, or nothing, cannot hold
//! the gateway.
//!
//! - At most [`HttpLimits::max_connections`] connections are served at
//!   once; one more is answered 503 and closed at once, so it holds no file
//!   descriptor.
//! - A request's head must arrive within the header timeout: of the
//!   connection's opening for its first request, of its first byte for the
//!   next ones. A connection kept alive after an answer is closed when
//!   nothing of a next request comes within the idle timeout.
//! - A body's time is bounded by [`body_deadline`], a router layer.
//!
//! Each request carries the peer's address as axum's `ConnectInfo<SocketAddr>`.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Json, Router,
    body::{Body, Bytes, HttpBody},
    extract::{ConnectInfo, Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use hyper::{body::Frame, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};
use serde_json::json;
use shippy_service::{Shutdown, metrics::Metrics};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Notify, Semaphore},
    time::{Instant, Sleep},
};
use tower::ServiceExt as _;

use crate::settings::HttpLimits;

/// What a refused connection is told before it is closed (written only if
/// the socket takes it at once: a refusal never waits on the client).
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
x-content-type-options: nosniff\r\n\
cache-control: no-store\r\n\
connection: close\r\n\
content-length: 98\r\n\
\r\n\
{\"error\":{\"code\":\"UNAVAILABLE\",\"message\":\"the gateway is at its connection limit; retry shortly\"}}";

/// Why the gateway closed a connection or a request by itself.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TimeoutLabels {
    /// `header`, `body` or `idle`.
    pub timeout: &'static str,
}

/// The server's connection metrics.
#[derive(Debug, Clone)]
pub struct ConnectionMetrics {
    open: Gauge,
    refused: Counter,
    timed_out: Family<TimeoutLabels, Counter>,
}

impl ConnectionMetrics {
    /// Registers the connection metrics in `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        Self {
            open: metrics.gauge(
                "http_server_connections_open",
                "HTTP connections being served",
            ),
            refused: metrics.counter(
                "http_server_connections_refused",
                "HTTP connections closed at once because the connection limit was reached",
            ),
            timed_out: metrics.registered(
                "http_server_timeouts",
                "Connections closed, or requests answered 408, because the client was too slow",
                Family::default(),
            ),
        }
    }

    fn timed_out(&self, timeout: &'static str) {
        self.timed_out
            .get_or_create(&TimeoutLabels { timeout })
            .inc();
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` fires,
/// then lets the requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &HttpLimits,
    metrics: ConnectionMetrics,
    shutdown: Shutdown,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let timeouts = Timeouts {
        header: limits.header_read_timeout.into(),
        idle: limits.idle_timeout.into(),
    };
    loop {
        let accepted = tokio::select! {
            () = shutdown.wait() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, or the client gave up: neither
                // stops the server; a short pause lets descriptors free up.
                tracing::debug!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics.refused.inc();
            tracing::debug!(%peer, "connection refused: at the connection limit");
            // Best effort, never waiting: the close is what frees the slot.
            // What the client already sent is read first, so the close is a
            // FIN after the answer rather than a reset that may discard it.
            let mut sent = [0u8; 2048];
            let _ = stream.try_read(&mut sent);
            let _ = stream.try_write(REFUSAL);
            drop(stream);
            continue;
        };
        let connection = Connection {
            router: router.clone(),
            peer,
            timeouts,
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
        };
        tokio::spawn(async move {
            connection.serve(stream).await;
            drop(slot);
        });
    }
    drop(listener);
    // Every connection holds a slot until it ends: all slots back means all
    // connections are done.
    let _all = slots
        .acquire_many(limits.max_connections)
        .await
        .map_err(io::Error::other)?;
    Ok(())
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header: Duration,
    idle: Duration,
}

struct Connection {
    router: Router,
    peer: SocketAddr,
    timeouts: Timeouts,
    metrics: ConnectionMetrics,
    shutdown: Shutdown,
}

impl Connection {
    async fn serve(self, stream: TcpStream) {
        self.metrics.open.inc();
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            stream,
            activity: Arc::clone(&activity),
        });
        let router = self.router;
        let peer = self.peer;
        let service = {
            let activity = Arc::clone(&activity);
            service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let busy = Busy::enter(&activity);
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                let answered = router.clone().oneshot(request);
                async move {
                    let response = answered.await;
                    drop(busy);
                    response
                }
            })
        };
        // hyper's own head timer runs from when it starts waiting for a head,
        // idle time included: at their sum it can only back ours up.
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.timeouts.idle + self.timeouts.header);
        let connection = builder.serve_connection(io, service);
        tokio::pin!(connection);
        let mut stopping = false;
        loop {
            let due = activity.due(self.timeouts);
            let changed = activity.changed.notified();
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(error) = served {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                    break;
                }
                () = self.shutdown.wait(), if !stopping => {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
                () = changed => {}
                () = sleep_until_due(due) => {
                    if let Some((_, timeout)) = due {
                        tracing::debug!(%peer, timeout, "connection closed: client too slow");
                        self.metrics.timed_out(timeout);
                    }
                    break;
                }
            }
        }
        self.metrics.open.dec();
    }
}

async fn sleep_until_due(due: Option<(Instant, &'static str)>) {
    match due {
        Some((deadline, _)) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Where a connection stands, for its timers.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// A request's head is due: the connection is new, or part of the head
    /// has come since `since`.
    Head { since: Instant },
    /// Kept alive after an answer since `since`, nothing of the next
    /// request yet.
    Idle { since: Instant },
    /// A request is being answered; no connection timer runs.
    Busy,
}

#[derive(Debug)]
struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Activity {
    /// A new connection: its first request's head is due at once.
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Head {
                since: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        self.phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, phase: Phase) {
        *self.phase() = phase;
        // notify_one keeps the wake-up if the watcher is between two waits.
        self.changed.notify_one();
    }

    /// Bytes came from the client: on an idle connection, a head begins.
    fn read(&self) {
        let mut phase = self.phase();
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Head {
                since: Instant::now(),
            };
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// When the connection is to be closed, and which timeout that is.
    fn due(&self, timeouts: Timeouts) -> Option<(Instant, &'static str)> {
        match *self.phase() {
            Phase::Head { since } => Some((since + timeouts.header, "header")),
            Phase::Idle { since } => Some((since + timeouts.idle, "idle")),
            Phase::Busy => None,
        }
    }
}

/// A request in progress; its end starts the wait for the next one (also
/// when the request is dropped unanswered).
struct Busy(Arc<Activity>);

impl Busy {
    fn enter(activity: &Arc<Activity>) -> Self {
        activity.set(Phase::Busy);
        Self(Arc::clone(activity))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.set(Phase::Idle {
            since: Instant::now(),
        });
    }
}

/// The TCP stream, telling [`Activity`] when bytes arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// What [`body_deadline`] needs.
#[derive(Debug, Clone)]
pub struct BodyDeadline {
    /// How long a body may take to arrive.
    pub timeout: Duration,
    /// Counts the requests answered 408.
    pub metrics: ConnectionMetrics,
}

/// Router layer: a request's body must arrive within the timeout of the
/// request reaching the router; one that does not is answered 408 (the
/// handler reading it sees an error) and its connection closed.
pub async fn body_deadline(
    State(deadline): State<BodyDeadline>,
    request: Request,
    next: Next,
) -> Response {
    let expired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let request = request.map(|body| {
        Body::new(TimedBody {
            body,
            deadline: Instant::now() + deadline.timeout,
            sleep: None,
            expired: Arc::clone(&expired),
        })
    });
    let response = next.run(request).await;
    if !expired.load(std::sync::atomic::Ordering::Acquire) {
        return response;
    }
    deadline.metrics.timed_out("body");
    let message = format!(
        "the request body did not arrive within {}; send it whole, at once",
        humantime::format_duration(deadline.timeout)
    );
    (
        StatusCode::REQUEST_TIMEOUT,
        // The rest of the body may still come: the connection cannot be reused.
        [(header::CONNECTION, "close")],
        Json(json!({"error": {"code": "DEADLINE_EXCEEDED", "message": message}})),
    )
        .into_response()
}

/// The body read too slowly.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimedOut;

/// A request body that fails once its deadline passes.
struct TimedBody {
    body: Body,
    deadline: Instant,
    /// Made the first time the body has to be waited for.
    sleep: Option<Pin<Box<Sleep>>>,
    expired: Arc<std::sync::atomic::AtomicBool>,
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|frame| frame.map_err(Into::into))),
            Poll::Pending => {
                let deadline = this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.as_mut().poll(cx).is_ready() {
                    this.expired
                        .store(true, std::sync::atomic::Ordering::Release);
                    Poll::Ready(Some(Err(BodyTimedOut.into())))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_whole_http_answer_with_the_error_shape() {
        let text = std::str::from_utf8(REFUSAL).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        let length = format!("content-length: {}", body.len());
        assert!(head.lines().any(|line| line == length), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert_eq!(json["error"]["code"], "UNAVAILABLE");
    }
}
