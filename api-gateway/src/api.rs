//! The `/api/v1` handlers: JSON in, a gRPC call with the caller's token
//! passed on, JSON out. The services decide who may do what; the gateway
//! only translates.

use std::sync::Arc;

use axum::{
    Json,
    extract::{
        FromRef, Path, Query, Request, State,
        rejection::{JsonRejection, PathRejection, QueryRejection},
    },
    http::{HeaderMap, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::json;
use shippy_proto::{
    consignment::v1::{self as consignment, shipping_service_client::ShippingServiceClient},
    user::v1::{self as user, user_service_client::UserServiceClient},
    vessel::v1::{self as vessel, vessel_service_client::VesselServiceClient},
};
use shippy_service::telemetry::propagation::TraceInterceptor;
use tonic::{
    metadata::MetadataValue, service::interceptor::InterceptedService, transport::Channel,
};

use crate::{
    error::HttpError,
    forwarding::{Caller, Forwarding},
    json::{self, Page},
    upstream::Guarded,
};

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

fn created(body: serde_json::Value) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

/// `POST /api/v1/users`: signs up.
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
    let user = response.user.map(json::User::from);
    Ok(created(json!({ "user": user })))
}

/// `POST /api/v1/login`: a token for email and password.
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
    Ok(Json(json!({ "token": token.token })).into_response())
}

/// `GET /api/v1/me`: the caller's profile.
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
    let profile = users.get(request).await?.into_inner().user;
    Ok(Json(json!({ "user": profile.map(json::User::from) })).into_response())
}

/// `POST /api/v1/consignments`: ships a consignment as the caller.
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
    Ok(created(
        json!({ "consignment": response.consignment.map(json::Consignment::from) }),
    ))
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

/// `DELETE /api/v1/consignments/{id}`: cancels one of the caller's
/// consignments; its room goes back to its vessel.
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
    Ok(
        Json(json!({ "consignment": response.consignment.map(json::Consignment::from) }))
            .into_response(),
    )
}

/// `GET /api/v1/consignments`: the caller's consignments, newest first.
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
    Ok(Json(json!({
        "consignments": consignments,
        "next_page_token": response.next_page_token,
    }))
    .into_response())
}

/// `POST /api/v1/vessels`: adds a vessel (admins only; vessel-service decides).
pub async fn create_vessel(
    State(peers): State<Peers>,
    caller: Caller,
    body: Result<Json<json::NewVessel>, JsonRejection>,
) -> Result<Response, HttpError> {
    let Json(new) = body?;
    let request = with_token(&caller, vessel::Vessel::from(new))?;
    let response = peers.vessels().create(request).await?.into_inner();
    Ok(created(
        json!({ "vessel": response.vessel.map(json::Vessel::from) }),
    ))
}

/// `GET /api/v1/vessels`: the fleet, ordered by id (any signed-in user).
pub async fn list_vessels(
    State(peers): State<Peers>,
    caller: Caller,
    page: Result<Query<Page>, QueryRejection>,
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
    Ok(Json(json!({
        "vessels": vessels,
        "next_page_token": response.next_page_token,
    }))
    .into_response())
}
