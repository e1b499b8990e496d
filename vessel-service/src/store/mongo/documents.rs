//! How vessels and their reservations are laid out in MongoDB documents,
//! and how those documents become domain values again.

use mongodb::bson;
use serde::{Deserialize, Serialize};

use crate::{
    domain::{
        Capacity, Reservation, ReservationId, Room, Specification, Vessel, VesselId, VesselName,
        Weight,
    },
    store::StoreError,
};

/// One reservation, as an element of its vessel's `reservations` array.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ReservationDocument {
    #[serde(rename = "_id")]
    pub(super) id: String,
    capacity: i32,
    weight: i32,
    /// `None` once confirmed.
    pub(super) expires_at: Option<bson::DateTime>,
    /// The account the room is for; empty on reservations from before owners.
    #[serde(default)]
    owner_id: String,
}

/// A vessel with only the reservations a query asked for.
#[derive(Debug, Deserialize)]
pub(super) struct HolderDocument {
    #[serde(rename = "_id")]
    pub(super) id: String,
    #[serde(default)]
    pub(super) reservations: Vec<ReservationDocument>,
}

impl ReservationDocument {
    pub(super) fn into_reservation(self, vessel_id: &str) -> Result<Reservation, StoreError> {
        let corrupt = |error: crate::domain::InvalidInput| {
            StoreError::Corrupt(format!("reservation `{}`: {error}", self.id))
        };
        Ok(Reservation {
            id: ReservationId::parse(&self.id).map_err(corrupt)?,
            vessel_id: VesselId::parse(vessel_id).map_err(corrupt)?,
            taken: Specification {
                capacity: Capacity::parse(self.capacity, "capacity").map_err(corrupt)?,
                max_weight: Weight::parse(self.weight, "weight").map_err(corrupt)?,
            },
            expires_at: self.expires_at.and_then(to_chrono),
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct VesselDocument {
    #[serde(rename = "_id")]
    pub(super) id: String,
    name: String,
    capacity: i32,
    max_weight: i32,
    available: bool,
    #[serde(default)]
    owner_id: String,
    /// Absent only on vessels stored before reservations; `prepare` fills it.
    #[serde(default)]
    remaining_capacity: Option<i32>,
    #[serde(default)]
    remaining_weight: Option<i32>,
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
            remaining_capacity: Some(vessel.remaining.capacity),
            remaining_weight: Some(vessel.remaining.weight),
        }
    }
}

impl TryFrom<VesselDocument> for Vessel {
    type Error = StoreError;

    fn try_from(document: VesselDocument) -> Result<Self, Self::Error> {
        let corrupt = |error: crate::domain::InvalidInput| {
            StoreError::Corrupt(format!("vessel `{}`: {error}", document.id))
        };
        let capacity = Capacity::parse(document.capacity, "capacity").map_err(corrupt)?;
        let max_weight = Weight::parse(document.max_weight, "max_weight").map_err(corrupt)?;
        Ok(Vessel {
            id: VesselId::parse(&document.id).map_err(corrupt)?,
            name: VesselName::parse(&document.name).map_err(corrupt)?,
            remaining: Room::parse(
                document.remaining_capacity.unwrap_or(capacity.get()),
                document.remaining_weight.unwrap_or(max_weight.get()),
                (capacity, max_weight),
            )
            .map_err(corrupt)?,
            capacity,
            max_weight,
            available: document.available,
            owner_id: document.owner_id,
        })
    }
}

pub(super) fn to_chrono(at: bson::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_millis(at.timestamp_millis())
}
