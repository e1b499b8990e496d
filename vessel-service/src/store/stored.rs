//! A vessel and a reservation as either database hands them back (the
//! PostgreSQL rows as they are; the MongoDB documents once read), and how
//! they become domain values again.

use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::{
    Capacity, Reservation, ReservationId, Room, Specification, Vessel, VesselId, VesselName, Weight,
};

/// A stored vessel, read back.
#[derive(sqlx::FromRow)]
pub(super) struct StoredVessel {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) capacity: i32,
    pub(super) max_weight: i32,
    pub(super) available: bool,
    pub(super) owner_id: String,
    pub(super) remaining_capacity: i32,
    pub(super) remaining_weight: i32,
}

impl TryFrom<StoredVessel> for Vessel {
    type Error = StoreError;

    fn try_from(stored: StoredVessel) -> Result<Self, Self::Error> {
        let corrupt = StoreError::corrupt("vessel", &stored.id);
        let capacity = Capacity::parse(stored.capacity, "capacity").map_err(corrupt)?;
        let max_weight = Weight::parse(stored.max_weight, "max_weight").map_err(corrupt)?;
        Ok(Vessel {
            id: VesselId::parse(&stored.id).map_err(corrupt)?,
            name: VesselName::parse(&stored.name).map_err(corrupt)?,
            remaining: Room::parse(
                stored.remaining_capacity,
                stored.remaining_weight,
                (capacity, max_weight),
            )
            .map_err(corrupt)?,
            capacity,
            max_weight,
            available: stored.available,
            owner_id: stored.owner_id,
        })
    }
}

/// A stored reservation, read back.
#[derive(Clone, sqlx::FromRow)]
pub(super) struct StoredReservation {
    pub(super) id: String,
    pub(super) vessel_id: String,
    pub(super) capacity: i32,
    pub(super) weight: i32,
    /// `None` once confirmed.
    pub(super) expires_at: Option<DateTime<Utc>>,
}

impl TryFrom<StoredReservation> for Reservation {
    type Error = StoreError;

    fn try_from(stored: StoredReservation) -> Result<Self, Self::Error> {
        let corrupt = StoreError::corrupt("reservation", &stored.id);
        Ok(Reservation {
            id: ReservationId::parse(&stored.id).map_err(corrupt)?,
            vessel_id: VesselId::parse(&stored.vessel_id).map_err(corrupt)?,
            taken: Specification {
                capacity: Capacity::parse(stored.capacity, "capacity").map_err(corrupt)?,
                max_weight: Weight::parse(stored.weight, "weight").map_err(corrupt)?,
            },
            expires_at: stored.expires_at,
        })
    }
}
