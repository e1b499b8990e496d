//! The JSON bodies of the API: the protos' messages with their field names
//! (snake_case), as serde types. Inputs refuse unknown fields, so a typo is
//! a 400 naming it rather than a silently ignored value.
//!
//! Their OpenAPI schemas are derived from these types (`ToSchema`), with
//! the constraints the services enforce (`crate::openapi::schema`).

use serde::{Deserialize, Deserializer, Serialize, de::Error as _};
use shippy_proto::{consignment::v1 as consignment, user::v1 as user, vessel::v1 as vessel};
use utoipa::{IntoParams, ToSchema};

use crate::openapi::schema;

fn timestamp(time: Option<shippy_proto::Timestamp>) -> Option<String> {
    let time = time?;
    let nanos = u32::try_from(time.nanos).ok()?;
    chrono::DateTime::from_timestamp(time.seconds, nanos).map(|time| time.to_rfc3339())
}

/// A 32-bit whole number, written as JSON writes it: `5` or `5.0` (JSON
/// Schema's `integer`, and JavaScript's numbers, make no difference).
fn whole_i32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i32, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    let whole = match (number.as_i64(), number.as_f64()) {
        (Some(whole), _) => i32::try_from(whole).ok(),
        (None, Some(float))
            if float.fract() == 0.0
                && float >= f64::from(i32::MIN)
                && float <= f64::from(i32::MAX) =>
        {
            // Whole and in range: the cast is exact.
            #[allow(clippy::cast_possible_truncation)]
            Some(float as i32)
        }
        _ => None,
    };
    whole.ok_or_else(|| {
        D::Error::custom(format!(
            "expected a whole number from {} to {}, got {number}",
            i32::MIN,
            i32::MAX
        ))
    })
}

/// `POST /api/v1/users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    #[schema(schema_with = schema::user_name)]
    pub name: String,
    #[schema(schema_with = schema::new_email)]
    pub email: String,
    #[serde(default)]
    #[schema(schema_with = schema::company)]
    pub company: String,
    #[schema(schema_with = schema::new_password)]
    pub password: String,
}

/// `POST /api/v1/login`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    #[schema(schema_with = schema::email)]
    pub email: String,
    #[schema(schema_with = schema::password)]
    pub password: String,
}

/// A user's profile (never the password).
#[derive(Debug, Serialize, ToSchema)]
// Only serialized: documents `additionalProperties: false`, so an answer
// with a field the document lacks fails the fuzz run.
#[serde(deny_unknown_fields)]
pub struct User {
    pub id: String,
    pub name: String,
    pub company: String,
    pub email: String,
    /// RFC 3339; absent from accounts stored before it was recorded.
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
}

/// The answer of `POST /api/v1/users` and `GET /api/v1/me`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    pub user: User,
}

/// The answer of `POST /api/v1/login`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// A JWT: send it as `authorization: Bearer <token>`.
    pub token: String,
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

/// A container, as sent and as answered. Sent: an empty `id` gets a
/// generated one, an empty `user_id` the caller's; ids must differ within
/// a consignment.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Container {
    #[serde(default)]
    #[schema(schema_with = schema::container_field)]
    pub id: String,
    #[serde(default)]
    #[schema(schema_with = schema::container_field)]
    pub customer_id: String,
    #[serde(default)]
    #[schema(schema_with = schema::container_field)]
    pub origin: String,
    #[serde(default)]
    #[schema(schema_with = schema::container_field)]
    pub user_id: String,
}

impl From<Container> for consignment::Container {
    fn from(c: Container) -> Self {
        Self {
            id: c.id,
            customer_id: c.customer_id,
            origin: c.origin,
            user_id: c.user_id,
        }
    }
}

impl From<consignment::Container> for Container {
    fn from(c: consignment::Container) -> Self {
        Self {
            id: c.id,
            customer_id: c.customer_id,
            origin: c.origin,
            user_id: c.user_id,
        }
    }
}

/// `POST /api/v1/consignments`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConsignment {
    #[schema(schema_with = schema::description)]
    pub description: String,
    /// Kilograms.
    #[serde(deserialize_with = "whole_i32")]
    #[schema(minimum = 1, maximum = 2_147_483_647)]
    pub weight: i32,
    /// consignment-service refuses a consignment without containers, so
    /// documented as required although a missing list parses as empty.
    /// At most 10 000, and the whole body at most 64 KiB (else 413): a
    /// list at its limit fits only with short fields.
    #[serde(default)]
    #[schema(required = true, min_items = 1, max_items = 10_000)]
    pub containers: Vec<Container>,
    /// Taken because the original's `consignment.json` names one, and passed
    /// on as over gRPC: consignment-service picks the vessel itself (the
    /// answer's `vessel_id` says which).
    #[serde(default)]
    #[schema(schema_with = schema::ignored_vessel_id)]
    pub vessel_id: String,
}

impl From<NewConsignment> for consignment::Consignment {
    fn from(new: NewConsignment) -> Self {
        Self {
            description: new.description,
            weight: new.weight,
            containers: new.containers.into_iter().map(Into::into).collect(),
            vessel_id: new.vessel_id,
            ..Default::default()
        }
    }
}

/// A stored consignment.
#[derive(Debug, Serialize, ToSchema)]
// Only serialized: documents `additionalProperties: false`, so an answer
// with a field the document lacks fails the fuzz run.
#[serde(deny_unknown_fields)]
pub struct Consignment {
    pub id: String,
    pub description: String,
    pub weight: i32,
    pub containers: Vec<Container>,
    /// The vessel it was placed on; empty while it is being placed.
    pub vessel_id: String,
    pub owner_id: String,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
}

/// The answer of `POST /api/v1/consignments` and
/// `DELETE /api/v1/consignments/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsignmentResponse {
    pub consignment: Consignment,
}

/// A page of `GET /api/v1/consignments`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsignmentPage {
    pub consignments: Vec<Consignment>,
    /// Pass as `page_token` for the next page; empty on the last one.
    pub next_page_token: String,
}

impl From<consignment::Response> for ConsignmentPage {
    fn from(answer: consignment::Response) -> Self {
        Self {
            consignments: answer
                .consignments
                .into_iter()
                .map(Consignment::from)
                .collect(),
            next_page_token: answer.next_page_token,
        }
    }
}

impl From<consignment::Consignment> for Consignment {
    fn from(c: consignment::Consignment) -> Self {
        Self {
            id: c.id,
            description: c.description,
            weight: c.weight,
            containers: c.containers.into_iter().map(Into::into).collect(),
            vessel_id: c.vessel_id,
            owner_id: c.owner_id,
            created_at: timestamp(c.created_at),
        }
    }
}

/// `POST /api/v1/vessels`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVessel {
    #[serde(default)]
    #[schema(schema_with = schema::vessel_id)]
    pub id: String,
    #[schema(schema_with = schema::vessel_name)]
    pub name: String,
    /// Containers.
    #[serde(deserialize_with = "whole_i32")]
    #[schema(minimum = 1, maximum = 2_147_483_647)]
    pub capacity: i32,
    /// Kilograms.
    #[serde(deserialize_with = "whole_i32")]
    #[schema(minimum = 1, maximum = 2_147_483_647)]
    pub max_weight: i32,
    /// Whether consignments may be placed on it; absent or null: yes.
    #[serde(default)]
    pub available: Option<bool>,
    #[serde(default)]
    #[schema(schema_with = schema::owner_id)]
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
#[derive(Debug, Serialize, ToSchema)]
// Only serialized: documents `additionalProperties: false`, so an answer
// with a field the document lacks fails the fuzz run.
#[serde(deny_unknown_fields)]
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

/// The answer of `POST /api/v1/vessels`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VesselResponse {
    pub vessel: Vessel,
}

/// A page of `GET /api/v1/vessels`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VesselPage {
    pub vessels: Vec<Vessel>,
    /// Pass as `page_token` for the next page; empty on the last one.
    pub next_page_token: String,
}

impl From<vessel::Response> for VesselPage {
    fn from(answer: vessel::Response) -> Self {
        Self {
            vessels: answer.vessels.into_iter().map(Vessel::from).collect(),
            next_page_token: answer.next_page_token,
        }
    }
}

/// `?page_size=&page_token=` of `GET /api/v1/vessels`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FleetPage {
    /// Vessels per page; 0 or absent: 50; more than 200: 200.
    #[serde(default)]
    #[param(format = "uint32", minimum = 0, maximum = 4_294_967_295_u64)]
    pub page_size: u32,
    #[serde(default)]
    #[param(schema_with = schema::fleet_page_token)]
    pub page_token: String,
}

/// `?page_size=&page_token=` of `GET /api/v1/consignments`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Consignments per page; 0 or absent: 50; more than 100: 100.
    #[serde(default)]
    #[param(format = "uint32", minimum = 0, maximum = 4_294_967_295_u64)]
    pub page_size: u32,
    /// The `next_page_token` of the previous page; empty or absent: the
    /// first page. Any other value is 400.
    #[serde(default)]
    #[param(schema_with = schema::page_token)]
    pub page_token: String,
}

impl From<FleetPage> for vessel::ListRequest {
    fn from(page: FleetPage) -> Self {
        Self {
            page_size: page.page_size,
            page_token: page.page_token,
        }
    }
}

impl From<Page> for consignment::GetRequest {
    fn from(page: Page) -> Self {
        Self {
            page_size: page.page_size,
            page_token: page.page_token,
        }
    }
}
