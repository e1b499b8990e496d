//! The gRPC health protocol, as tests ask it.

/// What `grpc.health.v1.Health/Check` answers for `service` ("" = the whole server).
pub async fn health_status(
    channel: tonic::transport::Channel,
    service: &str,
) -> tonic_health::pb::health_check_response::ServingStatus {
    try_health_status(channel, service)
        .await
        .expect("health check")
}

async fn try_health_status(
    channel: tonic::transport::Channel,
    service: &str,
) -> Result<tonic_health::pb::health_check_response::ServingStatus, tonic::Status> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?
        .into_inner();
    Ok(ServingStatus::try_from(response.status).expect("a known serving status"))
}

/// Waits (up to 30 s) until the server's overall health is `wanted`.
pub async fn wait_for_health(
    channel: &tonic::transport::Channel,
    wanted: tonic_health::pb::health_check_response::ServingStatus,
) {
    for _ in 0..300 {
        // Not listening yet counts as not there yet.
        if try_health_status(channel.clone(), "").await.ok() == Some(wanted) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("health never became {wanted:?}");
}
