//! Rate limits per client: a token bucket (governor's GCRA) per client
//! address, as [`Forwarding::client`] names it (`X-Forwarded-For` believed
//! from `TRUSTED_PROXIES` only, so a forged header changes nothing), so one
//! client cannot take the capacity everyone shares.
//!
//! - Every route but the probes (`/healthz`, `/readyz`) draws on the
//!   client's general budget (`RATE_LIMIT_PER_SECOND`, `RATE_LIMIT_BURST`);
//!   `POST /api/v1/login` and `POST /api/v1/users` on a stricter one of their
//!   own (`LOGIN_RATE_LIMIT_*`), as each costs a bcrypt hash.
//! - Over the limit: 429 with `Retry-After`, the JSON error shape, and the
//!   IETF RateLimit header fields of draft-ietf-httpapi-ratelimit-headers-07
//!   (`RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`,
//!   `RateLimit-Policy`), which every answer of a limited route carries.
//! - IPv6 clients are counted per /64 (what one host usually holds).
//! - At most `RATE_LIMIT_MAX_CLIENTS` clients are tracked per budget (least
//!   recently seen go first); a client idle until its bucket is full again
//!   is dropped, as a fresh bucket is the same. Memory stays flat under a
//!   spray of addresses.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    num::NonZeroU32,
    sync::Arc,
    time::Duration,
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, Method},
    middleware::Next,
    response::{IntoResponse, Response},
};
use governor::{
    Quota, RateLimiter,
    clock::{Clock as _, DefaultClock},
    middleware::{StateInformationMiddleware, StateSnapshot},
    state::{InMemoryState, NotKeyed},
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};
use shippy_service::{error::whole_seconds, metrics::Metrics};
use tonic::Code;

use crate::{error::HttpError, forwarding::Forwarding};

/// How many requests each client may make.
#[derive(Debug, Clone, clap::Args)]
pub struct RateLimits {
    /// Requests per second each client address may make, on average, to
    /// any route but the probes (and login and sign-up, which have their
    /// own budget).
    #[arg(
        long = "rate-limit-per-second",
        env = "RATE_LIMIT_PER_SECOND",
        default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub per_second: u32,

    /// Requests a client may make at once before the per-second rate holds
    /// (a browser loading the web UI sends a dozen or so).
    #[arg(
        long = "rate-limit-burst",
        env = "RATE_LIMIT_BURST",
        default_value_t = 40,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub burst: u32,

    /// `POST /api/v1/login` and `POST /api/v1/users` per second per client
    /// (each costs a password hash).
    #[arg(
        long = "login-rate-limit-per-second",
        env = "LOGIN_RATE_LIMIT_PER_SECOND",
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub login_per_second: u32,

    /// Logins and sign-ups a client may send at once.
    #[arg(
        long = "login-rate-limit-burst",
        env = "LOGIN_RATE_LIMIT_BURST",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub login_burst: u32,

    /// The most client addresses tracked per budget; past it the least
    /// recently seen are forgotten (and start again with a full bucket).
    #[arg(
        long = "rate-limit-max-clients",
        env = "RATE_LIMIT_MAX_CLIENTS",
        default_value_t = 100_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max_clients: u64,
}

/// Labels of the rate-limit metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabels {
    /// `default`, or `login` (login and sign-up).
    pub budget: &'static str,
}

type Bucket = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// One budget: a bucket per client, at most `max_clients` of them.
#[derive(Debug)]
struct Budget {
    name: &'static str,
    quota: Quota,
    clock: DefaultClock,
    clients: moka::sync::Cache<IpAddr, Arc<Bucket>>,
    limited: Counter,
    tracked: Gauge,
}

impl Budget {
    fn new(
        name: &'static str,
        per_second: u32,
        burst: u32,
        max_clients: u64,
        metrics: &Family<BudgetLabels, Counter>,
        tracked: &Family<BudgetLabels, Gauge>,
    ) -> Self {
        let quota = Quota::per_second(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        let labels = BudgetLabels { budget: name };
        Self {
            name,
            quota,
            clock: DefaultClock::default(),
            clients: moka::sync::Cache::builder()
                .max_capacity(max_clients)
                // By then the bucket is full again: a fresh one is the same.
                .time_to_idle(quota.burst_size_replenished_in())
                .build(),
            limited: metrics.get_or_create(&labels).clone(),
            tracked: tracked.get_or_create(&labels).clone(),
        }
    }

    /// Takes one request from `client`'s bucket: what is left, or how long
    /// until one more is allowed.
    fn take(&self, client: IpAddr) -> Result<StateSnapshot, Duration> {
        let bucket = self.clients.get_with(client, || {
            Arc::new(
                RateLimiter::direct_with_clock(self.quota, self.clock.clone())
                    .with_middleware::<StateInformationMiddleware>(),
            )
        });
        self.tracked
            .set(i64::try_from(self.clients.entry_count()).unwrap_or(i64::MAX));
        bucket
            .check()
            .map_err(|refused| refused.wait_time_from(self.clock.now()))
    }

    /// The RateLimit header fields (draft -07) for `remaining` requests left.
    fn headers(&self, remaining: u32, headers: &mut HeaderMap) {
        let burst = self.quota.burst_size().get();
        let window = whole_seconds(self.quota.burst_size_replenished_in());
        // Seconds until the whole burst is available again.
        let reset = self
            .quota
            .replenish_interval()
            .saturating_mul(burst.saturating_sub(remaining));
        let reset = if reset.is_zero() {
            0
        } else {
            whole_seconds(reset)
        };
        for (name, value) in [
            ("ratelimit-limit", HeaderValue::from(burst)),
            ("ratelimit-remaining", HeaderValue::from(remaining)),
            ("ratelimit-reset", HeaderValue::from(reset)),
        ] {
            headers.insert(name, value);
        }
        if let Ok(policy) = HeaderValue::from_str(&format!("{burst};w={window}")) {
            headers.insert("ratelimit-policy", policy);
        }
    }
}

/// The rate limits of the gateway, shared by its requests.
#[derive(Debug, Clone)]
pub struct Limiter {
    general: Arc<Budget>,
    login: Arc<Budget>,
    forwarding: Arc<Forwarding>,
}

impl Limiter {
    /// Budgets with `limits`, counting clients as `forwarding` names them;
    /// their metrics registered in `metrics`.
    pub fn new(limits: &RateLimits, forwarding: Arc<Forwarding>, metrics: &Metrics) -> Self {
        let limited: Family<BudgetLabels, Counter> = metrics.registered(
            "http_rate_limited",
            "HTTP requests answered 429 because their client was over its rate limit",
            Family::default(),
        );
        let tracked: Family<BudgetLabels, Gauge> = metrics.registered(
            "http_rate_limit_clients",
            "Client addresses whose rate-limit buckets are tracked",
            Family::default(),
        );
        Self {
            general: Arc::new(Budget::new(
                "default",
                limits.per_second,
                limits.burst,
                limits.max_clients,
                &limited,
                &tracked,
            )),
            login: Arc::new(Budget::new(
                "login",
                limits.login_per_second,
                limits.login_burst,
                limits.max_clients,
                &limited,
                &tracked,
            )),
            forwarding,
        }
    }

    /// The budget `request` draws on; `None` for the probes.
    fn budget(&self, request: &Request) -> Option<&Budget> {
        let path = request.uri().path();
        if matches!(path, "/healthz" | "/readyz") {
            return None;
        }
        let login =
            request.method() == Method::POST && matches!(path, "/api/v1/login" | "/api/v1/users");
        Some(if login { &self.login } else { &self.general })
    }
}

/// The key a client is counted under: its IPv4 address, or its IPv6 /64.
fn client_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// Router layer: counts the request against its client's budget; over it,
/// 429 at once (nothing else is done for it).
pub async fn rate_limit(State(limiter): State<Limiter>, request: Request, next: Next) -> Response {
    let Some(budget) = limiter.budget(&request) else {
        return next.run(request).await;
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip());
    let Some(client) = limiter.forwarding.client(peer, request.headers()) else {
        return next.run(request).await;
    };
    match budget.take(client_key(client)) {
        Ok(state) => {
            let mut response = next.run(request).await;
            budget.headers(state.remaining_burst_capacity(), response.headers_mut());
            response
        }
        Err(wait) => {
            budget.limited.inc();
            let quota = budget.quota;
            let what = if budget.name == "login" {
                "logins and sign-ups"
            } else {
                "requests"
            };
            let message = format!(
                "too many {what} from your address (at most {} at once, then {} a second); \
                 retry in {}s",
                quota.burst_size(),
                per_second(quota),
                whole_seconds(wait)
            );
            let mut response = HttpError {
                retry_after: Some(wait),
                ..HttpError::new(Code::ResourceExhausted, message)
            }
            .into_response();
            budget.headers(0, response.headers_mut());
            response
        }
    }
}

/// The quota's rate per second, for people.
fn per_second(quota: Quota) -> String {
    let interval = quota.replenish_interval().as_secs_f64();
    if interval <= 0.0 {
        return "many".into();
    }
    let rate = 1.0 / interval;
    if (rate - rate.round()).abs() < 0.01 {
        format!("{}", rate.round())
    } else {
        format!("{rate:.2}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn budget(per_second: u32, burst: u32, max_clients: u64) -> Budget {
        Budget::new(
            "default",
            per_second,
            burst,
            max_clients,
            &Family::default(),
            &Family::default(),
        )
    }

    #[test]
    fn a_burst_past_the_allowance_waits_for_the_rate() {
        let budget = budget(1, 3, 100);
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        let left: Vec<u32> = (0..3)
            .map(|_| budget.take(client).unwrap().remaining_burst_capacity())
            .collect();
        assert_eq!(left, [2, 1, 0]);
        let wait = budget.take(client).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another client has its own bucket.
        assert!(budget.take("203.0.113.8".parse().unwrap()).is_ok());
    }

    #[test]
    fn memory_stays_flat_under_a_spray_of_addresses() {
        let budget = budget(20, 40, 100);
        for n in 0..20_000u32 {
            let _ = budget.take(IpAddr::from(n.to_be_bytes()));
        }
        budget.clients.run_pending_tasks();
        assert!(
            budget.clients.entry_count() <= 100,
            "{}",
            budget.clients.entry_count()
        );
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        assert_eq!(
            client_key("::ffff:198.51.100.1".parse().unwrap()),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn the_headers_say_the_limit_what_is_left_and_when_it_is_full() {
        let budget = budget(20, 40, 100);
        let mut headers = HeaderMap::new();
        budget.headers(39, &mut headers);
        assert_eq!(headers["ratelimit-limit"], "40");
        assert_eq!(headers["ratelimit-remaining"], "39");
        assert_eq!(headers["ratelimit-reset"], "1");
        assert_eq!(headers["ratelimit-policy"], "40;w=2");
        budget.headers(40, &mut headers);
        assert_eq!(headers["ratelimit-reset"], "0");
    }
}
