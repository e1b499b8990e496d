//! The `ShippingService` gRPC handlers. Every call needs a valid token;
//! errors become `tonic::Status` through [`ApiError`] only.

use std::ops::ControlFlow;

use chrono::{SubsecRound, Utc};
use prost::Message as _;
use shippy_proto::consignment::v1::{self as proto, shipping_service_server::ShippingService};
use shippy_service::{ApiError, pagination, readiness::Ready};
use tonic::{Request, Response, Status};

use shippy_auth::{Authenticator, Claims};

use crate::{
    domain::{
        Consignment, Idempotency, IdempotencyKey, MAX_CONSIGNMENT_BYTES, NewConsignment, State,
    },
    saga::Saga,
    store::{ConsignmentStore, Cursor, Store, StoreError},
};

/// What a handler answers (as in tonic's examples).
type Reply<T> = Result<Response<T>, Status>;

/// The longest consignment id `CancelConsignment` looks up (ours are UUIDs).
const MAX_ID_LEN: usize = 100;

/// Consignments per page when the caller does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// The most consignments per page; larger requests get this many.
pub const MAX_PAGE_SIZE: u32 = 100;
/// The most encoded bytes of consignments in one page: a page ends early
/// (with a `next_page_token`) rather than pass it, so every client with the
/// default 4 MiB message limit can read it. One consignment
/// ([`crate::domain::MAX_CONSIGNMENT_BYTES`]) always fits.
pub const PAGE_BYTES: usize = 3 * 1024 * 1024;

/// The handlers and what they share.
#[derive(Debug, Clone)]
pub struct ShippingApi {
    store: Store,
    ready: Ready,
    auth: Authenticator,
    saga: Saga,
}

impl ShippingApi {
    /// Handlers that answer `UNAVAILABLE` until `ready` is set.
    pub fn new(store: Store, ready: Ready, auth: Authenticator, saga: Saga) -> Self {
        Self {
            store,
            ready,
            auth,
            saga,
        }
    }

    fn store(&self) -> Result<&Store, ApiError> {
        self.ready.gate(&self.store, "consignment store")
    }

    /// The caller's verified claims, recorded as the span's `caller`.
    async fn caller<T>(&self, request: &Request<T>) -> Result<Claims, ApiError> {
        let claims = self.auth.authenticate(request).await?;
        tracing::Span::current().record("caller", &claims.sub);
        Ok(claims)
    }
}

/// The metadata a create's idempotency key travels in.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The create's idempotency key, if it sent one: at most one, valid.
fn idempotency_key(
    metadata: &tonic::metadata::MetadataMap,
) -> Result<Option<IdempotencyKey>, ApiError> {
    let mut values = metadata.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::InvalidArgument(format!(
            "send one {IDEMPOTENCY_KEY}, not several"
        )));
    }
    let text = value.to_str().map_err(|_| {
        ApiError::InvalidArgument(format!(
            "{IDEMPOTENCY_KEY} must be printable ASCII without spaces (a UUID is a good choice)"
        ))
    })?;
    IdempotencyKey::parse(text)
        .map(Some)
        .map_err(ApiError::from)
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => ApiError::unavailable(
                "the consignment database is unreachable; retry shortly",
                error,
            ),
            StoreError::KeyTaken => ApiError::AlreadyExists(
                "a consignment with this idempotency key is being created; retry shortly".into(),
            ),
            StoreError::AlreadyExists(_) | StoreError::Corrupt(_) | StoreError::Database(_) => {
                ApiError::internal(error)
            }
        }
    }
}

#[tonic::async_trait]
impl ShippingService for ShippingApi {
    #[tracing::instrument(skip_all, fields(caller, consignment.id, vessel.id))]
    async fn create_consignment(
        &self,
        request: Request<proto::Consignment>,
    ) -> Reply<proto::Response> {
        let claims = self.caller(&request).await?;
        let encoded = request.get_ref().encoded_len();
        if encoded > MAX_CONSIGNMENT_BYTES {
            return Err(ApiError::InvalidArgument(format!(
                "a consignment may be at most {MAX_CONSIGNMENT_BYTES} bytes encoded \
                 ({} MiB); this one is {encoded}",
                MAX_CONSIGNMENT_BYTES / (1024 * 1024)
            ))
            .into());
        }
        let key = idempotency_key(request.metadata())?;
        let sent = request.into_inner();
        let idempotency = key.map(|key| Idempotency::of(key, &sent));
        let new = NewConsignment::parse(sent, &claims.sub).map_err(ApiError::from)?;
        self.store()?;
        let capacity = new.capacity_needed();
        let consignment = Consignment {
            id: uuid::Uuid::new_v4().to_string(),
            owner_id: claims.sub,
            description: new.description,
            weight: new.weight,
            containers: new.containers,
            vessel_id: String::new(),
            // Both stores keep microseconds; so does the answer.
            created_at: Utc::now().trunc_subsecs(6),
            state: State::Pending,
            idempotency,
        };
        // Generated ids and the owner are part of what is stored: the
        // limit holds for the consignment as stored, not as sent.
        let stored = consignment.stored_len_bound();
        if stored > MAX_CONSIGNMENT_BYTES {
            return Err(ApiError::InvalidArgument(format!(
                "a consignment may be at most {MAX_CONSIGNMENT_BYTES} bytes ({} MiB) as stored, \
                 its ids and owner included; this one would be up to {stored} (each container \
                 without an id gets a 36-byte one and names its user): send fewer or smaller \
                 containers",
                MAX_CONSIGNMENT_BYTES / (1024 * 1024)
            ))
            .into());
        }
        tracing::Span::current().record("consignment.id", &consignment.id);
        let consignment = self.saga.place(consignment, capacity).await?;
        tracing::info!("consignment created");
        Ok(Response::new(proto::Response {
            created: true,
            consignment: Some(consignment.into()),
            ..Default::default()
        }))
    }

    #[tracing::instrument(skip_all, fields(caller, consignment.id))]
    async fn cancel_consignment(
        &self,
        request: Request<proto::CancelRequest>,
    ) -> Reply<proto::Response> {
        let claims = self.caller(&request).await?;
        let id = request.into_inner().id;
        if id.trim().is_empty() {
            return Err(ApiError::InvalidArgument(
                "id is required: the consignment to cancel".into(),
            )
            .into());
        }
        shippy_service::text::check_line("id", &id)
            .map_err(|error| ApiError::InvalidArgument(error.to_string()))?;
        if id.len() > MAX_ID_LEN {
            return Err(ApiError::NotFound(format!(
                "you have no consignment {}",
                shippy_service::text::excerpt(&id)
            ))
            .into());
        }
        tracing::Span::current().record("consignment.id", id.as_str());
        self.store()?;
        let consignment = self
            .saga
            .cancel(&id, &claims.sub, claims.is_admin())
            .await?;
        Ok(Response::new(proto::Response {
            consignment: Some(consignment.into()),
            ..Default::default()
        }))
    }

    #[tracing::instrument(skip_all, fields(caller))]
    async fn get_consignments(
        &self,
        request: Request<proto::GetRequest>,
    ) -> Reply<proto::Response> {
        let claims = self.caller(&request).await?;
        let wanted = request.into_inner();
        let after: Option<Cursor> = pagination::decode(&wanted.page_token)?;
        let size = pagination::page_size(wanted.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let store = self.store()?;
        let mut page: Vec<proto::Consignment> = Vec::with_capacity(size.min(64));
        let mut bytes = 0;
        let mut last = None;
        let mut more = false;
        // One query for the page and one more row (which says whether
        // another page follows); rows are read one at a time and the read
        // stops as soon as the page is full, by count or by bytes.
        store
            .visit_by_owner(
                &claims.sub,
                after.as_ref(),
                u32::try_from(size + 1).unwrap_or(u32::MAX),
                |consignment| {
                    if page.len() == size {
                        more = true;
                        return ControlFlow::Break(());
                    }
                    let cursor = Cursor {
                        created_at: consignment.created_at,
                        id: consignment.id.clone(),
                    };
                    let encoded = proto::Consignment::from(consignment);
                    // The repeated field's tag and length prefix included.
                    let length = encoded.encoded_len() + 16;
                    if !page.is_empty() && bytes + length > PAGE_BYTES {
                        more = true;
                        return ControlFlow::Break(());
                    }
                    bytes += length;
                    page.push(encoded);
                    last = Some(cursor);
                    ControlFlow::Continue(())
                },
            )
            .await
            .map_err(ApiError::from)?;
        let next_page_token = match last {
            Some(last) if more => pagination::encode(&last),
            _ => String::new(),
        };
        Ok(Response::new(proto::Response {
            consignments: page,
            next_page_token,
            ..Default::default()
        }))
    }
}
