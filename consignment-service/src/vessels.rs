//! Asking vessel-service for a vessel: with a deadline, and retried (it is
//! idempotent) with jittered backoff when an instance cannot be reached, so
//! one instance going away does not fail the call while others serve.

use std::time::Duration;

use shippy_proto::vessel::v1::{Specification, vessel_service_client::VesselServiceClient};
use shippy_service::{ApiError, breaker::CircuitBreaker, telemetry::propagation::TraceInterceptor};
use tonic::{Code, service::interceptor::InterceptedService, transport::Channel};

/// How many times an unreachable vessel-service is tried in one call.
const ATTEMPTS: u32 = 3;

/// vessel-service, through a lazily connecting channel.
#[derive(Debug, Clone)]
pub struct Vessels {
    client: VesselServiceClient<InterceptedService<Channel, TraceInterceptor>>,
    deadline: Duration,
    breaker: CircuitBreaker,
}

impl Vessels {
    /// Calls through `channel`, each call given `deadline`.
    pub fn new(channel: Channel, deadline: Duration) -> Self {
        Self {
            client: VesselServiceClient::with_interceptor(channel, TraceInterceptor),
            deadline,
            breaker: CircuitBreaker::new(),
        }
    }

    /// The id of the smallest available vessel that carries `capacity`
    /// containers weighing `max_weight` in all. None fits:
    /// `FAILED_PRECONDITION` naming the need; vessel-service unreachable or
    /// too slow: `UNAVAILABLE`.
    #[tracing::instrument(
        name = "shippy.vessel.v1.VesselService/FindAvailable",
        skip(self),
        fields(
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = "shippy.vessel.v1.VesselService",
            rpc.method = "FindAvailable",
        )
    )]
    pub async fn find_available(&self, capacity: i32, max_weight: i32) -> Result<String, ApiError> {
        // After repeated failures, refuse at once instead of waiting out
        // the deadline for a service that is not there.
        self.breaker.allow().map_err(|open| {
            ApiError::unavailable(format!("vessel-service is unreachable ({open})"), open)
        })?;
        let deadline = tokio::time::Instant::now() + self.deadline;
        let mut attempt = 0;
        let answer = loop {
            attempt += 1;
            let mut request = tonic::Request::new(Specification {
                capacity,
                max_weight,
            });
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            request.set_timeout(left);
            let result = tokio::time::timeout(left, self.client.clone().find_available(request))
                .await
                .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("no answer in time")));
            match result {
                Err(status) if status.code() == Code::Unavailable && attempt < ATTEMPTS => {
                    let pause =
                        Duration::from_millis(25 * 2u64.pow(attempt) + rand::random_range(0..25));
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
        match answer {
            Ok(answer) => answer
                .into_inner()
                .vessel
                .map(|vessel| vessel.id)
                .filter(|id| !id.is_empty())
                .ok_or_else(|| ApiError::internal("vessel-service answered without a vessel")),
            Err(status) => Err(match status.code() {
                Code::NotFound => ApiError::FailedPrecondition(format!(
                    "no vessel can carry this consignment ({capacity} containers, {max_weight} kg): {}",
                    status.message()
                )),
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                    ApiError::unavailable("vessel-service is unreachable; retry shortly", status)
                }
                _ => ApiError::internal(status),
            }),
        }
    }
}
