//! The `VesselService` gRPC handlers: parse the request, ask the store,
//! answer. Errors become `tonic::Status` through [`ApiError`] only.

use std::time::Duration;

use shippy_auth::{Authenticator, Claims, service::ServiceToken};
use shippy_proto::vessel::v1::{self as proto, vessel_service_server::VesselService};
use shippy_service::{ApiError, pagination, readiness::Ready};
use tonic::{Request, Response, Status};

use crate::{
    domain::{
        AccountQuota, Held, NewVessel, OwnerId, Reservation, ReservationId, Reserved,
        Specification, VesselId,
    },
    store::{Store, StoreError, VesselStore, Wanted},
};

/// What a handler answers (as in tonic's examples).
type Reply<T> = Result<Response<T>, Status>;

/// `ListVessels` page size when none is asked for.
const DEFAULT_PAGE_SIZE: u32 = 50;
/// The largest `ListVessels` page.
const MAX_PAGE_SIZE: u32 = 200;

/// How reservations are taken.
#[derive(Debug, Clone)]
pub struct Reservations {
    /// How long a held reservation lasts unless confirmed.
    pub ttl: Duration,
    /// The secret the reservation RPCs need; `None` refuses them all.
    pub service_token: Option<ServiceToken>,
    /// The most room one account may hold.
    pub quota: AccountQuota,
}

/// The handlers, over a store that may not be ready yet.
#[derive(Debug, Clone)]
pub struct VesselApi {
    store: Store,
    ready: Ready,
    auth: Authenticator,
    reservations: Reservations,
}

impl VesselApi {
    /// Handlers over `store`; they answer `UNAVAILABLE` until `ready` is
    /// set. `Create` needs an admin token, verified by `auth`;
    /// `ListVessels` any valid token; `FindAvailable` is open to the other
    /// services; `Reserve`, `Confirm` and `Release` need the services'
    /// shared secret.
    pub fn new(
        store: Store,
        ready: Ready,
        auth: Authenticator,
        reservations: Reservations,
    ) -> Self {
        Self {
            store,
            ready,
            auth,
            reservations,
        }
    }

    /// The store, once the caller is known to be a service.
    fn reservation_call<T>(&self, request: &Request<T>, what: &str) -> Result<&Store, ApiError> {
        ServiceToken::check(self.reservations.service_token.as_ref(), request, what)?;
        self.store()
    }

    fn store(&self) -> Result<&Store, ApiError> {
        self.ready.gate(&self.store, "vessel store")
    }

    /// The caller's verified claims, recorded as the span's `caller`;
    /// `admin_for`: what only admins may do, if the call is that.
    async fn caller<T>(
        &self,
        request: &Request<T>,
        admin_for: Option<&str>,
    ) -> Result<Claims, ApiError> {
        let claims = match admin_for {
            Some(what) => self.auth.authenticate_admin(request, what).await?,
            None => self.auth.authenticate(request).await?,
        };
        tracing::Span::current().record("caller", &claims.sub);
        Ok(claims)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::AlreadyExists(_) => ApiError::AlreadyExists(error.to_string()),
            StoreError::Unavailable(_) => {
                ApiError::unavailable("the vessel database is unreachable; retry shortly", error)
            }
            StoreError::Corrupt(_) | StoreError::Database(_) => ApiError::internal(error),
        }
    }
}

/// `RESOURCE_EXHAUSTED` for a reservation the per-account cap refuses,
/// with the figures in metadata (`shippy_proto::vessel::quota`) for the
/// caller to tell its user.
fn over_quota(held: Held, quota: AccountQuota, spec: Specification) -> Status {
    use shippy_proto::vessel::quota as keys;
    let mut status = Status::resource_exhausted(format!(
        "the account holds {} containers and {} kg; {} containers and {} kg more would pass \
         its cap of {} containers and {} kg",
        held.containers,
        held.weight,
        spec.capacity.get(),
        spec.max_weight.get(),
        quota.containers,
        quota.weight
    ));
    for (key, figure) in [
        (keys::HELD_CONTAINERS, held.containers),
        (keys::HELD_WEIGHT, held.weight),
        (keys::MAX_CONTAINERS, quota.containers),
        (keys::MAX_WEIGHT, quota.weight),
    ] {
        status.metadata_mut().insert(key, figure.into());
    }
    status
}

/// The most items a `ReserveBatch` or `ConfirmBatch` takes.
const MAX_BATCH: usize = 256;

/// A batch call's items, parsed: each one valid or its refusal, in order.
struct Batch<T>(Vec<Result<T, Status>>);

impl<T: Clone> Batch<T> {
    /// Each of `items` parsed with `parse`; `INVALID_ARGUMENT` for a batch
    /// over [`MAX_BATCH`] items. Records the span's `batch.size`.
    fn parse<I>(items: Vec<I>, parse: impl Fn(I) -> Result<T, ApiError>) -> Result<Self, ApiError> {
        let size = items.len();
        tracing::Span::current().record("batch.size", size);
        if size > MAX_BATCH {
            return Err(ApiError::InvalidArgument(format!(
                "a batch takes at most {MAX_BATCH} items, not {size}; split it"
            )));
        }
        let parsed = items
            .into_iter()
            .map(|item| parse(item).map_err(Status::from));
        Ok(Self(parsed.collect()))
    }

    /// The valid items, for the store.
    fn valid(&self) -> Vec<T> {
        self.0.iter().flatten().cloned().collect()
    }

    /// Each item's answer, as its own call would have had it: a refusal
    /// stays one; a valid item gets `answer` of the store's result for it
    /// (`stored` holds one per valid item, in order). Records how many were
    /// answered OK in the span's `counted` field.
    fn answer<S>(
        self,
        stored: Vec<Result<S, StoreError>>,
        counted: &str,
        answer: impl Fn(T, S) -> Result<proto::Reservation, Status>,
    ) -> proto::BatchResponse {
        let mut stored = stored.into_iter();
        let answers: Vec<Result<proto::Reservation, Status>> = self
            .0
            .into_iter()
            .map(|item| {
                let item = item?;
                let result = stored
                    .next()
                    .ok_or_else(|| Status::internal("the store answered a batch short"))?;
                answer(item, result.map_err(ApiError::from)?)
            })
            .collect();
        let ok = answers.iter().filter(|answer| answer.is_ok()).count();
        tracing::Span::current().record(counted, ok);
        outcomes(answers)
    }
}

/// A `Reserve` request, parsed.
fn wanted(request: proto::ReserveRequest) -> Result<Wanted, ApiError> {
    Ok(Wanted {
        id: ReservationId::parse(&request.reservation_id)?,
        spec: request
            .specification
            .ok_or_else(|| ApiError::InvalidArgument("specification is required".into()))
            .and_then(|spec| Specification::try_from(spec).map_err(ApiError::from))?,
        owner: OwnerId::parse(&request.owner_id)?,
    })
}

/// What `Reserve` answers for `wanted`, which the store `reserved` (or not).
fn reserve_answer(
    wanted: &Wanted,
    quota: AccountQuota,
    reserved: Reserved,
) -> Result<proto::Reservation, Status> {
    let Wanted { id, spec, .. } = wanted;
    let reservation = match reserved {
        Reserved::Held(reservation) => reservation,
        Reserved::NoRoom => {
            return Err(ApiError::FailedPrecondition(format!(
                "no vessel has room left for {} containers weighing {} kg",
                spec.capacity.get(),
                spec.max_weight.get()
            ))
            .into());
        }
        Reserved::OverQuota(held) => {
            tracing::info!(
                reservation.id = id.as_str(),
                held.containers = held.containers,
                held.weight = held.weight,
                "reservation refused: the account's cap"
            );
            return Err(over_quota(held, quota, *spec));
        }
    };
    if reservation.taken != *spec {
        return Err(ApiError::AlreadyExists(format!(
            "reservation {id} holds {} containers / {} kg already, not {} / {}",
            reservation.taken.capacity.get(),
            reservation.taken.max_weight.get(),
            spec.capacity.get(),
            spec.max_weight.get()
        ))
        .into());
    }
    Ok(reservation.into())
}

/// What `Confirm` answers for `id`, which the store `confirmed` (or not).
fn confirm_answer(
    id: &ReservationId,
    confirmed: Option<Reservation>,
) -> Result<proto::Reservation, Status> {
    let reservation = confirmed.ok_or_else(|| {
        ApiError::NotFound(format!(
            "reservation {id} holds nothing: it expired, was released, or never was"
        ))
    })?;
    Ok(reservation.into())
}

/// A batch's answers, each as its own call would have had it.
fn outcomes(answers: Vec<Result<proto::Reservation, Status>>) -> proto::BatchResponse {
    let outcomes = answers
        .into_iter()
        .map(|answer| match answer {
            Ok(reservation) => proto::Outcome {
                reservation: Some(reservation),
                ..Default::default()
            },
            Err(status) => proto::Outcome {
                reservation: None,
                code: status.code() as i32,
                message: status.message().to_owned(),
                metadata: status
                    .metadata()
                    .clone()
                    .into_headers()
                    .iter()
                    .filter_map(|(key, value)| {
                        Some((key.as_str().to_owned(), value.to_str().ok()?.to_owned()))
                    })
                    .collect(),
            },
        })
        .collect();
    proto::BatchResponse { outcomes }
}

#[tonic::async_trait]
impl VesselService for VesselApi {
    #[tracing::instrument(
        skip_all,
        fields(spec.capacity = request.get_ref().capacity, spec.max_weight = request.get_ref().max_weight)
    )]
    async fn find_available(
        &self,
        request: Request<proto::Specification>,
    ) -> Reply<proto::Response> {
        let spec = Specification::try_from(request.into_inner()).map_err(ApiError::from)?;
        let vessel = self
            .store()?
            .find_available(spec)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound(format!("no available vessel has {spec}")))?;
        tracing::info!(vessel.id = %vessel.id, "vessel found");
        Ok(Response::new(proto::Response {
            vessel: Some(vessel.into()),
            ..Default::default()
        }))
    }

    #[tracing::instrument(skip_all, fields(reservation.id, vessel.id))]
    async fn reserve(&self, request: Request<proto::ReserveRequest>) -> Reply<proto::Reservation> {
        let store = self.reservation_call(&request, "Reserve")?;
        let wanted = wanted(request.into_inner())?;
        tracing::Span::current().record("reservation.id", wanted.id.as_str());
        let Reservations { ttl, quota, .. } = self.reservations;
        let reserved = store
            .reserve(&wanted.id, &wanted.owner, wanted.spec, ttl, quota)
            .await
            .map_err(ApiError::from)?;
        let reservation = reserve_answer(&wanted, quota, reserved)?;
        tracing::Span::current().record("vessel.id", &reservation.vessel_id);
        tracing::info!("room reserved");
        Ok(Response::new(reservation))
    }

    #[tracing::instrument(skip_all, fields(reservation.id))]
    async fn confirm(&self, request: Request<proto::ReservationRef>) -> Reply<proto::Reservation> {
        let store = self.reservation_call(&request, "Confirm")?;
        let id = ReservationId::parse(&request.get_ref().reservation_id).map_err(ApiError::from)?;
        tracing::Span::current().record("reservation.id", id.as_str());
        let confirmed = store.confirm(&id).await.map_err(ApiError::from)?;
        let reservation = confirm_answer(&id, confirmed)?;
        tracing::info!("reservation confirmed");
        Ok(Response::new(reservation))
    }

    #[tracing::instrument(skip_all, fields(batch.size, reserved))]
    async fn reserve_batch(
        &self,
        request: Request<proto::ReserveBatchRequest>,
    ) -> Reply<proto::BatchResponse> {
        let store = self.reservation_call(&request, "ReserveBatch")?;
        let batch = Batch::parse(request.into_inner().reservations, wanted)?;
        let Reservations { ttl, quota, .. } = self.reservations;
        let reserved = store.reserve_many(&batch.valid(), ttl, quota).await;
        let response = batch.answer(reserved, "reserved", |wanted, taken| {
            reserve_answer(&wanted, quota, taken)
        });
        tracing::info!("batch of reservations answered");
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all, fields(batch.size, confirmed))]
    async fn confirm_batch(
        &self,
        request: Request<proto::ConfirmBatchRequest>,
    ) -> Reply<proto::BatchResponse> {
        let store = self.reservation_call(&request, "ConfirmBatch")?;
        let batch = Batch::parse(request.into_inner().reservation_ids, |id| {
            ReservationId::parse(&id).map_err(ApiError::from)
        })?;
        let confirmed = store.confirm_many(&batch.valid()).await;
        let response = batch.answer(confirmed, "confirmed", |id, found| {
            confirm_answer(&id, found)
        });
        tracing::info!("batch of confirmations answered");
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all, fields(reservation.id, released))]
    async fn release(
        &self,
        request: Request<proto::ReleaseRequest>,
    ) -> Reply<proto::ReleaseResponse> {
        let store = self.reservation_call(&request, "Release")?;
        let id = ReservationId::parse(&request.get_ref().reservation_id).map_err(ApiError::from)?;
        tracing::Span::current().record("reservation.id", id.as_str());
        let released = store
            .release(&id, request.get_ref().only_if_held)
            .await
            .map_err(ApiError::from)?;
        tracing::Span::current().record("released", released.is_some());
        tracing::info!("release asked");
        Ok(Response::new(proto::ReleaseResponse {
            released: released.is_some(),
            reservation: released.map(Into::into),
        }))
    }

    #[tracing::instrument(skip_all, fields(caller, page_size = request.get_ref().page_size))]
    async fn list_vessels(&self, request: Request<proto::ListRequest>) -> Reply<proto::Response> {
        self.caller(&request, None).await?;
        let wanted = request.into_inner();
        let limit = pagination::page_size(wanted.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
        let after = if wanted.page_token.is_empty() {
            None
        } else {
            Some(VesselId::parse(&wanted.page_token).map_err(|_| {
                ApiError::InvalidArgument(
                    "page_token is not one this service handed out; start again without it".into(),
                )
            })?)
        };
        // One more than asked: whether it exists says if a next page does.
        let mut vessels = self
            .store()?
            .list(after.as_ref(), limit + 1)
            .await
            .map_err(ApiError::from)?;
        let next_page_token = if vessels.len() > limit as usize {
            vessels.truncate(limit as usize);
            vessels
                .last()
                .map(|vessel| vessel.id.as_str().to_owned())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(proto::Response {
            vessels: vessels.into_iter().map(Into::into).collect(),
            next_page_token,
            ..Default::default()
        }))
    }

    #[tracing::instrument(skip_all, fields(vessel.id, caller))]
    async fn create(&self, request: Request<proto::Vessel>) -> Reply<proto::Response> {
        self.caller(&request, Some("creating vessels")).await?;
        let vessel = NewVessel::try_from(request.into_inner())
            .map_err(ApiError::from)?
            .into_vessel();
        tracing::Span::current().record("vessel.id", vessel.id.as_str());
        self.store()?
            .insert(&vessel)
            .await
            .map_err(ApiError::from)?;
        tracing::info!("vessel created");
        Ok(Response::new(proto::Response {
            vessel: Some(vessel.into()),
            created: true,
            ..Default::default()
        }))
    }
}
