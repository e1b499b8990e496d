//! A circuit breaker per dependency: once calls to a service have failed
//! as unreachable [`CircuitBreaker::THRESHOLD`] times in a row, further
//! calls are refused at once (the caller answers `UNAVAILABLE` without
//! waiting out a deadline) until a cool-down has passed; then one call
//! probes, and its outcome closes the circuit or opens it again.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// The circuit is open: don't call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit open after repeated failures; retry in {}s", retry_after.as_secs().max(1))]
pub struct Open {
    /// When a call will be let through again.
    pub retry_after: Duration,
}

/// Where a circuit stands, for metrics and readiness reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    /// Calls go out.
    Closed,
    /// Calls are refused until the cool-down has passed.
    Open,
    /// The cool-down has passed: the next call probes.
    HalfOpen,
}

impl Circuit {
    /// `closed`, `open` or `half-open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }
}

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    /// When the probe in flight was let through. A probe whose caller went
    /// away never records its outcome, so it counts only for one cool-down;
    /// then another may go.
    probe_started: Option<Instant>,
}

/// Trips after repeated failures of one dependency.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    state: Arc<Mutex<State>>,
    threshold: u32,
    cool_down: Duration,
}

impl CircuitBreaker {
    /// Failed calls in a row that open the circuit.
    pub const THRESHOLD: u32 = 2;
    /// How long an open circuit refuses calls before one probes.
    pub const COOL_DOWN: Duration = Duration::from_secs(3);

    /// A closed breaker with the default threshold and cool-down.
    pub fn new() -> Self {
        Self::with(Self::THRESHOLD, Self::COOL_DOWN)
    }

    /// A closed breaker opening after `threshold` failures for `cool_down`.
    pub fn with(threshold: u32, cool_down: Duration) -> Self {
        Self {
            state: Arc::new(Mutex::new(State::default())),
            threshold: threshold.max(1),
            cool_down,
        }
    }

    /// Whether a call may go out now.
    pub fn allow(&self) -> Result<(), Open> {
        let Ok(mut state) = self.state.lock() else {
            return Ok(());
        };
        let Some(until) = state.open_until else {
            return Ok(());
        };
        let now = Instant::now();
        if now < until {
            return Err(Open {
                retry_after: until - now,
            });
        }
        if let Some(started) = state.probe_started
            && now < started + self.cool_down
        {
            // One probe at a time; the others wait for its outcome.
            return Err(Open {
                retry_after: (started + self.cool_down - now).min(Duration::from_secs(1)),
            });
        }
        state.probe_started = Some(now);
        Ok(())
    }

    /// Where the circuit stands now (no side effect, unlike [`Self::allow`]).
    pub fn circuit(&self) -> Circuit {
        let Ok(state) = self.state.lock() else {
            return Circuit::Closed;
        };
        match state.open_until {
            None => Circuit::Closed,
            Some(until) if Instant::now() < until => Circuit::Open,
            Some(_) => Circuit::HalfOpen,
        }
    }

    /// Records the outcome of a call that was allowed: `reachable` is false
    /// when the dependency could not be reached or did not answer in time.
    pub fn record(&self, reachable: bool) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.probe_started = None;
        if reachable {
            state.consecutive_failures = 0;
            state.open_until = None;
            return;
        }
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        if state.consecutive_failures >= self.threshold {
            state.open_until = Some(Instant::now() + self.cool_down);
        }
    }
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_repeated_failures_and_a_probe_closes_it() {
        let breaker = CircuitBreaker::with(2, Duration::from_millis(100));
        assert!(breaker.allow().is_ok());
        breaker.record(false);
        assert!(breaker.allow().is_ok(), "one failure is not enough");
        breaker.record(false);
        let open = breaker.allow().unwrap_err();
        assert!(open.retry_after <= Duration::from_millis(100));
        std::thread::sleep(Duration::from_millis(120));
        assert!(breaker.allow().is_ok(), "one probe after the cool-down");
        assert!(breaker.allow().is_err(), "only one");
        breaker.record(true);
        assert!(breaker.allow().is_ok());
        assert!(breaker.allow().is_ok());
        assert_eq!(breaker.circuit(), Circuit::Closed);
        breaker.record(false);
        breaker.record(false);
        assert_eq!(breaker.circuit(), Circuit::Open);
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(breaker.circuit(), Circuit::HalfOpen);
    }

    #[test]
    fn a_failed_probe_opens_it_again_and_success_resets_the_count() {
        let breaker = CircuitBreaker::with(2, Duration::from_millis(50));
        breaker.record(false);
        breaker.record(true);
        breaker.record(false);
        assert!(breaker.allow().is_ok(), "failures must be in a row");
        breaker.record(false);
        std::thread::sleep(Duration::from_millis(60));
        assert!(breaker.allow().is_ok());
        breaker.record(false);
        assert!(breaker.allow().is_err(), "open again");
    }

    #[test]
    fn a_probe_whose_caller_went_away_does_not_keep_it_open_forever() {
        let breaker = CircuitBreaker::with(1, Duration::from_millis(50));
        breaker.record(false);
        std::thread::sleep(Duration::from_millis(60));
        assert!(breaker.allow().is_ok(), "the probe goes out");
        // ... and its caller is cancelled: no outcome is ever recorded.
        assert!(breaker.allow().is_err(), "one probe at a time");
        std::thread::sleep(Duration::from_millis(60));
        assert!(breaker.allow().is_ok(), "another probe after a cool-down");
    }
}
