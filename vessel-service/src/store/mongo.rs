//! The MongoDB vessel store (the official driver), one document per vessel
//! (the documents' layout in `mongo/documents.rs`).

mod documents;

use std::time::Duration;

use futures::TryStreamExt;
use mongodb::{
    Collection, Database,
    bson::{self, Document, doc},
    options::ReturnDocument,
};

use self::documents::{HolderDocument, VesselDocument, to_chrono};
use shippy_store::{DatabaseError, MongoStorage};

use super::{Storage, StoreError, VesselStore, Wanted};
use crate::domain::{
    AccountQuota, Held, OwnerId, Reservation, ReservationId, Reserved, Specification, Vessel,
    VesselId,
};

/// Vessels in a MongoDB collection named `vessels`. Each vessel's
/// reservations live in its own document (`reservations`, an array), so
/// taking room and recording who holds it is one atomic single-document
/// update — no multi-document transaction needed.
#[derive(Debug, Clone)]
pub struct MongoStore {
    database: Database,
    vessels: Collection<VesselDocument>,
    holders: Collection<HolderDocument>,
    /// One lease per owner while a reservation of theirs is being taken.
    account_leases: Collection<Document>,
}

/// How long an owner's lease lasts at most: a reserver that died holding it
/// blocks that owner's reservations no longer than this.
const LEASE: Duration = Duration::from_secs(10);
/// How long a reserver waits for another's lease on the same owner.
const LEASE_WAIT: Duration = Duration::from_secs(5);

/// The most reservations one vessel's document holds (each ~100 bytes, so
/// a few MiB at most, under MongoDB's 16 MiB document limit); past it the
/// vessel counts as full.
pub const MAX_RESERVATIONS_PER_VESSEL: usize = 50_000;

/// The name of the unique index on reservation ids: one id holds room on
/// one vessel only, even when two reservers with it race.
pub const RESERVATION_ID_INDEX: &str = "reservations__id_unique";
/// The name of the index an owner's reservations are summed by.
pub const RESERVATION_OWNER_INDEX: &str = "reservations_owner_id_1";
/// The name of the index the expiry sweep finds held reservations by.
pub const RESERVATION_EXPIRY_INDEX: &str = "reservations_expires_at_1";

/// The name of the index `find_available` is answered from (MongoDB's
/// default name for its keys). Vessel ids are `_id`, unique by MongoDB's own
/// index on it.
pub const BY_SIZE_INDEX: &str = "available_1_capacity_1_max_weight_1__id_1";

/// The filter and sort that find the smallest available vessel whose
/// remaining room fits `spec`; the index `prepare` creates holds the vessels
/// in this order. Public so a test can ask the server how it plans exactly
/// this query.
pub fn find_available_query(spec: Specification) -> (Document, Document) {
    let filter = doc! {
        "available": true,
        "capacity": { "$gte": spec.capacity.get() },
        "max_weight": { "$gte": spec.max_weight.get() },
        "remaining_capacity": { "$gte": spec.capacity.get() },
        "remaining_weight": { "$gte": spec.max_weight.get() },
    };
    (filter, doc! { "capacity": 1, "max_weight": 1, "_id": 1 })
}

/// Vessel reads leave the reservations out: they can be many.
fn without_reservations() -> Document {
    doc! { "reservations": 0 }
}

impl MongoStorage for MongoStore {
    fn in_database(database: &Database) -> Self {
        Self {
            database: database.clone(),
            vessels: database.collection("vessels"),
            holders: database.collection("vessels"),
            account_leases: database.collection("account_leases"),
        }
    }
}

impl MongoStore {
    /// Takes `owner`'s lease (waiting up to [`LEASE_WAIT`] for another
    /// reserver's); answers the token that gives it back. MongoDB has no
    /// transaction here, so this is what serialises one owner's
    /// reservations: the sum of what they hold cannot grow under one.
    async fn lease(&self, owner: &OwnerId) -> Result<String, StoreError> {
        let token = uuid::Uuid::new_v4().to_string();
        let deadline = tokio::time::Instant::now() + LEASE_WAIT;
        let lease_ms = i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
        loop {
            let now = bson::DateTime::now();
            let until =
                bson::DateTime::from_millis(now.timestamp_millis().saturating_add(lease_ms));
            // Free (absent, or its time is up): ours. Held: the upsert's
            // insert collides with it (duplicate key).
            let taken = self
                .account_leases
                .update_one(
                    doc! { "_id": owner.as_str(), "until": { "$lte": now } },
                    doc! { "$set": { "until": until, "token": &token } },
                )
                .upsert(true)
                .await;
            match taken {
                Ok(_) => return Ok(token),
                Err(error) if shippy_store::mongo_duplicate_key(&error) => {}
                Err(error) => return Err(StoreError::from_mongo(error)),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Unavailable(
                    "another reservation of this account is still being taken".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Gives `owner`'s lease back (if it is still the one `token` took).
    async fn unlease(&self, owner: &OwnerId, token: &str) -> Result<(), StoreError> {
        self.account_leases
            .delete_one(doc! { "_id": owner.as_str(), "token": token })
            .await
            .map_err(StoreError::from_mongo)?;
        Ok(())
    }

    /// What `owner` holds: the sum of their reservations on every vessel.
    async fn held(&self, owner: &OwnerId) -> Result<Held, StoreError> {
        let mut sums = self
            .vessels
            .aggregate([
                doc! { "$match": { "reservations.owner_id": owner.as_str() } },
                doc! { "$unwind": "$reservations" },
                doc! { "$match": { "reservations.owner_id": owner.as_str() } },
                doc! { "$group": {
                    "_id": null,
                    "capacity": { "$sum": { "$toLong": "$reservations.capacity" } },
                    "weight": { "$sum": { "$toLong": "$reservations.weight" } },
                } },
            ])
            .await
            .map_err(StoreError::from_mongo)?;
        let Some(sum) = sums.try_next().await.map_err(StoreError::from_mongo)? else {
            return Ok(Held::default());
        };
        let figure = |name: &str| {
            sum.get_i64(name)
                .map_err(|error| StoreError::Corrupt(format!("an owner's {name} sum: {error}")))
        };
        Ok(Held {
            containers: figure("capacity")?,
            weight: figure("weight")?,
        })
    }

    /// [`VesselStore::reserve`], with the owner's lease held.
    async fn reserve_leased(
        &self,
        wanted: &Wanted,
        ttl: Duration,
        quota: AccountQuota,
    ) -> Result<Reserved, StoreError> {
        let Wanted { id, owner, spec } = wanted;
        let spec = *spec;
        let held = self.held(owner).await?;
        if !quota.allows(held, spec) {
            return Ok(Reserved::OverQuota(held));
        }
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let expires_at = bson::DateTime::from_millis(
            bson::DateTime::now()
                .timestamp_millis()
                .saturating_add(ttl_ms),
        );
        let (mut filter, sort) = find_available_query(spec);
        // A unique index does not look inside one document: a vessel already
        // holding this id is left alone here, another one is refused by the
        // index (duplicate key).
        filter.insert("reservations._id", doc! { "$ne": id.as_str() });
        // A document must stay well under MongoDB's 16 MiB: a vessel holding
        // this many reservations counts as full here.
        filter.insert(
            format!("reservations.{}", MAX_RESERVATIONS_PER_VESSEL - 1),
            doc! { "$exists": false },
        );
        // One findAndModify: the filter is checked on the document it
        // updates, so the room taken is never more than the room left.
        let taken = self
            .vessels
            .find_one_and_update(
                filter,
                doc! {
                    "$inc": {
                        "remaining_capacity": -spec.capacity.get(),
                        "remaining_weight": -spec.max_weight.get(),
                    },
                    "$push": { "reservations": {
                        "_id": id.as_str(),
                        "capacity": spec.capacity.get(),
                        "weight": spec.max_weight.get(),
                        "expires_at": expires_at,
                        "owner_id": owner.as_str(),
                    } },
                },
            )
            .sort(sort)
            .projection(without_reservations())
            .return_document(ReturnDocument::After)
            .await;
        let answer =
            |existing: Option<Reservation>| existing.map_or(Reserved::NoRoom, Reserved::Held);
        match taken {
            Ok(Some(vessel)) => {
                tracing::Span::current().record("vessel.id", vessel.id.as_str());
                Ok(Reserved::Held(Reservation {
                    id: id.clone(),
                    vessel_id: VesselId::parse(&vessel.id)
                        .map_err(|error| StoreError::Corrupt(error.to_string()))?,
                    taken: spec,
                    expires_at: to_chrono(expires_at),
                }))
            }
            // No vessel has the room — or the one that holds this id was
            // left out above because a concurrent reserver with it was first.
            Ok(None) => Ok(answer(self.reservation(id).await?)),
            // A concurrent reserver with the same id was first (the unique
            // index refused ours, so nothing was taken): answer theirs.
            Err(error) if shippy_store::mongo_duplicate_key(&error) => {
                Ok(answer(self.reservation(id).await?))
            }
            Err(error) => Err(StoreError::from_mongo(error)),
        }
    }

    /// The reservation `id` holds, read from its vessel's document.
    async fn reservation(&self, id: &ReservationId) -> Result<Option<Reservation>, StoreError> {
        let holder = self
            .holders
            .find_one(doc! { "reservations._id": id.as_str() })
            .projection(doc! { "reservations": { "$elemMatch": { "_id": id.as_str() } } })
            .await
            .map_err(StoreError::from_mongo)?;
        let Some(holder) = holder else {
            return Ok(None);
        };
        holder
            .reservations
            .into_iter()
            .find(|reservation| reservation.id == id.as_str())
            .map(|reservation| reservation.into_reservation(&holder.id))
            .transpose()
    }

    /// Gives `reservation`'s room back if its element is still in its
    /// vessel's document and matches `also`; says whether it did. The element
    /// goes and the room comes back in one update, so this happens once.
    async fn give_back(
        &self,
        reservation: &Reservation,
        also: Document,
    ) -> Result<bool, StoreError> {
        // The element read, amounts included: if the id was released and
        // reserved again meanwhile, this gives back nothing rather than the
        // wrong room.
        let mut element = doc! {
            "_id": reservation.id.as_str(),
            "capacity": reservation.taken.capacity.get(),
            "weight": reservation.taken.max_weight.get(),
        };
        element.extend(also);
        let result = self
            .vessels
            .update_one(
                doc! {
                    "_id": reservation.vessel_id.as_str(),
                    "reservations": { "$elemMatch": element },
                },
                doc! {
                    "$pull": { "reservations": { "_id": reservation.id.as_str() } },
                    "$inc": {
                        "remaining_capacity": reservation.taken.capacity.get(),
                        "remaining_weight": reservation.taken.max_weight.get(),
                    },
                },
            )
            .await
            .map_err(StoreError::from_mongo)?;
        Ok(result.modified_count == 1)
    }
}

impl Storage for MongoStore {
    type Error = StoreError;

    async fn prepare(&self) -> Result<(), StoreError> {
        let by_size = shippy_store::mongo_index(
            doc! { "available": 1, "capacity": 1, "max_weight": 1, "_id": 1 },
            BY_SIZE_INDEX,
        );
        let reservation_ids = shippy_store::unique_mongo_index(
            doc! { "reservations._id": 1 },
            RESERVATION_ID_INDEX,
            doc! { "reservations._id": { "$exists": true } },
        );
        let expiry = shippy_store::mongo_index(
            doc! { "reservations.expires_at": 1 },
            RESERVATION_EXPIRY_INDEX,
        );
        let owners =
            shippy_store::mongo_index(doc! { "reservations.owner_id": 1 }, RESERVATION_OWNER_INDEX);
        self.vessels
            .create_indexes([by_size, reservation_ids, expiry, owners])
            .await
            .map_err(StoreError::from_mongo)?;
        // Vessels stored before reservations existed start with all their room.
        self.vessels
            .update_many(
                doc! { "remaining_capacity": { "$exists": false } },
                vec![doc! { "$set": {
                    "remaining_capacity": "$capacity",
                    "remaining_weight": "$max_weight",
                } }],
            )
            .await
            .map_err(StoreError::from_mongo)?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        shippy_store::ping_mongo(&self.database).await
    }
}

impl VesselStore for MongoStore {
    async fn insert(&self, vessel: &Vessel) -> Result<(), StoreError> {
        match self.vessels.insert_one(VesselDocument::from(vessel)).await {
            Ok(_) => Ok(()),
            Err(error) if shippy_store::mongo_duplicate_key(&error) => {
                Err(StoreError::AlreadyExists(vessel.id.clone()))
            }
            Err(error) => Err(StoreError::from_mongo(error)),
        }
    }

    async fn insert_if_absent(&self, vessel: &Vessel) -> Result<bool, StoreError> {
        match self.insert(vessel).await {
            Ok(()) => Ok(true),
            Err(StoreError::AlreadyExists(_)) => Ok(false),
            Err(error) => Err(error),
        }
    }

    async fn get(&self, id: &VesselId) -> Result<Option<Vessel>, StoreError> {
        shippy_store::find_decoded(
            self.vessels
                .find_one(doc! { "_id": id.as_str() })
                .projection(without_reservations()),
        )
        .await
    }

    async fn list(&self, after: Option<&VesselId>, limit: u32) -> Result<Vec<Vessel>, StoreError> {
        let filter = match after {
            Some(id) => doc! { "_id": { "$gt": id.as_str() } },
            None => doc! {},
        };
        let documents = self
            .vessels
            .find(filter)
            .projection(without_reservations())
            .sort(doc! { "_id": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(StoreError::from_mongo)?;
        shippy_store::collect_decoded(documents).await
    }

    async fn find_available(&self, spec: Specification) -> Result<Option<Vessel>, StoreError> {
        let (filter, sort) = find_available_query(spec);
        shippy_store::find_decoded(
            self.vessels
                .find_one(filter)
                .sort(sort)
                .projection(without_reservations()),
        )
        .await
    }

    async fn reserve(
        &self,
        id: &ReservationId,
        owner: &OwnerId,
        spec: Specification,
        ttl: Duration,
        quota: AccountQuota,
    ) -> Result<Reserved, StoreError> {
        // A retry: the reservation this id holds is the answer, whatever
        // the cap says now.
        if let Some(existing) = self.reservation(id).await? {
            return Ok(Reserved::Held(existing));
        }
        let _turn = super::owner_turn(owner).await;
        let token = self.lease(owner).await?;
        let wanted = Wanted {
            id: id.clone(),
            owner: owner.clone(),
            spec,
        };
        let reserved = self.reserve_leased(&wanted, ttl, quota).await;
        // Given back whatever happened; if this fails, it ends with LEASE.
        if let Err(error) = self.unlease(owner, &token).await {
            tracing::warn!(%error, "an account's lease not given back; it lapses by itself");
        }
        reserved
    }

    async fn confirm(&self, id: &ReservationId) -> Result<Option<Reservation>, StoreError> {
        let now = bson::DateTime::now();
        let result = self
            .vessels
            .update_one(
                doc! { "reservations": { "$elemMatch": {
                    "_id": id.as_str(),
                    "$or": [ { "expires_at": null }, { "expires_at": { "$gt": now } } ],
                } } },
                doc! { "$set": { "reservations.$.expires_at": null } },
            )
            .await
            .map_err(StoreError::from_mongo)?;
        if result.matched_count == 0 {
            return Ok(None);
        }
        self.reservation(id).await
    }

    async fn release(
        &self,
        id: &ReservationId,
        only_if_held: bool,
    ) -> Result<Option<Reservation>, StoreError> {
        let Some(reservation) = self.reservation(id).await? else {
            return Ok(None);
        };
        let also = if only_if_held {
            doc! { "expires_at": { "$ne": null } }
        } else {
            Document::new()
        };
        Ok(self
            .give_back(&reservation, also)
            .await?
            .then_some(reservation))
    }

    async fn expire(&self) -> Result<u64, StoreError> {
        let now = bson::DateTime::now();
        let due = doc! { "expires_at": { "$lte": now } };
        let holders: Vec<HolderDocument> = self
            .holders
            .find(doc! { "reservations": { "$elemMatch": due.clone() } })
            .projection(doc! { "reservations": 1 })
            .await
            .map_err(StoreError::from_mongo)?
            .try_collect()
            .await
            .map_err(StoreError::from_mongo)?;
        let mut expired = 0;
        for holder in holders {
            for element in holder.reservations {
                if element.expires_at.is_none_or(|at| at > now) {
                    continue;
                }
                let reservation = match element.into_reservation(&holder.id) {
                    Ok(reservation) => reservation,
                    // One bad element must not stop the sweep for the rest.
                    Err(error) => {
                        tracing::warn!(%error, "skipping an unreadable reservation");
                        continue;
                    }
                };
                // Still held and due: a confirmation that came first wins.
                if self.give_back(&reservation, due.clone()).await? {
                    expired += 1;
                }
            }
        }
        Ok(expired)
    }
}
