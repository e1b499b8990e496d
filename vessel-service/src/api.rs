//! The `VesselService` gRPC handlers: parse the request, ask the store,
//! answer. Errors become `tonic::Status` through [`ApiError`] only.

use shippy_auth::Authenticator;
use shippy_proto::vessel::v1::{self as proto, vessel_service_server::VesselService};
use shippy_service::{ApiError, pagination, readiness::Ready};
use tonic::{Request, Response, Status};

use crate::{
    domain::{InvalidInput, NewVessel, Specification, VesselId},
    store::{Store, StoreError, VesselStore},
};

/// `ListVessels` page size when none is asked for.
const DEFAULT_PAGE_SIZE: u32 = 50;
/// The largest `ListVessels` page.
const MAX_PAGE_SIZE: u32 = 200;

/// The handlers, over a store that may not be ready yet.
#[derive(Debug, Clone)]
pub struct VesselApi {
    store: Store,
    ready: Ready,
    auth: Authenticator,
}

impl VesselApi {
    /// Handlers over `store`; they answer `UNAVAILABLE` until `ready` is
    /// set. `Create` needs an admin token, verified by `auth`;
    /// `ListVessels` any valid token; `FindAvailable` is open to the other
    /// services.
    pub fn new(store: Store, ready: Ready, auth: Authenticator) -> Self {
        Self { store, ready, auth }
    }

    fn store(&self) -> Result<&Store, ApiError> {
        if self.ready.is_ready() {
            Ok(&self.store)
        } else {
            Err(ApiError::Unavailable {
                message: "the vessel store is not ready yet; retry shortly".into(),
                source: None,
            })
        }
    }
}

impl From<InvalidInput> for ApiError {
    fn from(error: InvalidInput) -> Self {
        ApiError::InvalidArgument(error.to_string())
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

#[tonic::async_trait]
impl VesselService for VesselApi {
    #[tracing::instrument(
        skip_all,
        fields(spec.capacity = request.get_ref().capacity, spec.max_weight = request.get_ref().max_weight)
    )]
    async fn find_available(
        &self,
        request: Request<proto::Specification>,
    ) -> Result<Response<proto::Response>, Status> {
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

    #[tracing::instrument(skip_all, fields(caller, page_size = request.get_ref().page_size))]
    async fn list_vessels(
        &self,
        request: Request<proto::ListRequest>,
    ) -> Result<Response<proto::Response>, Status> {
        let claims = self.auth.authenticate(&request).await?;
        tracing::Span::current().record("caller", &claims.sub);
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
    async fn create(
        &self,
        request: Request<proto::Vessel>,
    ) -> Result<Response<proto::Response>, Status> {
        let claims = self
            .auth
            .authenticate_admin(&request, "creating vessels")
            .await?;
        tracing::Span::current().record("caller", &claims.sub);
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
