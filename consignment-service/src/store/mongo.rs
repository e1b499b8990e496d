//! The MongoDB consignment store (the official driver): one document per
//! consignment, containers embedded.

use std::ops::ControlFlow;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::{
    Collection, Database, IndexModel,
    bson::{self, Document, doc},
};
use serde::{Deserialize, Serialize};

use shippy_store::{DatabaseError, MongoStorage};

use super::{ConsignmentStore, Cursor, Storage, StoreError};
use crate::domain::{
    Consignment, Container, Containers, Description, Idempotency, IdempotencyKey, InvalidInput,
    State, Weight,
};

/// Consignments in a MongoDB collection named `consignments`.
#[derive(Debug, Clone)]
pub struct MongoStore {
    database: Database,
    consignments: Collection<ConsignmentDocument>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ConsignmentDocument {
    #[serde(rename = "_id")]
    id: String,
    owner_id: String,
    description: String,
    weight: i32,
    vessel_id: String,
    containers: Vec<Container>,
    /// A BSON date; microsecond precision is kept in `created_at_us`.
    created_at: bson::DateTime,
    created_at_us: i64,
    /// Absent only on consignments stored before states; `prepare` fills it.
    #[serde(default)]
    state: Option<String>,
    /// The caller's idempotency key; absent without one, or once freed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_fingerprint: Option<String>,
}

impl From<&Consignment> for ConsignmentDocument {
    fn from(consignment: &Consignment) -> Self {
        Self {
            id: consignment.id.clone(),
            owner_id: consignment.owner_id.clone(),
            description: consignment.description.as_str().to_owned(),
            weight: consignment.weight.get(),
            vessel_id: consignment.vessel_id.clone(),
            containers: consignment.containers.as_slice().to_vec(),
            created_at: bson::DateTime::from_millis(consignment.created_at.timestamp_millis()),
            created_at_us: consignment.created_at.timestamp_micros(),
            state: Some(consignment.state.as_str().to_owned()),
            idempotency_key: consignment
                .idempotency
                .as_ref()
                .map(|idempotency| idempotency.key.as_str().to_owned()),
            request_fingerprint: consignment
                .idempotency
                .as_ref()
                .map(|idempotency| idempotency.fingerprint.clone()),
        }
    }
}

impl TryFrom<ConsignmentDocument> for Consignment {
    type Error = StoreError;

    fn try_from(document: ConsignmentDocument) -> Result<Self, Self::Error> {
        let created_at = DateTime::<Utc>::from_timestamp_micros(document.created_at_us)
            .ok_or_else(|| {
                StoreError::Corrupt(format!("consignment `{}`: bad time", document.id))
            })?;
        let id = document.id.clone();
        let corrupt = StoreError::corrupt("consignment", &id);
        let state = match document.state.as_deref() {
            None => State::Confirmed,
            Some(name) => {
                State::parse(name).ok_or_else(|| corrupt(InvalidInput("unknown state".into())))?
            }
        };
        let idempotency = match (document.idempotency_key, document.request_fingerprint) {
            (Some(key), Some(fingerprint)) => Some(Idempotency {
                key: IdempotencyKey::parse(&key).map_err(corrupt)?,
                fingerprint,
            }),
            _ => None,
        };
        Ok(Self {
            state,
            idempotency,
            id: document.id,
            owner_id: document.owner_id,
            description: Description::parse(document.description).map_err(corrupt)?,
            weight: Weight::parse(document.weight).map_err(corrupt)?,
            containers: Containers::parse(document.containers).map_err(corrupt)?,
            vessel_id: document.vessel_id,
            created_at,
        })
    }
}

/// The index the owner's listing is answered from: the owner's consignments
/// are one range of it, already in the listing's order, so a page reads only
/// the entries it returns.
fn listing_index() -> IndexModel {
    shippy_store::mongo_index(
        doc! { "owner_id": 1, "created_at_us": -1, "_id": -1 },
        LISTING_INDEX,
    )
}

/// The index the recovery sweep finds half-done consignments by.
pub const UNSETTLED_INDEX: &str = "state_1_created_at_us_1";

/// The unique index that keeps one consignment per owner and key; only
/// documents holding a key are in it.
pub const KEY_INDEX: &str = "owner_id_1_idempotency_key_1_unique";

/// The listing index's name (MongoDB's default name for its keys).
pub const LISTING_INDEX: &str = "owner_id_1_created_at_us_-1__id_-1";

/// The filter and sort of one page of `owner`'s consignments, newest first
/// (ties broken by the greater id), after the cursor if any. Public so a test
/// can ask the server how it plans exactly this query.
pub fn listing_query(owner: &str, after: Option<&Cursor>) -> (Document, Document) {
    let confirmed = State::Confirmed.as_str();
    let filter = match after {
        None => doc! { "owner_id": owner, "state": confirmed },
        Some(after) => {
            let micros = after.created_at.timestamp_micros();
            doc! {
                "owner_id": owner,
                "state": confirmed,
                "$or": [
                    { "created_at_us": { "$lt": micros } },
                    { "created_at_us": micros, "_id": { "$lt": &after.id } },
                ],
            }
        }
    };
    (filter, doc! { "created_at_us": -1, "_id": -1 })
}

/// How many times an insert undone by a concurrent one is tried in all.
const WRITE_CONFLICT_TRIES: u32 = 5;

impl MongoStorage for MongoStore {
    fn in_database(database: &Database) -> Self {
        Self {
            database: database.clone(),
            consignments: database.collection("consignments"),
        }
    }
}

impl Storage for MongoStore {
    type Error = StoreError;

    async fn ping(&self) -> Result<(), StoreError> {
        shippy_store::ping_mongo(&self.database).await
    }

    async fn prepare(&self) -> Result<(), StoreError> {
        let unsettled =
            shippy_store::mongo_index(doc! { "state": 1, "created_at_us": 1 }, UNSETTLED_INDEX);
        let keys = shippy_store::unique_mongo_index(
            doc! { "owner_id": 1, "idempotency_key": 1 },
            KEY_INDEX,
            doc! { "idempotency_key": { "$type": "string" } },
        );
        self.consignments
            .create_indexes([listing_index(), unsettled, keys])
            .await
            .map_err(StoreError::from_mongo)?;
        // Consignments stored before states were placed whole: confirmed.
        self.consignments
            .update_many(
                doc! { "state": { "$exists": false } },
                doc! { "$set": { "state": State::Confirmed.as_str() } },
            )
            .await
            .map_err(StoreError::from_mongo)?;
        Ok(())
    }
}

impl ConsignmentStore for MongoStore {
    async fn insert(&self, consignment: &Consignment) -> Result<(), StoreError> {
        let document = ConsignmentDocument::from(consignment);
        let mut inserted = self.consignments.insert_one(&document).await;
        // Concurrent inserts with one owner's key can meet on the unique
        // index and one be undone (the stand-in reports it as a deadlock):
        // nothing of it was kept, so it is tried again, to store it or to
        // learn the key is taken.
        for _ in 1..WRITE_CONFLICT_TRIES {
            match &inserted {
                Err(error) if shippy_store::mongo_write_conflict(error) => {
                    inserted = self.consignments.insert_one(&document).await;
                }
                _ => break,
            }
        }
        match inserted {
            Ok(_) => Ok(()),
            // Ids are UUIDs, so a clash is the key's; the id's is told
            // apart by looking.
            Err(error) if shippy_store::mongo_duplicate_key(&error) => {
                if consignment.idempotency.is_some() && self.get(&consignment.id).await?.is_none() {
                    Err(StoreError::KeyTaken)
                } else {
                    Err(StoreError::AlreadyExists(consignment.id.clone()))
                }
            }
            Err(error) => Err(StoreError::from_mongo(error)),
        }
    }

    async fn find_by_key(
        &self,
        owner: &str,
        key: &IdempotencyKey,
    ) -> Result<Option<Consignment>, StoreError> {
        shippy_store::find_decoded(
            self.consignments
                .find_one(doc! { "owner_id": owner, "idempotency_key": key.as_str() }),
        )
        .await
    }

    async fn visit_by_owner(
        &self,
        owner: &str,
        after: Option<&Cursor>,
        limit: u32,
        each: impl FnMut(Consignment) -> ControlFlow<()> + Send,
    ) -> Result<(), StoreError> {
        let (filter, sort) = listing_query(owner, after);
        let documents = self
            .consignments
            .find(filter)
            .sort(sort)
            .limit(i64::from(limit))
            .await
            .map_err(StoreError::from_mongo)?;
        // A batch at a time from the server, a document at a time here; a
        // stop drops the cursor (the driver closes it on the server).
        shippy_store::visit_decoded(documents, each).await
    }

    async fn get(&self, id: &str) -> Result<Option<Consignment>, StoreError> {
        shippy_store::find_decoded(self.consignments.find_one(doc! { "_id": id })).await
    }

    async fn transition(&self, id: &str, from: State, to: State) -> Result<bool, StoreError> {
        // A placing that failed frees its key (see the trait).
        let update = if (from, to) == (State::Pending, State::Cancelling) {
            doc! {
                "$set": { "state": to.as_str() },
                "$unset": { "idempotency_key": "" },
            }
        } else {
            doc! { "$set": { "state": to.as_str() } }
        };
        let moved = self
            .consignments
            .update_one(doc! { "_id": id, "state": from.as_str() }, update)
            .await
            .map_err(StoreError::from_mongo)?;
        Ok(moved.modified_count == 1)
    }

    async fn unsettled(
        &self,
        state: State,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        #[derive(Deserialize)]
        struct Id {
            #[serde(rename = "_id")]
            id: String,
        }
        let ids: Vec<Id> = self
            .consignments
            .clone_with_type::<Id>()
            .find(doc! {
                "state": state.as_str(),
                "created_at_us": { "$lt": before.timestamp_micros() },
            })
            .sort(doc! { "created_at_us": 1 })
            .projection(doc! { "_id": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(StoreError::from_mongo)?
            .try_collect()
            .await
            .map_err(StoreError::from_mongo)?;
        Ok(ids.into_iter().map(|found| found.id).collect())
    }
}
