//! Limiting password guessing: failed logins are counted per account and
//! per client address over a sliding window; past the limit, `Auth` answers
//! `RESOURCE_EXHAUSTED` with a retry hint at once, without spending bcrypt
//! time. Other accounts (and other addresses) keep logging in. A successful
//! login clears its account's count.
//!
//! An account's lock does not lock its owner out: an address the account
//! logged in from before (within [`KNOWN_ADDRESS_TTL`]) may still try,
//! under that address's own budget. So a guesser elsewhere cannot keep the
//! owner out, and the guesser gains nothing from the owner's addresses
//! unless it shares one (then the address budget still holds).
//!
//! The client address is the TCP peer's, or the one the api-gateway names
//! for the browser it calls for, believed only with the services' shared
//! secret (`SERVICE_TOKEN`): behind the gateway, each browser has its own
//! budget rather than all sharing the gateway's.
//!
//! Memory is bounded: at most [`MAX_TRACKED`] accounts and addresses are
//! tracked (least recently used go first), each entry keeping at most `limit`
//! timestamps, and entries idle for a whole window are dropped.

use std::{
    collections::VecDeque,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use shippy_auth::service::ServiceToken;
use shippy_service::error::{ApiError, whole_seconds};

use crate::domain::Email;

/// The most accounts and addresses tracked at once.
pub const MAX_TRACKED: u64 = 100_000;

/// How long an address an account logged in from stays known to it.
pub const KNOWN_ADDRESS_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// How many failed logins are allowed, and over which window.
#[derive(Debug, Clone, clap::Args)]
pub struct LoginLimits {
    /// Failed logins per account within `LOGIN_FAILURE_WINDOW` before `Auth`
    /// answers RESOURCE_EXHAUSTED for that account.
    #[arg(
        long = "login-max-failures",
        env = "LOGIN_MAX_FAILURES",
        default_value_t = 10
    )]
    pub max_failures: u32,

    /// Failed logins per client address within the window (any accounts).
    #[arg(
        long = "login-max-failures-per-address",
        env = "LOGIN_MAX_FAILURES_PER_ADDRESS",
        default_value_t = 100
    )]
    pub max_failures_per_address: u32,

    /// The window failed logins are counted over, e.g. `15m`.
    #[arg(
        long = "login-failure-window",
        env = "LOGIN_FAILURE_WINDOW",
        default_value = "15m"
    )]
    pub window: humantime::Duration,

    /// The services' shared secret (the same `SERVICE_TOKEN` as the other
    /// services and the api-gateway): a call carrying it may name the client
    /// address it is made for (`x-client-address`), which the throttle and
    /// the request budgets then count. Unset: the TCP peer always counts.
    #[arg(long, env = "SERVICE_TOKEN", hide_env_values = true)]
    pub service_token: Option<ServiceToken>,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            max_failures: 10,
            max_failures_per_address: 100,
            window: Duration::from_secs(15 * 60).into(),
            service_token: None,
        }
    }
}

/// Why a login is refused before its password is checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Throttled {
    /// Too many failures for this account.
    #[error(
        "too many failed logins for this account; retry in {}s",
        whole_seconds(*retry_after)
    )]
    Account {
        /// When the oldest counted failure leaves the window.
        retry_after: Duration,
    },
    /// Too many failures from this address.
    #[error(
        "too many failed logins from your address; retry in {}s",
        whole_seconds(*retry_after)
    )]
    Address {
        /// When the oldest counted failure leaves the window.
        retry_after: Duration,
    },
}

impl Throttled {
    /// How long until a login can be tried again.
    pub fn retry_after(&self) -> Duration {
        match self {
            Self::Account { retry_after } | Self::Address { retry_after } => *retry_after,
        }
    }
}

/// `RESOURCE_EXHAUSTED` with the wait as `retry-after-seconds` metadata, so
/// callers (the api-gateway's `Retry-After`) never read it from the text.
impl From<Throttled> for ApiError {
    fn from(throttled: Throttled) -> Self {
        Self::Throttled {
            message: throttled.to_string(),
            retry_after: throttled.retry_after(),
        }
    }
}

type Failures = Arc<Mutex<VecDeque<Instant>>>;

fn cache<K>(window: Duration) -> moka::sync::Cache<K, Failures>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
{
    moka::sync::Cache::builder()
        .max_capacity(MAX_TRACKED)
        .time_to_idle(window)
        .build()
}

/// Counts failed logins.
#[derive(Debug, Clone)]
pub struct LoginThrottle {
    limits: LoginLimits,
    accounts: moka::sync::Cache<Email, Failures>,
    addresses: moka::sync::Cache<IpAddr, Failures>,
    /// The addresses each account logged in from.
    known: moka::sync::Cache<(Email, IpAddr), ()>,
}

impl LoginThrottle {
    /// A throttle with `limits`.
    pub fn new(limits: LoginLimits) -> Self {
        let window: Duration = limits.window.into();
        Self {
            accounts: cache(window),
            addresses: cache(window),
            known: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED)
                .time_to_live(KNOWN_ADDRESS_TTL)
                .build(),
            limits,
        }
    }

    /// Refuses a login for `email` from `address` if either failed too
    /// often; an account's lock does not hold for the addresses it logged
    /// in from before.
    pub fn check(&self, email: &Email, address: Option<IpAddr>) -> Result<(), Throttled> {
        if let Some(retry_after) = self.blocked(self.accounts.get(email), self.limits.max_failures)
        {
            let known =
                address.is_some_and(|address| self.known.contains_key(&(email.clone(), address)));
            if !known {
                return Err(Throttled::Account { retry_after });
            }
        }
        if let Some(address) = address {
            let failures = self.addresses.get(&address);
            if let Some(retry_after) = self.blocked(failures, self.limits.max_failures_per_address)
            {
                return Err(Throttled::Address { retry_after });
            }
        }
        Ok(())
    }

    /// Counts a failed login for `email` from `address`.
    pub fn failed(&self, email: &Email, address: Option<IpAddr>) {
        let new = || Arc::new(Mutex::new(VecDeque::new()));
        self.record(
            &self.accounts.get_with(email.clone(), new),
            self.limits.max_failures,
        );
        if let Some(address) = address {
            self.record(
                &self.addresses.get_with(address, new),
                self.limits.max_failures_per_address,
            );
        }
    }

    /// Forgets `email`'s failures after it logged in, and takes back the
    /// failure [`failed`](Self::failed) counted for this attempt against
    /// `address`: logins that succeed never use up an address's budget (many
    /// users behind one NAT or proxy share it).
    pub fn succeeded(&self, email: &Email, address: Option<IpAddr>) {
        self.accounts.invalidate(email);
        let Some(address) = address else {
            return;
        };
        self.known.insert((email.clone(), address), ());
        if let Some(failures) = self.addresses.get(&address)
            && let Ok(mut failures) = failures.lock()
        {
            failures.pop_back();
        }
    }

    /// The secret that lets a call name the client it is made for.
    pub fn service_token(&self) -> Option<&ServiceToken> {
        self.limits.service_token.as_ref()
    }

    fn window(&self) -> Duration {
        self.limits.window.into()
    }

    /// How long until a login may be tried again, if `limit` is reached.
    fn blocked(&self, failures: Option<Failures>, limit: u32) -> Option<Duration> {
        let failures = failures?;
        let mut failures = failures.lock().ok()?;
        let now = Instant::now();
        let window = self.window();
        while failures
            .front()
            .is_some_and(|&at| now.duration_since(at) >= window)
        {
            failures.pop_front();
        }
        if failures.len() < usize::try_from(limit).unwrap_or(usize::MAX) {
            return None;
        }
        let oldest = *failures.front()?;
        Some(window.saturating_sub(now.duration_since(oldest)))
    }

    fn record(&self, failures: &Failures, limit: u32) {
        let Ok(mut failures) = failures.lock() else {
            return;
        };
        failures.push_back(Instant::now());
        // Only the newest `limit` matter; the memory per entry stays bounded.
        while failures.len() > usize::try_from(limit).unwrap_or(usize::MAX).max(1) {
            failures.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` accounts: `u0@example.com`, `u1@…`, ….
    fn accounts(count: usize) -> impl Iterator<Item = Email> {
        (0..count).map(|n| Email::parse(&format!("u{n}@example.com")).unwrap())
    }

    fn limits(max_failures: u32, per_address: u32, window: Duration) -> LoginLimits {
        LoginLimits {
            max_failures,
            max_failures_per_address: per_address,
            window: window.into(),
            service_token: None,
        }
    }

    #[test]
    fn an_account_is_refused_after_its_limit_and_others_are_not() {
        let throttle = LoginThrottle::new(limits(3, 100, Duration::from_secs(900)));
        let victim = Email::parse("victim@example.com").unwrap();
        let other = Email::parse("other@example.com").unwrap();
        for _ in 0..3 {
            assert!(throttle.check(&victim, None).is_ok());
            throttle.failed(&victim, None);
        }
        let refused = throttle.check(&victim, None).unwrap_err();
        assert!(
            matches!(refused, Throttled::Account { retry_after } if retry_after > Duration::from_secs(890))
        );
        let wait = whole_seconds(refused.retry_after());
        assert!(
            refused.to_string().contains(&format!("retry in {wait}s")),
            "{refused}"
        );
        // The wait travels as metadata, not only as text.
        let status = tonic::Status::from(ApiError::from(refused));
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            shippy_service::error::retry_after(&status),
            Some(Duration::from_secs(wait))
        );
        assert!(throttle.check(&other, None).is_ok());
    }

    #[test]
    fn failures_leave_the_window_and_success_clears_them() {
        let throttle = LoginThrottle::new(limits(2, 100, Duration::from_millis(200)));
        let user = Email::parse("user@example.com").unwrap();
        throttle.failed(&user, None);
        throttle.failed(&user, None);
        assert!(throttle.check(&user, None).is_err());
        std::thread::sleep(Duration::from_millis(250));
        assert!(throttle.check(&user, None).is_ok(), "the window slid on");
        throttle.failed(&user, None);
        throttle.failed(&user, None);
        throttle.succeeded(&user, None);
        assert!(throttle.check(&user, None).is_ok());
    }

    #[test]
    fn one_address_guessing_many_accounts_is_refused() {
        let throttle = LoginThrottle::new(limits(10, 5, Duration::from_secs(900)));
        let address: IpAddr = "192.0.2.1".parse().unwrap();
        for email in accounts(5) {
            throttle.failed(&email, Some(address));
        }
        let fresh = Email::parse("fresh@example.com").unwrap();
        assert!(matches!(
            throttle.check(&fresh, Some(address)),
            Err(Throttled::Address { .. })
        ));
        assert!(
            throttle
                .check(&fresh, Some("192.0.2.2".parse().unwrap()))
                .is_ok()
        );
    }

    #[test]
    fn logins_that_succeed_use_up_no_address_budget() {
        let throttle = LoginThrottle::new(limits(10, 3, Duration::from_secs(900)));
        let proxy: IpAddr = "192.0.2.7".parse().unwrap();
        for user in accounts(20) {
            throttle.check(&user, Some(proxy)).expect("not throttled");
            throttle.failed(&user, Some(proxy));
            throttle.succeeded(&user, Some(proxy));
        }
        let guesser = Email::parse("guess@example.com").unwrap();
        for _ in 0..3 {
            throttle.failed(&guesser, Some(proxy));
        }
        assert!(
            throttle.check(&guesser, Some(proxy)).is_err(),
            "failures still count"
        );
    }

    #[test]
    fn a_locked_account_still_takes_logins_from_where_its_owner_logged_in_before() {
        let throttle = LoginThrottle::new(limits(3, 100, Duration::from_secs(900)));
        let owner = Email::parse("owner@example.com").unwrap();
        let home: IpAddr = "198.51.100.7".parse().unwrap();
        let attacker: IpAddr = "203.0.113.66".parse().unwrap();
        throttle.check(&owner, Some(home)).unwrap();
        throttle.failed(&owner, Some(home));
        throttle.succeeded(&owner, Some(home));
        for _ in 0..3 {
            throttle.failed(&owner, Some(attacker));
        }
        assert!(matches!(
            throttle.check(&owner, Some(attacker)),
            Err(Throttled::Account { .. })
        ));
        assert!(matches!(
            throttle.check(&owner, Some("192.0.2.200".parse().unwrap())),
            Err(Throttled::Account { .. })
        ));
        assert!(matches!(
            throttle.check(&owner, None),
            Err(Throttled::Account { .. })
        ));
        assert_eq!(
            throttle.check(&owner, Some(home)),
            Ok(()),
            "the owner's own address"
        );
    }
}
