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
//! A message is buffered only up to the server's largest request
//! ([`Budgets::max_message_bytes`]), and messages waiting for a slot or
//! being handled may hold at most [`DEFAULT_BUFFER_BUDGET`] bytes in all and
//! a quarter of that per client: past either, `RESOURCE_EXHAUSTED` at once,
//! so a client cannot make the server hold its memory either.
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

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Status, body::Body, transport::server::TcpConnectInfo};

use crate::error::RETRY_AFTER_SECONDS;
use tower::{Layer, Service};

/// The metadata key in which a trusted forwarder (the api-gateway) names the
/// client it calls for. Believed only with the services' credential.
pub const CLIENT_ADDRESS_KEY: &str = "x-client-address";

/// Requests one client may have in flight (waiting for their message or
/// handled) unless told otherwise.
pub const DEFAULT_PER_CLIENT_LIMIT: usize = 64;

/// How long a unary request's message may take to arrive unless told
/// otherwise: a client that opens a request and sends nothing is answered
/// after this, not after the whole request timeout.
pub const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest request body buffered before a slot is taken unless told
/// otherwise: tonic's own largest message (4 MiB) and its frame header.
pub const MAX_BUFFERED_BYTES: usize = 4 * 1024 * 1024 + 5;

/// Bytes of request messages a server holds at once (buffered, waiting for
/// a slot or being handled) unless told otherwise; a client may hold a
/// quarter of it.
pub const DEFAULT_BUFFER_BUDGET: usize = 64 * 1024 * 1024;

/// gRPC's frame header before each message: a flag byte and a 4-byte length.
const FRAME_HEADER_BYTES: usize = 5;

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
    /// The largest request message (the body of a unary request, less its
    /// frame header) buffered; bigger is `RESOURCE_EXHAUSTED`.
    pub max_message_bytes: usize,
    /// Bytes of messages held at once across all clients; a client may
    /// hold a quarter.
    pub buffer_budget: usize,
    /// Who may name the client it forwards for; `None`: nobody.
    pub vouch: Option<Vouch>,
}

impl fmt::Debug for Budgets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budgets")
            .field("slots", &self.slots)
            .field("per_client", &self.per_client)
            .field("message_timeout", &self.message_timeout)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("buffer_budget", &self.buffer_budget)
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
    usage: Mutex<Usage>,
    /// Paths whose request is one message, buffered before a slot is taken.
    unary: HashSet<String>,
}

/// What clients hold now.
#[derive(Debug, Default)]
struct Usage {
    /// Per client: requests in flight and bytes of messages held.
    clients: HashMap<Client, (usize, usize)>,
    /// Bytes of messages held, all clients together.
    bytes: usize,
}

/// A client, as budgets count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    Address(IpAddr),
    /// No address known (not a TCP connection): one shared budget.
    Unknown,
    /// Another service, vouched for by the services' credential and calling
    /// for nobody in particular (consignment-service reserving room): held
    /// to the server's budgets only, since its callers were budgeted where
    /// they came in.
    Service,
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
                usage: Mutex::new(Usage::default()),
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

/// One request counted against its client until dropped, with the bytes
/// of its message it holds.
struct Counted {
    shared: Arc<Shared>,
    client: Client,
    bytes: usize,
}

/// Which budget a message's bytes would pass.
enum OverBudget {
    Client,
    Server,
}

impl Counted {
    /// Takes `more` bytes from the client's and the server's budgets.
    fn hold(&mut self, more: usize) -> Result<(), OverBudget> {
        let budget = self.shared.budgets.buffer_budget;
        let Ok(mut usage) = self.shared.usage.lock() else {
            return Err(OverBudget::Server);
        };
        if usage.bytes + more > budget {
            return Err(OverBudget::Server);
        }
        let Some(entry) = usage.clients.get_mut(&self.client) else {
            return Err(OverBudget::Server);
        };
        if self.client != Client::Service && entry.1 + more > budget / 4 {
            return Err(OverBudget::Client);
        }
        entry.1 += more;
        usage.bytes += more;
        self.bytes += more;
        Ok(())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let Ok(mut usage) = self.shared.usage.lock() else {
            return;
        };
        usage.bytes = usage.bytes.saturating_sub(self.bytes);
        if let Some(entry) = usage.clients.get_mut(&self.client) {
            entry.0 = entry.0.saturating_sub(1);
            entry.1 = entry.1.saturating_sub(self.bytes);
            if entry.0 == 0 {
                usage.clients.remove(&self.client);
            }
        }
    }
}

impl Shared {
    fn client<B>(&self, request: &Request<B>) -> Client {
        let vouched = self
            .budgets
            .vouch
            .as_ref()
            .is_some_and(|vouch| vouch(request.headers()));
        let named = request.headers().get(CLIENT_ADDRESS_KEY);
        if vouched && named.is_none() {
            return Client::Service;
        }
        let forwarded = named
            .filter(|_| vouched)
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
        let mut usage = self.usage.lock().ok()?;
        let entry = usage.clients.entry(client).or_insert((0, 0));
        if client != Client::Service && entry.0 >= self.budgets.per_client {
            return None;
        }
        entry.0 += 1;
        Some(Counted {
            shared: self.clone(),
            client,
            bytes: 0,
        })
    }

    /// Reads a unary request's body into memory within the message timeout,
    /// the size limit and the byte budgets; or the answer refusing it.
    async fn buffer(&self, body: Body, counted: &mut Counted) -> Result<Bytes, Status> {
        let limit = self.budgets.max_message_bytes + FRAME_HEADER_BYTES;
        let timeout = self.budgets.message_timeout;
        let read = async {
            let mut body = body;
            let mut buffered = BytesMut::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|_| {
                    Status::cancelled("the request message was cut off before it ended")
                })?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if buffered.len() + data.len() > limit {
                    return Err(Status::resource_exhausted(format!(
                        "the request message is larger than this server takes ({} bytes)",
                        self.budgets.max_message_bytes
                    )));
                }
                counted.hold(data.len()).map_err(|over| match over {
                    OverBudget::Client => shed(
                        "your requests in flight hold too much data already; retry when some \
                         have finished",
                    ),
                    OverBudget::Server => {
                        shed("the server is busy receiving other requests; retry shortly")
                    }
                })?;
                buffered.extend_from_slice(&data);
            }
            Ok(buffered.freeze())
        };
        tokio::time::timeout(timeout, read)
            .await
            .unwrap_or_else(|_| {
                Err(Status::deadline_exceeded(format!(
                    "the request message did not arrive within {}s of the request; send it with \
                 the request",
                    timeout.as_secs_f32()
                )))
            })
    }
}

fn refuse(status: Status) -> Response<Body> {
    status.into_http()
}

/// `RESOURCE_EXHAUSTED` for a budget that frees up as requests finish:
/// worth retrying in a second ([`RETRY_AFTER_SECONDS`] metadata).
fn shed(message: impl Into<String>) -> Status {
    let mut status = Status::resource_exhausted(message);
    status.metadata_mut().insert(
        RETRY_AFTER_SECONDS,
        tonic::metadata::MetadataValue::from(1u32),
    );
    status
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
            let Some(mut counted) = shared.count(client) else {
                return Ok(refuse(shed(format!(
                    "too many requests in flight from your address (at most {} at once); \
                     retry when some have finished",
                    shared.budgets.per_client
                ))));
            };
            let request = if unary {
                let (parts, body) = request.into_parts();
                match shared.buffer(body, &mut counted).await {
                    Ok(message) => Request::from_parts(parts, Body::new(Full::new(message))),
                    Err(status) => return Ok(refuse(status)),
                }
            } else {
                request
            };
            let Ok(permit): Result<OwnedSemaphorePermit, _> =
                shared.slots.clone().try_acquire_owned()
            else {
                return Ok(refuse(shed(
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
