//! The MongoDB vessel store (the official driver), one document per vessel.

use mongodb::{
    Collection, Database, IndexModel,
    bson::{Document, doc},
    options::IndexOptions,
};
use serde::{Deserialize, Serialize};

use super::{StoreError, VesselStore};
use crate::domain::{Capacity, Specification, Vessel, VesselId, VesselName, Weight};

/// Vessels in a MongoDB collection named `vessels`.
#[derive(Debug, Clone)]
pub struct MongoStore {
    database: Database,
    vessels: Collection<VesselDocument>,
}

#[derive(Debug, Serialize, Deserialize)]
struct VesselDocument {
    #[serde(rename = "_id")]
    id: String,
    name: String,
    capacity: i32,
    max_weight: i32,
    available: bool,
    #[serde(default)]
    owner_id: String,
}

impl From<&Vessel> for VesselDocument {
    fn from(vessel: &Vessel) -> Self {
        Self {
            id: vessel.id.as_str().to_owned(),
            name: vessel.name.as_str().to_owned(),
            capacity: vessel.capacity.get(),
            max_weight: vessel.max_weight.get(),
            available: vessel.available,
            owner_id: vessel.owner_id.clone(),
        }
    }
}

impl TryFrom<VesselDocument> for Vessel {
    type Error = StoreError;

    fn try_from(document: VesselDocument) -> Result<Self, Self::Error> {
        let corrupt = |error: crate::domain::InvalidInput| {
            StoreError::Corrupt(format!("vessel `{}`: {error}", document.id))
        };
        Ok(Vessel {
            id: VesselId::parse(&document.id).map_err(corrupt)?,
            name: VesselName::parse(&document.name).map_err(corrupt)?,
            capacity: Capacity::parse(document.capacity, "capacity").map_err(corrupt)?,
            max_weight: Weight::parse(document.max_weight, "max_weight").map_err(corrupt)?,
            available: document.available,
            owner_id: document.owner_id,
        })
    }
}

/// The name of the index `find_available` is answered from (MongoDB's
/// default name for its keys). Vessel ids are `_id`, unique by MongoDB's own
/// index on it.
pub const BY_SIZE_INDEX: &str = "available_1_capacity_1_max_weight_1__id_1";

/// The filter and sort that find the smallest available vessel fitting
/// `spec`; the index `prepare` creates holds the vessels in this order.
/// Public so a test can ask the server how it plans exactly this query.
pub fn find_available_query(spec: Specification) -> (Document, Document) {
    let filter = doc! {
        "available": true,
        "capacity": { "$gte": spec.capacity.get() },
        "max_weight": { "$gte": spec.max_weight.get() },
    };
    (filter, doc! { "capacity": 1, "max_weight": 1, "_id": 1 })
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
            vessels: database.collection("vessels"),
        }
    }
}

impl VesselStore for MongoStore {
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
        let by_size = IndexModel::builder()
            .keys(doc! { "available": 1, "capacity": 1, "max_weight": 1, "_id": 1 })
            .options(
                IndexOptions::builder()
                    .name(BY_SIZE_INDEX.to_owned())
                    .build(),
            )
            .build();
        self.vessels
            .create_index(by_size)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    #[tracing::instrument(name = "mongodb.insert_vessel", skip_all, fields(vessel.id = %vessel.id), err(Display, level = "debug"))]
    async fn insert(&self, vessel: &Vessel) -> Result<(), StoreError> {
        match self.vessels.insert_one(VesselDocument::from(vessel)).await {
            Ok(_) => Ok(()),
            Err(error) if shippy_store::mongo_duplicate_key(&error) => {
                Err(StoreError::AlreadyExists(vessel.id.clone()))
            }
            Err(error) => Err(store_error(error)),
        }
    }

    #[tracing::instrument(name = "mongodb.insert_vessel_if_absent", skip_all, fields(vessel.id = %vessel.id), err(Display, level = "debug"))]
    async fn insert_if_absent(&self, vessel: &Vessel) -> Result<bool, StoreError> {
        match self.insert(vessel).await {
            Ok(()) => Ok(true),
            Err(StoreError::AlreadyExists(_)) => Ok(false),
            Err(error) => Err(error),
        }
    }

    #[tracing::instrument(name = "mongodb.get_vessel", skip_all, fields(vessel.id = %id), err(Display, level = "debug"))]
    async fn get(&self, id: &VesselId) -> Result<Option<Vessel>, StoreError> {
        self.vessels
            .find_one(doc! { "_id": id.as_str() })
            .await
            .map_err(store_error)?
            .map(Vessel::try_from)
            .transpose()
    }

    #[tracing::instrument(
        name = "mongodb.list_vessels",
        skip_all,
        fields(limit),
        err(Display, level = "debug")
    )]
    async fn list(&self, after: Option<&VesselId>, limit: u32) -> Result<Vec<Vessel>, StoreError> {
        use futures::TryStreamExt;
        let filter = match after {
            Some(id) => doc! { "_id": { "$gt": id.as_str() } },
            None => doc! {},
        };
        let documents: Vec<VesselDocument> = self
            .vessels
            .find(filter)
            .sort(doc! { "_id": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(store_error)?
            .try_collect()
            .await
            .map_err(store_error)?;
        documents.into_iter().map(Vessel::try_from).collect()
    }

    #[tracing::instrument(
        name = "mongodb.find_available_vessel",
        skip_all,
        fields(spec.capacity = spec.capacity.get(), spec.max_weight = spec.max_weight.get()),
        err(Display, level = "debug")
    )]
    async fn find_available(&self, spec: Specification) -> Result<Option<Vessel>, StoreError> {
        let (filter, sort) = find_available_query(spec);
        self.vessels
            .find_one(filter)
            .sort(sort)
            .await
            .map_err(store_error)?
            .map(Vessel::try_from)
            .transpose()
    }
}
