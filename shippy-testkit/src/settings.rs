//! Values every service under test is given alike.

/// The secret the services share in tests (`SERVICE_TOKEN`): vessel-service
/// takes reservations only with it.
pub const SERVICE_TOKEN: &str = "test-service-token-0123456789abcdef-0123456789abcdef";

/// How long vessel-service holds an unconfirmed reservation in tests: short,
/// so a test can see a dead saga's room come back, and long enough that a
/// create on a busy machine confirms in time.
pub const RESERVATION_TTL: std::time::Duration = std::time::Duration::from_secs(5);
