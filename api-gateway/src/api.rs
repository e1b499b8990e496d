//! The `/api/v1` handlers: JSON in, a gRPC call with the caller's token
//! passed on, JSON out. The services decide who may do what; the gateway
//! only translates. Each handler's `#[utoipa::path]` documents it, and
//! [`routes`] routes and documents it in one go.

use std::sync::Arc;

use axum::{
    Json,
    extract::{
        FromRef, Path, Query, Request, State,
        rejection::{JsonRejection, PathRejection, QueryRejection},
    },
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
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
    error::HttpError,
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
        .route_layer(middleware::from_fn(require_bearer));
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

/// The longest `authorization` header passed on.
const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;

/// `message` for `caller`: its `authorization` header, if any, as gRPC
/// metadata, and its address with the services' secret. No header: the
/// service answers UNAUTHENTICATED itself.
fn with_token<T>(caller: &Caller, message: T) -> Result<tonic::Request<T>, HttpError> {
    let mut request = tonic::Request::new(message);
    caller.forward(&mut request);
    if let Some(value) = caller.headers.get(header::AUTHORIZATION) {
        if value.len() > MAX_AUTHORIZATION_BYTES {
            return Err(HttpError::unauthenticated(
                "the authorization header is too long to be a token",
            ));
        }
        let value = MetadataValue::try_from(value.as_bytes()).map_err(|_| {
            HttpError::unauthenticated("the authorization header must be `Bearer <token>`")
        })?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

/// The bearer token of the request: `authorization: Bearer <JWT>`, the JWT
/// being three base64url parts (whether it is valid, the services decide).
fn bearer_token(headers: &HeaderMap) -> Result<String, HttpError> {
    let missing = || {
        HttpError::unauthenticated(
            "missing token: send `authorization: Bearer <token>` (get one from POST /api/v1/login)",
        )
    };
    let value = headers.get(header::AUTHORIZATION).ok_or_else(missing)?;
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return Err(HttpError::unauthenticated(
            "the authorization header is too long to be a token",
        ));
    }
    let text = value.to_str().map_err(|_| missing())?;
    let token = text
        .strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
        .ok_or_else(missing)?
        .trim();
    let parts: Vec<&str> = token.split('.').collect();
    let base64url = |part: &&str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    };
    if parts.len() != 3 || !parts.iter().all(base64url) {
        return Err(HttpError::unauthenticated(
            "the token is not a JWT (three base64url parts joined by dots); \
             get one from POST /api/v1/login",
        ));
    }
    Ok(token.to_owned())
}

/// Layer of the routes that need a signed-in caller: a request without a
/// well-formed `authorization: Bearer <token>` is 401 before its body is
/// read, so an anonymous caller learns nothing of the body's schema and
/// sends no body for nothing. The token itself is checked by the services.
pub async fn require_bearer(request: Request, next: Next) -> Response {
    match bearer_token(request.headers()) {
        Ok(_) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

fn created<T: serde::Serialize>(body: T) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

/// What a service's answer lacked: its message is required, so this is the
/// service's fault.
fn missing(what: &str) -> HttpError {
    HttpError::new(
        Code::Internal,
        format!("the service answered without the {what}"),
    )
}

/// Sign up.
#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    request_body = json::NewUser,
    responses(
        (status = 201, description = "signed up", body = json::UserResponse),
        (status = 400, description = "a field is invalid, or the body is not the JSON expected", body = ErrorBody),
        (status = 409, description = "an account has this email", body = ErrorBody),
    ),
)]
pub async fn create_user(
    State(peers): State<Peers>,
    caller: Caller,
    body: Result<Json<json::NewUser>, JsonRejection>,
) -> Result<Response, HttpError> {
    let Json(new) = body?;
    let mut request = tonic::Request::new(user::User {
        name: new.name,
        email: new.email,
        company: new.company,
        password: new.password,
        ..Default::default()
    });
    caller.forward(&mut request);
    let response = peers.users().create(request).await?.into_inner();
    let user = response
        .user
        .map(json::User::from)
        .ok_or_else(|| missing("user"))?;
    Ok(created(json::UserResponse { user }))
}

/// Log in: a token for email and password.
#[utoipa::path(
    post,
    path = "/login",
    tag = "users",
    request_body = json::Login,
    responses(
        (status = 200, description = "a token", body = json::TokenResponse),
        (status = 400, description = "a field is invalid, or the body is not the JSON expected", body = ErrorBody),
        (status = 401, description = "email or password is incorrect", body = ErrorBody),
        (status = 429, description = "too many failed logins for this account or address: wait `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds until a login can succeed"))),
    ),
)]
pub async fn login(
    State(peers): State<Peers>,
    caller: Caller,
    body: Result<Json<json::Login>, JsonRejection>,
) -> Result<Response, HttpError> {
    let Json(login) = body?;
    let mut request = tonic::Request::new(user::User {
        email: login.email,
        password: login.password,
        ..Default::default()
    });
    caller.forward(&mut request);
    let token = peers.users().auth(request).await?.into_inner();
    Ok(Json(json::TokenResponse { token: token.token }).into_response())
}

/// The caller's profile.
#[utoipa::path(
    get,
    path = "/me",
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the caller's profile", body = json::UserResponse),
        (status = 404, description = "the token's account no longer exists", body = ErrorBody),
    ),
)]
pub async fn me(State(peers): State<Peers>, caller: Caller) -> Result<Response, HttpError> {
    let token = bearer_token(&caller.headers)?;
    let mut users = peers.users();
    let mut validate = tonic::Request::new(user::Token {
        token,
        ..Default::default()
    });
    caller.forward(&mut validate);
    let validated = users.validate_token(validate).await?.into_inner();
    let request = with_token(
        &caller,
        user::User {
            id: validated.user_id,
            ..Default::default()
        },
    )?;
    let user = users
        .get(request)
        .await?
        .into_inner()
        .user
        .map(json::User::from)
        .ok_or_else(|| missing("user"))?;
    Ok(Json(json::UserResponse { user }).into_response())
}

/// Ship a consignment on the smallest vessel with room left for it.
#[utoipa::path(
    post,
    path = "/consignments",
    tag = "consignments",
    security(("bearer" = [])),
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
    State(peers): State<Peers>,
    caller: Caller,
    body: Result<Json<json::NewConsignment>, JsonRejection>,
) -> Result<Response, HttpError> {
    let Json(new) = body?;
    let mut request = with_token(&caller, consignment::Consignment::from(new))?;
    pass_idempotency_key(&caller.headers, &mut request)?;
    let response = peers
        .shipping()
        .create_consignment(request)
        .await?
        .into_inner();
    let consignment = response
        .consignment
        .map(json::Consignment::from)
        .ok_or_else(|| missing("consignment"))?;
    Ok(created(json::ConsignmentResponse { consignment }))
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
    delete,
    path = "/consignments/{id}",
    tag = "consignments",
    security(("bearer" = [])),
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
    State(peers): State<Peers>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let Path(id) = id?;
    let request = with_token(&caller, consignment::CancelRequest { id })?;
    let response = peers
        .shipping()
        .cancel_consignment(request)
        .await?
        .into_inner();
    let consignment = response
        .consignment
        .map(json::Consignment::from)
        .ok_or_else(|| missing("consignment"))?;
    Ok(Json(json::ConsignmentResponse { consignment }).into_response())
}

/// The caller's consignments, newest first.
#[utoipa::path(
    get,
    path = "/consignments",
    tag = "consignments",
    security(("bearer" = [])),
    params(Page),
    responses(
        (status = 200, description = "a page of them", body = json::ConsignmentPage),
        (status = 400, description = "a query parameter is invalid (a page_token not given out, an unknown parameter)", body = ErrorBody),
    ),
)]
pub async fn list_consignments(
    State(peers): State<Peers>,
    caller: Caller,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<Response, HttpError> {
    let Query(page) = page?;
    let request = with_token(
        &caller,
        consignment::GetRequest {
            page_size: page.page_size,
            page_token: page.page_token,
        },
    )?;
    let response = peers
        .shipping()
        .get_consignments(request)
        .await?
        .into_inner();
    let consignments: Vec<_> = response
        .consignments
        .into_iter()
        .map(json::Consignment::from)
        .collect();
    Ok(Json(json::ConsignmentPage {
        consignments,
        next_page_token: response.next_page_token,
    })
    .into_response())
}

/// Add a vessel to the fleet (admins only; vessel-service decides).
#[utoipa::path(
    post,
    path = "/vessels",
    tag = "vessels",
    security(("bearer" = [])),
    request_body = json::NewVessel,
    responses(
        (status = 201, description = "added", body = json::VesselResponse),
        (status = 400, description = "a field is invalid, or the body is not the JSON expected", body = ErrorBody),
        (status = 403, description = "the caller is not an admin", body = ErrorBody),
        (status = 409, description = "a vessel has this id", body = ErrorBody),
    ),
)]
pub async fn create_vessel(
    State(peers): State<Peers>,
    caller: Caller,
    body: Result<Json<json::NewVessel>, JsonRejection>,
) -> Result<Response, HttpError> {
    let Json(new) = body?;
    let request = with_token(&caller, vessel::Vessel::from(new))?;
    let response = peers.vessels().create(request).await?.into_inner();
    let vessel = response
        .vessel
        .map(json::Vessel::from)
        .ok_or_else(|| missing("vessel"))?;
    Ok(created(json::VesselResponse { vessel }))
}

/// The fleet, ordered by id (any signed-in user).
#[utoipa::path(
    get,
    path = "/vessels",
    tag = "vessels",
    security(("bearer" = [])),
    params(json::FleetPage),
    responses(
        (status = 200, description = "a page of it", body = json::VesselPage),
        (status = 400, description = "a query parameter is invalid (a page_token not given out, an unknown parameter)", body = ErrorBody),
    ),
)]
pub async fn list_vessels(
    State(peers): State<Peers>,
    caller: Caller,
    page: Result<Query<json::FleetPage>, QueryRejection>,
) -> Result<Response, HttpError> {
    let Query(page) = page?;
    let request = with_token(
        &caller,
        vessel::ListRequest {
            page_size: page.page_size,
            page_token: page.page_token,
        },
    )?;
    let response = peers.vessels().list_vessels(request).await?.into_inner();
    let vessels: Vec<_> = response
        .vessels
        .into_iter()
        .map(json::Vessel::from)
        .collect();
    Ok(Json(json::VesselPage {
        vessels,
        next_page_token: response.next_page_token,
    })
    .into_response())
}
