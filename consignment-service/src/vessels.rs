//! Asking vessel-service for a vessel, with a deadline.

use std::time::Duration;

use shippy_proto::vessel::v1::{Specification, vessel_service_client::VesselServiceClient};
use shippy_service::ApiError;
use tonic::{Code, transport::Channel};

/// vessel-service, through a lazily connecting channel.
#[derive(Debug, Clone)]
pub struct Vessels {
    client: VesselServiceClient<Channel>,
    deadline: Duration,
}

impl Vessels {
    /// Calls through `channel`, each call given `deadline`.
    pub fn new(channel: Channel, deadline: Duration) -> Self {
        Self {
            client: VesselServiceClient::new(channel),
            deadline,
        }
    }

    /// The id of the smallest available vessel that carries `capacity`
    /// containers weighing `max_weight` in all. None fits:
    /// `FAILED_PRECONDITION` naming the need; vessel-service unreachable or
    /// too slow: `UNAVAILABLE`.
    #[tracing::instrument(skip(self))]
    pub async fn find_available(&self, capacity: i32, max_weight: i32) -> Result<String, ApiError> {
        let mut request = tonic::Request::new(Specification {
            capacity,
            max_weight,
        });
        request.set_timeout(self.deadline);
        match self.client.clone().find_available(request).await {
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
