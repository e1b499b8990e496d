//! Placing and cancelling a consignment: a saga across consignment-service's
//! database and vessel-service's.
//!
//! ```text
//! CreateConsignment  ── key used before? ──▶ consignments     answer that one, book nothing
//!                    ── Reserve(id, owner, room) ▶ vessel-service  held for id, until its TTL,
//!                                                                  within the owner's cap
//!                    ── insert (pending) ───▶ consignments     nothing listed yet
//!                    ── Confirm(id) ────────▶ vessel-service   room kept for good
//!                    ── pending → confirmed ▶ consignments     listed
//! CancelConsignment  ── confirmed → cancelling, Release(id), cancelling → cancelled
//! ```
//!
//! Every step is idempotent (keyed by the consignment's id) and moves a
//! consignment's [`State`] on only from the state it expects, so a retry, a
//! second instance or the [`Saga::recover`] sweep never undoes another's
//! step. Where a step fails:
//!
//! - no vessel has room: nothing was taken (`FAILED_PRECONDITION`); the
//!   owner's cap would be passed: nothing was taken (`RESOURCE_EXHAUSTED`);
//! - storing fails: the room is released if it is still only held (a
//!   consignment the sweep confirmed meanwhile — the insert landed after
//!   all — keeps it); it would expire anyway;
//! - confirming fails: the consignment goes to `cancelling` and its room is
//!   released; the caller gets `UNAVAILABLE` and nothing ships;
//! - marking it confirmed fails (the room is confirmed): it ships, and the
//!   sweep marks it once the database answers; the caller gets
//!   `UNAVAILABLE` (maybe placed), never an OK for a consignment its owner
//!   cannot list or cancel yet — a retry with the idempotency key answers it;
//! - the process dies between the steps: a held reservation expires in
//!   vessel-service; a consignment left `pending` is confirmed by the sweep
//!   (or, if its hold expired first, cancelled), one left `cancelling` has
//!   its room released — so a stored consignment never loses its room and
//!   no room stays held for nothing.
//!
//! A create with an idempotency key stores the key with the consignment
//! (one per owner and key); sent again, it is answered from there whatever
//! became of the first call, so a retry never books twice (see
//! [`Saga::place`]).

use std::time::Duration;

use chrono::Utc;
use shippy_service::{ApiError, Shutdown, readiness::Ready, sweep, text::excerpt};

use crate::{
    domain::{Consignment, Idempotency, State},
    store::{ConsignmentStore, Store, StoreError},
    vessels::{ConfirmError, Vessels},
};

/// Consignments the sweep looks at per state and round.
const SWEEP_BATCH: u32 = 100;

/// The two databases' steps, together.
#[derive(Debug, Clone)]
pub struct Saga {
    store: Store,
    vessels: Vessels,
}

/// What one recovery round finished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Pending consignments whose room was confirmed.
    pub confirmed: u32,
    /// Consignments whose room was given back (their hold had expired, or a
    /// cancel was left half-done).
    pub cancelled: u32,
}

impl Saga {
    /// The saga over `store` and vessel-service.
    pub fn new(store: Store, vessels: Vessels) -> Self {
        Self { store, vessels }
    }

    /// Places `consignment` (its id, owner and contents; vessel and state
    /// are set here): reserves room, stores it, confirms the room. Answers
    /// it as stored, confirmed.
    ///
    /// With an idempotency key, the owner's consignment placed with it
    /// before is answered instead and nothing more is booked: as it is once
    /// confirmed; finished (confirmed, as the sweep would) if still pending;
    /// `ALREADY_EXISTS` if it was sent with another consignment;
    /// `FAILED_PRECONDITION` if it was cancelled since. A placing that failed
    /// freed its key, so a retry places anew. Of concurrent creates with one
    /// key, one stores its consignment; the others give their hold back and
    /// answer that one.
    pub async fn place(
        &self,
        mut consignment: Consignment,
        capacity: i32,
    ) -> Result<Consignment, ApiError> {
        if let Some(wanted) = &consignment.idempotency
            && let Some(earlier) = self
                .store
                .find_by_key(&consignment.owner_id, &wanted.key)
                .await?
        {
            return self.replay(earlier, wanted).await;
        }
        let id = consignment.id.clone();
        consignment.vessel_id = self
            .vessels
            .reserve(
                &id,
                &consignment.owner_id,
                capacity,
                consignment.weight.get(),
            )
            .await?;
        tracing::Span::current().record("vessel.id", consignment.vessel_id.as_str());
        consignment.state = State::Pending;
        if let Err(error) = self.store.insert(&consignment).await {
            // Nothing stored uses the room — unless the insert landed after
            // all and the sweep confirmed it, so only a hold is given back
            // (it would expire anyway if this fails too).
            if let Err(release) = self.vessels.release(&id, true).await {
                tracing::warn!(error = %release, "room not given back; it returns when its hold expires");
            }
            // A concurrent create with the same key stored first: its
            // consignment is the answer.
            if let (StoreError::KeyTaken, Some(wanted)) = (&error, &consignment.idempotency)
                && let Some(earlier) = self
                    .store
                    .find_by_key(&consignment.owner_id, &wanted.key)
                    .await?
            {
                return self.replay(earlier, wanted).await;
            }
            return Err(error.into());
        }
        self.confirm_stored(consignment).await
    }

    /// Confirms the room of the consignment this call stored (pending) and
    /// marks it confirmed; answers it as confirmed. Not confirmed: undone.
    async fn confirm_stored(&self, consignment: Consignment) -> Result<Consignment, ApiError> {
        if let Err(error) = self.vessels.confirm(&consignment.id).await {
            let cause = match error {
                ConfirmError::Lost(cause) | ConfirmError::Failed(cause) => cause,
            };
            return self.undo(consignment, cause).await;
        }
        self.mark_confirmed(consignment).await
    }

    /// Marks a pending consignment whose room is confirmed as confirmed;
    /// answers it so.
    async fn mark_confirmed(&self, mut consignment: Consignment) -> Result<Consignment, ApiError> {
        let id = consignment.id.clone();
        match self
            .store
            .transition(&id, State::Pending, State::Confirmed)
            .await
        {
            Ok(true) => {}
            // The sweep got there first (this call was slow): it confirms
            // what this call confirmed, or it found the hold gone.
            Ok(false) => return self.settled_elsewhere(consignment, None).await,
            // Room confirmed and consignment stored: it ships, and the sweep
            // marks it confirmed (listed) once the database answers again —
            // but until then its owner could neither list nor cancel it, so
            // it is not answered as placed: the caller learns it may have
            // been (`UNAVAILABLE`), and the same create sent again with its
            // idempotency key answers it once it is marked.
            Err(error) => {
                tracing::warn!(%error, "consignment confirmed but not yet marked; the recovery sweep marks it");
                return Err(ApiError::unavailable(
                    format!(
                        "consignment {id} has its room but could not be recorded yet; send the \
                         create again with the same idempotency key to get it (it ships, and \
                         is listed once recorded)"
                    ),
                    error,
                ));
            }
        }
        consignment.state = State::Confirmed;
        Ok(consignment)
    }

    /// Answers a create whose key the owner used before, for `earlier`.
    async fn replay(
        &self,
        earlier: Consignment,
        wanted: &Idempotency,
    ) -> Result<Consignment, ApiError> {
        let key = excerpt(wanted.key.as_str());
        if earlier
            .idempotency
            .as_ref()
            .is_none_or(|used| used.fingerprint != wanted.fingerprint)
        {
            return Err(ApiError::AlreadyExists(format!(
                "idempotency key {key} was used for another consignment ({}) of this account; \
                 send a new key to create a different one",
                earlier.id
            )));
        }
        tracing::Span::current().record("consignment.id", earlier.id.as_str());
        tracing::Span::current().record("vessel.id", earlier.vessel_id.as_str());
        tracing::info!("create repeated with its idempotency key; nothing more booked");
        match earlier.state {
            State::Confirmed => Ok(earlier),
            // Still being placed (a concurrent create), or left pending by
            // one that died: finish it, as the sweep would.
            State::Pending => match self.vessels.confirm(&earlier.id).await {
                Ok(()) => self.mark_confirmed(earlier).await,
                // Its hold is gone: nothing ships; the key is freed.
                Err(ConfirmError::Lost(cause)) => self.undo(earlier, cause).await,
                // Left pending: the call placing it, or the sweep, settles
                // it; this retry's retry finds out how.
                Err(ConfirmError::Failed(cause)) => Err(cause),
            },
            State::Cancelling | State::Cancelled => Err(ApiError::FailedPrecondition(format!(
                "consignment {} (created with idempotency key {key}) was cancelled since; \
                 send a new key to create it again",
                earlier.id
            ))),
        }
    }

    /// The room of a stored, pending consignment could not be confirmed:
    /// take it out of the way and give its room back, then answer `cause`.
    async fn undo(
        &self,
        consignment: Consignment,
        cause: ApiError,
    ) -> Result<Consignment, ApiError> {
        match self
            .store
            .transition(&consignment.id, State::Pending, State::Cancelling)
            .await
        {
            Ok(true) => {
                self.finish_cancel(&consignment.id).await;
                Err(cause)
            }
            Ok(false) => self.settled_elsewhere(consignment, Some(cause)).await,
            Err(error) => {
                tracing::warn!(%error, "consignment left pending; the recovery sweep settles it");
                Err(cause)
            }
        }
    }

    /// The consignment left `pending` under this call: answer it if it is
    /// confirmed, else `cause` (or that nothing shipped).
    async fn settled_elsewhere(
        &self,
        mut consignment: Consignment,
        cause: Option<ApiError>,
    ) -> Result<Consignment, ApiError> {
        match self.store.get(&consignment.id).await {
            Ok(Some(stored)) if stored.state == State::Confirmed => {
                consignment.state = State::Confirmed;
                Ok(consignment)
            }
            _ => Err(cause.unwrap_or_else(|| {
                ApiError::unavailable(
                    "the vessel's room for this consignment was lost; nothing was shipped; retry",
                    "consignment cancelled by the recovery sweep",
                )
            })),
        }
    }

    /// Gives a `cancelling` consignment's room back and marks it
    /// `cancelled`; says whether both happened (if not, the sweep retries).
    async fn finish_cancel(&self, id: &str) -> bool {
        if let Err(error) = self.vessels.release(id, false).await {
            tracing::warn!(%error, "room not given back yet; the recovery sweep retries");
            return false;
        }
        match self
            .store
            .transition(id, State::Cancelling, State::Cancelled)
            .await
        {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(%error, "room given back but consignment not marked cancelled yet");
                false
            }
        }
    }

    /// Cancels consignment `id` for `caller` and gives its room back: their
    /// own, or anyone's for an administrator (`admin`; logged, naming who
    /// cancelled whose). Not theirs (or no such id): `NOT_FOUND`; still
    /// being placed: `FAILED_PRECONDITION`. Cancelling again answers the same.
    pub async fn cancel(
        &self,
        id: &str,
        caller: &str,
        admin: bool,
    ) -> Result<Consignment, ApiError> {
        let not_found = || {
            ApiError::NotFound(if admin {
                format!("there is no consignment {}", excerpt(id))
            } else {
                format!("you have no consignment {}", excerpt(id))
            })
        };
        // A concurrent cancel may move it under us; three reads settle it.
        for _ in 0..3 {
            let mut consignment = self
                .store
                .get(id)
                .await?
                .filter(|consignment| admin || consignment.owner_id == caller)
                .ok_or_else(not_found)?;
            match consignment.state {
                State::Pending => {
                    return Err(ApiError::FailedPrecondition(format!(
                        "consignment {} is still being placed; cancel it in a moment",
                        excerpt(id)
                    )));
                }
                State::Cancelled => return Ok(consignment),
                State::Confirmed => {
                    if !self
                        .store
                        .transition(id, State::Confirmed, State::Cancelling)
                        .await?
                    {
                        continue;
                    }
                }
                State::Cancelling => {}
            }
            consignment.state = if self.finish_cancel(id).await {
                State::Cancelled
            } else {
                State::Cancelling
            };
            if consignment.owner_id == caller {
                tracing::info!(state = consignment.state.as_str(), "consignment cancelled");
            } else {
                // The audit line: who cancelled whose consignment.
                tracing::info!(
                    target: "shippy::audit",
                    admin = %caller,
                    owner = %consignment.owner_id,
                    consignment.id = %id,
                    state = consignment.state.as_str(),
                    "an administrator cancelled another account's consignment"
                );
            }
            return Ok(consignment);
        }
        Err(ApiError::unavailable(
            "the consignment kept changing while it was being cancelled; retry",
            "cancel raced three times",
        ))
    }

    /// One round of the recovery sweep over consignments older than
    /// `older_than` that a create or cancel left half-done.
    pub async fn recover(&self, older_than: Duration) -> Result<Recovered, ApiError> {
        let before = chrono::Duration::from_std(older_than)
            .ok()
            .and_then(|age| Utc::now().checked_sub_signed(age))
            .ok_or_else(|| {
                ApiError::internal(format!("RECOVERY_AFTER {older_than:?} is out of range"))
            })?;
        let mut recovered = Recovered::default();
        let mut failures = 0;
        for id in self
            .store
            .unsettled(State::Pending, before, SWEEP_BATCH)
            .await?
        {
            let id = id.as_str();
            match self.vessels.confirm(id).await {
                Ok(()) => {
                    failures = 0;
                    if self
                        .store
                        .transition(id, State::Pending, State::Confirmed)
                        .await?
                    {
                        recovered.confirmed += 1;
                    }
                }
                Err(ConfirmError::Lost(_)) => {
                    if self
                        .store
                        .transition(id, State::Pending, State::Cancelling)
                        .await?
                        && self.finish_cancel(id).await
                    {
                        recovered.cancelled += 1;
                    }
                }
                // Skipped this round; after a few in a row vessel-service
                // is taken to be down and the next round retries.
                Err(ConfirmError::Failed(error)) => {
                    tracing::warn!(%error, consignment.id = id, "confirming a pending consignment failed");
                    failures += 1;
                    if failures >= 3 {
                        return Err(error);
                    }
                }
            }
        }
        for id in self
            .store
            .unsettled(State::Cancelling, before, SWEEP_BATCH)
            .await?
        {
            if self.finish_cancel(&id).await {
                recovered.cancelled += 1;
            }
        }
        Ok(recovered)
    }

    /// Runs [`Saga::recover`] every `interval` while `ready`, until
    /// `shutdown`. A failed round is logged and tried again next time.
    pub async fn recover_until(
        self,
        interval: Duration,
        older_than: Duration,
        ready: Ready,
        shutdown: Shutdown,
    ) {
        sweep::every(interval, ready, shutdown, || {
            self.recover_and_log(older_than)
        })
        .await;
    }

    /// One round of [`Saga::recover_until`]: what it settled or why it
    /// failed, logged.
    async fn recover_and_log(&self, older_than: Duration) {
        match self.recover(older_than).await {
            Ok(Recovered {
                confirmed: 0,
                cancelled: 0,
            }) => {}
            Ok(recovered) => tracing::info!(
                confirmed = recovered.confirmed,
                cancelled = recovered.cancelled,
                "recovery sweep settled half-done consignments"
            ),
            Err(error) => tracing::warn!(%error, "recovery sweep failed; trying again"),
        }
    }
}
