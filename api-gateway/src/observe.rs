//! Per request: a span that continues the caller's W3C trace (so the
//! gRPC calls made inside it join the same trace) and the RED metrics
//! (requests, errors, duration) by route — in `/metrics`, and in a rolling
//! window of the last [`WINDOW_SECONDS`] per route ([`RouteWindows`]) that
//! the ops dashboard reads (`GET /api/v1/ops`).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::StatusCode,
    middleware::Next,
    response::Response,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
};
use shippy_service::{metrics::Metrics, telemetry::propagation::continue_trace};
use tracing::Instrument as _;

/// Labels of the HTTP metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// e.g. `GET`.
    pub method: String,
    /// The route template, e.g. `/api/v1/consignments`; `unmatched` otherwise.
    pub route: String,
    /// e.g. `200`.
    pub status: String,
}

/// Labels of the HTTP duration histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// e.g. `GET`.
    pub method: String,
    /// The route template.
    pub route: String,
}

/// The gateway's HTTP metrics.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<HttpLabels, Counter>,
    errors: Family<HttpLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    windows: RouteWindows,
}

impl HttpMetrics {
    /// Registers the HTTP metrics in `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        Self {
            requests: metrics.registered(
                "http_server_requests",
                "HTTP requests handled",
                Family::default(),
            ),
            errors: metrics.registered(
                "http_server_errors",
                "HTTP requests answered with a 4xx or 5xx status",
                Family::default(),
            ),
            duration: metrics.registered(
                "http_server_duration_seconds",
                "How long HTTP requests took",
                Family::new_with_constructor(|| {
                    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                        0.001, 2.0, 14,
                    ))
                }),
            ),
            windows: RouteWindows::new(),
        }
    }

    /// The rolling window per route of the requests counted here.
    pub fn windows(&self) -> RouteWindows {
        self.windows.clone()
    }
}

/// The middleware: span, trace context, metrics.
pub async fn observe(State(metrics): State<HttpMetrics>, request: Request, next: Next) -> Response {
    // A method label from a fixed set: any other token a client sends would
    // add metric series forever.
    let method = match request.method().as_str() {
        known @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => known,
        _ => "other",
    }
    .to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let span = tracing::info_span!(
        "HTTP request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    continue_trace(&span, request.headers());
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    let labels = HttpLabels {
        method: method.clone(),
        route: route.clone(),
        status: status.as_str().to_owned(),
    };
    metrics.requests.get_or_create(&labels).inc();
    if status.is_client_error() || status.is_server_error() {
        metrics.errors.get_or_create(&labels).inc();
    }
    let took = started.elapsed();
    metrics.windows.record(&method, &route, status, took);
    metrics
        .duration
        .get_or_create(&RouteLabels { method, route })
        .observe(took.as_secs_f64());
    if status.is_server_error() {
        span.in_scope(|| tracing::warn!(status = status.as_u16(), "request failed"));
    } else {
        span.in_scope(|| tracing::debug!(status = status.as_u16(), "request answered"));
    }
    response
}

/// How far back the ops dashboard's figures go: rates, error shares and
/// the p99 latency are over the last this many seconds.
pub const WINDOW_SECONDS: u64 = 10;
/// Latency buckets: the first ends at [`FIRST_BOUND_MS`], each next one a
/// factor √2 later (the last, at about 105 s, takes anything longer).
const LATENCY_BUCKETS: usize = 41;
const FIRST_BOUND_MS: f64 = 0.1;

/// The upper bound of latency bucket `index`, in milliseconds.
fn bucket_bound_ms(index: usize) -> f64 {
    FIRST_BOUND_MS * 2f64.powf(index as f64 / 2.0)
}

fn bucket_of(took: Duration) -> usize {
    let ms = took.as_secs_f64() * 1000.0;
    if ms <= FIRST_BOUND_MS {
        return 0;
    }
    // ms ≤ FIRST · √2^i  ⇔  i ≥ 2·log2(ms / FIRST)
    let index = (2.0 * (ms / FIRST_BOUND_MS).log2()).ceil();
    if index >= (LATENCY_BUCKETS - 1) as f64 {
        LATENCY_BUCKETS - 1
    } else {
        index as usize
    }
}

/// One second of one route's requests.
#[derive(Debug, Clone)]
struct Second {
    /// Which second since the windows began this is.
    at: u64,
    requests: u64,
    /// Answered 4xx or 5xx (what `http_server_errors` counts).
    errors: u64,
    /// Answered 5xx.
    server_errors: u64,
    latency: [u32; LATENCY_BUCKETS],
    slowest: Duration,
}

impl Second {
    fn new(at: u64) -> Self {
        Self {
            at,
            requests: 0,
            errors: 0,
            server_errors: 0,
            latency: [0; LATENCY_BUCKETS],
            slowest: Duration::ZERO,
        }
    }
}

/// A ring of the last [`WINDOW_SECONDS`] seconds of one route.
#[derive(Debug, Clone)]
struct Window {
    seconds: Vec<Second>,
}

impl Window {
    fn new() -> Self {
        Self {
            seconds: (0..WINDOW_SECONDS).map(|_| Second::new(u64::MAX)).collect(),
        }
    }

    fn slot(&mut self, now: u64) -> Option<&mut Second> {
        let index = usize::try_from(now % WINDOW_SECONDS).ok()?;
        let slot = self.seconds.get_mut(index)?;
        if slot.at != now {
            *slot = Second::new(now);
        }
        Some(slot)
    }
}

/// A route's figures over the window, as the ops dashboard shows them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RouteFigures {
    /// e.g. `GET`.
    pub method: String,
    /// The router's route template, e.g. `/api/v1/consignments/{id}`
    /// (`unmatched` for a path no route takes): never a raw URL.
    pub route: String,
    /// Requests answered in the window.
    pub requests: u64,
    /// Requests per second over the window.
    pub requests_per_second: f64,
    /// The share of requests answered 4xx or 5xx (0 to 1; 0 without requests).
    pub error_ratio: f64,
    /// The share of requests answered 5xx (0 to 1).
    pub server_error_ratio: f64,
    /// The 99th percentile of how long requests took, in milliseconds: the
    /// upper bound of its latency bucket (buckets grow by √2), never above
    /// the slowest request; `None` without requests in the window.
    pub p99_ms: Option<f64>,
}

/// Per route (method and route template: a bounded set, whatever the
/// clients send), the last [`WINDOW_SECONDS`] seconds of requests in
/// one-second slots: counts, errors and a latency histogram. Memory is
/// fixed per route; routes without requests in the window are listed with
/// zeros.
#[derive(Debug, Clone)]
pub struct RouteWindows {
    began: Instant,
    routes: Arc<Mutex<BTreeMap<(String, String), Window>>>,
}

impl Default for RouteWindows {
    fn default() -> Self {
        Self::new()
    }
}

impl RouteWindows {
    /// Empty windows, starting now.
    pub fn new() -> Self {
        Self {
            began: Instant::now(),
            routes: Arc::default(),
        }
    }

    fn now(&self) -> u64 {
        self.began.elapsed().as_secs()
    }

    /// Counts a request to `route` answered `status` after `took`.
    pub fn record(&self, method: &str, route: &str, status: StatusCode, took: Duration) {
        let now = self.now();
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        let key = (route.to_owned(), method.to_owned());
        let Some(slot) = routes.entry(key).or_insert_with(Window::new).slot(now) else {
            return;
        };
        slot.requests += 1;
        if status.is_client_error() || status.is_server_error() {
            slot.errors += 1;
        }
        if status.is_server_error() {
            slot.server_errors += 1;
        }
        if let Some(count) = slot.latency.get_mut(bucket_of(took)) {
            *count = count.saturating_add(1);
        }
        slot.slowest = slot.slowest.max(took);
    }

    /// Every route seen so far with its figures over the window, by route
    /// then method.
    pub fn figures(&self) -> Vec<RouteFigures> {
        let elapsed = self.began.elapsed();
        let now = elapsed.as_secs();
        let oldest = now.saturating_sub(WINDOW_SECONDS - 1);
        // From the start of the oldest slot to now; at least a second, so
        // one request just made is not a rate of thousands.
        let span = (elapsed.as_secs_f64() - oldest as f64).max(1.0);
        let Ok(routes) = self.routes.lock() else {
            return Vec::new();
        };
        routes
            .iter()
            .map(|((route, method), window)| {
                let mut requests = 0;
                let mut errors = 0;
                let mut server_errors = 0;
                let mut latency = [0u64; LATENCY_BUCKETS];
                let mut slowest = Duration::ZERO;
                for second in window
                    .seconds
                    .iter()
                    .filter(|s| s.at >= oldest && s.at <= now)
                {
                    requests += second.requests;
                    errors += second.errors;
                    server_errors += second.server_errors;
                    for (total, count) in latency.iter_mut().zip(second.latency) {
                        *total += u64::from(count);
                    }
                    slowest = slowest.max(second.slowest);
                }
                let share = |part: u64| {
                    if requests == 0 {
                        0.0
                    } else {
                        part as f64 / requests as f64
                    }
                };
                RouteFigures {
                    method: method.clone(),
                    route: route.clone(),
                    requests,
                    requests_per_second: requests as f64 / span,
                    error_ratio: share(errors),
                    server_error_ratio: share(server_errors),
                    p99_ms: percentile_ms(&latency, requests, 0.99, slowest),
                }
            })
            .collect()
    }
}

/// The `quantile` of `requests` spread over `latency`'s buckets: the upper
/// bound of the bucket it falls in, capped at `slowest`; in the last bucket
/// (which has no upper bound), `slowest`.
fn percentile_ms(
    latency: &[u64; LATENCY_BUCKETS],
    requests: u64,
    quantile: f64,
    slowest: Duration,
) -> Option<f64> {
    if requests == 0 {
        return None;
    }
    let rank = ((requests as f64) * quantile).ceil().max(1.0) as u64;
    let mut seen = 0;
    let slowest_ms = slowest.as_secs_f64() * 1000.0;
    for (index, count) in latency.iter().enumerate() {
        seen += count;
        if seen >= rank {
            if index == LATENCY_BUCKETS - 1 {
                return Some(slowest_ms);
            }
            return Some(bucket_bound_ms(index).min(slowest_ms));
        }
    }
    Some(slowest_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_grow_by_root_two_and_end_in_one_for_anything_longer() {
        assert_eq!(bucket_of(Duration::from_micros(50)), 0);
        assert_eq!(bucket_of(Duration::from_micros(100)), 0);
        assert_eq!(bucket_of(Duration::from_micros(141)), 1);
        assert_eq!(bucket_of(Duration::from_micros(142)), 2);
        assert_eq!(bucket_of(Duration::from_millis(1)), 7);
        assert_eq!(bucket_of(Duration::from_secs(3600)), LATENCY_BUCKETS - 1);
        for index in 0..LATENCY_BUCKETS - 1 {
            let bound = Duration::from_secs_f64(bucket_bound_ms(index) / 1000.0 * 0.999);
            assert_eq!(bucket_of(bound), index, "{index}");
        }
    }

    #[test]
    fn figures_count_requests_errors_and_the_p99_by_route() {
        let windows = RouteWindows::new();
        for _ in 0..98 {
            windows.record("GET", "/a", StatusCode::OK, Duration::from_millis(1));
        }
        windows.record("GET", "/a", StatusCode::NOT_FOUND, Duration::from_millis(1));
        windows.record(
            "GET",
            "/a",
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_millis(400),
        );
        windows.record("POST", "/a", StatusCode::CREATED, Duration::from_millis(30));
        let figures = windows.figures();
        assert_eq!(figures.len(), 2, "{figures:?}");
        let get = &figures[0];
        assert_eq!((get.method.as_str(), get.route.as_str()), ("GET", "/a"));
        assert_eq!(get.requests, 100);
        assert!((get.error_ratio - 0.02).abs() < 1e-9, "{get:?}");
        assert!((get.server_error_ratio - 0.01).abs() < 1e-9, "{get:?}");
        // 99 of 100 took 1 ms: the p99 is in 1 ms's bucket, not the 400 ms one.
        let p99 = get.p99_ms.unwrap();
        assert!((1.0..1.5).contains(&p99), "{p99}");
        assert!(get.requests_per_second > 0.0);
        // One request: its p99 is itself (capped at the slowest).
        assert_eq!(figures[1].p99_ms, Some(30.0));
    }

    #[test]
    fn a_p99_past_the_last_bound_is_the_slowest_request_not_the_bound() {
        let mut latency = [0; LATENCY_BUCKETS];
        latency[LATENCY_BUCKETS - 1] = 3;
        let slowest = Duration::from_secs(600);
        assert_eq!(
            percentile_ms(&latency, 3, 0.99, slowest),
            Some(600_000.0),
            "the last bucket's bound is {} ms",
            bucket_bound_ms(LATENCY_BUCKETS - 1)
        );
    }
}
