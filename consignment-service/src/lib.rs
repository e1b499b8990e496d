//! consignment-service: consignments placed on vessels, for authenticated users.
//!
//! - [`domain`]: consignments and containers as validated types.
//! - [`store`]: the [`store::ConsignmentStore`] contract, its PostgreSQL and
//!   MongoDB implementations, chosen by the scheme of `DATABASE_URL`.
//! - [`vessels`]: vessel-service's reservations (reserve, confirm,
//!   release), with a deadline and retries.
//! - [`saga`]: placing and cancelling a consignment across both databases,
//!   and the sweep that finishes what a dead process left half-done.
//! - tokens are verified locally by [`shippy_auth::Authenticator`].
//! - [`api`]: the `shippy.consignment.v1.ShippingService` handlers.
//! - [`app`]: [`app::Application`]; `main` only loads settings and runs it.

pub mod api;
pub mod app;
pub mod domain;
pub mod saga;
pub mod settings;
pub mod store;
pub mod vessels;
