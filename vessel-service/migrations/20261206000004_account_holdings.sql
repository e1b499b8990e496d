-- Per-account quota, kept as running totals: what each owner holds (held and
-- confirmed), updated in the statements that take and give back room, so a
-- reservation reads one row instead of summing the owner's whole history.
-- Reserve still runs under the owner's lock, so the row it reads is current.
CREATE TABLE IF NOT EXISTS account_holdings (
    owner_id  TEXT PRIMARY KEY,
    capacity  BIGINT NOT NULL CHECK (capacity >= 0),
    weight    BIGINT NOT NULL CHECK (weight >= 0)
);

INSERT INTO account_holdings (owner_id, capacity, weight)
    SELECT owner_id, sum(capacity), sum(weight) FROM reservations GROUP BY owner_id
    ON CONFLICT (owner_id) DO UPDATE
        SET capacity = EXCLUDED.capacity, weight = EXCLUDED.weight;
