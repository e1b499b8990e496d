//! The fleet a new installation starts with.

use crate::{
    domain::{Capacity, InvalidInput, Room, Vessel, VesselId, VesselName, Weight},
    store::{StoreError, VesselStore},
};

/// `(id, name, capacity, max_weight)`: the original shippy's `vessel001`,
/// plus the two other sizes of its go-micro variant.
const SEED_FLEET: [(&str, &str, i32, i32); 3] = [
    ("vessel001", "Kane's Salty Secret", 500, 200_000),
    ("vessel002", "Boaty McBoatface", 200, 100_000),
    ("vessel003", "The Big Dipper", 1_000, 500_000),
];

/// The seed fleet as vessels.
pub fn seed_fleet() -> Result<Vec<Vessel>, InvalidInput> {
    SEED_FLEET
        .iter()
        .map(|&(id, name, capacity, max_weight)| {
            Ok(Vessel {
                id: VesselId::parse(id)?,
                name: VesselName::parse(name)?,
                capacity: Capacity::parse(capacity, "capacity")?,
                max_weight: Weight::parse(max_weight, "max_weight")?,
                available: true,
                owner_id: String::new(),
                remaining: Room {
                    capacity,
                    weight: max_weight,
                },
            })
        })
        .collect()
}

/// Adds each seed vessel whose id is not taken yet; returns how many it added.
/// Running it again adds nothing.
#[tracing::instrument(skip_all, err)]
pub async fn seed(store: &impl VesselStore) -> Result<usize, StoreError> {
    let fleet = seed_fleet().map_err(|error| StoreError::Corrupt(error.to_string()))?;
    let mut added = 0;
    for vessel in &fleet {
        if store.insert_if_absent(vessel).await? {
            added += 1;
        }
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_fleet_is_valid_and_has_vessel001() {
        let fleet = seed_fleet().expect("valid seed");
        assert_eq!(fleet.len(), 3);
        let first = &fleet[0];
        assert_eq!(first.id.as_str(), "vessel001");
        assert_eq!(first.name.as_str(), "Kane's Salty Secret");
        assert_eq!(
            (first.capacity.get(), first.max_weight.get()),
            (500, 200_000)
        );
    }
}
