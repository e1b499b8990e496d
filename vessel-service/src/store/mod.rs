//! Where vessels are kept: one trait, one implementation per database.
//!
//! [`VesselStore`] is the contract; [`postgres::PostgresStore`] and
//! [`mongo::MongoStore`] implement it, and both pass the same contract test
//! suite (`tests/store_contract.rs`). [`Store`] is whichever of them the
//! scheme of `DATABASE_URL` chose.

pub mod mongo;
pub mod postgres;

use std::time::Duration;

use shippy_service::settings::SecretUrl;
use shippy_store::Backend;

use crate::domain::{Specification, Vessel, VesselId};

/// A store operation that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A vessel with this id exists already.
    #[error("a vessel with id {} exists already", shippy_service::text::excerpt(.0.as_str()))]
    AlreadyExists(VesselId),
    /// The database cannot be reached now.
    #[error("the vessel database is unreachable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database holds a vessel this service cannot read.
    #[error("stored vessel is invalid: {0}")]
    Corrupt(String),
    /// Any other database failure.
    #[error("vessel database error")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub use shippy_store::OpenError;

/// The contract every vessel store fulfils.
pub trait VesselStore: Send + Sync {
    /// Answers once the database is reachable.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Makes the database ready for use (schema, indexes); safe to repeat and
    /// to run from several instances at once.
    fn prepare(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds a vessel; [`StoreError::AlreadyExists`] if its id is taken.
    fn insert(&self, vessel: &Vessel) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds a vessel unless its id is taken; says whether it added it.
    fn insert_if_absent(
        &self,
        vessel: &Vessel,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The vessel with this id.
    fn get(&self, id: &VesselId)
    -> impl Future<Output = Result<Option<Vessel>, StoreError>> + Send;

    /// Up to `limit` vessels ordered by id, starting after `after`.
    fn list(
        &self,
        after: Option<&VesselId>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Vessel>, StoreError>> + Send;

    /// The smallest available vessel that fits `spec`: least capacity, then
    /// least max_weight, then id.
    fn find_available(
        &self,
        spec: Specification,
    ) -> impl Future<Output = Result<Option<Vessel>, StoreError>> + Send;
}

/// The store `DATABASE_URL` chose.
#[derive(Debug, Clone)]
pub enum Store {
    /// `postgres://` or `postgresql://`.
    Postgres(postgres::PostgresStore),
    /// `mongodb://` or `mongodb+srv://`.
    Mongo(mongo::MongoStore),
}

impl Store {
    /// Opens the store `url` names without waiting for the database: the
    /// first operation connects, so a service can start before its database.
    pub async fn open(url: &SecretUrl, timeout: Duration) -> Result<Self, OpenError> {
        Ok(
            match shippy_store::open(url, timeout, "vessel-service").await? {
                Backend::Postgres(pool) => Self::Postgres(postgres::PostgresStore::new(pool)),
                Backend::Mongo(database) => Self::Mongo(mongo::MongoStore::new(&database)),
            },
        )
    }

    /// Which database this is, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Mongo(_) => "mongodb",
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Postgres($store) => $call.await,
            Store::Mongo($store) => $call.await,
        }
    };
}

impl VesselStore for Store {
    async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, store => store.ping())
    }

    async fn prepare(&self) -> Result<(), StoreError> {
        dispatch!(self, store => store.prepare())
    }

    async fn insert(&self, vessel: &Vessel) -> Result<(), StoreError> {
        dispatch!(self, store => store.insert(vessel))
    }

    async fn insert_if_absent(&self, vessel: &Vessel) -> Result<bool, StoreError> {
        dispatch!(self, store => store.insert_if_absent(vessel))
    }

    async fn get(&self, id: &VesselId) -> Result<Option<Vessel>, StoreError> {
        dispatch!(self, store => store.get(id))
    }

    async fn list(&self, after: Option<&VesselId>, limit: u32) -> Result<Vec<Vessel>, StoreError> {
        dispatch!(self, store => store.list(after, limit))
    }

    async fn find_available(&self, spec: Specification) -> Result<Option<Vessel>, StoreError> {
        dispatch!(self, store => store.find_available(spec))
    }
}
