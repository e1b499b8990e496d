//! Consignments as validated domain types. Proto messages become these
//! through `TryFrom`-style parsing at the handler edge; a failure is a
//! message a person can act on.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shippy_proto::consignment::v1 as proto;
pub use shippy_service::input::InvalidInput;

const MAX_TEXT_LEN: usize = 500;
/// The most containers one consignment may have.
pub const MAX_CONTAINERS: usize = 10_000;
/// The largest consignment accepted, encoded (a request of its own, and one
/// item of a `GetConsignments` page).
pub const MAX_CONSIGNMENT_BYTES: usize = 2 * 1024 * 1024;
/// The largest request consignment-service decodes: a largest consignment
/// and room for the rest; anything bigger is refused before it is decoded.
pub const MAX_REQUEST_BYTES: usize = MAX_CONSIGNMENT_BYTES + 64 * 1024;
/// The longest vessel id vessel-service hands out (its ids are at most 200
/// bytes): what a consignment's size is reckoned with before its vessel is
/// known.
pub const MAX_VESSEL_ID_BYTES: usize = 200;
/// The most bytes a `created_at` field takes encoded: tag and length (2),
/// seconds (1 + 10) and nanos (1 + 5) at their longest.
const MAX_TIMESTAMP_FIELD_BYTES: usize = 19;
/// The longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;

/// One container of a consignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// Unique within its consignment.
    pub id: String,
    /// The customer it belongs to.
    pub customer_id: String,
    /// Where it comes from.
    pub origin: String,
    /// The user responsible for it (the creator unless said otherwise).
    pub user_id: String,
}

/// A consignment as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consignment {
    /// Unique id (a UUID).
    pub id: String,
    /// The user who created it.
    pub owner_id: String,
    /// What it is.
    pub description: Description,
    /// Total weight.
    pub weight: Weight,
    /// What it is packed in.
    pub containers: Containers,
    /// The vessel that carries it.
    pub vessel_id: String,
    /// When it was created (microsecond precision).
    pub created_at: DateTime<Utc>,
    /// Where it is in its life: only confirmed ones are listed.
    pub state: State,
    /// The caller's idempotency key and what it was sent with, if the
    /// create carried one: one consignment per owner and key.
    pub idempotency: Option<Idempotency>,
}

impl Consignment {
    /// The most bytes this consignment takes encoded as `GetConsignments`
    /// answers it (the documented limit, [`MAX_CONSIGNMENT_BYTES`]), its ids
    /// and owner included, whichever vessel it lands on and whenever it is
    /// created.
    pub fn stored_len_bound(&self) -> usize {
        use prost::Message as _;
        let mut encoded = proto::Consignment::from(self.clone());
        encoded.vessel_id.clear();
        encoded.created_at = None;
        encoded.encoded_len()
            + 1
            + prost::length_delimiter_len(MAX_VESSEL_ID_BYTES)
            + MAX_VESSEL_ID_BYTES
            + MAX_TIMESTAMP_FIELD_BYTES
    }
}

/// A create's idempotency key (metadata `idempotency-key`): 1 to
/// [`MAX_IDEMPOTENCY_KEY_BYTES`] bytes of printable ASCII without spaces,
/// scoped to the caller's account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Checks a key given by a caller or read from the store.
    pub fn parse(key: &str) -> Result<Self, InvalidInput> {
        if key.is_empty()
            || key.len() > MAX_IDEMPOTENCY_KEY_BYTES
            || !key.bytes().all(|byte| byte.is_ascii_graphic())
        {
            return Err(InvalidInput(format!(
                "idempotency-key must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} characters of \
                 printable ASCII without spaces (a UUID is a good choice), got {}",
                shippy_service::text::excerpt(key)
            )));
        }
        Ok(Self(key.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What makes a create repeatable: its key, and a fingerprint of what was
/// sent with it (so the same key with another consignment is told apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// The caller's key.
    pub key: IdempotencyKey,
    /// SHA-256 (hex) of the consignment as sent: description, weight and
    /// containers, before any id was generated.
    pub fingerprint: String,
}

impl Idempotency {
    /// `key` with the fingerprint of `sent`.
    pub fn of(key: IdempotencyKey, sent: &proto::Consignment) -> Self {
        use prost::Message as _;
        use sha2::Digest as _;
        use std::fmt::Write as _;
        // What the caller chose; fields the service sets are left out.
        let chosen = proto::Consignment {
            description: sent.description.clone(),
            weight: sent.weight,
            containers: sent.containers.clone(),
            ..Default::default()
        };
        let digest = sha2::Sha256::digest(chosen.encode_to_vec());
        let fingerprint = digest
            .iter()
            .fold(String::with_capacity(64), |mut hex, byte| {
                let _ = write!(hex, "{byte:02x}");
                hex
            });
        Self { key, fingerprint }
    }
}

/// Where a consignment is in its life. Placing one is a saga with
/// vessel-service (reserve the room, store the consignment, confirm the
/// reservation); cancelling gives the room back. Each step moves the state
/// on only from the state it expects, so a retry, a second instance, or the
/// recovery sweep never undoes another's step.
///
/// ```text
/// pending ──confirm──▶ confirmed ──cancel──▶ cancelling ──release──▶ cancelled
///    └──────── reservation lost (expired) ─────▶┘
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Stored, its room reserved but not yet confirmed.
    Pending,
    /// Its room is confirmed: it ships, and it is listed.
    Confirmed,
    /// Cancelled (or its placing failed): its room is being given back.
    Cancelling,
    /// Cancelled and its room given back.
    Cancelled,
}

impl State {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
        }
    }

    /// The state a stored name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Confirmed,
            Self::Cancelling,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|state| state.as_str() == name)
    }
}

/// What a consignment is: free text (line breaks may stay, NUL and other
/// control characters not), not empty, at most 500 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    /// Checks a description given by a caller or read from the store (an
    /// owned one is kept, not copied).
    pub fn parse(value: impl AsRef<str> + Into<String>) -> Result<Self, InvalidInput> {
        shippy_service::text::check("description", value.as_ref())
            .map_err(|error| InvalidInput(error.to_string()))?;
        let value = bounded(value.into(), "description")?;
        if value.is_empty() {
            return Err(InvalidInput("description must not be empty".into()));
        }
        Ok(Self(value))
    }

    /// The description as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A consignment's total weight in kilograms: greater than 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weight(i32);

impl Weight {
    /// Checks a weight given by a caller or read from the store.
    pub fn parse(kilograms: i32) -> Result<Self, InvalidInput> {
        if kilograms <= 0 {
            return Err(InvalidInput(format!(
                "weight must be greater than 0, got {kilograms}"
            )));
        }
        Ok(Self(kilograms))
    }

    /// The weight in kilograms.
    pub fn get(self) -> i32 {
        self.0
    }
}

/// A consignment's containers: at least one, at most [`MAX_CONTAINERS`],
/// ids present and unique, every field one line of at most 500 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Containers(Vec<Container>);

/// Refuses a number of containers outside 1..=[`MAX_CONTAINERS`].
fn check_count(count: usize) -> Result<(), InvalidInput> {
    if count == 0 {
        return Err(InvalidInput(
            "a consignment needs at least one container".into(),
        ));
    }
    if count > MAX_CONTAINERS {
        return Err(InvalidInput(format!(
            "a consignment holds at most {MAX_CONTAINERS} containers"
        )));
    }
    Ok(())
}

impl Containers {
    /// Checks containers given by a caller (ids and owners filled in) or
    /// read from the store.
    pub fn parse(containers: Vec<Container>) -> Result<Self, InvalidInput> {
        check_count(containers.len())?;
        let mut checked = Vec::with_capacity(containers.len());
        for (index, container) in containers.into_iter().enumerate() {
            let id = text(container.id, "container id")?;
            if id.is_empty() {
                return Err(InvalidInput(format!("container {} has no id", index + 1)));
            }
            checked.push(Container {
                id,
                customer_id: text(container.customer_id, "container customer_id")?,
                origin: text(container.origin, "container origin")?,
                user_id: text(container.user_id, "container user_id")?,
            });
        }
        let mut seen = HashSet::with_capacity(checked.len());
        for (index, container) in checked.iter().enumerate() {
            if !seen.insert(container.id.as_str()) {
                return Err(InvalidInput(format!(
                    "container id {} appears more than once (container {})",
                    shippy_service::text::excerpt(&container.id),
                    index + 1
                )));
            }
        }
        Ok(Self(checked))
    }

    /// The containers.
    pub fn as_slice(&self) -> &[Container] {
        &self.0
    }

    /// How many containers a vessel must carry.
    pub fn capacity_needed(&self) -> i32 {
        i32::try_from(self.0.len()).unwrap_or(i32::MAX)
    }
}

/// A consignment as a caller asks to create it, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConsignment {
    /// What it is.
    pub description: Description,
    /// Total weight.
    pub weight: Weight,
    /// Containers with ids (generated where the caller gave none) and owners
    /// (the caller where none was given).
    pub containers: Containers,
}

/// One line of text: no control characters.
fn text(value: String, what: &str) -> Result<String, InvalidInput> {
    shippy_service::text::check_line(what, &value)
        .map_err(|error| InvalidInput(error.to_string()))?;
    bounded(value, what)
}

/// `value` trimmed, if at most [`MAX_TEXT_LEN`] bytes; kept as it is (not
/// copied) when there was nothing to trim, as there never is when read back.
fn bounded(value: String, what: &str) -> Result<String, InvalidInput> {
    let trimmed = value.trim();
    if trimmed.len() > MAX_TEXT_LEN {
        return Err(InvalidInput(format!(
            "{what} must be at most {MAX_TEXT_LEN} bytes"
        )));
    }
    Ok(if trimmed.len() == value.len() {
        value
    } else {
        trimmed.to_owned()
    })
}

impl NewConsignment {
    /// Checks `consignment` as sent by `caller` (the token's subject): a
    /// container without an id gets a generated one, without a `user_id`
    /// the caller's.
    pub fn parse(consignment: proto::Consignment, caller: &str) -> Result<Self, InvalidInput> {
        let description = Description::parse(&consignment.description)?;
        let weight = Weight::parse(consignment.weight)?;
        // Before any id is generated for a request that is too big.
        check_count(consignment.containers.len())?;
        let containers = consignment
            .containers
            .into_iter()
            .map(|container| Container {
                id: if container.id.trim().is_empty() {
                    uuid::Uuid::new_v4().to_string()
                } else {
                    container.id
                },
                user_id: if container.user_id.trim().is_empty() {
                    caller.to_owned()
                } else {
                    container.user_id
                },
                customer_id: container.customer_id,
                origin: container.origin,
            })
            .collect();
        Ok(Self {
            description,
            weight,
            containers: Containers::parse(containers)?,
        })
    }

    /// How many containers a vessel must carry.
    pub fn capacity_needed(&self) -> i32 {
        self.containers.capacity_needed()
    }
}

impl From<Container> for proto::Container {
    fn from(container: Container) -> Self {
        Self {
            id: container.id,
            customer_id: container.customer_id,
            origin: container.origin,
            user_id: container.user_id,
        }
    }
}

impl From<Consignment> for proto::Consignment {
    fn from(consignment: Consignment) -> Self {
        Self {
            id: consignment.id,
            description: consignment.description.0,
            weight: consignment.weight.get(),
            containers: consignment
                .containers
                .0
                .into_iter()
                .map(Into::into)
                .collect(),
            vessel_id: consignment.vessel_id,
            owner_id: consignment.owner_id,
            created_at: Some(shippy_proto::timestamp(consignment.created_at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> proto::Consignment {
        proto::Consignment {
            description: "Test".into(),
            weight: 100,
            containers: vec![
                proto::Container {
                    id: "c1".into(),
                    customer_id: "cust001".into(),
                    origin: "Manchester".into(),
                    user_id: String::new(),
                },
                proto::Container {
                    id: String::new(),
                    customer_id: "cust002".into(),
                    origin: "Derby".into(),
                    user_id: "someone".into(),
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn containers_default_to_the_caller_and_get_ids() {
        let parsed = NewConsignment::parse(sample(), "caller-1").unwrap();
        let containers = parsed.containers.as_slice();
        assert_eq!(containers[0].user_id, "caller-1");
        assert_eq!(containers[1].user_id, "someone");
        assert!(!containers[1].id.is_empty());
        assert_eq!(parsed.capacity_needed(), 2);
    }

    #[test]
    fn bad_consignments_say_what_is_wrong() {
        let mut duplicate = sample();
        duplicate.containers[1].id = "c1".into();
        let cases = [
            (
                proto::Consignment {
                    description: " ".into(),
                    ..sample()
                },
                "description",
            ),
            (
                proto::Consignment {
                    weight: 0,
                    ..sample()
                },
                "weight",
            ),
            (
                proto::Consignment {
                    containers: vec![],
                    ..sample()
                },
                "at least one container",
            ),
            (duplicate, "\"c1\" appears more than once"),
        ];
        for (bad, wanted) in cases {
            let error = NewConsignment::parse(bad, "caller").unwrap_err();
            assert!(error.0.contains(wanted), "{error}");
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn container() -> impl Strategy<Value = proto::Container> {
        (
            any::<String>(),
            any::<String>(),
            any::<String>(),
            any::<String>(),
        )
            .prop_map(|(id, customer_id, origin, user_id)| proto::Container {
                id,
                customer_id,
                origin,
                user_id,
            })
    }

    proptest! {
        /// Any consignment a caller sends is parsed or refused, never a
        /// panic; what is accepted holds no NUL.
        #[test]
        fn arbitrary_consignments_are_parsed_or_refused(
            description in any::<String>(),
            weight in any::<i32>(),
            containers in proptest::collection::vec(container(), 0..5),
            caller in any::<String>(),
        ) {
            let consignment = proto::Consignment {
                description,
                weight,
                containers,
                ..Default::default()
            };
            match NewConsignment::parse(consignment, &caller) {
                Ok(new) => {
                    prop_assert!(!new.description.as_str().contains('\0'));
                    for container in new.containers.as_slice() {
                        prop_assert!(!container.origin.chars().any(char::is_control));
                    }
                }
                Err(error) => prop_assert!(error.0.len() < 1_000, "{}", error.0.len()),
            }
        }
    }
}
