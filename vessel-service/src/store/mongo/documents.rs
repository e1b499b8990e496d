//! How vessels and their reservations are laid out in MongoDB documents,
//! and how those documents become domain values again.

use mongodb::bson;
use serde::{Deserialize, Serialize};

use crate::{
    domain::{Reservation, Vessel},
    store::{
        StoreError,
        stored::{StoredReservation, StoredVessel},
    },
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
        Reservation::try_from(StoredReservation {
            id: self.id,
            vessel_id: vessel_id.to_owned(),
            capacity: self.capacity,
            weight: self.weight,
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
        Vessel::try_from(StoredVessel {
            // Vessels stored before reservations have all their room.
            remaining_capacity: document.remaining_capacity.unwrap_or(document.capacity),
            remaining_weight: document.remaining_weight.unwrap_or(document.max_weight),
            id: document.id,
            name: document.name,
            capacity: document.capacity,
            max_weight: document.max_weight,
            available: document.available,
            owner_id: document.owner_id,
        })
    }
}

pub(super) fn to_chrono(at: bson::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_millis(at.timestamp_millis())
}
