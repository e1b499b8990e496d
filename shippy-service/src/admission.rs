//! Who gets a request slot, and when: overload is shed by identity, not by
//! order of arrival.
//!
//! A server has [`GrpcServer::concurrency_limit`](crate::server::GrpcServer)
//! slots for requests being handled. A request takes one only once its whole
//! message has arrived, so clients that open streams and never send a body
//! hold nothing everyone needs; such a request is answered
//! `DEADLINE_EXCEEDED` after [`DEFAULT_MESSAGE_TIMEOUT`]. Before that, every
//! request counts against its client's own budget
//! ([`DEFAULT_PER_CLIENT_LIMIT`] at once): past it, that client alone is
//! answered `RESOURCE_EXHAUSTED`, whatever everybody else does.
//!
//! A client is its address: the TCP peer's, or, when the request carries the
//! services' shared credential (the api-gateway forwarding a browser's
//! call), the address in [`CLIENT_ADDRESS_KEY`]. IPv6 addresses count per
//! /64, the block one host is usually given. Health checks are never shed.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::{IpAddr, Ipv6Addr},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Status, body::Body, transport::server::TcpConnectInfo};
use tower::{Layer, Service};

/// The metadata key in which a trusted forwarder (the api-gateway) names the
/// client it calls for. Believed only with the services' credential.
pub const CLIENT_ADDRESS_KEY: &str = "x-client-address";

/// Requests one client may have in flight (waiting for their message or
/// handled) unless told otherwise.
pub const DEFAULT_PER_CLIENT_LIMIT: usize = 128;

/// How long a unary request's message may take to arrive unless told
/// otherwise: a client that opens a request and sends nothing is answered
/// after this, not after the whole request timeout.
pub const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest request body buffered before a slot is taken: tonic's own
/// largest message (4 MiB) and its frame header, with room to spare.
pub const MAX_BUFFERED_BYTES: usize = 4 * 1024 * 1024 + 1024;

/// Whether a request's headers carry the credential that lets it name the
/// client it is forwarded for (the services' shared secret, checked by the
/// crate that owns it).
pub type Vouch = Arc<dyn Fn(&HeaderMap) -> bool + Send + Sync>;

/// The budgets: how many slots in all and per client, and how long a
/// message may take to arrive.
#[derive(Clone)]
pub struct Budgets {
    /// Requests handled at once, across all clients.
    pub slots: usize,
    /// Requests in flight per client.
    pub per_client: usize,
    /// How long a unary request's message may take to arrive.
    pub message_timeout: Duration,
    /// Who may name the client it forwards for; `None`: nobody.
    pub vouch: Option<Vouch>,
}

impl fmt::Debug for Budgets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budgets")
            .field("slots", &self.slots)
            .field("per_client", &self.per_client)
            .field("message_timeout", &self.message_timeout)
            .field("vouch", &self.vouch.is_some())
            .finish()
    }
}

/// Applies [`Budgets`] to every request of a server.
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    slots: Arc<Semaphore>,
    budgets: Budgets,
    in_flight: Mutex<HashMap<Client, usize>>,
    /// Paths whose request is one message, buffered before a slot is taken.
    unary: HashSet<String>,
}

/// A client, as budgets count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    Address(IpAddr),
    /// No address known (not a TCP connection): one shared budget.
    Unknown,
}

impl Client {
    fn of(address: IpAddr) -> Self {
        match address {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                Self::Address(IpAddr::V6(Ipv6Addr::from(bits)))
            }
            IpAddr::V6(v6) => Self::Address(v6.to_ipv4_mapped().map_or(address, IpAddr::V4)),
            IpAddr::V4(_) => Self::Address(address),
        }
    }
}

impl AdmissionLayer {
    /// Budgets for a server whose unary methods are `unary`
    /// (`/package.Service/Method`).
    pub fn new(budgets: Budgets, unary: HashSet<String>) -> Self {
        Self {
            shared: Arc::new(Shared {
                slots: Arc::new(Semaphore::new(budgets.slots.max(1))),
                budgets,
                in_flight: Mutex::new(HashMap::new()),
                unary,
            }),
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// See [`AdmissionLayer`].
#[derive(Debug, Clone)]
pub struct Admission<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// One request counted against its client until dropped.
struct Counted {
    shared: Arc<Shared>,
    client: Client,
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Ok(mut in_flight) = self.shared.in_flight.lock()
            && let Some(count) = in_flight.get_mut(&self.client)
        {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.client);
            }
        }
    }
}

impl Shared {
    fn client<B>(&self, request: &Request<B>) -> Client {
        let forwarded = self
            .budgets
            .vouch
            .as_ref()
            .filter(|vouch| vouch(request.headers()))
            .and_then(|_| request.headers().get(CLIENT_ADDRESS_KEY))
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<IpAddr>().ok());
        let peer = request
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr)
            .map(|address| address.ip());
        forwarded.or(peer).map_or(Client::Unknown, Client::of)
    }

    /// Counts a request against `client`, or `None` past its budget.
    fn count(self: &Arc<Self>, client: Client) -> Option<Counted> {
        let mut in_flight = self.in_flight.lock().ok()?;
        let count = in_flight.entry(client).or_insert(0);
        if *count >= self.budgets.per_client {
            return None;
        }
        *count += 1;
        Some(Counted {
            shared: self.clone(),
            client,
        })
    }
}

fn refuse(status: Status) -> Response<Body> {
    status.into_http()
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<Request<Body>> for Admission<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The service that was polled ready serves this request; a fresh
        // clone waits for the next (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let path = request.uri().path();
        if path.starts_with("/grpc.health.v1.Health/") {
            return Box::pin(inner.call(request));
        }
        let unary = shared.unary.contains(path);
        Box::pin(async move {
            let client = shared.client(&request);
            let Some(counted) = shared.count(client) else {
                return Ok(refuse(Status::resource_exhausted(format!(
                    "too many requests in flight from your address (at most {} at once); \
                     retry when some have finished",
                    shared.budgets.per_client
                ))));
            };
            let request = if unary {
                let (parts, body) = request.into_parts();
                let timeout = shared.budgets.message_timeout;
                let read = Limited::new(body, MAX_BUFFERED_BYTES).collect();
                match tokio::time::timeout(timeout, read).await {
                    Ok(Ok(collected)) => Request::from_parts(
                        parts,
                        Body::new(Full::<Bytes>::new(collected.to_bytes())),
                    ),
                    Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
                        return Ok(refuse(Status::resource_exhausted(format!(
                            "the request message is larger than {MAX_BUFFERED_BYTES} bytes"
                        ))));
                    }
                    Ok(Err(_)) => {
                        return Ok(refuse(Status::cancelled(
                            "the request message was cut off before it ended",
                        )));
                    }
                    Err(_) => {
                        return Ok(refuse(Status::deadline_exceeded(format!(
                            "the request message did not arrive within {}s of the request; \
                             send it with the request",
                            timeout.as_secs_f32()
                        ))));
                    }
                }
            } else {
                request
            };
            let Ok(permit): Result<OwnedSemaphorePermit, _> =
                shared.slots.clone().try_acquire_owned()
            else {
                return Ok(refuse(Status::resource_exhausted(
                    "the server is busy with other requests; retry shortly",
                )));
            };
            let response = inner.call(request).await;
            drop(permit);
            drop(counted);
            response
        })
    }
}
