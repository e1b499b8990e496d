-- Per-account quota: whose room each reservation is. Reserve sums the
-- owner's held and confirmed reservations (serialised per owner) and refuses
-- what would pass the cap. Reservations from before owners count for nobody.
ALTER TABLE reservations
    ADD COLUMN IF NOT EXISTS owner_id TEXT NOT NULL DEFAULT '';

CREATE INDEX IF NOT EXISTS reservations_by_owner
    ON reservations (owner_id);
