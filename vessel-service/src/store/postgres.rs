//! The PostgreSQL vessel store (sqlx), with its schema from `migrations/`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use shippy_store::{DatabaseError, PostgresStorage};
use sqlx::{PgPool, migrate::Migrator};

use super::{
    StoreError, VesselStore, Wanted,
    stored::{StoredReservation, StoredVessel},
};
use crate::domain::{
    AccountQuota, Held, OwnerId, Reservation, ReservationId, Reserved, Specification, Vessel,
    VesselId,
};

/// The columns a [`StoredVessel`] reads (a macro, so queries stay `&'static str`).
macro_rules! vessel_columns {
    () => {
        "id, name, capacity, max_weight, available, owner_id, remaining_capacity, remaining_weight"
    };
}

/// The columns a [`StoredReservation`] reads.
macro_rules! reservation_columns {
    () => {
        "id, vessel_id, capacity, weight, expires_at"
    };
}

/// What follows a `gone` (the reservations a statement deleted, `RETURNING
/// *`) to give their room back: to each vessel, and off each owner's total
/// once the vessel's row is locked (the order `reserve_many` locks them in),
/// never below 0 (a reservation an older version stored without counting
/// it).
macro_rules! give_back {
    () => {
        "per_vessel AS ( \
             SELECT vessel_id, sum(capacity)::int AS capacity, sum(weight)::int AS weight \
             FROM gone GROUP BY vessel_id), \
         back AS ( \
             UPDATE vessels v \
             SET remaining_capacity = v.remaining_capacity + per_vessel.capacity, \
                 remaining_weight = v.remaining_weight + per_vessel.weight \
             FROM per_vessel WHERE v.id = per_vessel.vessel_id RETURNING v.id), \
         per_owner AS ( \
             SELECT owner_id, sum(capacity) AS capacity, sum(weight) AS weight \
             FROM gone GROUP BY owner_id), \
         uncounted AS ( \
             UPDATE account_holdings a \
             SET capacity = greatest(a.capacity - per_owner.capacity, 0), \
                 weight = greatest(a.weight - per_owner.weight, 0) \
             FROM per_owner WHERE a.owner_id = per_owner.owner_id \
               AND EXISTS (SELECT FROM back) RETURNING a.owner_id) "
    };
}

/// The schema, embedded in the binary and applied by [`Storage::prepare`](shippy_store::Storage::prepare).
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Vessels in a PostgreSQL table.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

/// What `reserve_many` (the SQL function, `migrations/…_reserve_many.sql`)
/// answers for one reservation: held (now, or before by a call with its
/// id), no room, or over the owner's cap with what they hold.
#[derive(sqlx::FromRow)]
struct Outcome {
    outcome: String,
    held_capacity: i64,
    held_weight: i64,
    reservation_id: Option<String>,
    reservation_vessel: Option<String>,
    reservation_capacity: Option<i32>,
    reservation_weight: Option<i32>,
    reservation_expires_at: Option<DateTime<Utc>>,
}

impl TryFrom<Outcome> for Reserved {
    type Error = StoreError;

    fn try_from(answer: Outcome) -> Result<Self, Self::Error> {
        let held = Held {
            containers: answer.held_capacity,
            weight: answer.held_weight,
        };
        match answer.outcome.as_str() {
            "no_room" => Ok(Reserved::NoRoom),
            "over_quota" => Ok(Reserved::OverQuota(held)),
            "held" => {
                let row = answer
                    .reservation_id
                    .zip(answer.reservation_vessel)
                    .zip(answer.reservation_capacity.zip(answer.reservation_weight))
                    .map(|((id, vessel_id), (capacity, weight))| StoredReservation {
                        id,
                        vessel_id,
                        capacity,
                        weight,
                        expires_at: answer.reservation_expires_at,
                    })
                    .ok_or_else(|| {
                        StoreError::Corrupt("a held reservation without its room".into())
                    })?;
                Reservation::try_from(row).map(Reserved::Held)
            }
            other => Err(StoreError::Corrupt(format!(
                "reserve_many answered `{}`",
                shippy_service::text::excerpt(other)
            ))),
        }
    }
}

/// Reserves for a batch in one statement: see the function's migration.
const RESERVE_MANY: &str = "SELECT outcome, held_capacity, held_weight, reservation_id, \
     reservation_vessel, reservation_capacity, reservation_weight, reservation_expires_at \
     FROM reserve_many($1, $2, $3, $4, $5, $6, $7)";

/// `reserve_many`'s code for giving up after too many lost races for room.
const TOO_MANY_LOST_RACES: &str = "55P03";

impl PostgresStorage for PostgresStore {
    type Error = StoreError;

    const MIGRATOR: &'static Migrator = &MIGRATOR;

    fn on_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.is_unique_violation())
}

impl VesselStore for PostgresStore {
    async fn insert(&self, vessel: &Vessel) -> Result<(), StoreError> {
        if self.insert_if_absent(vessel).await? {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists(vessel.id.clone()))
        }
    }

    async fn insert_if_absent(&self, vessel: &Vessel) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO vessels (id, name, capacity, max_weight, available, owner_id, \
             remaining_capacity, remaining_weight) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(vessel.id.as_str())
        .bind(vessel.name.as_str())
        .bind(vessel.capacity.get())
        .bind(vessel.max_weight.get())
        .bind(vessel.available)
        .bind(&vessel.owner_id)
        .bind(vessel.remaining.capacity)
        .bind(vessel.remaining.weight)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_postgres)?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn get(&self, id: &VesselId) -> Result<Option<Vessel>, StoreError> {
        self.find_by_id::<StoredVessel, _>(
            concat!("SELECT ", vessel_columns!(), " FROM vessels WHERE id = $1"),
            id.as_str(),
        )
        .await
    }

    async fn list(&self, after: Option<&VesselId>, limit: u32) -> Result<Vec<Vessel>, StoreError> {
        // Byte order (`C`), the order MongoDB compares strings in, so both
        // stores page alike.
        shippy_store::collect_decoded(
            sqlx::query_as::<_, StoredVessel>(concat!(
                "SELECT ",
                vessel_columns!(),
                " FROM vessels \
                 WHERE id COLLATE \"C\" > $1 ORDER BY id COLLATE \"C\" LIMIT $2"
            ))
            .bind(after.map_or("", VesselId::as_str))
            .bind(i64::from(limit))
            .fetch(&self.pool),
        )
        .await
    }

    async fn find_available(&self, spec: Specification) -> Result<Option<Vessel>, StoreError> {
        shippy_store::find_decoded(
            sqlx::query_as::<_, StoredVessel>(concat!(
                "SELECT ",
                vessel_columns!(),
                " FROM vessels \
                 WHERE available AND remaining_capacity >= $1 AND remaining_weight >= $2 \
                 ORDER BY capacity, max_weight, id LIMIT 1"
            ))
            .bind(spec.capacity.get())
            .bind(spec.max_weight.get())
            .fetch_optional(&self.pool),
        )
        .await
    }

    async fn reserve(
        &self,
        id: &ReservationId,
        owner: &OwnerId,
        spec: Specification,
        ttl: Duration,
        quota: AccountQuota,
    ) -> Result<Reserved, StoreError> {
        // One owner's reservations wait for each other here, holding no
        // pooled connection, so a burst from one account cannot take the
        // pool from everyone else; the advisory lock does the same across
        // processes.
        let _turn = super::owner_turn(owner).await;
        let wanted = Wanted {
            id: id.clone(),
            owner: owner.clone(),
            spec,
        };
        match self
            .reserve_together(std::slice::from_ref(&wanted), ttl, quota)
            .await
        {
            Ok(mut reserved) => {
                let reserved = reserved
                    .pop()
                    .ok_or_else(|| StoreError::Corrupt("reserve_many answered nothing".into()))?;
                if let Reserved::Held(reservation) = &reserved {
                    tracing::Span::current().record("vessel.id", reservation.vessel_id.as_str());
                }
                Ok(reserved)
            }
            // A concurrent reserver with the same id stored first: the
            // statement failed whole (so our room is back); answer theirs.
            Err(error) if unique_violation(&error) => Ok(self
                .reservation(id)
                .await?
                .map_or(Reserved::NoRoom, Reserved::Held)),
            Err(error) => Err(reserve_error(error)),
        }
    }

    async fn reserve_many(
        &self,
        wanted: &[Wanted],
        ttl: Duration,
        quota: AccountQuota,
    ) -> Vec<Result<Reserved, StoreError>> {
        match self.reserve_together(wanted, ttl, quota).await {
            Ok(reserved) if reserved.len() == wanted.len() => {
                reserved.into_iter().map(Ok).collect()
            }
            // No connection: each alone would wait for one in turn.
            Err(error) if shippy_store::postgres_unreachable(&error) => wanted
                .iter()
                .map(|_| Err(StoreError::Unavailable(error.to_string().into())))
                .collect(),
            // Rare (a concurrent reserver with one of these ids, the
            // database going away): each is taken alone instead, and
            // answered with its own outcome.
            other => {
                if let Err(error) = other {
                    tracing::debug!(error = %reserve_error(error), "batch of reservations taken one by one");
                }
                super::reserve_each(self, wanted, ttl, quota).await
            }
        }
    }

    async fn confirm(&self, id: &ReservationId) -> Result<Option<Reservation>, StoreError> {
        self.find_by_id::<StoredReservation, _>(
            concat!(
                "UPDATE reservations SET expires_at = NULL \
                 WHERE id = $1 AND (expires_at IS NULL OR expires_at > now()) \
                 RETURNING ",
                reservation_columns!(),
                ""
            ),
            id.as_str(),
        )
        .await
    }

    async fn confirm_many(
        &self,
        ids: &[ReservationId],
    ) -> Vec<Result<Option<Reservation>, StoreError>> {
        let rows: Result<Vec<StoredReservation>, _> = sqlx::query_as(concat!(
            "UPDATE reservations SET expires_at = NULL \
             WHERE id = ANY($1) AND (expires_at IS NULL OR expires_at > now()) \
             RETURNING ",
            reservation_columns!(),
            ""
        ))
        .bind(ids.iter().map(ReservationId::as_str).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await;
        let confirmed: std::collections::HashMap<String, StoredReservation> = match rows {
            Ok(rows) => rows.into_iter().map(|row| (row.id.clone(), row)).collect(),
            Err(error) => {
                let error = StoreError::from_postgres(error);
                tracing::debug!(%error, "batch of confirmations made one by one");
                return super::confirm_each(self, ids).await;
            }
        };
        // An id sent twice is answered twice.
        ids.iter()
            .map(|id| match confirmed.get(id.as_str()) {
                Some(row) => Reservation::try_from(row.clone()).map(Some),
                None => Ok(None),
            })
            .collect()
    }

    async fn release(
        &self,
        id: &ReservationId,
        only_if_held: bool,
    ) -> Result<Option<Reservation>, StoreError> {
        // One statement: the reservation goes and its room comes back
        // together; a concurrent release finds nothing to delete.
        shippy_store::find_decoded(
            sqlx::query_as::<_, StoredReservation>(concat!(
                "WITH gone AS ( \
                     DELETE FROM reservations \
                     WHERE id = $1 AND (NOT $2 OR expires_at IS NOT NULL) RETURNING *), ",
                give_back!(),
                "SELECT ",
                reservation_columns!(),
                " FROM gone"
            ))
            .bind(id.as_str())
            .bind(only_if_held)
            .fetch_optional(&self.pool),
        )
        .await
    }

    async fn expire(&self) -> Result<u64, StoreError> {
        let expired: i64 = sqlx::query_scalar(concat!(
            "WITH gone AS ( \
                 DELETE FROM reservations \
                 WHERE expires_at IS NOT NULL AND expires_at <= now() RETURNING *), ",
            give_back!(),
            "SELECT count(*) FROM gone"
        ))
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::from_postgres)?;
        Ok(u64::try_from(expired).unwrap_or(0))
    }
}

impl PostgresStore {
    /// Takes the room of each of `wanted`, in order, in one statement
    /// ([`RESERVE_MANY`]): all of it or, if the statement fails, none.
    async fn reserve_together(
        &self,
        wanted: &[Wanted],
        ttl: Duration,
        quota: AccountQuota,
    ) -> Result<Vec<Reserved>, sqlx::Error> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let answers: Vec<Outcome> = sqlx::query_as(RESERVE_MANY)
            .bind(
                wanted
                    .iter()
                    .map(|item| item.id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                wanted
                    .iter()
                    .map(|item| item.owner.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                wanted
                    .iter()
                    .map(|item| item.spec.capacity.get())
                    .collect::<Vec<_>>(),
            )
            .bind(
                wanted
                    .iter()
                    .map(|item| item.spec.max_weight.get())
                    .collect::<Vec<_>>(),
            )
            .bind(ttl_ms)
            .bind(quota.containers)
            .bind(quota.weight)
            .fetch_all(&self.pool)
            .await?;
        answers
            .into_iter()
            .map(Reserved::try_from)
            .collect::<Result<_, StoreError>>()
            .map_err(|error| sqlx::Error::Decode(error.into()))
    }

    async fn reservation(&self, id: &ReservationId) -> Result<Option<Reservation>, StoreError> {
        self.find_by_id::<StoredReservation, _>(
            concat!(
                "SELECT ",
                reservation_columns!(),
                " FROM reservations WHERE id = $1"
            ),
            id.as_str(),
        )
        .await
    }

    /// The one row `sql` answers (if any) for the id it takes as `$1`, decoded.
    async fn find_by_id<R, T>(&self, sql: &'static str, id: &str) -> Result<Option<T>, StoreError>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
        T: TryFrom<R, Error = StoreError>,
    {
        shippy_store::find_decoded(
            sqlx::query_as::<_, R>(sql)
                .bind(id)
                .fetch_optional(&self.pool),
        )
        .await
    }
}

/// A failed `reserve_many` as a store error: giving up after too many lost
/// races is worth a retry, as an unreachable database is.
fn reserve_error(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(database)
            if database.code().as_deref() == Some(TOO_MANY_LOST_RACES) =>
        {
            StoreError::Unavailable(error.into())
        }
        sqlx::Error::Decode(_) => StoreError::Corrupt(error.to_string()),
        _ => StoreError::from_postgres(error),
    }
}
