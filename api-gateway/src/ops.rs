//! `GET /api/v1/ops`: what the web UI's ops dashboard shows, for admins
//! only — each upstream's health (its gRPC health check, asked now) and
//! circuit (closed, open or half-open), and per route the request rate,
//! error shares and p99 latency over the last
//! [`observe::WINDOW_SECONDS`] (the gateway's own counts, see
//! [`observe::RouteWindows`]).
//!
//! The caller's token is verified here, with user-service's public keys
//! (the one verifier every service uses, [`shippy_auth::Authenticator`]),
//! so the dashboard keeps working while an upstream is down: no token is
//! 401, a token without the admin role 403.
//!
//! The route is routed and documented by the same `routes!` call
//! ([`routes`] and [`document`]), like the rest of the JSON API.

use std::time::Duration;

use axum::{Json, Router, extract::State, http::HeaderMap};
use shippy_auth::{Authenticator, remote::KeyRefresh};
use shippy_service::{Shutdown, breaker::Circuit};
use tonic::{metadata::MetadataMap, transport::Channel};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    api::Peers,
    error::HttpError,
    observe::{self, HttpMetrics, RouteFigures, RouteWindows},
    openapi::ErrorBody,
    upstream::Guarded,
};

/// How long the dashboard waits for each upstream's health check: an
/// upstream that has not answered by then is shown unhealthy.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Where an upstream's circuit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CircuitState {
    /// Calls go out.
    Closed,
    /// Calls are refused at once (503) until the cool-down has passed.
    Open,
    /// The cool-down has passed: the next call probes.
    HalfOpen,
}

impl From<Circuit> for CircuitState {
    fn from(circuit: Circuit) -> Self {
        match circuit {
            Circuit::Closed => Self::Closed,
            Circuit::Open => Self::Open,
            Circuit::HalfOpen => Self::HalfOpen,
        }
    }
}

/// One upstream service, as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, ToSchema)]
pub struct UpstreamReport {
    /// e.g. `consignment-service`.
    pub name: String,
    /// Whether its health check answered `SERVING` within two seconds.
    pub healthy: bool,
    /// `SERVING`, or what it answered instead (`NOT_SERVING`, a gRPC code,
    /// `no answer in time`).
    pub health: String,
    /// Its circuit breaker.
    pub circuit: CircuitState,
}

/// The body of `GET /api/v1/ops`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, ToSchema)]
pub struct OpsReport {
    /// The seconds the route figures cover.
    pub window_seconds: u64,
    /// user-, consignment- and vessel-service.
    pub upstreams: Vec<UpstreamReport>,
    /// Every route requested since the gateway started, by route then
    /// method; zeros for those without requests in the window.
    pub routes: Vec<RouteFigures>,
}

#[derive(Debug, Clone)]
struct Ops {
    /// Each upstream behind its breaker, and the plain channel its health
    /// is asked on (a health check neither waits for nor moves the circuit).
    upstreams: [(Guarded, Channel); 3],
    windows: RouteWindows,
    authenticator: Authenticator,
}

/// The `/ops` route (nested under `/api/v1`), for the services of `peers`
/// and the routes `metrics` counts; tokens are verified with user-service's
/// keys, refetched every `keys.interval` and fetched at once in the
/// background (until `background` fires), so the dashboard can verify an
/// admin's token even if user-service goes down before anyone opened it.
/// Needs a Tokio runtime.
pub fn routes<S: Clone + Send + Sync + 'static>(
    peers: &Peers,
    metrics: &HttpMetrics,
    keys: &KeyRefresh,
    background: &Shutdown,
) -> Router<S> {
    let authenticator = Authenticator::new(peers.users.clone(), keys);
    let fetcher = authenticator.clone();
    let until = background.clone();
    tokio::spawn(async move { fetcher.fetch_until_ready(&until).await });
    let upstreams = &peers.upstreams;
    let ops = Ops {
        upstreams: [
            (upstreams.users.clone(), peers.users.clone()),
            (upstreams.consignments.clone(), peers.consignments.clone()),
            (upstreams.vessels.clone(), peers.vessels.clone()),
        ],
        windows: metrics.windows(),
        authenticator,
    };
    let (router, _) = operations().split_for_parts();
    router.with_state(ops)
}

/// The `/ops` route and its `#[utoipa::path]`, from one `routes!` call.
fn operations() -> OpenApiRouter<Ops> {
    OpenApiRouter::new().routes(routes!(report))
}

/// `GET /api/v1/ops` as an OpenAPI document, to be merged into the
/// gateway's (`crate::openapi::document`).
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, document) = OpenApiRouter::<Ops>::new()
        .nest("/api/v1", operations())
        .split_for_parts();
    document
}

/// The ops dashboard's figures (admins only): each upstream's health and
/// circuit, each route's rate, error shares and p99 latency.
#[utoipa::path(
    get,
    path = "/ops",
    tag = "ops",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the upstreams and the routes, now", body = OpsReport),
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 403, description = "the token's account is not an admin", body = ErrorBody),
    ),
)]
async fn report(State(ops): State<Ops>, headers: HeaderMap) -> Result<Json<OpsReport>, HttpError> {
    let request = tonic::Request::from_parts(
        MetadataMap::from_headers(headers),
        tonic::Extensions::default(),
        (),
    );
    ops.authenticator
        .authenticate_admin(&request, "the ops dashboard")
        .await
        .map_err(tonic::Status::from)?;
    let [users, consignments, vessels] = ops
        .upstreams
        .clone()
        .map(|(_, channel)| crate::app::serving(channel, HEALTH_TIMEOUT));
    let (users, consignments, vessels) = tokio::join!(users, consignments, vessels);
    let health = [users, consignments, vessels];
    let upstreams = ops
        .upstreams
        .iter()
        .zip(health)
        .map(|((guarded, _), health)| UpstreamReport {
            name: guarded.name().to_owned(),
            healthy: health.is_ok(),
            health: health.map_or_else(|reason| reason, |()| "SERVING".to_owned()),
            // Read after the health checks, so it is as fresh as can be.
            circuit: guarded.circuit().into(),
        })
        .collect();
    Ok(Json(OpsReport {
        window_seconds: observe::WINDOW_SECONDS,
        upstreams,
        routes: ops.windows.figures(),
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_route_is_documented_under_api_v1_with_its_schemas() {
        let document = serde_json::to_value(super::document()).unwrap_or_default();
        let operation = &document["paths"]["/api/v1/ops"]["get"];
        for status in ["200", "401", "403"] {
            assert!(operation["responses"][status].is_object(), "{document}");
        }
        for schema in [
            "OpsReport",
            "UpstreamReport",
            "RouteFigures",
            "CircuitState",
        ] {
            assert!(
                document["components"]["schemas"][schema].is_object(),
                "{schema}: {document}"
            );
        }
    }
}
