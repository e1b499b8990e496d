//! api-gateway's settings: flags that also read the environment.

use std::{net::SocketAddr, time::Duration};

use shippy_auth::remote::positive_duration;
use shippy_service::discovery::DiscoveryArgs;

/// What api-gateway needs to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Where the HTTP server (JSON API and web UI) listens.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,

    /// user-service's address (without Consul).
    #[arg(
        long,
        env = "USER_SERVICE_URL",
        default_value = "http://127.0.0.1:50053"
    )]
    pub user_service_url: String,

    /// consignment-service's address (without Consul).
    #[arg(
        long,
        env = "CONSIGNMENT_SERVICE_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub consignment_service_url: String,

    /// vessel-service's address (without Consul).
    #[arg(
        long,
        env = "VESSEL_SERVICE_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    pub vessel_service_url: String,

    /// Where Prometheus scrapes `/metrics`.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9180")]
    pub metrics_addr: SocketAddr,

    /// Service discovery: Consul, or static addresses.
    #[command(flatten)]
    pub discovery: DiscoveryArgs,

    /// How long clients may take and how many may connect at once.
    #[command(flatten)]
    pub http: HttpLimits,

    /// Who the client is (trusted proxies) and naming it to the services.
    #[command(flatten)]
    pub forwarding: crate::forwarding::Forwarding,

    /// Requests per client address.
    #[command(flatten)]
    pub rate_limits: crate::limit::RateLimits,

    /// Each upstream's timeout and circuit breaker.
    #[command(flatten)]
    pub breakers: crate::upstream::Breakers,

    /// How long the JWKS may be cached (`KEYS_REFRESH_INTERVAL`, the
    /// verifiers' refresh).
    #[command(flatten)]
    pub keys: shippy_auth::remote::KeyRefresh,
}

/// The HTTP server's budgets: how long a client may take over each part of
/// a request, and how many connections are served at once.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpLimits {
    /// How long a request's head (request line and headers) may take to
    /// arrive, counted from the connection's opening for its first request
    /// and from its first byte for the next; then the connection is closed.
    #[arg(
        long = "http-header-read-timeout",
        env = "HTTP_HEADER_READ_TIMEOUT",
        default_value_t = HttpLimits::HEADER_READ_TIMEOUT.into(),
        value_parser = positive_duration
    )]
    pub header_read_timeout: humantime::Duration,

    /// How long a request's body may take to arrive in full, counted from
    /// the end of its head; then the answer is 408 and the connection closes.
    #[arg(
        long = "http-body-read-timeout",
        env = "HTTP_BODY_READ_TIMEOUT",
        default_value_t = HttpLimits::BODY_READ_TIMEOUT.into(),
        value_parser = positive_duration
    )]
    pub body_read_timeout: humantime::Duration,

    /// How long a connection kept alive after an answer may wait for the
    /// next request before it is closed.
    #[arg(
        long = "http-idle-timeout",
        env = "HTTP_IDLE_TIMEOUT",
        default_value_t = HttpLimits::IDLE_TIMEOUT.into(),
        value_parser = positive_duration
    )]
    pub idle_timeout: humantime::Duration,

    /// The most connections served at once; one more is answered 503 and
    /// closed at once. Keep it well below the open-files limit (`ulimit -n`).
    #[arg(
        long = "http-max-connections",
        env = "HTTP_MAX_CONNECTIONS",
        default_value_t = HttpLimits::MAX_CONNECTIONS,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections: u32,
}

impl HttpLimits {
    const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
    const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    const MAX_CONNECTIONS: u32 = 512;
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Self::HEADER_READ_TIMEOUT.into(),
            body_read_timeout: Self::BODY_READ_TIMEOUT.into(),
            idle_timeout: Self::IDLE_TIMEOUT.into(),
            max_connections: Self::MAX_CONNECTIONS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_humantime_durations_above_zero() {
        assert_eq!(
            positive_duration("250ms").map(Duration::from),
            Ok(Duration::from_millis(250))
        );
        assert!(positive_duration("0s").is_err_and(|error| error.contains("above zero")));
        assert!(positive_duration("soon").is_err());
    }
}
