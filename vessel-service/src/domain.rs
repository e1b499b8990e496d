//! Vessels and what a consignment asks of one, as validated domain types.
//!
//! Proto messages become these through `TryFrom` at the handler edge; a
//! failure is a message a person can act on, and the store and the rules
//! never see an unchecked value.

use std::fmt;

use shippy_proto::vessel::v1 as proto;
pub use shippy_service::input::InvalidInput;
use shippy_service::{
    input::{Empty, Form, TextRule},
    text_newtype,
};

/// The longest id or name accepted, in bytes.
const MAX_TEXT_LEN: usize = 200;

text_newtype! {
    /// A vessel's unique id, e.g. `vessel001`.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct VesselId(TextRule {
        form: Form::Printable,
        ..TextRule::line("vessel id", MAX_TEXT_LEN)
    });
}

impl VesselId {
    /// A fresh random id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
}

text_newtype! {
    /// A vessel's display name: non-empty.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct VesselName(TextRule::line("vessel name", MAX_TEXT_LEN));
}

/// A number of containers: greater than zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Capacity(i32);

impl Capacity {
    /// Checks a capacity; `what` names the field in the error message.
    pub fn parse(value: i32, what: &str) -> Result<Self, InvalidInput> {
        positive(value, what).map(Self)
    }

    /// The number of containers.
    pub fn get(self) -> i32 {
        self.0
    }
}

/// A weight in kilograms: greater than zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Weight(i32);

impl Weight {
    /// Checks a weight; `what` names the field in the error message.
    pub fn parse(value: i32, what: &str) -> Result<Self, InvalidInput> {
        positive(value, what).map(Self)
    }

    /// The weight in kilograms.
    pub fn get(self) -> i32 {
        self.0
    }
}

fn positive(value: i32, what: &str) -> Result<i32, InvalidInput> {
    if value > 0 {
        Ok(value)
    } else {
        Err(InvalidInput(format!(
            "{what} must be greater than 0, got {value}"
        )))
    }
}

/// A vessel of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vessel {
    /// Unique in the fleet.
    pub id: VesselId,
    /// Display name.
    pub name: VesselName,
    /// How many containers it carries.
    pub capacity: Capacity,
    /// The heaviest load it carries.
    pub max_weight: Weight,
    /// Whether it can take consignments now.
    pub available: bool,
    /// Who owns it; may be empty.
    pub owner_id: String,
    /// What reservations have not taken of it.
    pub remaining: Room,
}

/// Containers and kilograms not taken yet; never negative, never more than
/// the vessel has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    /// Containers.
    pub capacity: i32,
    /// Kilograms.
    pub weight: i32,
}

impl Room {
    /// Checks room read from the store against the vessel's size.
    pub fn parse(capacity: i32, weight: i32, of: (Capacity, Weight)) -> Result<Self, InvalidInput> {
        if !(0..=of.0.get()).contains(&capacity) || !(0..=of.1.get()).contains(&weight) {
            return Err(InvalidInput(format!(
                "remaining room {capacity} containers / {weight} kg is outside \
                 0..={} containers / 0..={} kg",
                of.0.get(),
                of.1.get()
            )));
        }
        Ok(Self { capacity, weight })
    }
}

impl Vessel {
    /// Whether this vessel's remaining room can carry `spec`.
    pub fn fits(&self, spec: Specification) -> bool {
        self.available
            && self.remaining.capacity >= spec.capacity.get()
            && self.remaining.weight >= spec.max_weight.get()
    }
}

text_newtype! {
    /// A reservation's id, chosen by the caller (consignment-service uses the
    /// consignment's id).
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub struct ReservationId(TextRule {
        trim: false,
        form: Form::Token,
        ..TextRule::line("reservation_id", MAX_TEXT_LEN)
    });
}

text_newtype! {
    /// The account a reservation's room is for (consignment-service: the
    /// consignment's owner): not empty, at most 200 bytes of printable text.
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub struct OwnerId(TextRule {
        trim: false,
        empty: Empty::Required("the account the room is for"),
        form: Form::Printable,
        ..TextRule::line("owner_id", MAX_TEXT_LEN)
    });
}

/// The most room one account may hold on the fleet, held and confirmed
/// reservations together, so no account can take what everyone needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountQuota {
    /// Containers.
    pub containers: i64,
    /// Kilograms.
    pub weight: i64,
}

impl AccountQuota {
    /// The default: a quarter of the seed fleet's room (1 700 containers,
    /// 800 000 kg), so at least four accounts can always ship.
    pub const DEFAULT: Self = Self {
        containers: 425,
        weight: 200_000,
    };

    /// Whether an account holding `held` may take `spec` more.
    pub fn allows(self, held: Held, spec: Specification) -> bool {
        held.containers + i64::from(spec.capacity.get()) <= self.containers
            && held.weight + i64::from(spec.max_weight.get()) <= self.weight
    }
}

/// The room an account holds: its held and confirmed reservations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Containers.
    pub containers: i64,
    /// Kilograms.
    pub weight: i64,
}

/// How a reservation went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// The room is held for the id: taken now, or by an earlier call with
    /// the same id (nothing more taken).
    Held(Reservation),
    /// No vessel has the room.
    NoRoom,
    /// The owner holds `.0` already; taking this too would pass the cap.
    OverQuota(Held),
}

impl Reserved {
    /// The reservation, if the room is held.
    pub fn into_held(self) -> Option<Reservation> {
        match self {
            Self::Held(reservation) => Some(reservation),
            Self::NoRoom | Self::OverQuota(_) => None,
        }
    }
}

/// Room taken on one vessel for one reservation id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Whose room this is.
    pub id: ReservationId,
    /// Where the room is.
    pub vessel_id: VesselId,
    /// How much was taken.
    pub taken: Specification,
    /// `None` once confirmed: the room is kept until released.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<Reservation> for proto::Reservation {
    fn from(reservation: Reservation) -> Self {
        Self {
            reservation_id: reservation.id.0,
            vessel_id: reservation.vessel_id.0,
            capacity: reservation.taken.capacity.get(),
            weight: reservation.taken.max_weight.get(),
            confirmed: reservation.expires_at.is_none(),
            expires_at: reservation.expires_at.map(|at| prost_types::Timestamp {
                seconds: at.timestamp(),
                nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
            }),
        }
    }
}

/// What a consignment needs of a vessel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Specification {
    /// At least this many containers.
    pub capacity: Capacity,
    /// At least this weight.
    pub max_weight: Weight,
}

impl fmt::Display for Specification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "capacity >= {} containers and max_weight >= {} kg",
            self.capacity.get(),
            self.max_weight.get()
        )
    }
}

impl TryFrom<proto::Specification> for Specification {
    type Error = InvalidInput;

    fn try_from(spec: proto::Specification) -> Result<Self, Self::Error> {
        Ok(Self {
            capacity: Capacity::parse(spec.capacity, "capacity")?,
            max_weight: Weight::parse(spec.max_weight, "max_weight")?,
        })
    }
}

/// A vessel as a caller asks to create it: the id may be left to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVessel {
    /// `None`: generate one.
    pub id: Option<VesselId>,
    /// Display name.
    pub name: VesselName,
    /// How many containers it carries.
    pub capacity: Capacity,
    /// The heaviest load it carries.
    pub max_weight: Weight,
    /// Whether it can take consignments now (absent on the wire: yes).
    pub available: bool,
    /// Who owns it; may be empty.
    pub owner_id: String,
}

impl NewVessel {
    /// The vessel to store, with an id generated if none was given.
    pub fn into_vessel(self) -> Vessel {
        Vessel {
            id: self.id.unwrap_or_else(VesselId::generate),
            name: self.name,
            capacity: self.capacity,
            max_weight: self.max_weight,
            available: self.available,
            owner_id: self.owner_id,
            remaining: Room {
                capacity: self.capacity.get(),
                weight: self.max_weight.get(),
            },
        }
    }
}

impl TryFrom<proto::Vessel> for NewVessel {
    type Error = InvalidInput;

    fn try_from(vessel: proto::Vessel) -> Result<Self, Self::Error> {
        let id = if vessel.id.trim().is_empty() {
            None
        } else {
            Some(VesselId::parse(&vessel.id)?)
        };
        Ok(Self {
            id,
            name: VesselName::parse(&vessel.name)?,
            capacity: Capacity::parse(vessel.capacity, "capacity")?,
            max_weight: Weight::parse(vessel.max_weight, "max_weight")?,
            available: vessel.available.unwrap_or(true),
            owner_id: TextRule {
                trim: false,
                empty: Empty::Allowed,
                ..TextRule::line("owner_id", MAX_TEXT_LEN)
            }
            .check(&vessel.owner_id)?
            .trim()
            .to_owned(),
        })
    }
}

impl From<Vessel> for proto::Vessel {
    fn from(vessel: Vessel) -> Self {
        Self {
            id: vessel.id.0,
            capacity: vessel.capacity.get(),
            max_weight: vessel.max_weight.get(),
            name: vessel.name.0,
            available: Some(vessel.available),
            owner_id: vessel.owner_id,
            remaining_capacity: vessel.remaining.capacity,
            remaining_weight: vessel.remaining.weight,
            used_capacity: vessel.capacity.get() - vessel.remaining.capacity,
            used_weight: vessel.max_weight.get() - vessel.remaining.weight,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto_vessel() -> proto::Vessel {
        proto::Vessel {
            id: String::new(),
            capacity: 10,
            max_weight: 1000,
            name: "Test".into(),
            available: None,
            owner_id: String::new(),
            ..Default::default()
        }
    }

    #[test]
    fn specification_needs_positive_numbers() {
        for (capacity, max_weight, field) in [(0, 1, "capacity"), (1, -5, "max_weight")] {
            let error = Specification::try_from(proto::Specification {
                capacity,
                max_weight,
            })
            .expect_err("not positive");
            assert!(error.to_string().starts_with(field), "{error}");
        }
    }

    #[test]
    fn new_vessel_defaults_to_available_and_generated_id() {
        let vessel = NewVessel::try_from(proto_vessel()).expect("valid");
        assert!(vessel.available);
        assert_eq!(vessel.id, None);
        let stored = vessel.into_vessel();
        assert!(!stored.id.as_str().is_empty());
        assert_ne!(stored.id, VesselId::generate());
    }

    #[test]
    fn new_vessel_rejects_blank_name_and_bad_numbers() {
        let cases = [
            (
                proto::Vessel {
                    name: "  ".into(),
                    ..proto_vessel()
                },
                "name",
            ),
            (
                proto::Vessel {
                    capacity: 0,
                    ..proto_vessel()
                },
                "capacity",
            ),
            (
                proto::Vessel {
                    max_weight: -1,
                    ..proto_vessel()
                },
                "max_weight",
            ),
            (
                proto::Vessel {
                    id: "a\u{0}b".into(),
                    ..proto_vessel()
                },
                "id",
            ),
        ];
        for (vessel, field) in cases {
            let error = NewVessel::try_from(vessel).expect_err("invalid");
            assert!(error.to_string().contains(field), "{error}");
        }
    }

    #[test]
    fn fits_needs_room_weight_and_availability() {
        let vessel = NewVessel::try_from(proto_vessel())
            .expect("valid")
            .into_vessel();
        let spec = |capacity, max_weight| Specification {
            capacity: Capacity(capacity),
            max_weight: Weight(max_weight),
        };
        assert!(vessel.fits(spec(10, 1000)));
        assert!(!vessel.fits(spec(11, 1000)));
        assert!(!vessel.fits(spec(10, 1001)));
        let half_taken = Vessel {
            remaining: Room {
                capacity: 5,
                weight: 500,
            },
            ..vessel.clone()
        };
        assert!(half_taken.fits(spec(5, 500)));
        assert!(!half_taken.fits(spec(6, 500)));
        assert!(!half_taken.fits(spec(5, 501)));
        let unavailable = Vessel {
            available: false,
            ..vessel
        };
        assert!(!unavailable.fits(spec(1, 1)));
    }

    #[test]
    fn stored_room_outside_the_vessel_is_refused() {
        let size = (Capacity(10), Weight(100));
        assert!(Room::parse(10, 100, size).is_ok());
        assert!(Room::parse(0, 0, size).is_ok());
        for (capacity, weight) in [(-1, 0), (11, 0), (0, -1), (0, 101)] {
            assert!(
                Room::parse(capacity, weight, size).is_err(),
                "{capacity} {weight}"
            );
        }
    }

    #[test]
    fn reservation_ids_are_printable_bounded_and_without_spaces() {
        assert!(ReservationId::parse("5b7f6c1e-0b1d-4f4e-9d7e-1f2a3b4c5d6e").is_ok());
        for bad in ["", "a b", "a\u{0}", "a\nb", &"x".repeat(201)] {
            assert!(ReservationId::parse(bad).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any vessel or specification a caller sends is parsed or refused,
        /// never a panic.
        #[test]
        fn arbitrary_vessels_are_parsed_or_refused(
            id in any::<String>(),
            name in any::<String>(),
            owner_id in any::<String>(),
            capacity in any::<i32>(),
            max_weight in any::<i32>(),
            available in any::<Option<bool>>(),
        ) {
            let vessel = proto::Vessel { id, name, owner_id, capacity, max_weight, available, ..Default::default() };
            if let Ok(vessel) = NewVessel::try_from(vessel) {
                let vessel = vessel.into_vessel();
                prop_assert!(!vessel.id.as_str().chars().any(char::is_control));
                prop_assert!(!vessel.name.as_str().chars().any(char::is_control));
            }
            let _ = Specification::try_from(proto::Specification { capacity, max_weight });
        }
    }
}
