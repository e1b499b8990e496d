//! The checker's own view of what the services stored, read directly from
//! their databases (PostgreSQL or MongoDB), not through the services.

use std::{collections::BTreeMap, str::FromStr as _, time::Duration};

use anyhow::Context as _;
use futures::TryStreamExt as _;
use mongodb::bson::{Bson, Document, doc};
use serde::Serialize;
use shippy_service::settings::SecretUrl;
use sqlx::{PgPool, Row as _, postgres::PgConnectOptions};

use crate::cluster::{Store, database_name};

/// The application name of the checker's PostgreSQL connections (the
/// nemesis never pauses them).
pub const APPLICATION_NAME: &str = "shippy-chaos-checker";

/// A consignment as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredConsignment {
    /// Its id.
    pub id: String,
    /// Its owner's user id.
    pub owner_id: String,
    /// The vessel it is on.
    pub vessel_id: String,
    /// Its weight.
    pub weight: i64,
    /// How many containers (the room it takes).
    pub containers: i64,
    /// `pending`, `confirmed`, `cancelling` or `cancelled`.
    pub state: String,
    /// The idempotency key it was created with (gone once its placing failed).
    pub key: Option<String>,
}

/// A vessel as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredVessel {
    /// Its id.
    pub id: String,
    /// Its size in containers.
    pub capacity: i64,
    /// Its size in weight.
    pub max_weight: i64,
    /// Containers not taken.
    pub remaining_capacity: i64,
    /// Weight not taken.
    pub remaining_weight: i64,
}

/// A reservation as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredReservation {
    /// Its id (the consignment's).
    pub id: String,
    /// The vessel.
    pub vessel_id: String,
    /// Containers taken.
    pub capacity: i64,
    /// Weight taken.
    pub weight: i64,
    /// Confirmed (else held until it expires).
    pub confirmed: bool,
}

/// The fleet at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Fleet {
    /// Every vessel.
    pub vessels: Vec<StoredVessel>,
    /// Every reservation.
    pub reservations: Vec<StoredReservation>,
}

/// Everything stored, at the end.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// The fleet.
    pub fleet: Fleet,
    /// Every consignment.
    pub consignments: Vec<StoredConsignment>,
    /// Every user: email → id.
    pub users: BTreeMap<String, String>,
}

/// Connections to the three databases.
#[derive(Debug, Clone)]
pub struct View {
    users: PgPool,
    vessels: Db,
    consignments: Db,
}

#[derive(Debug, Clone)]
enum Db {
    Postgres(PgPool),
    Mongo(mongodb::Database),
}

async fn pg(url: &SecretUrl) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url.expose())?.application_name(APPLICATION_NAME);
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options))
}

async fn db(store: Store, url: &SecretUrl) -> anyhow::Result<Db> {
    Ok(match store {
        Store::Postgres => Db::Postgres(pg(url).await?),
        Store::MongoDb => {
            let mut options = mongodb::options::ClientOptions::parse(url.expose()).await?;
            options.server_selection_timeout = Some(Duration::from_secs(5));
            let client = mongodb::Client::with_options(options)?;
            Db::Mongo(client.database(&database_name(url)))
        }
    })
}

/// Every document of `collection`.
async fn every_document(
    database: &mongodb::Database,
    collection: &str,
) -> anyhow::Result<Vec<Document>> {
    Ok(database
        .collection::<Document>(collection)
        .find(doc! {})
        .await?
        .try_collect()
        .await?)
}

fn int(document: &Document, key: &str) -> i64 {
    match document.get(key) {
        Some(Bson::Int32(value)) => i64::from(*value),
        Some(Bson::Int64(value)) => *value,
        Some(Bson::Double(value)) => *value as i64,
        _ => 0,
    }
}

fn text(document: &Document, key: &str) -> String {
    document.get_str(key).unwrap_or_default().to_owned()
}

impl View {
    /// Connects (lazily) to the databases directly.
    pub async fn connect(
        store: Store,
        users: &SecretUrl,
        vessels: &SecretUrl,
        consignments: &SecretUrl,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            users: pg(users).await?,
            vessels: db(store, vessels).await?,
            consignments: db(store, consignments).await?,
        })
    }

    /// The fleet, read consistently (one transaction; one document per
    /// vessel in MongoDB).
    pub async fn fleet(&self) -> anyhow::Result<Fleet> {
        match &self.vessels {
            Db::Postgres(pool) => {
                let mut transaction = pool.begin().await?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    .execute(&mut *transaction)
                    .await?;
                let vessels = sqlx::query(
                    "SELECT id, capacity, max_weight, remaining_capacity, remaining_weight \
                     FROM vessels ORDER BY id",
                )
                .fetch_all(&mut *transaction)
                .await?
                .iter()
                .map(|row| StoredVessel {
                    id: row.get("id"),
                    capacity: i64::from(row.get::<i32, _>("capacity")),
                    max_weight: i64::from(row.get::<i32, _>("max_weight")),
                    remaining_capacity: i64::from(row.get::<i32, _>("remaining_capacity")),
                    remaining_weight: i64::from(row.get::<i32, _>("remaining_weight")),
                })
                .collect();
                let reservations = sqlx::query(
                    "SELECT id, vessel_id, capacity, weight, expires_at IS NULL AS confirmed \
                     FROM reservations",
                )
                .fetch_all(&mut *transaction)
                .await?
                .iter()
                .map(|row| StoredReservation {
                    id: row.get("id"),
                    vessel_id: row.get("vessel_id"),
                    capacity: i64::from(row.get::<i32, _>("capacity")),
                    weight: i64::from(row.get::<i32, _>("weight")),
                    confirmed: row.get("confirmed"),
                })
                .collect();
                transaction.rollback().await?;
                Ok(Fleet {
                    vessels,
                    reservations,
                })
            }
            Db::Mongo(database) => {
                let documents = every_document(database, "vessels").await?;
                let mut fleet = Fleet::default();
                for vessel in documents {
                    let id = match vessel.get("_id") {
                        Some(Bson::String(id)) => id.clone(),
                        Some(other) => other.to_string(),
                        None => String::new(),
                    };
                    let capacity = int(&vessel, "capacity");
                    let max_weight = int(&vessel, "max_weight");
                    fleet.vessels.push(StoredVessel {
                        id: id.clone(),
                        capacity,
                        max_weight,
                        remaining_capacity: vessel
                            .get("remaining_capacity")
                            .map_or(capacity, |_| int(&vessel, "remaining_capacity")),
                        remaining_weight: vessel
                            .get("remaining_weight")
                            .map_or(max_weight, |_| int(&vessel, "remaining_weight")),
                    });
                    for reservation in vessel.get_array("reservations").into_iter().flatten() {
                        let Some(reservation) = reservation.as_document() else {
                            continue;
                        };
                        fleet.reservations.push(StoredReservation {
                            id: text(reservation, "_id"),
                            vessel_id: id.clone(),
                            capacity: int(reservation, "capacity"),
                            weight: int(reservation, "weight"),
                            confirmed: matches!(
                                reservation.get("expires_at"),
                                None | Some(Bson::Null)
                            ),
                        });
                    }
                }
                fleet.vessels.sort_by(|a, b| a.id.cmp(&b.id));
                Ok(fleet)
            }
        }
    }

    /// Every consignment.
    pub async fn consignments(&self) -> anyhow::Result<Vec<StoredConsignment>> {
        match &self.consignments {
            Db::Postgres(pool) => Ok(sqlx::query(
                "SELECT id, owner_id, vessel_id, weight, jsonb_array_length(containers) AS n, \
                 state, idempotency_key FROM consignments",
            )
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| StoredConsignment {
                id: row.get("id"),
                owner_id: row.get("owner_id"),
                vessel_id: row.get("vessel_id"),
                weight: i64::from(row.get::<i32, _>("weight")),
                containers: i64::from(row.get::<i32, _>("n")),
                state: row.get("state"),
                key: row.get("idempotency_key"),
            })
            .collect()),
            Db::Mongo(database) => {
                let documents = every_document(database, "consignments").await?;
                Ok(documents
                    .iter()
                    .map(|document| StoredConsignment {
                        id: text(document, "_id"),
                        owner_id: text(document, "owner_id"),
                        vessel_id: text(document, "vessel_id"),
                        weight: int(document, "weight"),
                        containers: document
                            .get_array("containers")
                            .map_or(0, |containers| containers.len() as i64),
                        state: document.get_str("state").unwrap_or("confirmed").to_owned(),
                        key: document.get_str("idempotency_key").ok().map(str::to_owned),
                    })
                    .collect())
            }
        }
    }

    /// Every user: email → id.
    pub async fn users(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let rows = sqlx::query("SELECT id::text AS id, email FROM users")
            .fetch_all(&self.users)
            .await
            .context("read users")?;
        Ok(rows
            .iter()
            .map(|row| (row.get("email"), row.get("id")))
            .collect())
    }

    /// Everything, at the end.
    pub async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        Ok(Snapshot {
            fleet: self.fleet().await?,
            consignments: self.consignments().await?,
            users: self.users().await?,
        })
    }

    /// Self-test: deletes a consignment behind the system's back.
    pub async fn delete_consignment(&self, id: &str) -> anyhow::Result<()> {
        match &self.consignments {
            Db::Postgres(pool) => {
                sqlx::query("DELETE FROM consignments WHERE id = $1")
                    .bind(id)
                    .execute(pool)
                    .await?;
            }
            Db::Mongo(database) => {
                let consignments = database.collection::<Document>("consignments");
                consignments.delete_one(doc! { "_id": id }).await?;
            }
        }
        Ok(())
    }

    /// Self-test: stores a confirmed consignment of `owner` with
    /// idempotency key `key` on `vessel`, as if a create had placed it.
    pub async fn insert_consignment(
        &self,
        id: &str,
        owner: &str,
        key: &str,
        vessel: &str,
    ) -> anyhow::Result<()> {
        match &self.consignments {
            Db::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO consignments (id, owner_id, description, weight, vessel_id, \
                     containers, created_at, state, idempotency_key, request_fingerprint) \
                     VALUES ($1, $2, 'injected', 100, $3, \
                     '[{\"id\": \"\", \"customer_id\": \"chaos\", \"origin\": \"x\", \"user_id\": \"\"}]', \
                     now(), 'confirmed', $4, 'injected')",
                )
                .bind(id)
                .bind(owner)
                .bind(vessel)
                .bind(key)
                .execute(pool)
                .await?;
            }
            Db::Mongo(database) => {
                let now = mongodb::bson::DateTime::now();
                database
                    .collection::<Document>("consignments")
                    .insert_one(doc! {
                        "_id": id, "owner_id": owner, "description": "injected", "weight": 100,
                        "vessel_id": vessel,
                        "containers": [{ "id": "", "customer_id": "chaos", "origin": "x", "user_id": "" }],
                        "created_at": now, "created_at_us": now.timestamp_millis() * 1000,
                        "state": "confirmed", "idempotency_key": key, "request_fingerprint": "injected",
                    })
                    .await?;
            }
        }
        Ok(())
    }

    /// Self-test: takes `containers` of room on a vessel (gives it back if
    /// negative) directly in the database.
    pub async fn take_room(&self, vessel_id: &str, containers: i32) -> anyhow::Result<()> {
        match &self.vessels {
            Db::Postgres(pool) => {
                sqlx::query(
                    "UPDATE vessels SET remaining_capacity = remaining_capacity - $2 WHERE id = $1",
                )
                .bind(vessel_id)
                .bind(containers)
                .execute(pool)
                .await?;
            }
            Db::Mongo(database) => {
                database
                    .collection::<Document>("vessels")
                    .update_one(
                        doc! { "_id": vessel_id },
                        doc! { "$inc": { "remaining_capacity": -containers } },
                    )
                    .await?;
            }
        }
        Ok(())
    }
}
