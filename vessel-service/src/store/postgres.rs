//! The PostgreSQL vessel store (sqlx), with its schema from `migrations/`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{StoreError, VesselStore, Wanted};
use crate::domain::{
    AccountQuota, Capacity, Held, OwnerId, Reservation, ReservationId, Reserved, Room,
    Specification, Vessel, VesselId, VesselName, Weight,
};

/// The columns a [`VesselRow`] reads (a macro, so queries stay `&'static str`).
macro_rules! vessel_columns {
    () => {
        "id, name, capacity, max_weight, available, owner_id, remaining_capacity, remaining_weight"
    };
}

/// The columns a [`ReservationRow`] reads.
macro_rules! reservation_columns {
    () => {
        "id, vessel_id, capacity, weight, expires_at"
    };
}

/// How many times [`PostgresStore::reserve`] picks again after another
/// reserver took the room it picked first. Each lost race means another
/// reservation went through, so this bounds only pathological churn.
const PICK_ATTEMPTS: u32 = 100;

/// The schema, embedded in the binary and applied by [`VesselStore::prepare`].
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Vessels in a PostgreSQL table.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

#[derive(sqlx::FromRow)]
struct VesselRow {
    id: String,
    name: String,
    capacity: i32,
    max_weight: i32,
    available: bool,
    owner_id: String,
    remaining_capacity: i32,
    remaining_weight: i32,
}

impl TryFrom<VesselRow> for Vessel {
    type Error = StoreError;

    fn try_from(row: VesselRow) -> Result<Self, Self::Error> {
        let corrupt = |error: crate::domain::InvalidInput| {
            StoreError::Corrupt(format!("vessel `{}`: {error}", row.id))
        };
        let capacity = Capacity::parse(row.capacity, "capacity").map_err(corrupt)?;
        let max_weight = Weight::parse(row.max_weight, "max_weight").map_err(corrupt)?;
        Ok(Vessel {
            id: VesselId::parse(&row.id).map_err(corrupt)?,
            name: VesselName::parse(&row.name).map_err(corrupt)?,
            remaining: Room::parse(
                row.remaining_capacity,
                row.remaining_weight,
                (capacity, max_weight),
            )
            .map_err(corrupt)?,
            capacity,
            max_weight,
            available: row.available,
            owner_id: row.owner_id,
        })
    }
}

#[derive(Clone, sqlx::FromRow)]
struct ReservationRow {
    id: String,
    vessel_id: String,
    capacity: i32,
    weight: i32,
    expires_at: Option<DateTime<Utc>>,
}

impl TryFrom<ReservationRow> for Reservation {
    type Error = StoreError;

    fn try_from(row: ReservationRow) -> Result<Self, Self::Error> {
        let corrupt = |error: crate::domain::InvalidInput| {
            StoreError::Corrupt(format!("reservation `{}`: {error}", row.id))
        };
        Ok(Reservation {
            id: ReservationId::parse(&row.id).map_err(corrupt)?,
            vessel_id: VesselId::parse(&row.vessel_id).map_err(corrupt)?,
            taken: Specification {
                capacity: Capacity::parse(row.capacity, "capacity").map_err(corrupt)?,
                max_weight: Weight::parse(row.weight, "weight").map_err(corrupt)?,
            },
            expires_at: row.expires_at,
        })
    }
}

/// What one attempt to reserve found: the vessel it picked (none: no vessel
/// had the room, or a reservation with this id exists) and, if it took the
/// room there, the reservation it stored (none: another reserver took the
/// room first).
#[derive(sqlx::FromRow)]
struct Pick {
    picked: Option<String>,
    held_capacity: i64,
    held_weight: i64,
    id: Option<String>,
    vessel_id: Option<String>,
    capacity: Option<i32>,
    weight: Option<i32>,
    expires_at: Option<DateTime<Utc>>,
}

impl Pick {
    /// The reservation stored, if one was.
    fn stored(self) -> Option<ReservationRow> {
        Some(ReservationRow {
            id: self.id?,
            vessel_id: self.vessel_id?,
            capacity: self.capacity?,
            weight: self.weight?,
            expires_at: self.expires_at,
        })
    }
}

/// Picks the smallest vessel with the room, takes the room there and stores
/// the reservation that holds it, in one statement: both or neither, and the
/// vessel's row is locked only from this statement to the commit right after
/// it (no other round trip in between), which is what lets reservations on
/// one busy vessel go through one after another quickly. The `UPDATE` checks
/// the room again on the row it locks, so two reservers never both take the
/// last room: the later one stores nothing and picks again. No room is taken
/// for an id that is reserved already, nor past the owner's cap: what the
/// owner holds (`held`) is summed in the same statement, which runs under the
/// owner's lock (see [`PostgresStore::reserve`]), so it sees every earlier
/// reservation of theirs.
const RESERVE: &str = concat!(
    "WITH held AS ( \
         SELECT coalesce(sum(capacity), 0)::bigint AS capacity, \
                coalesce(sum(weight), 0)::bigint AS weight \
         FROM account_holdings WHERE owner_id = $5), \
     pick AS ( \
         SELECT id FROM vessels \
         WHERE available AND remaining_capacity >= $2 AND remaining_weight >= $3 \
           AND NOT EXISTS (SELECT 1 FROM reservations WHERE id = $1) \
           AND (SELECT capacity FROM held) + $2 <= $6 \
           AND (SELECT weight FROM held) + $3 <= $7 \
         ORDER BY capacity, max_weight, id LIMIT 1), \
     taken AS ( \
         UPDATE vessels v \
         SET remaining_capacity = v.remaining_capacity - $2, \
             remaining_weight = v.remaining_weight - $3 \
         FROM pick \
         WHERE v.id = pick.id AND v.available \
           AND v.remaining_capacity >= $2 AND v.remaining_weight >= $3 \
         RETURNING v.id), \
     stored AS ( \
         INSERT INTO reservations (id, vessel_id, capacity, weight, expires_at, owner_id) \
         SELECT $1, taken.id, $2, $3, now() + $4 * interval '1 millisecond', $5 FROM taken \
         RETURNING ",
    reservation_columns!(),
    "), \
     counted AS ( \
         INSERT INTO account_holdings AS a (owner_id, capacity, weight) \
         SELECT $5, $2, $3 FROM stored \
         ON CONFLICT (owner_id) DO UPDATE \
         SET capacity = a.capacity + EXCLUDED.capacity, weight = a.weight + EXCLUDED.weight) \
     SELECT (SELECT id FROM pick) AS picked, \
            held.capacity AS held_capacity, held.weight AS held_weight, stored.* \
     FROM held LEFT JOIN stored ON true"
);

/// Serialises the owners' reservations for the rest of the transaction, so
/// what an owner holds cannot change under a reservation of theirs (releases
/// and expiry only lower it: a figure that missed one is on the safe side).
/// Owners whose keys collide merely wait for each other. The locks are taken
/// in the order of their keys, whatever order the owners came in.
const LOCK_OWNERS: &str = "SELECT count(pg_advisory_xact_lock(key)) FROM ( \
         SELECT DISTINCT hashtextextended(owner, 0) AS key \
         FROM unnest($1::text[]) AS owner ORDER BY key) AS keys";

impl PostgresStore {
    /// A store on `pool` (which may not have connected yet).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

fn unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.is_unique_violation())
}

fn store_error(error: sqlx::Error) -> StoreError {
    if shippy_store::postgres_unavailable(&error) {
        StoreError::Unavailable(error.into())
    } else {
        StoreError::Database(error.into())
    }
}

impl VesselStore for PostgresStore {
    #[tracing::instrument(name = "postgres.ping", skip_all, err(Display, level = "debug"))]
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    #[tracing::instrument(name = "postgres.prepare", skip_all, err(Display, level = "debug"))]
    async fn prepare(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|error| match error {
            sqlx::migrate::MigrateError::Execute(inner) => store_error(inner),
            other => StoreError::Database(other.into()),
        })
    }

    #[tracing::instrument(name = "postgres.insert_vessel", skip_all, fields(vessel.id = %vessel.id), err(Display, level = "debug"))]
    async fn insert(&self, vessel: &Vessel) -> Result<(), StoreError> {
        if self.insert_if_absent(vessel).await? {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists(vessel.id.clone()))
        }
    }

    #[tracing::instrument(name = "postgres.insert_vessel_if_absent", skip_all, fields(vessel.id = %vessel.id), err(Display, level = "debug"))]
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
        .map_err(store_error)?;
        Ok(inserted.rows_affected() == 1)
    }

    #[tracing::instrument(name = "postgres.get_vessel", skip_all, fields(vessel.id = %id), err(Display, level = "debug"))]
    async fn get(&self, id: &VesselId) -> Result<Option<Vessel>, StoreError> {
        let row: Option<VesselRow> = sqlx::query_as(concat!(
            "SELECT ",
            vessel_columns!(),
            " FROM vessels WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        row.map(Vessel::try_from).transpose()
    }

    #[tracing::instrument(
        name = "postgres.list_vessels",
        skip_all,
        fields(limit),
        err(Display, level = "debug")
    )]
    async fn list(&self, after: Option<&VesselId>, limit: u32) -> Result<Vec<Vessel>, StoreError> {
        // Byte order (`C`), the order MongoDB compares strings in, so both
        // stores page alike.
        let rows: Vec<VesselRow> = sqlx::query_as(concat!(
            "SELECT ",
            vessel_columns!(),
            " FROM vessels \
             WHERE id COLLATE \"C\" > $1 ORDER BY id COLLATE \"C\" LIMIT $2"
        ))
        .bind(after.map_or("", VesselId::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.into_iter().map(Vessel::try_from).collect()
    }

    #[tracing::instrument(
        name = "postgres.find_available_vessel",
        skip_all,
        fields(spec.capacity = spec.capacity.get(), spec.max_weight = spec.max_weight.get()),
        err(Display, level = "debug")
    )]
    async fn find_available(&self, spec: Specification) -> Result<Option<Vessel>, StoreError> {
        let row: Option<VesselRow> = sqlx::query_as(concat!(
            "SELECT ",
            vessel_columns!(),
            " FROM vessels \
             WHERE available AND remaining_capacity >= $1 AND remaining_weight >= $2 \
             ORDER BY capacity, max_weight, id LIMIT 1"
        ))
        .bind(spec.capacity.get())
        .bind(spec.max_weight.get())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        row.map(Vessel::try_from).transpose()
    }

    #[tracing::instrument(
        name = "postgres.reserve",
        skip_all,
        fields(reservation.id = %id, vessel.id),
        err(Display, level = "debug")
    )]
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
        // pool from everyone else; the advisory lock below does the same
        // across processes.
        let _turn = super::owner_turn(owner).await;
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        lock_owners(&mut transaction, std::slice::from_ref(owner)).await?;
        let wanted = Wanted {
            id: id.clone(),
            owner: owner.clone(),
            spec,
        };
        match take_room(&mut transaction, &wanted, ttl, quota).await {
            Ok(reserved) => {
                transaction.commit().await.map_err(store_error)?;
                if let Reserved::Held(reservation) = &reserved {
                    tracing::Span::current().record("vessel.id", reservation.vessel_id.as_str());
                }
                Ok(reserved)
            }
            // A concurrent reserver with the same id stored first: the
            // statement failed whole (the transaction with it, so our room
            // is back); answer theirs.
            Err(Taking::SameIdFirst) => {
                drop(transaction);
                Ok(self
                    .reservation(id)
                    .await?
                    .map_or(Reserved::NoRoom, Reserved::Held))
            }
            Err(Taking::Failed(error)) => Err(error),
        }
    }

    #[tracing::instrument(
        name = "postgres.reserve_many",
        skip_all,
        fields(batch.size = wanted.len())
    )]
    async fn reserve_many(
        &self,
        wanted: &[Wanted],
        ttl: Duration,
        quota: AccountQuota,
    ) -> Vec<Result<Reserved, StoreError>> {
        match self.reserve_together(wanted, ttl, quota).await {
            Ok(reserved) => reserved.into_iter().map(Ok).collect(),
            // Rare (a concurrent reserver with one of these ids, a deadlock
            // with another instance's batch, the database going away): each
            // is taken alone instead, and answered with its own outcome.
            Err(error) => {
                tracing::debug!(%error, "batch of reservations taken one by one");
                let mut answers = Vec::with_capacity(wanted.len());
                for item in wanted {
                    answers.push(
                        self.reserve(&item.id, &item.owner, item.spec, ttl, quota)
                            .await,
                    );
                }
                answers
            }
        }
    }

    #[tracing::instrument(name = "postgres.confirm", skip_all, fields(reservation.id = %id), err(Display, level = "debug"))]
    async fn confirm(&self, id: &ReservationId) -> Result<Option<Reservation>, StoreError> {
        let row: Option<ReservationRow> = sqlx::query_as(concat!(
            "UPDATE reservations SET expires_at = NULL \
             WHERE id = $1 AND (expires_at IS NULL OR expires_at > now()) \
             RETURNING ",
            reservation_columns!(),
            ""
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        row.map(Reservation::try_from).transpose()
    }

    #[tracing::instrument(name = "postgres.confirm_many", skip_all, fields(batch.size = ids.len()))]
    async fn confirm_many(
        &self,
        ids: &[ReservationId],
    ) -> Vec<Result<Option<Reservation>, StoreError>> {
        let rows: Result<Vec<ReservationRow>, _> = sqlx::query_as(concat!(
            "UPDATE reservations SET expires_at = NULL \
             WHERE id = ANY($1) AND (expires_at IS NULL OR expires_at > now()) \
             RETURNING ",
            reservation_columns!(),
            ""
        ))
        .bind(ids.iter().map(ReservationId::as_str).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await;
        let confirmed: std::collections::HashMap<String, ReservationRow> = match rows {
            Ok(rows) => rows.into_iter().map(|row| (row.id.clone(), row)).collect(),
            Err(error) => {
                let error = store_error(error);
                tracing::debug!(%error, "batch of confirmations made one by one");
                let mut answers = Vec::with_capacity(ids.len());
                for id in ids {
                    answers.push(self.confirm(id).await);
                }
                return answers;
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

    #[tracing::instrument(name = "postgres.release", skip_all, fields(reservation.id = %id), err(Display, level = "debug"))]
    async fn release(
        &self,
        id: &ReservationId,
        only_if_held: bool,
    ) -> Result<Option<Reservation>, StoreError> {
        // One statement: the reservation goes and its room comes back
        // together; a concurrent release finds nothing to delete.
        let row: Option<ReservationRow> = sqlx::query_as(concat!(
            "WITH gone AS ( \
                 DELETE FROM reservations \
                 WHERE id = $1 AND (NOT $2 OR expires_at IS NOT NULL) RETURNING *), \
             back AS ( \
                 UPDATE vessels v \
                 SET remaining_capacity = v.remaining_capacity + gone.capacity, \
                     remaining_weight = v.remaining_weight + gone.weight \
                 FROM gone WHERE v.id = gone.vessel_id RETURNING v.id), \
             uncounted AS ( \
                 UPDATE account_holdings a \
                 SET capacity = a.capacity - gone.capacity, weight = a.weight - gone.weight \
                 FROM gone WHERE a.owner_id = gone.owner_id RETURNING a.owner_id) \
             SELECT ",
            reservation_columns!(),
            " FROM gone"
        ))
        .bind(id.as_str())
        .bind(only_if_held)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        row.map(Reservation::try_from).transpose()
    }

    #[tracing::instrument(name = "postgres.expire", skip_all, err(Display, level = "debug"))]
    async fn expire(&self) -> Result<u64, StoreError> {
        let expired: i64 = sqlx::query_scalar(
            "WITH gone AS ( \
                 DELETE FROM reservations \
                 WHERE expires_at IS NOT NULL AND expires_at <= now() \
                 RETURNING vessel_id, owner_id, capacity, weight), \
             per_vessel AS ( \
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
                 SET capacity = a.capacity - per_owner.capacity, \
                     weight = a.weight - per_owner.weight \
                 FROM per_owner WHERE a.owner_id = per_owner.owner_id RETURNING a.owner_id) \
             SELECT count(*) FROM gone",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(u64::try_from(expired).unwrap_or(0))
    }
}

impl PostgresStore {
    /// Takes the room of each of `wanted`, in order, in one transaction: the
    /// owners locked once, one commit for all. Any failure undoes them all.
    async fn reserve_together(
        &self,
        wanted: &[Wanted],
        ttl: Duration,
        quota: AccountQuota,
    ) -> Result<Vec<Reserved>, StoreError> {
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        let owners: Vec<OwnerId> = wanted.iter().map(|item| item.owner.clone()).collect();
        lock_owners(&mut transaction, &owners).await?;
        let mut answers = Vec::with_capacity(wanted.len());
        for item in wanted {
            match take_room(&mut transaction, item, ttl, quota).await {
                Ok(reserved) => answers.push(reserved),
                Err(Taking::SameIdFirst) => {
                    return Err(StoreError::Database(
                        "a concurrent reserver stored one of these ids first".into(),
                    ));
                }
                Err(Taking::Failed(error)) => return Err(error),
            }
        }
        transaction.commit().await.map_err(store_error)?;
        Ok(answers)
    }

    async fn reservation(&self, id: &ReservationId) -> Result<Option<Reservation>, StoreError> {
        let row: Option<ReservationRow> = sqlx::query_as(concat!(
            "SELECT ",
            reservation_columns!(),
            " FROM reservations WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        row.map(Reservation::try_from).transpose()
    }
}

/// Why taking room inside a transaction stopped.
enum Taking {
    /// A concurrent reserver stored a reservation with this id first; the
    /// transaction is spoiled.
    SameIdFirst,
    /// Anything else.
    Failed(StoreError),
}

/// Takes the owners' locks (see [`LOCK_OWNERS`]), each once, in the order of
/// their keys: two transactions that lock owners in common take them in the
/// same order, so they never wait for each other in a cycle.
async fn lock_owners(
    transaction: &mut sqlx::PgConnection,
    owners: &[OwnerId],
) -> Result<(), StoreError> {
    let keys: Vec<String> = owners
        .iter()
        .map(|owner| format!("shippy.vessel.account:{}", owner.as_str()))
        .collect();
    sqlx::query(LOCK_OWNERS)
        .bind(keys)
        .execute(transaction)
        .await
        .map_err(store_error)?;
    Ok(())
}

/// Takes `wanted`'s room in the transaction `connection` is in, with its
/// owner's lock held: see [`RESERVE`].
async fn take_room(
    connection: &mut sqlx::PgConnection,
    wanted: &Wanted,
    ttl: Duration,
    quota: AccountQuota,
) -> Result<Reserved, Taking> {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let Wanted { id, owner, spec } = wanted;
    for _ in 0..PICK_ATTEMPTS {
        let pick: Pick = match sqlx::query_as(RESERVE)
            .bind(id.as_str())
            .bind(spec.capacity.get())
            .bind(spec.max_weight.get())
            .bind(ttl_ms)
            .bind(owner.as_str())
            .bind(quota.containers)
            .bind(quota.weight)
            .fetch_one(&mut *connection)
            .await
        {
            Ok(pick) => pick,
            Err(error) if unique_violation(&error) => return Err(Taking::SameIdFirst),
            Err(error) => return Err(Taking::Failed(store_error(error))),
        };
        if pick.picked.is_none() {
            // This id holds some already (a retry): that reservation is the
            // answer, whatever the cap says now.
            let existing: Option<ReservationRow> = sqlx::query_as(concat!(
                "SELECT ",
                reservation_columns!(),
                " FROM reservations WHERE id = $1"
            ))
            .bind(id.as_str())
            .fetch_optional(&mut *connection)
            .await
            .map_err(|error| Taking::Failed(store_error(error)))?;
            if let Some(existing) = existing {
                return Reservation::try_from(existing)
                    .map(Reserved::Held)
                    .map_err(Taking::Failed);
            }
            let held = Held {
                containers: pick.held_capacity,
                weight: pick.held_weight,
            };
            return Ok(if quota.allows(held, *spec) {
                Reserved::NoRoom
            } else {
                Reserved::OverQuota(held)
            });
        }
        if let Some(row) = pick.stored() {
            return Reservation::try_from(row)
                .map(Reserved::Held)
                .map_err(Taking::Failed);
        }
        // Another reserver took that room first: pick again.
    }
    Err(Taking::Failed(StoreError::Unavailable(
        format!("gave up after {PICK_ATTEMPTS} lost races for room").into(),
    )))
}
