-- The vessel fleet.
CREATE TABLE IF NOT EXISTS vessels (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL CHECK (name <> ''),
    capacity    INTEGER NOT NULL CHECK (capacity > 0),
    max_weight  INTEGER NOT NULL CHECK (max_weight > 0),
    available   BOOLEAN NOT NULL DEFAULT TRUE,
    owner_id    TEXT NOT NULL DEFAULT ''
);

-- FindAvailable: the smallest available vessel that fits, in this order.
CREATE INDEX IF NOT EXISTS vessels_available_by_size
    ON vessels (capacity, max_weight, id)
    WHERE available;
