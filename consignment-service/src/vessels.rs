//! vessel-service, as the consignment saga calls it: reserve room, confirm
//! it, release it. Every call has a deadline and carries the services'
//! shared secret; each is idempotent (keyed by the consignment's id), so one
//! that cannot reach an instance is retried with jittered backoff, and one
//! instance going away does not fail the call while others serve.
//!
//! Reservations and confirmations made at the same time go as one
//! `ReserveBatch` / `ConfirmBatch` call ([`shippy_store::batch`]): one
//! request, one transaction in vessel-service, each item answered as its own
//! call would have been. A vessel-service too old to know the batch calls
//! (`UNIMPLEMENTED`) is sent one call per item.

use std::{sync::Arc, time::Duration};

use shippy_auth::service::ServiceToken;
use shippy_proto::vessel::v1::{
    self as proto, ConfirmBatchRequest, ReleaseRequest, ReservationRef, ReserveBatchRequest,
    ReserveRequest, Specification, vessel_service_client::VesselServiceClient,
};
use shippy_service::{
    ApiError, breaker::CircuitBreaker, retry::Backoff, telemetry::propagation::TraceInterceptor,
};
use shippy_store::batch::Coalescer;
use tonic::{
    Code, Status,
    metadata::{MetadataKey, MetadataMap, MetadataValue},
    service::interceptor::InterceptedService,
    transport::Channel,
};
use tracing::Instrument;

/// How many times an unreachable vessel-service is tried in one call.
const ATTEMPTS: u32 = 3;
/// The pauses between those tries (jittered), all within the call's deadline.
const PAUSES: Backoff = Backoff {
    min: Duration::from_millis(50),
    max: Duration::from_millis(400),
};

/// The most items one batch call carries (vessel-service takes up to 256).
const MAX_BATCH: usize = 128;

type Client = VesselServiceClient<InterceptedService<Channel, TraceInterceptor>>;

/// What one item of a batch call was answered.
type Answer = Result<proto::Reservation, Status>;

/// vessel-service, through a lazily connecting channel.
#[derive(Debug, Clone)]
pub struct Vessels {
    caller: Caller,
    reservations: Arc<Coalescer<ReserveRequest, Answer>>,
    confirmations: Arc<Coalescer<ReservationRef, Answer>>,
}

/// Sends calls: with the secret, the deadline, retries and the breaker.
#[derive(Debug, Clone)]
struct Caller {
    client: Client,
    deadline: Duration,
    breaker: CircuitBreaker,
    token: Option<ServiceToken>,
}

/// Why a reservation could not be confirmed.
#[derive(Debug)]
pub enum ConfirmError {
    /// vessel-service holds nothing for it any more: the hold expired (or
    /// was released). The consignment must not ship.
    Lost(ApiError),
    /// vessel-service did not answer; the reservation may still be held.
    Failed(ApiError),
}

impl Vessels {
    /// Calls through `channel`, each call given `deadline`, with `token`
    /// (vessel-service refuses reservations without it).
    pub fn new(channel: Channel, deadline: Duration, token: Option<ServiceToken>) -> Self {
        let caller = Caller {
            client: VesselServiceClient::with_interceptor(channel, TraceInterceptor),
            deadline,
            breaker: CircuitBreaker::new(),
            token,
        };
        let reserver = caller.clone();
        let confirmer = caller.clone();
        Self {
            reservations: Arc::new(Coalescer::new(MAX_BATCH, move |batch| {
                reserver.clone().batch(batch)
            })),
            confirmations: Arc::new(Coalescer::new(MAX_BATCH, move |batch| {
                confirmer.clone().batch(batch)
            })),
            caller,
        }
    }

    /// Runs `item` in the next batch of `coalescer`, within the deadline.
    async fn batched<In: Send + 'static>(
        &self,
        coalescer: &Coalescer<In, Answer>,
        item: In,
    ) -> Answer {
        tokio::time::timeout(self.caller.deadline, coalescer.call(item))
            .await
            .map_err(|_| Status::deadline_exceeded("no answer in time"))?
            .map_err(|unanswered| Status::unavailable(unanswered.to_string()))?
    }
}

impl Caller {
    /// After repeated failures, refuses at once instead of waiting out the
    /// deadline for a service that is not there.
    fn admit(&self) -> Result<(), ApiError> {
        self.breaker.allow().map_err(|open| {
            ApiError::unavailable(format!("vessel-service is unreachable ({open})"), open)
        })
    }

    /// Sends `message` until it is answered, is refused for a reason other
    /// than being unreachable, or the deadline passes. Call
    /// [`Vessels::admit`] first.
    async fn call<M: Call>(&self, message: M) -> Result<M::Answer, Status> {
        let deadline = tokio::time::Instant::now() + self.deadline;
        let mut pauses = PAUSES.delays(true);
        let mut attempt = 0;
        let answer = loop {
            attempt += 1;
            let mut request = tonic::Request::new(message.clone());
            if let Some(token) = &self.token {
                token.attach(&mut request);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            request.set_timeout(left);
            let result = tokio::time::timeout(left, M::send(self.client.clone(), request))
                .await
                .unwrap_or_else(|_| Err(Status::deadline_exceeded("no answer in time")))
                .map_err(broken_connection_is_unavailable);
            match result {
                Err(status) if status.code() == Code::Unavailable && attempt < ATTEMPTS => {
                    let pause = pauses.next().unwrap_or(PAUSES.max);
                    if tokio::time::Instant::now() + pause >= deadline {
                        break Err(status);
                    }
                    tracing::debug!(attempt, %status, "vessel-service unreachable; retrying");
                    tokio::time::sleep(pause).await;
                }
                other => break other,
            }
        };
        let unreachable = matches!(
            &answer,
            Err(status) if matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
        );
        self.breaker.record(!unreachable);
        answer.map(tonic::Response::into_inner)
    }

    /// Each of `batch` as its own call, one by one.
    async fn each<T: Batchable>(&self, batch: Vec<T>) -> Vec<Answer> {
        let mut answers = Vec::with_capacity(batch.len());
        for item in batch {
            answers.push(self.call(item).await);
        }
        answers
    }

    /// `batch` as one batch call (a lone item as its own call); each item's
    /// answer, in order.
    async fn batch<T: Batchable>(self, batch: Vec<T>) -> Vec<Answer> {
        if batch.len() == 1 {
            return self.each(batch).await;
        }
        let items = batch.len();
        let answer = self
            .call(T::batch(batch.clone()))
            .instrument(batch_span(T::BATCH_METHOD, items))
            .await;
        match answer {
            Ok(response) => unpack(response, items),
            Err(status) if status.code() == Code::Unimplemented => self.each(batch).await,
            Err(status) => vec![Err(status); items],
        }
    }
}

/// A message vessel-service answers with `Answer`, sent by one method of
/// the client.
trait Call: Clone + Send + Sync + 'static {
    /// What vessel-service answers.
    type Answer;
    /// Sends the message.
    fn send(
        client: Client,
        request: tonic::Request<Self>,
    ) -> impl Future<Output = Result<tonic::Response<Self::Answer>, Status>> + Send;
}

/// Which client method sends which message, and what it answers: a table.
macro_rules! calls {
    ($($message:ty => $method:ident -> $answer:ty,)*) => {$(
        impl Call for $message {
            type Answer = $answer;

            async fn send(
                mut client: Client,
                request: tonic::Request<Self>,
            ) -> Result<tonic::Response<$answer>, Status> {
                client.$method(request).await
            }
        }
    )*};
}

calls! {
    ReserveRequest => reserve -> proto::Reservation,
    ReservationRef => confirm -> proto::Reservation,
    ReleaseRequest => release -> proto::ReleaseResponse,
    ReserveBatchRequest => reserve_batch -> proto::BatchResponse,
    ConfirmBatchRequest => confirm_batch -> proto::BatchResponse,
}

/// A call that also comes as a batch call: its message is a batch's item.
trait Batchable: Call<Answer = proto::Reservation> {
    /// The batch call's message.
    type Batch: Call<Answer = proto::BatchResponse>;
    /// The batch call's method, as its client span names it.
    const BATCH_METHOD: &'static str;
    /// The batch call's message for `items`.
    fn batch(items: Vec<Self>) -> Self::Batch;
}

impl Batchable for ReserveRequest {
    type Batch = ReserveBatchRequest;
    const BATCH_METHOD: &'static str = "ReserveBatch";

    fn batch(reservations: Vec<Self>) -> Self::Batch {
        ReserveBatchRequest { reservations }
    }
}

impl Batchable for ReservationRef {
    type Batch = ConfirmBatchRequest;
    const BATCH_METHOD: &'static str = "ConfirmBatch";

    fn batch(items: Vec<Self>) -> Self::Batch {
        let reservation_ids = items.into_iter().map(|item| item.reservation_id);
        ConfirmBatchRequest {
            reservation_ids: reservation_ids.collect(),
        }
    }
}

/// The client span of a batch call, in the trace of its first item's call.
fn batch_span(method: &'static str, items: usize) -> tracing::Span {
    tracing::info_span!(
        "shippy.vessel.v1.VesselService/batch",
        otel.name = %format!("shippy.vessel.v1.VesselService/{method}"),
        otel.kind = "client",
        rpc.system = "grpc",
        rpc.service = "shippy.vessel.v1.VesselService",
        rpc.method = method,
        batch.size = items,
    )
}

/// A batch call's answers as the statuses each item's own call would have
/// had; an answer short of `items` fails the rest.
fn unpack(response: proto::BatchResponse, items: usize) -> Vec<Answer> {
    let mut answers: Vec<Answer> = response
        .outcomes
        .into_iter()
        .take(items)
        .map(|outcome| match outcome.reservation {
            Some(reservation) if outcome.code == 0 => Ok(reservation),
            None if outcome.code == 0 => Err(Status::internal(
                "vessel-service answered a batch item OK without its reservation",
            )),
            _ => {
                let mut metadata = MetadataMap::new();
                for (key, value) in outcome.metadata {
                    if let (Ok(key), Ok(value)) = (
                        MetadataKey::from_bytes(key.as_bytes()),
                        MetadataValue::try_from(value.as_str()),
                    ) {
                        metadata.insert(key, value);
                    }
                }
                Err(Status::with_metadata(
                    Code::from(outcome.code),
                    outcome.message,
                    metadata,
                ))
            }
        })
        .collect();
    while answers.len() < items {
        answers.push(Err(Status::internal(
            "vessel-service answered a batch with fewer outcomes than items",
        )));
    }
    answers
}

impl Vessels {
    fn admit(&self) -> Result<(), ApiError> {
        self.caller.admit()
    }

    /// Takes room for `capacity` containers weighing `weight` kg in all on
    /// the smallest vessel that still has it, held for `id` on `owner`'s
    /// account; answers the vessel's id. No vessel has the room:
    /// `FAILED_PRECONDITION` naming the need; the account's cap would be
    /// passed: `RESOURCE_EXHAUSTED` naming the cap and what it holds;
    /// vessel-service unreachable or too slow: `UNAVAILABLE`.
    #[tracing::instrument(
        name = "shippy.vessel.v1.VesselService/Reserve",
        skip(self),
        fields(
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = "shippy.vessel.v1.VesselService",
            rpc.method = "Reserve",
        )
    )]
    pub async fn reserve(
        &self,
        id: &str,
        owner: &str,
        capacity: i32,
        weight: i32,
    ) -> Result<String, ApiError> {
        self.admit()?;
        let request = ReserveRequest {
            reservation_id: id.to_owned(),
            specification: Some(Specification {
                capacity,
                max_weight: weight,
            }),
            owner_id: owner.to_owned(),
        };
        let reservation = self
            .batched(&self.reservations, request)
            .await
            .map_err(|status| match status.code() {
                Code::FailedPrecondition => ApiError::FailedPrecondition(format!(
                    "no vessel has room left for this consignment \
                     ({capacity} containers, {weight} kg)"
                )),
                Code::ResourceExhausted => match AccountQuota::of(&status) {
                    Some(quota) => ApiError::ResourceExhausted(format!(
                        "this consignment ({capacity} containers, {weight} kg) would take your \
                         account past its cap of {} containers and {} kg of room held or \
                         confirmed; it holds {} containers and {} kg now. Cancel a \
                         consignment to free room, or ask an administrator",
                        quota.max_containers,
                        quota.max_weight,
                        quota.held_containers,
                        quota.held_weight
                    )),
                    // vessel-service shedding load: it is busy, not full.
                    None => {
                        ApiError::unavailable("vessel-service is overloaded; retry shortly", status)
                    }
                },
                _ => unexpected(status),
            })?;
        Some(reservation.vessel_id)
            .filter(|vessel| !vessel.is_empty())
            .ok_or_else(|| ApiError::internal("vessel-service reserved without naming a vessel"))
    }

    /// Keeps `id`'s held room until it is released.
    #[tracing::instrument(
        name = "shippy.vessel.v1.VesselService/Confirm",
        skip(self),
        fields(
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = "shippy.vessel.v1.VesselService",
            rpc.method = "Confirm",
        )
    )]
    pub async fn confirm(&self, id: &str) -> Result<(), ConfirmError> {
        self.admit().map_err(ConfirmError::Failed)?;
        let request = ReservationRef {
            reservation_id: id.to_owned(),
        };
        self.batched(&self.confirmations, request)
            .await
            .map(drop)
            .map_err(|status| match status.code() {
                Code::NotFound => ConfirmError::Lost(ApiError::unavailable(
                    "the vessel's room for this consignment was not held long enough to \
                     confirm it; nothing was shipped; retry",
                    status,
                )),
                _ => ConfirmError::Failed(unexpected(status)),
            })
    }

    /// Gives `id`'s room back — held or confirmed, or only if still held
    /// (`only_if_held`); answers whether there was any to give back.
    #[tracing::instrument(
        name = "shippy.vessel.v1.VesselService/Release",
        skip(self),
        fields(
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = "shippy.vessel.v1.VesselService",
            rpc.method = "Release",
        )
    )]
    pub async fn release(&self, id: &str, only_if_held: bool) -> Result<bool, ApiError> {
        self.admit()?;
        let request = ReleaseRequest {
            reservation_id: id.to_owned(),
            only_if_held,
        };
        self.caller
            .call(request)
            .await
            .map(|released| released.released)
            .map_err(unexpected)
    }
}

/// What `Reserve`'s metadata says of the per-account cap that refused it.
struct AccountQuota {
    held_containers: i64,
    held_weight: i64,
    max_containers: i64,
    max_weight: i64,
}

impl AccountQuota {
    /// The figures, if `status` is the cap's refusal (all four present).
    fn of(status: &Status) -> Option<Self> {
        use shippy_proto::vessel::quota;
        let figure =
            |key: &str| -> Option<i64> { status.metadata().get(key)?.to_str().ok()?.parse().ok() };
        Some(Self {
            held_containers: figure(quota::HELD_CONTAINERS)?,
            held_weight: figure(quota::HELD_WEIGHT)?,
            max_containers: figure(quota::MAX_CONTAINERS)?,
            max_weight: figure(quota::MAX_WEIGHT)?,
        })
    }
}

/// A status made on this side because the connection broke mid-call
/// (vessel-service died: reset, GOAWAY, end of stream) is `UNAVAILABLE`, as
/// a connection refused is; tonic reports those as `UNKNOWN` or `INTERNAL`.
/// They are told apart from a status vessel-service sent by their cause:
/// tonic keeps the transport error as the status's source, while a status
/// decoded from an answer has none. Every vessel call is idempotent, so
/// one is retried like any other unreachable call.
fn broken_connection_is_unavailable(status: Status) -> Status {
    use std::error::Error as _;
    if matches!(status.code(), Code::Unknown | Code::Internal) && status.source().is_some() {
        tracing::debug!(%status, "connection to vessel-service broke mid-call");
        Status::unavailable(format!(
            "the connection to vessel-service broke mid-call: {}",
            status.message()
        ))
    } else {
        status
    }
}

/// vessel-service's answer as this service's error: unreachable or slow is
/// `UNAVAILABLE`; anything else is a fault between the services.
fn unexpected(status: Status) -> ApiError {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
            ApiError::unavailable("vessel-service is unreachable; retry shortly", status)
        }
        _ => ApiError::internal(status),
    }
}
