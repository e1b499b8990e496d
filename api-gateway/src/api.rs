//! The `/api/v1` handlers: JSON in, a gRPC call with the caller's token
//! passed on, JSON out. The services decide who may do what; the gateway
//! only translates. Each handler's `#[utoipa::path]` documents it, and
//! [`routes`] routes and documents it in one go.

use std::sync::Arc;

use axum::{
    Json,
    extract::{FromRef, FromRequestParts, Path, Query, State},
    http::{HeaderMap, StatusCode, request::Parts},
    middleware,
    response::{IntoResponse, Response},
};
use shippy_proto::{
    consignment::v1::{self as consignment, shipping_service_client::ShippingServiceClient},
    user::v1::{self as user, user_service_client::UserServiceClient},
    vessel::v1::{self as vessel, vessel_service_client::VesselServiceClient},
};
use shippy_service::telemetry::propagation::TraceInterceptor;
use tonic::{
    Code, metadata::MetadataValue, service::interceptor::InterceptedService, transport::Channel,
};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    bearer::{self, Bearer},
    error::{HttpError, Input},
    forwarding::{Caller, Forwarding},
    json::{self, Page},
    openapi::{ApiDoc, ErrorBody},
    upstream::Guarded,
};

/// Every route of the JSON API under `/api/v1`, with its documentation:
/// each `routes!` both routes a handler and adds its `#[utoipa::path]`.
pub fn routes() -> OpenApiRouter<Peers> {
    // Signed-in callers only: 401 before any body is read.
    let protected = OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(create_consignment, list_consignments))
        .routes(routes!(cancel_consignment))
        .routes(routes!(create_vessel, list_vessels))
        .route_layer(middleware::from_fn(bearer::require_bearer));
    let api = OpenApiRouter::new()
        .routes(routes!(create_user))
        .routes(routes!(login))
        .merge(protected);
    OpenApiRouter::with_openapi(ApiDoc::openapi()).nest("/api/v1", api)
}

/// The channels to the services.
#[derive(Debug, Clone)]
pub struct Peers {
    /// user-service.
    pub users: Channel,
    /// consignment-service.
    pub consignments: Channel,
    /// vessel-service.
    pub vessels: Channel,
    /// Who the client is, and naming it to the services.
    pub forwarding: Arc<Forwarding>,
    /// The same services behind their circuit breakers: what the API calls.
    pub upstreams: Upstreams,
}

/// The services behind their circuit breakers.
#[derive(Debug, Clone)]
pub struct Upstreams {
    /// user-service.
    pub users: Guarded,
    /// consignment-service.
    pub consignments: Guarded,
    /// vessel-service.
    pub vessels: Guarded,
}

impl FromRef<Peers> for Arc<Forwarding> {
    fn from_ref(peers: &Peers) -> Self {
        peers.forwarding.clone()
    }
}

type Traced = InterceptedService<Guarded, TraceInterceptor>;

impl Peers {
    fn users(&self) -> UserServiceClient<Traced> {
        UserServiceClient::with_interceptor(self.upstreams.users.clone(), TraceInterceptor)
    }

    fn shipping(&self) -> ShippingServiceClient<Traced> {
        ShippingServiceClient::with_interceptor(
            self.upstreams.consignments.clone(),
            TraceInterceptor,
        )
    }

    fn vessels(&self) -> VesselServiceClient<Traced> {
        VesselServiceClient::with_interceptor(self.upstreams.vessels.clone(), TraceInterceptor)
    }
}

/// A signed-in caller's calls: the services, with its address and token
/// passed on to each ([`Caller`], [`Bearer`]). Without a well-formed token:
/// 401 in the JSON error shape.
#[derive(Debug, Clone)]
pub struct Signed {
    peers: Peers,
    caller: Caller,
    bearer: Bearer,
}

impl Signed {
    /// `message` as a call made for the caller, with its token.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        self.bearer.request(&self.caller, message)
    }
}

impl FromRequestParts<Peers> for Signed {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, peers: &Peers) -> Result<Self, HttpError> {
        let bearer = Bearer::from_headers(&parts.headers)?;
        let caller = Caller::from_request_parts(parts, peers).await;
        let caller = caller.unwrap_or_else(|never| match never {});
        let peers = peers.clone();
        Ok(Self {
            peers,
            caller,
            bearer,
        })
    }
}

/// A `201 Created` answer with `body`.
#[derive(Debug)]
pub struct Created<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        (StatusCode::CREATED, Json(self.0)).into_response()
    }
}

/// A message the service's answer must hold, as its JSON type: without it
/// the service is at fault (INTERNAL).
fn required<M, J: From<M>>(message: Option<M>, what: &str) -> Result<J, HttpError> {
    message.map(J::from).ok_or_else(|| {
        HttpError::new(
            Code::Internal,
            format!("the service answered without the {what}"),
        )
    })
}

/// Sign up.
#[utoipa::path(
    post, path = "/users", tag = "users",
    request_body = json::NewUser,
    responses(
        (status = 201, description = "signed up", body = json::UserResponse),
        (status = 409, description = "an account has this email", body = ErrorBody),
    ),
)]
pub async fn create_user(
    State(peers): State<Peers>,
    caller: Caller,
    Input(Json(new)): Input<Json<json::NewUser>>,
) -> Result<Created<json::UserResponse>, HttpError> {
    let request = caller.request(user::User {
        name: new.name,
        email: new.email,
        company: new.company,
        password: new.password,
        ..Default::default()
    });
    let answer = peers.users().create(request).await?.into_inner();
    let user = required(answer.user, "user")?;
    Ok(Created(json::UserResponse { user }))
}

/// Log in: a token for email and password.
#[utoipa::path(
    post, path = "/login", tag = "users",
    request_body = json::Login,
    responses(
        (status = 200, description = "a token", body = json::TokenResponse),
        (status = 401, description = "email or password is incorrect", body = ErrorBody),
        (status = 429, description = "too many failed logins for this account or address: wait `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds until a login can succeed"))),
    ),
)]
pub async fn login(
    State(peers): State<Peers>,
    caller: Caller,
    Input(Json(login)): Input<Json<json::Login>>,
) -> Result<Json<json::TokenResponse>, HttpError> {
    let request = caller.request(user::User {
        email: login.email,
        password: login.password,
        ..Default::default()
    });
    let token = peers.users().auth(request).await?.into_inner().token;
    Ok(Json(json::TokenResponse { token }))
}

/// The caller's profile.
#[utoipa::path(
    get, path = "/me", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, description = "the caller's profile", body = json::UserResponse),
        (status = 404, description = "the token's account no longer exists", body = ErrorBody),
    ),
)]
pub async fn me(signed: Signed) -> Result<Json<json::UserResponse>, HttpError> {
    let mut users = signed.peers.users();
    let token = signed.bearer.token().to_owned();
    let validate = signed.caller.request(user::Token {
        token,
        ..Default::default()
    });
    let id = users.validate_token(validate).await?.into_inner().user_id;
    let request = signed.request(user::User {
        id,
        ..Default::default()
    });
    let user = required(users.get(request).await?.into_inner().user, "user")?;
    Ok(Json(json::UserResponse { user }))
}

/// Ship a consignment on the smallest vessel with room left for it.
#[utoipa::path(
    post, path = "/consignments", tag = "consignments", security(("bearer" = [])),
    request_body = json::NewConsignment,
    params(
        ("Idempotency-Key" = Option<String>, Header, pattern = r"^[\x21-\x7e]{1,128}$", max_length = 128, min_length = 1,
            description = "1 to 128 printable ASCII characters without spaces (a UUID is a good choice): \
                the same key and body answer the same consignment and book nothing more"),
    ),
    responses(
        (status = 201, description = "shipped", body = json::ConsignmentResponse),
        (status = 400, description = "a field is invalid (e.g. a container id repeated), or the body is not the JSON expected", body = ErrorBody),
        (status = 409, description = "this Idempotency-Key was used with another body, or its first request is still being placed", body = ErrorBody),
        (status = 422, description = "no vessel has room for it, or the account's quota is used up", body = ErrorBody),
    ),
)]
pub async fn create_consignment(
    signed: Signed,
    Input(Json(new)): Input<Json<json::NewConsignment>>,
) -> Result<Created<json::ConsignmentResponse>, HttpError> {
    let mut request = signed.request(consignment::Consignment::from(new));
    pass_idempotency_key(&signed.caller.headers, &mut request)?;
    let answer = signed.peers.shipping().create_consignment(request).await?;
    let consignment = required(answer.into_inner().consignment, "consignment")?;
    Ok(Created(json::ConsignmentResponse { consignment }))
}

/// The HTTP header a create's idempotency key comes in (the IETF draft's
/// name), passed on as consignment-service's `idempotency-key` metadata,
/// which checks it: the same key and body answer the same consignment and
/// book nothing more; the same key with another body is 409.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The longest idempotency key passed on (consignment-service takes 128).
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 1024;

/// Passes the request's `Idempotency-Key` header, if any, on to `request`.
fn pass_idempotency_key<T>(
    headers: &HeaderMap,
    request: &mut tonic::Request<T>,
) -> Result<(), HttpError> {
    let mut keys = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(key) = keys.next() else {
        return Ok(());
    };
    let invalid = || {
        HttpError::invalid(
            "Idempotency-Key must be one header of 1 to 128 printable ASCII characters \
             without spaces (a UUID is a good choice)",
        )
    };
    if keys.next().is_some() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(invalid());
    }
    let key = MetadataValue::try_from(key.as_bytes()).map_err(|_| invalid())?;
    request.metadata_mut().insert(IDEMPOTENCY_KEY, key);
    Ok(())
}

/// Cancel one of the caller's consignments; its room goes back to its vessel.
#[utoipa::path(
    delete, path = "/consignments/{id}", tag = "consignments", security(("bearer" = [])),
    params(("id" = String, Path, description = "One of the caller's consignments (admins: anyone's): one line, not blank",
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$")),
    responses(
        (status = 200, description = "cancelled", body = json::ConsignmentResponse),
        (status = 400, description = "the id is blank or not one line", body = ErrorBody),
        (status = 404, description = "the caller has no consignment with this id", body = ErrorBody),
        (status = 422, description = "it cannot be cancelled any more (already cancelled, or still being placed)", body = ErrorBody),
    ),
)]
pub async fn cancel_consignment(
    signed: Signed,
    Input(Path(id)): Input<Path<String>>,
) -> Result<Json<json::ConsignmentResponse>, HttpError> {
    let request = signed.request(consignment::CancelRequest { id });
    let answer = signed.peers.shipping().cancel_consignment(request).await?;
    let consignment = required(answer.into_inner().consignment, "consignment")?;
    Ok(Json(json::ConsignmentResponse { consignment }))
}

/// The caller's consignments, newest first.
#[utoipa::path(
    get, path = "/consignments", tag = "consignments", security(("bearer" = [])),
    params(Page),
    responses((status = 200, description = "a page of them", body = json::ConsignmentPage)),
)]
pub async fn list_consignments(
    signed: Signed,
    Input(Query(page)): Input<Query<Page>>,
) -> Result<Json<json::ConsignmentPage>, HttpError> {
    let request = signed.request(consignment::GetRequest::from(page));
    let answer = signed.peers.shipping().get_consignments(request).await?;
    Ok(Json(answer.into_inner().into()))
}

/// Add a vessel to the fleet (admins only; vessel-service decides).
#[utoipa::path(
    post, path = "/vessels", tag = "vessels", security(("bearer" = [])),
    request_body = json::NewVessel,
    responses(
        (status = 201, description = "added", body = json::VesselResponse),
        (status = 403, description = "the caller is not an admin", body = ErrorBody),
        (status = 409, description = "a vessel has this id", body = ErrorBody),
    ),
)]
pub async fn create_vessel(
    signed: Signed,
    Input(Json(new)): Input<Json<json::NewVessel>>,
) -> Result<Created<json::VesselResponse>, HttpError> {
    let request = signed.request(vessel::Vessel::from(new));
    let answer = signed.peers.vessels().create(request).await?;
    let vessel = required(answer.into_inner().vessel, "vessel")?;
    Ok(Created(json::VesselResponse { vessel }))
}

/// The fleet, ordered by id (any signed-in user).
#[utoipa::path(
    get, path = "/vessels", tag = "vessels", security(("bearer" = [])),
    params(json::FleetPage),
    responses((status = 200, description = "a page of it", body = json::VesselPage)),
)]
pub async fn list_vessels(
    signed: Signed,
    Input(Query(page)): Input<Query<json::FleetPage>>,
) -> Result<Json<json::VesselPage>, HttpError> {
    let request = signed.request(vessel::ListRequest::from(page));
    let answer = signed.peers.vessels().list_vessels(request).await?;
    Ok(Json(answer.into_inner().into()))
}
