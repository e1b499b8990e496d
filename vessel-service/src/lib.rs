//! vessel-service: the fleet, and which vessel can carry a consignment.
//!
//! - [`domain`]: vessels and specifications as validated types.
//! - [`store`]: the [`store::VesselStore`] contract and its PostgreSQL and
//!   MongoDB implementations, chosen by the scheme of `DATABASE_URL`.
//! - [`fleet`]: the seed fleet added on first start.
//! - [`api`]: the `shippy.vessel.v1.VesselService` handlers.
//! - [`app`]: [`app::Application`], which binds, serves and keeps health
//!   true to the store; `main` only loads settings and runs it.

pub mod api;
pub mod app;
pub mod domain;
pub mod fleet;
pub mod settings;
pub mod store;
