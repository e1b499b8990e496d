//! The PostgreSQL vessel store (sqlx), with its schema from `migrations/`.

use sqlx::PgPool;

use super::{StoreError, VesselStore};
use crate::domain::{Capacity, Specification, Vessel, VesselId, VesselName, Weight};

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
}

impl TryFrom<VesselRow> for Vessel {
    type Error = StoreError;

    fn try_from(row: VesselRow) -> Result<Self, Self::Error> {
        let corrupt = |error: crate::domain::InvalidInput| {
            StoreError::Corrupt(format!("vessel `{}`: {error}", row.id))
        };
        Ok(Vessel {
            id: VesselId::parse(&row.id).map_err(corrupt)?,
            name: VesselName::parse(&row.name).map_err(corrupt)?,
            capacity: Capacity::parse(row.capacity, "capacity").map_err(corrupt)?,
            max_weight: Weight::parse(row.max_weight, "max_weight").map_err(corrupt)?,
            available: row.available,
            owner_id: row.owner_id,
        })
    }
}

impl PostgresStore {
    /// A store on `pool` (which may not have connected yet).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
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
            "INSERT INTO vessels (id, name, capacity, max_weight, available, owner_id) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(vessel.id.as_str())
        .bind(vessel.name.as_str())
        .bind(vessel.capacity.get())
        .bind(vessel.max_weight.get())
        .bind(vessel.available)
        .bind(&vessel.owner_id)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(inserted.rows_affected() == 1)
    }

    #[tracing::instrument(name = "postgres.get_vessel", skip_all, fields(vessel.id = %id), err(Display, level = "debug"))]
    async fn get(&self, id: &VesselId) -> Result<Option<Vessel>, StoreError> {
        let row: Option<VesselRow> = sqlx::query_as(
            "SELECT id, name, capacity, max_weight, available, owner_id FROM vessels WHERE id = $1",
        )
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
        let rows: Vec<VesselRow> = sqlx::query_as(
            "SELECT id, name, capacity, max_weight, available, owner_id FROM vessels \
             WHERE id COLLATE \"C\" > $1 ORDER BY id COLLATE \"C\" LIMIT $2",
        )
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
        let row: Option<VesselRow> = sqlx::query_as(
            "SELECT id, name, capacity, max_weight, available, owner_id FROM vessels \
             WHERE available AND capacity >= $1 AND max_weight >= $2 \
             ORDER BY capacity, max_weight, id LIMIT 1",
        )
        .bind(spec.capacity.get())
        .bind(spec.max_weight.get())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        row.map(Vessel::try_from).transpose()
    }
}
