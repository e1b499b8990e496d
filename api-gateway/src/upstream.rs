//! A circuit breaker per upstream (user-, consignment-, vessel-service):
//! once calls to one have failed as unreachable or unanswered in time
//! ([`Breakers::failures`] in a row), calls to it are refused at once
//! (`UNAVAILABLE` with `retry-after-seconds`, so 503 with `Retry-After`)
//! instead of each waiting out the deadline; after the cool-down one call
//! probes, and its answer closes the circuit. A hung upstream then costs
//! the gateway one call per cool-down, not a connection per request.
//!
//! The state of each circuit is in `/metrics` (`upstream_circuit_open`,
//! `upstream_circuit_transitions_total`, `upstream_calls_refused_total`)
//! and in `/readyz`'s JSON.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::http;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};
use shippy_auth::remote::positive_duration;
use shippy_service::{
    breaker::{Circuit, CircuitBreaker},
    discovery::CallTimeouts,
    error::{RETRY_AFTER_SECONDS, whole_seconds},
    metrics::Metrics,
};
use tonic::{Status, body::Body, metadata::MetadataValue, transport::Channel};

/// How long each upstream may take, and when its circuit opens.
#[derive(Debug, Clone, clap::Args)]
pub struct Breakers {
    /// How long a call to user-service may take before it fails (and
    /// counts against its circuit).
    #[arg(long, env, default_value = "5s", value_parser = positive_duration)]
    pub user_service_timeout: humantime::Duration,

    /// The same for consignment-service.
    #[arg(long, env, default_value = "5s", value_parser = positive_duration)]
    pub consignment_service_timeout: humantime::Duration,

    /// The same for vessel-service.
    #[arg(long, env, default_value = "5s", value_parser = positive_duration)]
    pub vessel_service_timeout: humantime::Duration,

    /// Calls in a row to one upstream that fail (unreachable, or no answer
    /// within its timeout) before its circuit opens.
    #[arg(
        long = "breaker-failures",
        env = "BREAKER_FAILURES",
        default_value_t = CircuitBreaker::THRESHOLD,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub failures: u32,

    /// How long an open circuit answers 503 at once before one call probes.
    #[arg(
        long = "breaker-cool-down",
        env = "BREAKER_COOL_DOWN",
        default_value_t = CircuitBreaker::COOL_DOWN.into(),
        value_parser = positive_duration
    )]
    pub cool_down: humantime::Duration,
}

impl Breakers {
    /// Connecting to an upstream.
    const CONNECT: Duration = Duration::from_secs(1);

    /// How long a call to the upstream `name` may take: user-service,
    /// consignment-service, or else vessel-service.
    pub fn timeout(&self, name: &str) -> humantime::Duration {
        match name {
            "user-service" => self.user_service_timeout,
            "consignment-service" => self.consignment_service_timeout,
            _ => self.vessel_service_timeout,
        }
    }

    /// The call timeouts for `timeout`.
    pub fn calls(timeout: humantime::Duration) -> CallTimeouts {
        CallTimeouts {
            connect: Self::CONNECT,
            request: timeout.into(),
        }
    }
}

/// Labels of the circuit metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// e.g. `consignment-service`.
    pub upstream: &'static str,
}

/// Labels of the transition counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    /// e.g. `consignment-service`.
    pub upstream: &'static str,
    /// `open` or `closed`.
    pub to: &'static str,
}

/// The circuit metrics of every upstream.
#[derive(Debug, Clone)]
pub struct CircuitMetrics {
    open: Family<UpstreamLabels, Gauge>,
    transitions: Family<TransitionLabels, Counter>,
    refused: Family<UpstreamLabels, Counter>,
}

impl CircuitMetrics {
    /// Registers the circuit metrics in `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        Self {
            open: metrics.registered(
                "upstream_circuit_open",
                "1 while the upstream's circuit is open (calls refused at once), else 0",
                Family::default(),
            ),
            transitions: metrics.registered(
                "upstream_circuit_transitions",
                "Times the upstream's circuit opened or closed",
                Family::default(),
            ),
            refused: metrics.registered(
                "upstream_calls_refused",
                "Calls to the upstream refused at once because its circuit was open",
                Family::default(),
            ),
        }
    }
}

/// One upstream's breaker.
#[derive(Debug)]
struct Upstream {
    name: &'static str,
    breaker: CircuitBreaker,
    metrics: CircuitMetrics,
}

impl Upstream {
    fn record(&self, reachable: bool) {
        let before = self.breaker.circuit();
        self.breaker.record(reachable);
        let after = self.breaker.circuit();
        let to = match (before, after) {
            (Circuit::Closed | Circuit::HalfOpen, Circuit::Open) => "open",
            (Circuit::Open | Circuit::HalfOpen, Circuit::Closed) => "closed",
            _ => return,
        };
        if to == "open" {
            tracing::warn!(
                upstream = self.name,
                "circuit opened: calls refused at once"
            );
        } else {
            tracing::info!(upstream = self.name, "circuit closed: calls go out again");
        }
        self.metrics
            .transitions
            .get_or_create(&TransitionLabels {
                upstream: self.name,
                to,
            })
            .inc();
        self.metrics
            .open
            .get_or_create(&UpstreamLabels {
                upstream: self.name,
            })
            .set(i64::from(to == "open"));
    }
}

/// A channel to an upstream behind its circuit breaker: what the gRPC
/// clients of [`crate::api::Peers`] call through.
#[derive(Debug, Clone)]
pub struct Guarded {
    channel: Channel,
    upstream: Arc<Upstream>,
    /// The longest a call may take in all, waiting for an instance included.
    timeout: Duration,
}

impl Guarded {
    /// `channel` to `name`, behind a breaker of `breakers`' settings; a call
    /// fails after `timeout` in all.
    pub fn new(
        name: &'static str,
        channel: Channel,
        timeout: humantime::Duration,
        breakers: &Breakers,
        metrics: &CircuitMetrics,
    ) -> Self {
        metrics
            .open
            .get_or_create(&UpstreamLabels { upstream: name })
            .set(0);
        Self {
            channel,
            timeout: timeout.into(),
            upstream: Arc::new(Upstream {
                name,
                breaker: CircuitBreaker::with(breakers.failures, breakers.cool_down.into()),
                metrics: metrics.clone(),
            }),
        }
    }

    /// The upstream's name.
    pub fn name(&self) -> &'static str {
        self.upstream.name
    }

    /// Where its circuit stands.
    pub fn circuit(&self) -> Circuit {
        self.upstream.breaker.circuit()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<http::Request<Body>> for Guarded {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    /// Always ready: the channel's own readiness is awaited inside the
    /// call, under its timeout, so a channel that never gets ready (no
    /// instance known, a full buffer) costs a timeout and counts against the
    /// circuit instead of holding the request forever — and an open circuit
    /// answers at once whatever the channel does.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let upstream = Arc::clone(&self.upstream);
        if let Err(open) = upstream.breaker.allow() {
            upstream
                .metrics
                .refused
                .get_or_create(&UpstreamLabels {
                    upstream: upstream.name,
                })
                .inc();
            let mut status = Status::unavailable(format!(
                "{} is failing: {open}; the gateway answers at once until then",
                upstream.name
            ));
            status.metadata_mut().insert(
                RETRY_AFTER_SECONDS,
                MetadataValue::from(whole_seconds(open.retry_after)),
            );
            // tonic's client turns a boxed Status back into that Status.
            return Box::pin(async move { Err(Box::new(status) as BoxError) });
        }
        let channel = self.channel.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let call = tower::ServiceExt::oneshot(channel, request);
            let Ok(answered) = tokio::time::timeout(timeout, call).await else {
                upstream.record(false);
                let status = Status::deadline_exceeded(format!(
                    "{} did not answer in time ({}s); retry shortly",
                    upstream.name,
                    timeout.as_secs_f32()
                ));
                return Err(Box::new(status) as BoxError);
            };
            // An error here is the transport's: unreachable, or no answer
            // within the timeout. An answer, whatever its status, is the
            // upstream working.
            upstream.record(answered.is_ok());
            answered.map_err(Into::into)
        })
    }
}
