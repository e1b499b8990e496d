//! The PostgreSQL consignment store (sqlx), with its schema from `migrations/`.

use std::{collections::HashSet, ops::ControlFlow, sync::Arc};

use chrono::{DateTime, Utc};
use shippy_store::{DatabaseError, PostgresStorage, batch::Coalescer};
use sqlx::{PgPool, migrate::Migrator, types::Json};

use super::{ConsignmentStore, Cursor, StoreError};
use crate::domain::{
    Consignment, Container, Containers, Description, Idempotency, IdempotencyKey, InvalidInput,
    State, Weight,
};

/// The schema, embedded in the binary and applied by [`Storage::prepare`](shippy_store::Storage::prepare).
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Consignments in a PostgreSQL table; containers as a JSONB array.
///
/// The two writes every creation makes — the insert and the move from
/// `pending` to `confirmed` — are coalesced ([`shippy_store::batch`]):
/// made at the same time, they go as one statement and one commit.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    inserts: Arc<Coalescer<Consignment, Result<(), StoreError>>>,
    confirmations: Arc<Coalescer<String, Result<bool, StoreError>>>,
}

/// The most writes of one kind one statement makes.
const MAX_BATCH: usize = 256;

impl PostgresStorage for PostgresStore {
    type Error = StoreError;

    const MIGRATOR: &'static Migrator = &MIGRATOR;

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn on_pool(pool: PgPool) -> Self {
        let (for_inserts, for_confirmations) = (pool.clone(), pool.clone());
        Self {
            inserts: Arc::new(Coalescer::new(MAX_BATCH, move |batch| {
                insert_batch(for_inserts.clone(), batch)
            })),
            confirmations: Arc::new(Coalescer::new(MAX_BATCH, move |batch| {
                confirm_batch(for_confirmations.clone(), batch)
            })),
            pool,
        }
    }
}

/// Inserts `batch` in one statement; each answered as [`insert_one`] would.
#[tracing::instrument(name = "postgres.insert_consignments", skip_all, fields(batch.size = batch.len()))]
async fn insert_batch(pool: PgPool, batch: Vec<Consignment>) -> Vec<Result<(), StoreError>> {
    if let [consignment] = batch.as_slice() {
        return vec![insert_one(&pool, consignment).await];
    }
    let column = |value: fn(&Consignment) -> Option<&str>| -> Vec<Option<&str>> {
        batch.iter().map(value).collect()
    };
    // Any unique index may turn a row away (the id, the owner's key); those
    // are inserted alone below, which tells which.
    let inserted: Result<Vec<String>, _> = sqlx::query_scalar(
        "INSERT INTO consignments \
         (id, owner_id, description, weight, vessel_id, containers, created_at, state, \
          idempotency_key, request_fingerprint) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], \
                              $6::jsonb[], $7::timestamptz[], $8::text[], $9::text[], $10::text[]) \
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(column(|c| Some(c.id.as_str())))
    .bind(column(|c| Some(c.owner_id.as_str())))
    .bind(column(|c| Some(c.description.as_str())))
    .bind(batch.iter().map(|c| c.weight.get()).collect::<Vec<_>>())
    .bind(column(|c| Some(c.vessel_id.as_str())))
    .bind(
        batch
            .iter()
            .map(|c| Json(c.containers.as_slice()))
            .collect::<Vec<_>>(),
    )
    .bind(batch.iter().map(|c| c.created_at).collect::<Vec<_>>())
    .bind(column(|c| Some(c.state.as_str())))
    .bind(column(|c| c.idempotency.as_ref().map(|i| i.key.as_str())))
    .bind(column(|c| {
        c.idempotency.as_ref().map(|i| i.fingerprint.as_str())
    }))
    .fetch_all(&pool)
    .await;
    let mut inserted: HashSet<String> = match inserted {
        Ok(ids) => ids.into_iter().collect(),
        // No connection: each alone would wait for one in turn.
        Err(error) if shippy_store::postgres_unreachable(&error) => {
            return unreachable_for_each(&error, batch.len());
        }
        Err(error) => {
            tracing::debug!(error = %StoreError::from_postgres(error), "batch of inserts made one by one");
            HashSet::new()
        }
    };
    let mut answers = Vec::with_capacity(batch.len());
    for consignment in &batch {
        // An id sent twice was inserted once: the first is answered so.
        answers.push(if inserted.remove(&consignment.id) {
            Ok(())
        } else {
            insert_one(&pool, consignment).await
        });
    }
    answers
}

/// `UNAVAILABLE` for each of a batch's `items`, for want of a connection.
fn unreachable_for_each<T>(error: &sqlx::Error, items: usize) -> Vec<Result<T, StoreError>> {
    (0..items)
        .map(|_| Err(StoreError::Unavailable(error.to_string().into())))
        .collect()
}

/// Inserts one consignment: see [`ConsignmentStore::insert`].
async fn insert_one(pool: &PgPool, consignment: &Consignment) -> Result<(), StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO consignments \
         (id, owner_id, description, weight, vessel_id, containers, created_at, state, \
          idempotency_key, request_fingerprint) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&consignment.id)
    .bind(&consignment.owner_id)
    .bind(consignment.description.as_str())
    .bind(consignment.weight.get())
    .bind(&consignment.vessel_id)
    .bind(Json(consignment.containers.as_slice()))
    .bind(consignment.created_at)
    .bind(consignment.state.as_str())
    .bind(
        consignment
            .idempotency
            .as_ref()
            .map(|idempotency| idempotency.key.as_str()),
    )
    .bind(
        consignment
            .idempotency
            .as_ref()
            .map(|idempotency| idempotency.fingerprint.as_str()),
    )
    .execute(pool)
    .await
    .map_err(StoreError::from_postgres)?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::AlreadyExists(consignment.id.clone()));
    }
    Ok(())
}

/// Moves each of `batch` from `pending` to `confirmed` in one statement;
/// each answered as [`transition_one`] would.
#[tracing::instrument(name = "postgres.confirm_consignments", skip_all, fields(batch.size = batch.len()))]
async fn confirm_batch(pool: PgPool, batch: Vec<String>) -> Vec<Result<bool, StoreError>> {
    if let [id] = batch.as_slice() {
        return vec![transition_one(&pool, id, State::Pending, State::Confirmed).await];
    }
    let moved: Result<Vec<String>, _> = sqlx::query_scalar(
        "UPDATE consignments SET state = 'confirmed' \
         WHERE id = ANY($1) AND state = 'pending' RETURNING id",
    )
    .bind(&batch)
    .fetch_all(&pool)
    .await;
    match moved {
        Ok(ids) => {
            let mut moved: HashSet<String> = ids.into_iter().collect();
            // An id sent twice moved once: the first is answered so.
            batch.iter().map(|id| Ok(moved.remove(id))).collect()
        }
        Err(error) if shippy_store::postgres_unreachable(&error) => {
            unreachable_for_each(&error, batch.len())
        }
        Err(error) => {
            tracing::debug!(error = %StoreError::from_postgres(error), "batch of confirmations made one by one");
            let mut answers = Vec::with_capacity(batch.len());
            for id in &batch {
                answers.push(transition_one(&pool, id, State::Pending, State::Confirmed).await);
            }
            answers
        }
    }
}

/// Moves one consignment: see [`ConsignmentStore::transition`].
async fn transition_one(
    pool: &PgPool,
    id: &str,
    from: State,
    to: State,
) -> Result<bool, StoreError> {
    // A placing that failed frees its key (see the trait).
    let moved = sqlx::query(
        "UPDATE consignments SET state = $3, idempotency_key = CASE \
             WHEN $2 = 'pending' AND $3 = 'cancelling' THEN NULL ELSE idempotency_key END \
         WHERE id = $1 AND state = $2",
    )
    .bind(id)
    .bind(from.as_str())
    .bind(to.as_str())
    .execute(pool)
    .await
    .map_err(StoreError::from_postgres)?;
    Ok(moved.rows_affected() == 1)
}

/// A row of [`columns!`], read by position (every row listed is read here,
/// and finding each column by name cost more than decoding it).
struct ConsignmentRow {
    id: String,
    owner_id: String,
    description: String,
    weight: i32,
    vessel_id: String,
    containers: Json<Vec<Container>>,
    created_at: DateTime<Utc>,
    state: String,
    idempotency_key: Option<String>,
    request_fingerprint: Option<String>,
}

/// The columns a [`ConsignmentRow`] reads, in its order (a macro, so queries
/// stay `&'static str`).
macro_rules! columns {
    () => {
        "id, owner_id, description, weight, vessel_id, containers, created_at, state, \
         idempotency_key, request_fingerprint"
    };
}

/// [`columns!`] for listing: a listed consignment's idempotency key is not
/// answered, so it is not read.
macro_rules! listed_columns {
    () => {
        "id, owner_id, description, weight, vessel_id, containers, created_at, state, \
         NULL::text, NULL::text"
    };
}

impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for ConsignmentRow {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row as _;
        Ok(Self {
            id: row.try_get(0)?,
            owner_id: row.try_get(1)?,
            description: row.try_get(2)?,
            weight: row.try_get(3)?,
            vessel_id: row.try_get(4)?,
            containers: row.try_get(5)?,
            created_at: row.try_get(6)?,
            state: row.try_get(7)?,
            idempotency_key: row.try_get(8)?,
            request_fingerprint: row.try_get(9)?,
        })
    }
}

impl TryFrom<ConsignmentRow> for Consignment {
    type Error = StoreError;

    fn try_from(row: ConsignmentRow) -> Result<Self, Self::Error> {
        let id = row.id.clone();
        let corrupt = StoreError::corrupt("consignment", &id);
        let state = State::parse(&row.state)
            .ok_or_else(|| corrupt(InvalidInput("unknown state".into())))?;
        let idempotency = match (row.idempotency_key, row.request_fingerprint) {
            (Some(key), Some(fingerprint)) => Some(Idempotency {
                key: IdempotencyKey::parse(&key).map_err(corrupt)?,
                fingerprint,
            }),
            _ => None,
        };
        Ok(Self {
            idempotency,
            id: row.id,
            owner_id: row.owner_id,
            description: Description::parse(row.description).map_err(corrupt)?,
            weight: Weight::parse(row.weight).map_err(corrupt)?,
            containers: Containers::parse(row.containers.0).map_err(corrupt)?,
            vessel_id: row.vessel_id,
            created_at: row.created_at,
            state,
        })
    }
}

/// The unique index that keeps one consignment per owner and key.
pub(super) const KEY_INDEX: &str = "consignments_idempotency_key";

impl ConsignmentStore for PostgresStore {
    async fn insert(&self, consignment: &Consignment) -> Result<(), StoreError> {
        self.inserts
            .call(consignment.clone())
            .await
            .map_err(|unanswered| StoreError::Unavailable(unanswered.into()))?
    }

    async fn visit_by_owner(
        &self,
        owner: &str,
        after: Option<&Cursor>,
        limit: u32,
        each: impl FnMut(Consignment) -> ControlFlow<()> + Send,
    ) -> Result<(), StoreError> {
        let rows = match after {
            None => sqlx::query_as::<_, ConsignmentRow>(concat!(
                "SELECT ",
                listed_columns!(),
                " FROM consignments WHERE owner_id = $1 AND state = 'confirmed' \
                 ORDER BY created_at DESC, id DESC LIMIT $2"
            ))
            .bind(owner)
            .bind(i64::from(limit))
            .fetch(&self.pool),
            Some(after) => sqlx::query_as::<_, ConsignmentRow>(concat!(
                "SELECT ",
                listed_columns!(),
                " FROM consignments WHERE owner_id = $1 AND state = 'confirmed' \
                 AND (created_at, id) < ($2, $3) \
                 ORDER BY created_at DESC, id DESC LIMIT $4"
            ))
            .bind(owner)
            .bind(after.created_at)
            .bind(&after.id)
            .bind(i64::from(limit))
            .fetch(&self.pool),
        };
        // Rows arrive one at a time; a stop leaves the rest unread (sqlx
        // discards them before the connection's next query).
        shippy_store::visit_decoded(rows, each).await
    }

    async fn get(&self, id: &str) -> Result<Option<Consignment>, StoreError> {
        shippy_store::find_decoded(
            sqlx::query_as::<_, ConsignmentRow>(concat!(
                "SELECT ",
                columns!(),
                " FROM consignments WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(&self.pool),
        )
        .await
    }

    async fn transition(&self, id: &str, from: State, to: State) -> Result<bool, StoreError> {
        if (from, to) == (State::Pending, State::Confirmed) {
            self.confirmations
                .call(id.to_owned())
                .await
                .map_err(|unanswered| StoreError::Unavailable(unanswered.into()))?
        } else {
            transition_one(&self.pool, id, from, to).await
        }
    }

    async fn find_by_key(
        &self,
        owner: &str,
        key: &IdempotencyKey,
    ) -> Result<Option<Consignment>, StoreError> {
        shippy_store::find_decoded(
            sqlx::query_as::<_, ConsignmentRow>(concat!(
                "SELECT ",
                columns!(),
                " FROM consignments WHERE owner_id = $1 AND idempotency_key = $2"
            ))
            .bind(owner)
            .bind(key.as_str())
            .fetch_optional(&self.pool),
        )
        .await
    }

    async fn unsettled(
        &self,
        state: State,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT id FROM consignments WHERE state = $1 AND created_at < $2 \
             ORDER BY created_at LIMIT $3",
        )
        .bind(state.as_str())
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::from_postgres)
    }
}
