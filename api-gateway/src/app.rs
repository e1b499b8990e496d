//! Putting api-gateway together: bind, find the services, serve the JSON
//! API, the OpenAPI document, the web UI and the probes.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State},
    http::{HeaderValue, StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;
use shippy_service::{
    Shutdown,
    discovery::{Discovery, InvalidAddress},
    metrics::Metrics,
};
use tokio::net::TcpListener;
use tonic::{Code, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{
    api::{self, Peers, Upstreams},
    error::HttpError,
    limit::{self, Limiter},
    observe::{self, HttpMetrics},
    openapi,
    serve::{self, BodyDeadline, ConnectionMetrics},
    settings::{HttpLimits, Settings},
    ui,
    upstream::{Breakers, CircuitMetrics, Guarded},
};

/// The largest request body read: a consignment with many containers is a
/// few kilobytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long `/readyz` waits for each service's health.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// api-gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An address cannot be bound.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A service URL is not usable.
    #[error(transparent)]
    Address(#[from] InvalidAddress),
}

async fn bind(address: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Bind { address, source })
}

/// api-gateway, bound and ready to run.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    metrics_listener: TcpListener,
    metrics: Metrics,
    discovery: Discovery,
    router: Router,
    limits: HttpLimits,
    connections: ConnectionMetrics,
    background: Shutdown,
}

impl Application {
    /// Binds the listen and metrics addresses and makes (lazy) channels to
    /// the services; nothing waits for them.
    pub async fn build(settings: &Settings) -> Result<Self, StartError> {
        let listener = bind(settings.listen_addr).await?;
        let metrics_listener = bind(settings.metrics_addr).await?;
        let metrics = Metrics::new();
        let discovery = Discovery::new(&settings.discovery);
        let background = Shutdown::new();
        let breakers = &settings.breakers;
        let circuits = CircuitMetrics::register(&metrics);
        // A (lazy) channel to each service, and the same behind its breaker.
        let [users, consignments, vessels] = [
            ("user-service", &settings.user_service_url),
            ("consignment-service", &settings.consignment_service_url),
            ("vessel-service", &settings.vessel_service_url),
        ]
        .map(|(name, url)| {
            let timeout = breakers.timeout(name);
            let channel = discovery.channel(name, url, Breakers::calls(timeout), &background)?;
            let guarded = Guarded::new(name, channel.clone(), timeout, breakers, &circuits);
            Ok::<_, StartError>((channel, guarded))
        });
        let (users, consignments, vessels) = (users?, consignments?, vessels?);
        let peers = Peers {
            forwarding: Arc::new(settings.forwarding.clone()),
            upstreams: Upstreams {
                users: users.1,
                consignments: consignments.1,
                vessels: vessels.1,
            },
            users: users.0,
            consignments: consignments.0,
            vessels: vessels.0,
        };
        let connections = ConnectionMetrics::register(&metrics);
        let body_deadline = BodyDeadline {
            timeout: settings.http.body_read_timeout.into(),
            metrics: connections.clone(),
        };
        let jwks =
            crate::jwks::routes(peers.upstreams.users.clone(), settings.keys.interval.into());
        let limiter = Limiter::new(&settings.rate_limits, peers.forwarding.clone(), &metrics);
        let http_metrics = HttpMetrics::register(&metrics);
        let ops = crate::ops::routes(&peers, &http_metrics, &settings.keys, &background);
        let router = router(peers, http_metrics, body_deadline, jwks, limiter, ops);
        Ok(Self {
            listener,
            metrics_listener,
            metrics,
            discovery,
            router,
            limits: settings.http.clone(),
            connections,
            background,
        })
    }

    /// The address the HTTP server listens on (the real port when asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address `/metrics` is served on.
    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        self.metrics_listener.local_addr()
    }

    /// Serves until `shutdown` fires, then lets requests in flight finish.
    pub async fn run(self, shutdown: Shutdown) -> std::io::Result<()> {
        let metrics = self.metrics.spawn(self.metrics_listener, shutdown.clone());
        let registration = match self.listener.local_addr() {
            Ok(address) => {
                self.discovery
                    .register_http("api-gateway", address, "/healthz", shutdown.clone())
            }
            Err(_) => None,
        };
        let served = serve::serve(
            self.listener,
            self.router,
            &self.limits,
            self.connections,
            shutdown.clone(),
        )
        .await;
        shutdown.trigger();
        self.background.trigger();
        if let Some(task) = registration
            && let Err(error) = task.await
        {
            tracing::error!(%error, "Consul registration task failed");
        }
        metrics.stopped().await;
        served
    }
}

/// Every route of the gateway.
pub fn router(
    peers: Peers,
    metrics: HttpMetrics,
    body_deadline: BodyDeadline,
    jwks: Router,
    limiter: Limiter,
    ops: Router<Peers>,
) -> Router {
    // The JSON API and its document come from the same routes (api::routes).
    let (api, _) = api::routes().split_for_parts();
    let api = api.nest("/api/v1", ops).with_state(peers.clone());
    let document = openapi::served();
    Router::new()
        .merge(api)
        .route(
            "/api/openapi.json",
            get(openapi::serve).with_state(document),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz).with_state(peers))
        .merge(ui::routes())
        .merge(jwks)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            body_deadline,
            serve::body_deadline,
        ))
        .layer(middleware::from_fn_with_state(limiter, limit::rate_limit))
        .layer(middleware::from_fn_with_state(metrics, observe::observe))
        .layer(middleware::map_response(no_sniff_no_store))
}

/// Every answer, errors included: never read as another type than it says,
/// never stored by a cache (unless its route says otherwise: the UI's files
/// are `no-cache`).
async fn no_sniff_no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn not_found() -> HttpError {
    HttpError::new(
        Code::NotFound,
        "no such route; GET /api/openapi.json lists them",
    )
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({"error": {
            "code": "METHOD_NOT_ALLOWED",
            "message": "this route does not take that method; GET /api/openapi.json lists them",
        }})),
    )
        .into_response()
}

/// `/healthz`: the process is up.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Whether the service behind `channel` answers its health check
/// `SERVING` within `timeout`; what it answered otherwise.
pub(crate) async fn serving(channel: Channel, timeout: Duration) -> Result<(), String> {
    let mut client = HealthClient::new(channel);
    let asked = client.check(HealthCheckRequest {
        service: String::new(),
    });
    match tokio::time::timeout(timeout, asked).await {
        Ok(Ok(response)) if response.get_ref().status() == ServingStatus::Serving => Ok(()),
        Ok(Ok(response)) => Err(format!("{:?}", response.get_ref().status())),
        Ok(Err(status)) => Err(format!("{:?}", status.code())),
        Err(_) => Err("no answer in time".into()),
    }
}

/// `/readyz`: 200 when every service the API needs is serving, else 503
/// naming the ones that are not.
async fn readyz(State(peers): State<Peers>) -> Response {
    let mut breakers = serde_json::Map::new();
    for upstream in [
        &peers.upstreams.users,
        &peers.upstreams.consignments,
        &peers.upstreams.vessels,
    ] {
        breakers.insert(upstream.name().into(), json!(upstream.circuit().as_str()));
    }
    let (users, consignments, vessels) = tokio::join!(
        serving(peers.users, READY_TIMEOUT),
        serving(peers.consignments, READY_TIMEOUT),
        serving(peers.vessels, READY_TIMEOUT)
    );
    let mut services = serde_json::Map::new();
    let mut ready = true;
    for (name, state) in [
        ("user-service", users),
        ("consignment-service", consignments),
        ("vessel-service", vessels),
    ] {
        ready &= state.is_ok();
        services.insert(
            name.into(),
            json!(state.map_or_else(|reason| reason, |()| "SERVING".into())),
        );
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if ready { "ready" } else { "not ready" },
            "services": services,
            "breakers": breakers,
        })),
    )
        .into_response()
}
