//! The JSON bodies of the API: the protos' messages with their field names
//! (snake_case), as serde types. Inputs refuse unknown fields, so a typo is
//! a 400 naming it rather than a silently ignored value.

use serde::{Deserialize, Serialize};
use shippy_proto::{consignment::v1 as consignment, user::v1 as user, vessel::v1 as vessel};

fn timestamp(time: Option<shippy_proto::Timestamp>) -> Option<String> {
    let time = time?;
    let nanos = u32::try_from(time.nanos).ok()?;
    chrono::DateTime::from_timestamp(time.seconds, nanos).map(|time| time.to_rfc3339())
}

/// `POST /api/v1/users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub email: String,
    #[serde(default)]
    pub company: String,
    pub password: String,
}

/// `POST /api/v1/login`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub email: String,
    pub password: String,
}

/// A user's profile (never the password).
#[derive(Debug, Serialize)]
pub struct User {
    pub id: String,
    pub name: String,
    pub company: String,
    pub email: String,
    pub created_at: Option<String>,
}

impl From<user::UserProfile> for User {
    fn from(profile: user::UserProfile) -> Self {
        Self {
            id: profile.id,
            name: profile.name,
            company: profile.company,
            email: profile.email,
            created_at: timestamp(profile.created_at),
        }
    }
}

/// A container, as sent and as answered.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Container {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub customer_id: String,
    #[serde(default)]
    pub origin: String,
    #[serde(default)]
    pub user_id: String,
}

/// `POST /api/v1/consignments`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewConsignment {
    pub description: String,
    pub weight: i32,
    #[serde(default)]
    pub containers: Vec<Container>,
    /// Taken because the original's `consignment.json` names one, and passed
    /// on as over gRPC: consignment-service picks the vessel itself (the
    /// answer's `vessel_id` says which).
    #[serde(default)]
    pub vessel_id: String,
}

impl From<NewConsignment> for consignment::Consignment {
    fn from(new: NewConsignment) -> Self {
        Self {
            description: new.description,
            weight: new.weight,
            containers: new
                .containers
                .into_iter()
                .map(|c| consignment::Container {
                    id: c.id,
                    customer_id: c.customer_id,
                    origin: c.origin,
                    user_id: c.user_id,
                })
                .collect(),
            vessel_id: new.vessel_id,
            ..Default::default()
        }
    }
}

/// A stored consignment.
#[derive(Debug, Serialize)]
pub struct Consignment {
    pub id: String,
    pub description: String,
    pub weight: i32,
    pub containers: Vec<Container>,
    pub vessel_id: String,
    pub owner_id: String,
    pub created_at: Option<String>,
}

impl From<consignment::Consignment> for Consignment {
    fn from(c: consignment::Consignment) -> Self {
        Self {
            id: c.id,
            description: c.description,
            weight: c.weight,
            containers: c
                .containers
                .into_iter()
                .map(|c| Container {
                    id: c.id,
                    customer_id: c.customer_id,
                    origin: c.origin,
                    user_id: c.user_id,
                })
                .collect(),
            vessel_id: c.vessel_id,
            owner_id: c.owner_id,
            created_at: timestamp(c.created_at),
        }
    }
}

/// `POST /api/v1/vessels`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewVessel {
    #[serde(default)]
    pub id: String,
    pub name: String,
    pub capacity: i32,
    pub max_weight: i32,
    #[serde(default)]
    pub available: Option<bool>,
    #[serde(default)]
    pub owner_id: String,
}

impl From<NewVessel> for vessel::Vessel {
    fn from(new: NewVessel) -> Self {
        Self {
            id: new.id,
            capacity: new.capacity,
            max_weight: new.max_weight,
            name: new.name,
            available: new.available,
            owner_id: new.owner_id,
            ..Default::default()
        }
    }
}

/// A vessel of the fleet.
#[derive(Debug, Serialize)]
pub struct Vessel {
    pub id: String,
    pub name: String,
    pub capacity: i32,
    pub max_weight: i32,
    pub available: bool,
    pub owner_id: String,
    /// Containers not yet taken by consignments.
    pub remaining_capacity: i32,
    /// Kilograms not yet taken by consignments.
    pub remaining_weight: i32,
    pub used_capacity: i32,
    pub used_weight: i32,
}

impl From<vessel::Vessel> for Vessel {
    fn from(v: vessel::Vessel) -> Self {
        Self {
            id: v.id,
            name: v.name,
            capacity: v.capacity,
            max_weight: v.max_weight,
            available: v.available.unwrap_or(true),
            owner_id: v.owner_id,
            remaining_capacity: v.remaining_capacity,
            remaining_weight: v.remaining_weight,
            used_capacity: v.used_capacity,
            used_weight: v.used_weight,
        }
    }
}

/// `?page_size=&page_token=` of the list routes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    #[serde(default)]
    pub page_size: u32,
    #[serde(default)]
    pub page_token: String,
}
