//! The MongoDB consignment store (the official driver): one document per
//! consignment, containers embedded.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::{
    Collection, Database, IndexModel,
    bson::{self, Document, doc},
    options::IndexOptions,
};
use serde::{Deserialize, Serialize};

use super::{After, ConsignmentStore, StoreError};
use crate::domain::{Consignment, Container};

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
}

impl From<&Consignment> for ConsignmentDocument {
    fn from(consignment: &Consignment) -> Self {
        Self {
            id: consignment.id.clone(),
            owner_id: consignment.owner_id.clone(),
            description: consignment.description.clone(),
            weight: consignment.weight,
            vessel_id: consignment.vessel_id.clone(),
            containers: consignment.containers.clone(),
            created_at: bson::DateTime::from_millis(consignment.created_at.timestamp_millis()),
            created_at_us: consignment.created_at.timestamp_micros(),
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
        Ok(Self {
            id: document.id,
            owner_id: document.owner_id,
            description: document.description,
            weight: document.weight,
            containers: document.containers,
            vessel_id: document.vessel_id,
            created_at,
        })
    }
}

/// The index the owner's listing is answered from: the owner's consignments
/// are one range of it, already in the listing's order, so a page reads only
/// the entries it returns.
fn listing_index() -> IndexModel {
    IndexModel::builder()
        .keys(doc! { "owner_id": 1, "created_at_us": -1, "_id": -1 })
        .options(
            IndexOptions::builder()
                .name(LISTING_INDEX.to_owned())
                .build(),
        )
        .build()
}

/// The listing index's name (MongoDB's default name for its keys).
pub const LISTING_INDEX: &str = "owner_id_1_created_at_us_-1__id_-1";

/// The filter and sort of one page of `owner`'s consignments, newest first
/// (ties broken by the greater id), after the cursor if any. Public so a test
/// can ask the server how it plans exactly this query.
pub fn listing_query(owner: &str, after: Option<&After>) -> (Document, Document) {
    let filter = match after {
        None => doc! { "owner_id": owner },
        Some(after) => {
            let micros = after.created_at.timestamp_micros();
            doc! {
                "owner_id": owner,
                "$or": [
                    { "created_at_us": { "$lt": micros } },
                    { "created_at_us": micros, "_id": { "$lt": &after.id } },
                ],
            }
        }
    };
    (filter, doc! { "created_at_us": -1, "_id": -1 })
}

fn store_error(error: mongodb::error::Error) -> StoreError {
    if shippy_store::mongo_unavailable(&error) {
        StoreError::Unavailable(error.into())
    } else {
        StoreError::Database(error.into())
    }
}

impl MongoStore {
    /// A store in `database` (whose client may not have connected yet).
    pub fn new(database: &Database) -> Self {
        Self {
            database: database.clone(),
            consignments: database.collection("consignments"),
        }
    }
}

impl ConsignmentStore for MongoStore {
    #[tracing::instrument(name = "mongodb.ping", skip_all, err(Display, level = "debug"))]
    async fn ping(&self) -> Result<(), StoreError> {
        self.database
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(store_error)?;
        Ok(())
    }

    #[tracing::instrument(name = "mongodb.prepare", skip_all, err(Display, level = "debug"))]
    async fn prepare(&self) -> Result<(), StoreError> {
        self.consignments
            .create_index(listing_index())
            .await
            .map_err(store_error)?;
        Ok(())
    }

    #[tracing::instrument(
        name = "mongodb.insert_consignment",
        skip_all,
        fields(consignment.id = %consignment.id),
        err(Display, level = "debug")
    )]
    async fn insert(&self, consignment: &Consignment) -> Result<(), StoreError> {
        match self
            .consignments
            .insert_one(ConsignmentDocument::from(consignment))
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if shippy_store::mongo_duplicate_key(&error) => {
                Err(StoreError::AlreadyExists(consignment.id.clone()))
            }
            Err(error) => Err(store_error(error)),
        }
    }

    #[tracing::instrument(
        name = "mongodb.list_consignments",
        skip_all,
        fields(limit),
        err(Display, level = "debug")
    )]
    async fn list_by_owner(
        &self,
        owner: &str,
        after: Option<&After>,
        limit: u32,
    ) -> Result<Vec<Consignment>, StoreError> {
        let (filter, sort) = listing_query(owner, after);
        let documents: Vec<ConsignmentDocument> = self
            .consignments
            .find(filter)
            .sort(sort)
            .limit(i64::from(limit))
            .await
            .map_err(store_error)?
            .try_collect()
            .await
            .map_err(store_error)?;
        documents.into_iter().map(Consignment::try_from).collect()
    }
}
