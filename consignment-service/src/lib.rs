//! consignment-service: consignments placed on vessels, for authenticated users.
//!
//! - [`domain`]: consignments and containers as validated types.
//! - [`store`]: the [`store::ConsignmentStore`] contract, its PostgreSQL and
//!   MongoDB implementations, chosen by the scheme of `DATABASE_URL`.
//! - [`vessels`]: asking vessel-service for a vessel, with a deadline.
//! - tokens are verified locally by [`shippy_auth::Authenticator`].
//! - [`api`]: the `shippy.consignment.v1.ShippingService` handlers.
//! - [`app`]: [`app::Application`]; `main` only loads settings and runs it.

pub mod api;
pub mod app;
pub mod domain;
pub mod settings;
pub mod store;
pub mod vessels;
