//! [`Store`]: a service's store kept in PostgreSQL or in MongoDB, whichever
//! `DATABASE_URL` names, behind the service's repository trait.
//!
//! A service writes what is its own — the repository trait, its error enum,
//! one implementation per database — and takes the rest from here: opening
//! the store the URL names ([`Store::open`]), pinging and preparing either
//! database ([`Storage`], for PostgreSQL entirely by [`PostgresStorage`]),
//! and turning a driver's error into the service's ([`DatabaseError`]).

use std::{fmt::Display, time::Duration};

use mongodb::{
    Database, IndexModel,
    bson::{Document, doc},
    options::IndexOptions,
};
use shippy_service::settings::SecretUrl;
use sqlx::{PgPool, migrate::Migrator};

use crate::{Backend, OpenError, mongo_unavailable, open, postgres_unavailable};

/// The cause a [`DatabaseError`] carries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A service's store error, as far as a database failure makes one: either
/// the database cannot be reached now (the caller may retry: `UNAVAILABLE`)
/// or it failed otherwise. A service with errors of its own to tell apart
/// (a unique index, an undecodable row) overrides
/// [`from_postgres`](Self::from_postgres) or [`from_mongo`](Self::from_mongo)
/// and falls back on [`postgres_error`] / [`mongo_error`].
pub trait DatabaseError: Sized {
    /// The database cannot be reached now.
    fn unavailable(source: BoxError) -> Self;

    /// Any other database failure.
    fn failed(source: BoxError) -> Self;

    /// A PostgreSQL error: see [`postgres_error`].
    fn from_postgres(error: sqlx::Error) -> Self {
        postgres_error(error)
    }

    /// A MongoDB error: see [`mongo_error`].
    fn from_mongo(error: mongodb::error::Error) -> Self {
        mongo_error(error)
    }
}

/// `error` as [`DatabaseError::unavailable`] if [`postgres_unavailable`]
/// says so, otherwise as [`DatabaseError::failed`].
pub fn postgres_error<E: DatabaseError>(error: sqlx::Error) -> E {
    if postgres_unavailable(&error) {
        E::unavailable(error.into())
    } else {
        E::failed(error.into())
    }
}

/// `error` as [`DatabaseError::unavailable`] if [`mongo_unavailable`] says
/// so, otherwise as [`DatabaseError::failed`].
pub fn mongo_error<E: DatabaseError>(error: mongodb::error::Error) -> E {
    if mongo_unavailable(&error) {
        E::unavailable(error.into())
    } else {
        E::failed(error.into())
    }
}

/// What every store does before it holds anything: answer once its database
/// is reachable, and make the database ready. A service's repository trait
/// builds on it (`trait VesselStore: Storage<Error = StoreError>`).
pub trait Storage: Send + Sync {
    /// The service's store error.
    type Error;

    /// Answers once the database is reachable.
    fn ping(&self) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Makes the database ready for use (schema, indexes); safe to repeat
    /// and to run from several instances at once.
    fn prepare(&self) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// A store kept in PostgreSQL, its schema a set of sqlx migrations: its
/// [`Storage`] (a `SELECT 1`, the migrations) comes with it.
pub trait PostgresStorage: Send + Sync {
    /// The service's store error.
    type Error: DatabaseError + Display + Send;

    /// The schema [`Storage::prepare`] applies.
    const MIGRATOR: &'static Migrator;

    /// The store on `pool` (which may not have connected yet).
    fn on_pool(pool: PgPool) -> Self;

    /// The pool it queries.
    fn pool(&self) -> &PgPool;
}

impl<T: PostgresStorage> Storage for T {
    type Error = T::Error;

    async fn ping(&self) -> Result<(), T::Error> {
        ping_postgres(self.pool()).await
    }

    async fn prepare(&self) -> Result<(), T::Error> {
        migrate(self.pool(), T::MIGRATOR).await
    }
}

async fn ping_postgres<E: DatabaseError + Display>(pool: &PgPool) -> Result<(), E> {
    sqlx::query("SELECT 1")
        .execute(pool)
        .await
        .map_err(E::from_postgres)?;
    Ok(())
}

async fn migrate<E: DatabaseError + Display>(pool: &PgPool, migrator: &Migrator) -> Result<(), E> {
    migrator.run(pool).await.map_err(|error| match error {
        sqlx::migrate::MigrateError::Execute(inner) => E::from_postgres(inner),
        other => E::failed(other.into()),
    })
}

/// A store kept in MongoDB. Its [`Storage::ping`] is [`ping_mongo`]; its
/// [`Storage::prepare`] (indexes, filling in what older documents lack) is
/// its own.
pub trait MongoStorage: Storage {
    /// The store in `database` (whose client may not have connected yet).
    fn in_database(database: &Database) -> Self;
}

/// Answers once the MongoDB server `database` is on is reachable.
pub async fn ping_mongo<E: DatabaseError + Display>(database: &Database) -> Result<(), E> {
    database
        .run_command(doc! { "ping": 1 })
        .await
        .map_err(E::from_mongo)?;
    Ok(())
}

/// A MongoDB index on `keys`, named `name` (what a test looks for in a
/// query plan); [`Storage::prepare`] creates it.
pub fn mongo_index(keys: Document, name: &str) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(IndexOptions::builder().name(name.to_owned()).build())
        .build()
}

/// A unique MongoDB index on `keys`, named `name`, over only the documents
/// `partial` matches (those holding the key: the others would all share the
/// "missing" one).
pub fn unique_mongo_index(keys: Document, name: &str, partial: Document) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(
            IndexOptions::builder()
                .name(name.to_owned())
                .unique(true)
                .partial_filter_expression(partial)
                .build(),
        )
        .build()
}

/// A service's store: its PostgreSQL implementation `P` or its MongoDB one
/// `M`, whichever the scheme of `DATABASE_URL` chose. The service names it
/// (`pub type Store = shippy_store::Store<PostgresStore, MongoStore>`) and
/// implements its repository trait on it with [`dispatch!`](crate::dispatch).
#[derive(Debug, Clone)]
pub enum Store<P, M> {
    /// `postgres://` or `postgresql://`.
    Postgres(P),
    /// `mongodb://` or `mongodb+srv://`.
    Mongo(M),
}

impl<P, M> Store<P, M> {
    /// Which database this is, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Mongo(_) => "mongodb",
        }
    }
}

impl<P: PostgresStorage, M: MongoStorage> Store<P, M> {
    /// Opens the store `url` names without waiting for the database: the
    /// first operation connects (waiting at most `timeout`), so a service
    /// can start before its database. Its connections are named `app_name`,
    /// the service's name (PostgreSQL's `application_name`, seen in
    /// `pg_stat_activity`; MongoDB's `appName`, seen in the server's log and
    /// `currentOp`), unless the URL names them otherwise.
    pub async fn open(
        url: &SecretUrl,
        timeout: Duration,
        app_name: &str,
    ) -> Result<Self, OpenError> {
        Ok(match open(url, timeout, app_name).await? {
            Backend::Postgres(pool) => Self::Postgres(P::on_pool(pool)),
            Backend::Mongo(database) => Self::Mongo(M::in_database(&database)),
        })
    }
}

impl<P, M> Store<P, M>
where
    P: PostgresStorage,
    M: MongoStorage<Error = P::Error>,
{
    /// [`Storage::ping`], callable without the trait in scope, in the span
    /// `postgres.ping` or `mongodb.ping`.
    pub async fn ping(&self) -> Result<(), P::Error> {
        crate::dispatch!(self, "ping" {}, store => Storage::ping(store))
    }

    /// [`Storage::prepare`], callable without the trait in scope, in the
    /// span `postgres.prepare` or `mongodb.prepare`.
    pub async fn prepare(&self) -> Result<(), P::Error> {
        crate::dispatch!(self, "prepare" {}, store => Storage::prepare(store))
    }
}

impl<P, M> Storage for Store<P, M>
where
    P: PostgresStorage,
    M: MongoStorage<Error = P::Error>,
{
    type Error = P::Error;

    async fn ping(&self) -> Result<(), P::Error> {
        Store::ping(self).await
    }

    async fn prepare(&self) -> Result<(), P::Error> {
        Store::prepare(self).await
    }
}
