//! Where vessels are kept: one trait, one implementation per database.
//!
//! [`VesselStore`] is the contract; [`postgres::PostgresStore`] and
//! [`mongo::MongoStore`] implement it, and both pass the same contract test
//! suite (`tests/vessel-service/store_contract.rs`). [`Store`] is whichever of them the
//! scheme of `DATABASE_URL` chose.

pub mod mongo;
pub mod postgres;
mod stored;

use std::time::Duration;

pub use shippy_store::Storage;
use shippy_store::dispatch;

use crate::domain::{
    AccountQuota, OwnerId, Reservation, ReservationId, Reserved, Specification, Vessel, VesselId,
};

shippy_store::store_error! {
    /// A store operation that did not succeed.
    #[derive(Debug, thiserror::Error)]
    pub enum StoreError for "vessel" {
        /// A vessel with this id exists already.
        #[error("a vessel with id {} exists already", shippy_service::text::excerpt(.0.as_str()))]
        AlreadyExists(VesselId),
    }
}

pub use shippy_store::OpenError;

/// The contract every vessel store fulfils (beside [`Storage`]'s `ping`
/// and `prepare`).
pub trait VesselStore: Storage<Error = StoreError> {
    /// Adds a vessel; [`StoreError::AlreadyExists`] if its id is taken.
    fn insert(&self, vessel: &Vessel) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds a vessel unless its id is taken; says whether it added it.
    fn insert_if_absent(
        &self,
        vessel: &Vessel,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The vessel with this id.
    fn get(&self, id: &VesselId)
    -> impl Future<Output = Result<Option<Vessel>, StoreError>> + Send;

    /// Up to `limit` vessels ordered by id, starting after `after`.
    fn list(
        &self,
        after: Option<&VesselId>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Vessel>, StoreError>> + Send;

    /// The smallest available vessel whose remaining room fits `spec`: least
    /// capacity, then least max_weight, then id.
    fn find_available(
        &self,
        spec: Specification,
    ) -> impl Future<Output = Result<Option<Vessel>, StoreError>> + Send;

    /// Takes `spec`'s room on the vessel [`find_available`](Self::find_available)
    /// would answer, in one atomic step in the database, held for `id` for
    /// `ttl`, on `owner`'s account. The reservation `id` already holds, if
    /// any, is answered as it is and nothing more is taken (so is a
    /// concurrent reserver's with the same id). [`Reserved::NoRoom`]: no
    /// vessel has the room. [`Reserved::OverQuota`]: the owner's held and
    /// confirmed room plus `spec` would pass `quota` — checked with the
    /// owner's reservations serialised, so concurrent reservations of one
    /// owner never pass it together.
    fn reserve(
        &self,
        id: &ReservationId,
        owner: &OwnerId,
        spec: Specification,
        ttl: Duration,
        quota: AccountQuota,
    ) -> impl Future<Output = Result<Reserved, StoreError>> + Send;

    /// [`reserve`](Self::reserve) for each of `wanted`, in order (first
    /// come, first served), each answered as it would have been alone. A
    /// store that can takes them all in one transaction; this default takes
    /// them one by one.
    fn reserve_many(
        &self,
        wanted: &[Wanted],
        ttl: Duration,
        quota: AccountQuota,
    ) -> impl Future<Output = Vec<Result<Reserved, StoreError>>> + Send {
        reserve_each(self, wanted, ttl, quota)
    }

    /// Keeps `id`'s held reservation until released (an already confirmed
    /// one is answered as it is). `None`: `id` holds nothing, or its hold
    /// has expired.
    fn confirm(
        &self,
        id: &ReservationId,
    ) -> impl Future<Output = Result<Option<Reservation>, StoreError>> + Send;

    /// [`confirm`](Self::confirm) for each of `ids`, each answered as it
    /// would have been alone. A store that can confirms them all in one
    /// statement; this default confirms them one by one.
    fn confirm_many(
        &self,
        ids: &[ReservationId],
    ) -> impl Future<Output = Vec<Result<Option<Reservation>, StoreError>>> + Send {
        confirm_each(self, ids)
    }

    /// Gives `id`'s room back to its vessel, held or confirmed (only if still
    /// held, with `only_if_held`), in one atomic step; answers what it gave
    /// back (`None`: `id` held nothing, or nothing unconfirmed).
    fn release(
        &self,
        id: &ReservationId,
        only_if_held: bool,
    ) -> impl Future<Output = Result<Option<Reservation>, StoreError>> + Send;

    /// Gives back the room of every held reservation whose time is up;
    /// answers how many. Safe to run from several instances at once: each
    /// reservation's room returns once.
    fn expire(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// [`VesselStore::reserve`] for each of `wanted`, one after another.
pub(crate) async fn reserve_each(
    store: &(impl VesselStore + ?Sized),
    wanted: &[Wanted],
    ttl: Duration,
    quota: AccountQuota,
) -> Vec<Result<Reserved, StoreError>> {
    let mut answers = Vec::with_capacity(wanted.len());
    for item in wanted {
        answers.push(
            store
                .reserve(&item.id, &item.owner, item.spec, ttl, quota)
                .await,
        );
    }
    answers
}

/// [`VesselStore::confirm`] for each of `ids`, one after another.
pub(crate) async fn confirm_each(
    store: &(impl VesselStore + ?Sized),
    ids: &[ReservationId],
) -> Vec<Result<Option<Reservation>, StoreError>> {
    let mut answers = Vec::with_capacity(ids.len());
    for id in ids {
        answers.push(store.confirm(id).await);
    }
    answers
}

/// One reservation of a batch ([`VesselStore::reserve_many`]).
#[derive(Debug, Clone)]
pub struct Wanted {
    /// The reservation's id.
    pub id: ReservationId,
    /// Whose room it is.
    pub owner: OwnerId,
    /// The room it takes.
    pub spec: Specification,
}

/// The store `DATABASE_URL` chose ([`Store::open`](shippy_store::Store::open)).
/// Each operation runs in its span, `postgres.<name>` or `mongodb.<name>`,
/// made here ([`dispatch!`]); the stores' own files declare none.
pub type Store = shippy_store::Store<postgres::PostgresStore, mongo::MongoStore>;

impl VesselStore for Store {
    async fn insert(&self, vessel: &Vessel) -> Result<(), StoreError> {
        dispatch!(self, "insert_vessel" { vessel.id = %vessel.id }, store => store.insert(vessel))
    }

    async fn insert_if_absent(&self, vessel: &Vessel) -> Result<bool, StoreError> {
        dispatch!(
            self,
            "insert_vessel_if_absent" { vessel.id = %vessel.id },
            store => store.insert_if_absent(vessel)
        )
    }

    async fn get(&self, id: &VesselId) -> Result<Option<Vessel>, StoreError> {
        dispatch!(self, "get_vessel" { vessel.id = %id }, store => store.get(id))
    }

    async fn list(&self, after: Option<&VesselId>, limit: u32) -> Result<Vec<Vessel>, StoreError> {
        dispatch!(self, "list_vessels" { limit = limit }, store => store.list(after, limit))
    }

    async fn find_available(&self, spec: Specification) -> Result<Option<Vessel>, StoreError> {
        dispatch!(
            self,
            "find_available_vessel" {
                spec.capacity = spec.capacity.get(),
                spec.max_weight = spec.max_weight.get(),
            },
            store => store.find_available(spec)
        )
    }

    async fn reserve(
        &self,
        id: &ReservationId,
        owner: &OwnerId,
        spec: Specification,
        ttl: Duration,
        quota: AccountQuota,
    ) -> Result<Reserved, StoreError> {
        // `vessel.id`: the store records it once it took the room.
        dispatch!(
            self,
            "reserve" { reservation.id = %id, vessel.id = tracing::field::Empty },
            store => store.reserve(id, owner, spec, ttl, quota)
        )
    }

    async fn reserve_many(
        &self,
        wanted: &[Wanted],
        ttl: Duration,
        quota: AccountQuota,
    ) -> Vec<Result<Reserved, StoreError>> {
        dispatch!(
            self,
            "reserve_many" { batch.size = wanted.len() },
            store => store.reserve_many(wanted, ttl, quota)
        )
    }

    async fn confirm(&self, id: &ReservationId) -> Result<Option<Reservation>, StoreError> {
        dispatch!(self, "confirm" { reservation.id = %id }, store => store.confirm(id))
    }

    async fn confirm_many(
        &self,
        ids: &[ReservationId],
    ) -> Vec<Result<Option<Reservation>, StoreError>> {
        dispatch!(
            self,
            "confirm_many" { batch.size = ids.len() },
            store => store.confirm_many(ids)
        )
    }

    async fn release(
        &self,
        id: &ReservationId,
        only_if_held: bool,
    ) -> Result<Option<Reservation>, StoreError> {
        dispatch!(
            self,
            "release" { reservation.id = %id },
            store => store.release(id, only_if_held)
        )
    }

    async fn expire(&self) -> Result<u64, StoreError> {
        dispatch!(self, "expire" {}, store => store.expire())
    }
}

/// How many owner locks a process has: owners share one by hash, so an
/// owner waits behind another only if both hash alike and reserve at once.
const OWNER_LOCKS: usize = 64;

/// This process's turn for `owner`'s next reservation: one owner's
/// reservations take turns here (first come, first served) before they take
/// a database connection or poll a lease, so a burst from one account holds
/// nothing everyone else needs. Each store then serialises the owner across
/// processes (PostgreSQL: an advisory lock; MongoDB: a lease).
pub(crate) async fn owner_turn(owner: &OwnerId) -> tokio::sync::MutexGuard<'static, ()> {
    static LOCKS: std::sync::LazyLock<Vec<tokio::sync::Mutex<()>>> =
        std::sync::LazyLock::new(|| {
            (0..OWNER_LOCKS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect()
        });
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(owner.as_str(), &mut hasher);
    let index =
        usize::try_from(std::hash::Hasher::finish(&hasher) % OWNER_LOCKS as u64).unwrap_or(0);
    LOCKS[index].lock().await
}
