-- Vessels fill up: what reservations have not taken of each vessel, and the
-- reservations themselves. The CHECK makes overbooking impossible whatever
-- the service does.
ALTER TABLE vessels
    ADD COLUMN IF NOT EXISTS remaining_capacity INTEGER,
    ADD COLUMN IF NOT EXISTS remaining_weight INTEGER;
UPDATE vessels SET remaining_capacity = capacity, remaining_weight = max_weight
    WHERE remaining_capacity IS NULL OR remaining_weight IS NULL;
ALTER TABLE vessels
    ALTER COLUMN remaining_capacity SET NOT NULL,
    ALTER COLUMN remaining_weight SET NOT NULL,
    ADD CONSTRAINT vessels_room_within_size CHECK (
        remaining_capacity BETWEEN 0 AND capacity
        AND remaining_weight BETWEEN 0 AND max_weight);

-- Room taken on one vessel for one reservation id (a consignment's id).
-- Held until expires_at; confirmed (expires_at NULL) until released.
CREATE TABLE IF NOT EXISTS reservations (
    id          TEXT COLLATE "C" PRIMARY KEY,
    vessel_id   TEXT NOT NULL REFERENCES vessels (id),
    capacity    INTEGER NOT NULL CHECK (capacity > 0),
    weight      INTEGER NOT NULL CHECK (weight > 0),
    expires_at  TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The expiry sweep: held reservations by when they run out.
CREATE INDEX IF NOT EXISTS reservations_held_by_expiry
    ON reservations (expires_at) WHERE expires_at IS NOT NULL;
