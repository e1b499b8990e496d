//! Where consignments are kept: one trait, one implementation per database,
//! one contract test suite (`tests/consignment-service/store_contract.rs`) both must pass.

pub mod mongo;
pub mod postgres;

use std::ops::ControlFlow;

use chrono::{DateTime, Utc};
use shippy_store::dispatch;
pub use shippy_store::{OpenError, Storage};

use crate::domain::{Consignment, IdempotencyKey, State};

shippy_store::store_error! {
    /// A store operation that did not succeed.
    #[derive(Debug, thiserror::Error)]
    pub enum StoreError for "consignment" {
        /// A consignment with this id exists already.
        #[error("a consignment with id `{0}` exists already")]
        AlreadyExists(String),
        /// The owner has a consignment with this idempotency key already.
        #[error("the owner has a consignment with this idempotency key already")]
        KeyTaken,
    }

    impl DatabaseError {
        /// [`StoreError::KeyTaken`] from the owner-and-key index, [`StoreError::Corrupt`]
        /// for a row that does not decode, otherwise as any store's.
        fn from_postgres(error: sqlx::Error) -> Self {
            if let sqlx::Error::Database(database) = &error
                && database.is_unique_violation()
                && database.constraint() == Some(postgres::KEY_INDEX)
            {
                return Self::KeyTaken;
            }
            if matches!(
                error,
                sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_)
            ) {
                return Self::Corrupt(error.to_string());
            }
            shippy_store::postgres_error(error)
        }

        /// A write undone by a concurrent one is worth a retry too.
        fn from_mongo(error: mongodb::error::Error) -> Self {
            if shippy_store::mongo_write_conflict(&error) {
                Self::Unavailable(error.into())
            } else {
                shippy_store::mongo_error(error)
            }
        }
    }
}

/// Where a page of an owner's consignments starts: after this one, in
/// newest-first order (the position a page token holds).
pub use shippy_service::pagination::Cursor;

/// The contract every consignment store fulfils (beside [`Storage`]'s
/// `ping` and `prepare`).
pub trait ConsignmentStore: Storage<Error = StoreError> {
    /// Adds a consignment, in its state; [`StoreError::AlreadyExists`] if its
    /// id is taken, [`StoreError::KeyTaken`] if its owner has one with its
    /// idempotency key (one per owner and key, whatever the state).
    fn insert(
        &self,
        consignment: &Consignment,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The consignment with this id, whatever its state.
    fn get(&self, id: &str)
    -> impl Future<Output = Result<Option<Consignment>, StoreError>> + Send;

    /// Moves consignment `id` from state `from` to `to`; says whether it did
    /// (not: it is in another state, or there is no such consignment).
    /// `pending` to `cancelling` (its placing failed: nothing shipped) also
    /// frees its idempotency key, so a retry with that key places it anew.
    fn transition(
        &self,
        id: &str,
        from: State,
        to: State,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// `owner`'s consignment created with idempotency key `key`, whatever
    /// its state (none once its placing failed: the key was freed).
    fn find_by_key(
        &self,
        owner: &str,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<Option<Consignment>, StoreError>> + Send;

    /// The ids of up to `limit` consignments in state `state` created before
    /// `before`, oldest first: what the recovery sweep finishes. Ids only, so
    /// one unreadable consignment never stops the sweep for the others.
    fn unsettled(
        &self,
        state: State,
        before: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Hands `each` up to `limit` of `owner`'s confirmed consignments, newest
    /// first (ties: greater id first), starting after `after` — one query,
    /// read a row at a time, so `each` can stop it ([`ControlFlow::Break`])
    /// once a page is full without the rest ever being held in memory.
    fn visit_by_owner(
        &self,
        owner: &str,
        after: Option<&Cursor>,
        limit: u32,
        each: impl FnMut(Consignment) -> ControlFlow<()> + Send,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Up to `limit` of `owner`'s confirmed consignments, newest first (ties:
    /// greater id first), starting after `after`.
    fn list_by_owner(
        &self,
        owner: &str,
        after: Option<&Cursor>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Consignment>, StoreError>> + Send {
        async move {
            let mut listed = Vec::new();
            self.visit_by_owner(owner, after, limit, |consignment| {
                listed.push(consignment);
                ControlFlow::Continue(())
            })
            .await?;
            Ok(listed)
        }
    }
}

/// The store `DATABASE_URL` chose ([`Store::open`](shippy_store::Store::open)).
/// Each operation runs in its span, `postgres.<name>` or `mongodb.<name>`,
/// made here ([`dispatch!`]); the stores' own files declare none.
pub type Store = shippy_store::Store<postgres::PostgresStore, mongo::MongoStore>;

impl ConsignmentStore for Store {
    async fn insert(&self, consignment: &Consignment) -> Result<(), StoreError> {
        dispatch!(
            self,
            "insert_consignment" { consignment.id = %consignment.id },
            store => store.insert(consignment)
        )
    }

    async fn get(&self, id: &str) -> Result<Option<Consignment>, StoreError> {
        dispatch!(
            self,
            "get_consignment" { consignment.id = %shippy_service::text::excerpt(id) },
            store => store.get(id)
        )
    }

    async fn transition(&self, id: &str, from: State, to: State) -> Result<bool, StoreError> {
        dispatch!(
            self,
            "transition_consignment" {
                consignment.id = %id,
                from = from.as_str(),
                to = to.as_str(),
            },
            store => store.transition(id, from, to)
        )
    }

    async fn find_by_key(
        &self,
        owner: &str,
        key: &IdempotencyKey,
    ) -> Result<Option<Consignment>, StoreError> {
        dispatch!(self, "find_consignment_by_key" {}, store => store.find_by_key(owner, key))
    }

    async fn unsettled(
        &self,
        state: State,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        dispatch!(
            self,
            "unsettled_consignments" { state = state.as_str() },
            store => store.unsettled(state, before, limit)
        )
    }

    async fn visit_by_owner(
        &self,
        owner: &str,
        after: Option<&Cursor>,
        limit: u32,
        each: impl FnMut(Consignment) -> ControlFlow<()> + Send,
    ) -> Result<(), StoreError> {
        dispatch!(
            self,
            "list_consignments" { limit = limit },
            store => store.visit_by_owner(owner, after, limit, each)
        )
    }
}
