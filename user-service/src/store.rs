//! Users and the outbox in PostgreSQL (sqlx, compile-time checked queries;
//! the offline query data is in `.sqlx/`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use shippy_store::DatabaseError as _;
use sqlx::{PgPool, types::Json};
use uuid::Uuid;

use crate::domain::{Company, Email, PasswordHash, User, UserId, UserName};

/// The schema, embedded in the binary and applied at start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

shippy_store::store_error! {
    /// A store operation that did not succeed.
    #[derive(Debug, thiserror::Error)]
    pub enum StoreError for "user" {
        /// The email is registered already.
        #[error("email already registered")]
        EmailTaken,
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        Self::from_postgres(error)
    }
}

/// An event to publish, as the outbox keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Unique; the `Nats-Msg-Id`.
    pub id: Uuid,
    /// The NATS subject.
    pub subject: String,
    /// The encoded event.
    pub payload: Vec<u8>,
    /// The W3C trace context of the request that wrote it (may be empty).
    pub trace_context: HashMap<String, String>,
}

/// A page of users and where the next one starts.
#[derive(Debug, Clone)]
pub struct UserPage {
    /// Users in creation order.
    pub users: Vec<User>,
    /// The position after the last user, if there may be more.
    pub next: Option<Cursor>,
}

/// A position in the creation order of users (the one a page token holds).
pub type Cursor = shippy_service::pagination::Cursor<Uuid>;

struct UserRow {
    id: Uuid,
    name: String,
    company: String,
    email: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(row: UserRow) -> Result<Self, Self::Error> {
        let corrupt = |error: crate::domain::InvalidInput| {
            StoreError::Corrupt(format!("user {}: {error}", row.id))
        };
        Ok(User {
            id: UserId(row.id),
            name: UserName::parse(&row.name).map_err(corrupt)?,
            company: Company::parse(&row.company).map_err(corrupt)?,
            email: Email::parse(&row.email).map_err(corrupt)?,
            created_at: row.created_at,
        })
    }
}

/// Users and their outbox in one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct UserStore {
    pool: PgPool,
}

impl UserStore {
    /// A store over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Answers once the database is reachable.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Applies the migrations.
    #[tracing::instrument(name = "postgres.migrate", skip_all, err(Display, level = "debug"))]
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|error| match error {
            sqlx::migrate::MigrateError::Execute(inner) => inner.into(),
            other => StoreError::Database(other.into()),
        })
    }

    /// Stores a new user and the event announcing it, in one transaction:
    /// both or neither. [`StoreError::EmailTaken`] if the email is registered.
    #[tracing::instrument(name = "postgres.insert_user", skip_all, fields(user.id = %user.id), err(Display, level = "debug"))]
    pub async fn insert_user_with_event(
        &self,
        user: &User,
        password_hash: &PasswordHash,
        event: &OutboxEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query!(
            "INSERT INTO users (id, name, company, email, password_hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (email) DO NOTHING",
            user.id.0,
            user.name.as_str(),
            user.company.as_str(),
            user.email.as_str(),
            password_hash.0,
            user.created_at,
        )
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::EmailTaken);
        }
        sqlx::query!(
            "INSERT INTO outbox (id, subject, payload, created_at, trace_context)
             VALUES ($1, $2, $3, $4, $5)",
            event.id,
            event.subject,
            event.payload,
            user.created_at,
            Json(&event.trace_context) as _,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The user with this id.
    #[tracing::instrument(name = "postgres.get_user", skip_all, fields(user.id = %id), err(Display, level = "debug"))]
    pub async fn get(&self, id: UserId) -> Result<Option<User>, StoreError> {
        sqlx::query_as!(
            UserRow,
            "SELECT id, name, company, email, created_at FROM users WHERE id = $1",
            id.0
        )
        .fetch_optional(&self.pool)
        .await?
        .map(User::try_from)
        .transpose()
    }

    /// The user with this email, and their password hash, for logging in.
    #[tracing::instrument(
        name = "postgres.get_credentials",
        skip_all,
        err(Display, level = "debug")
    )]
    pub async fn credentials(
        &self,
        email: &Email,
    ) -> Result<Option<(User, PasswordHash)>, StoreError> {
        let Some(row) = sqlx::query!(
            "SELECT id, name, company, email, created_at, password_hash FROM users WHERE email = $1",
            email.as_str()
        )
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let hash = PasswordHash(row.password_hash);
        let user = User::try_from(UserRow {
            id: row.id,
            name: row.name,
            company: row.company,
            email: row.email,
            created_at: row.created_at,
        })?;
        Ok(Some((user, hash)))
    }

    /// Up to `limit` users after `after`, in creation order.
    #[tracing::instrument(
        name = "postgres.list_users",
        skip_all,
        fields(limit = limit),
        err(Display, level = "debug")
    )]
    pub async fn list(&self, after: Option<Cursor>, limit: u32) -> Result<UserPage, StoreError> {
        // One more than asked tells whether another page follows.
        let fetch = i64::from(limit) + 1;
        let rows = match after {
            None => {
                sqlx::query_as!(
                    UserRow,
                    "SELECT id, name, company, email, created_at FROM users
                     ORDER BY created_at, id LIMIT $1",
                    fetch
                )
                .fetch_all(&self.pool)
                .await?
            }
            Some(cursor) => {
                sqlx::query_as!(
                    UserRow,
                    "SELECT id, name, company, email, created_at FROM users
                     WHERE (created_at, id) > ($1, $2)
                     ORDER BY created_at, id LIMIT $3",
                    cursor.created_at,
                    cursor.id,
                    fetch
                )
                .fetch_all(&self.pool)
                .await?
            }
        };
        let mut users = rows
            .into_iter()
            .map(User::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let more = users.len() > limit as usize;
        users.truncate(limit as usize);
        let next = match users.last() {
            Some(last) if more => Some(Cursor {
                created_at: last.created_at,
                id: last.id.0,
            }),
            _ => None,
        };
        Ok(UserPage { users, next })
    }

    /// Relays up to `limit` pending events, oldest first, through `publish`,
    /// marking each as published once `publish` succeeds. Rows are locked
    /// (`SKIP LOCKED`), so several instances relay without sending an event
    /// twice at once. Stops at the first failure, records it on the event,
    /// and returns it; returns how many were published otherwise.
    #[tracing::instrument(
        name = "postgres.relay_outbox",
        skip_all,
        err(Display, level = "debug")
    )]
    pub async fn relay_pending<F, Fut, E>(
        &self,
        limit: i64,
        mut publish: F,
    ) -> Result<usize, RelayError<E>>
    where
        F: FnMut(OutboxEvent) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::error::Error,
    {
        let mut tx = self.pool.begin().await.map_err(RelayError::store)?;
        let pending: Vec<OutboxEvent> = sqlx::query!(
            r#"SELECT id, subject, payload, trace_context AS "trace_context: Json<HashMap<String, String>>"
               FROM outbox
               WHERE published_at IS NULL
               ORDER BY created_at, id
               LIMIT $1
               FOR UPDATE SKIP LOCKED"#,
            limit
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(RelayError::store)?
        .into_iter()
        .map(|row| OutboxEvent {
            id: row.id,
            subject: row.subject,
            payload: row.payload,
            trace_context: row.trace_context.0,
        })
        .collect();
        let mut published = 0;
        let mut failure = None;
        for event in pending {
            let id = event.id;
            match publish(event).await {
                Ok(()) => {
                    sqlx::query!(
                        "UPDATE outbox SET published_at = now(), attempts = attempts + 1, last_error = NULL
                         WHERE id = $1",
                        id
                    )
                    .execute(&mut *tx)
                    .await
                    .map_err(RelayError::store)?;
                    published += 1;
                }
                Err(error) => {
                    sqlx::query!(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
                        id,
                        error.to_string()
                    )
                    .execute(&mut *tx)
                    .await
                    .map_err(RelayError::store)?;
                    failure = Some(error);
                    break;
                }
            }
        }
        tx.commit().await.map_err(RelayError::store)?;
        match failure {
            Some(error) => Err(RelayError::Publish(error)),
            None => Ok(published),
        }
    }

    /// How many events wait to be published.
    pub async fn pending_events(&self) -> Result<i64, StoreError> {
        let count = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM outbox WHERE published_at IS NULL"#
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(count)
    }
}

/// Relaying the outbox failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError<E: std::error::Error> {
    /// The outbox could not be read or updated.
    #[error(transparent)]
    Store(StoreError),
    /// An event could not be published.
    #[error("publishing an event failed")]
    Publish(#[source] E),
}

impl<E: std::error::Error> RelayError<E> {
    fn store(error: sqlx::Error) -> Self {
        Self::Store(error.into())
    }
}
