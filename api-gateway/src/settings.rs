//! api-gateway's settings: flags that also read the environment.
//! A bare `long, env` takes both names from the field: `--metrics-addr`
//! and `METRICS_ADDR` for `metrics_addr`.

use std::net::SocketAddr;

use shippy_auth::remote::positive_duration;
use shippy_service::discovery::DiscoveryArgs;

/// What api-gateway needs to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Where the HTTP server (JSON API and web UI) listens.
    #[arg(long, env, default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,

    /// user-service's address (without Consul).
    #[arg(long, env, default_value = "http://127.0.0.1:50053")]
    pub user_service_url: String,

    /// consignment-service's address (without Consul).
    #[arg(long, env, default_value = "http://127.0.0.1:50051")]
    pub consignment_service_url: String,

    /// vessel-service's address (without Consul).
    #[arg(long, env, default_value = "http://127.0.0.1:50052")]
    pub vessel_service_url: String,

    /// Where Prometheus scrapes `/metrics`.
    #[arg(long, env, default_value = "0.0.0.0:9180")]
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
        default_value = "10s",
        value_parser = positive_duration
    )]
    pub header_read_timeout: humantime::Duration,

    /// How long a request's body may take to arrive in full, counted from
    /// the end of its head; then the answer is 408 and the connection closes.
    #[arg(
        long = "http-body-read-timeout",
        env = "HTTP_BODY_READ_TIMEOUT",
        default_value = "10s",
        value_parser = positive_duration
    )]
    pub body_read_timeout: humantime::Duration,

    /// How long a connection kept alive after an answer may wait for the
    /// next request before it is closed.
    #[arg(
        long = "http-idle-timeout",
        env = "HTTP_IDLE_TIMEOUT",
        default_value = "1m",
        value_parser = positive_duration
    )]
    pub idle_timeout: humantime::Duration,

    /// The most connections served at once; one more is answered 503 and
    /// closed at once. Keep it well below the open-files limit (`ulimit -n`).
    #[arg(
        long = "http-max-connections",
        env = "HTTP_MAX_CONNECTIONS",
        default_value_t = 512,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections: u32,
}

/// The settings of the group `T` with no flag and no environment variable
/// given: each one's default, as its `#[arg]` writes it (once, where
/// `--help` shows it). `Default` of the groups of settings here
/// ([`HttpLimits`], [`RateLimits`](crate::limit::RateLimits),
/// [`Breakers`](crate::upstream::Breakers)).
///
/// Panics if a setting of `T` has no default: a mistake in `T` itself, which
/// its `Default` test shows.
#[allow(clippy::expect_used)] // T's own definition, not outside input.
pub(crate) fn defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("defaults")).mut_args(|arg| arg.env(None));
    let parsed = command
        .try_get_matches_from(["defaults"])
        .and_then(|matches| T::from_arg_matches(&matches));
    parsed.expect("every setting of the group has a default")
}

/// `Default` for each of these groups of settings: [`defaults`].
macro_rules! default_from_flags {
    ($($group:ty),+) => {$(
        impl Default for $group {
            fn default() -> Self {
                defaults()
            }
        }
    )+};
}

default_from_flags!(
    HttpLimits,
    crate::limit::RateLimits,
    crate::upstream::Breakers
);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{limit::RateLimits, upstream::Breakers};

    #[test]
    fn timeouts_are_humantime_durations_above_zero() {
        assert_eq!(
            positive_duration("250ms").map(Duration::from),
            Ok(Duration::from_millis(250))
        );
        assert!(positive_duration("0s").is_err_and(|error| error.contains("above zero")));
        assert!(positive_duration("soon").is_err());
    }

    #[test]
    fn each_group_defaults_to_what_its_flags_say() {
        let secs = |n| humantime::Duration::from(Duration::from_secs(n));
        let http = HttpLimits::default();
        assert_eq!(
            (
                http.header_read_timeout,
                http.body_read_timeout,
                http.idle_timeout,
                http.max_connections
            ),
            (secs(10), secs(10), secs(60), 512)
        );
        let rates = RateLimits::default();
        assert_eq!(
            (
                rates.per_second,
                rates.burst,
                rates.login_per_second,
                rates.login_burst,
                rates.max_clients
            ),
            (20, 40, 1, 10, 100_000)
        );
        let breakers = Breakers::default();
        assert_eq!(
            (
                breakers.user_service_timeout,
                breakers.consignment_service_timeout,
                breakers.vessel_service_timeout,
                breakers.failures,
                breakers.cool_down
            ),
            (secs(5), secs(5), secs(5), 2, secs(3))
        );
    }

    /// A setting read from a variable every test process has.
    #[derive(Debug, clap::Args)]
    struct FromPath {
        #[arg(long, env = "PATH", default_value = "the default")]
        path: String,
    }

    #[test]
    fn defaults_ignore_the_environment() {
        assert!(std::env::var_os("PATH").is_some());
        assert_eq!(defaults::<FromPath>().path, "the default");
    }
}
