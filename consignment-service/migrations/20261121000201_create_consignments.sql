-- Consignments, each owned by the user who created it, with its containers.
CREATE TABLE IF NOT EXISTS consignments (
    id           TEXT COLLATE "C" PRIMARY KEY,  -- byte order, as MongoDB compares
    owner_id     TEXT NOT NULL,
    description  TEXT NOT NULL CHECK (description <> ''),
    weight       INTEGER NOT NULL CHECK (weight > 0),
    vessel_id    TEXT NOT NULL,
    containers   JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL
);

-- GetConsignments: one owner's, newest first.
CREATE INDEX IF NOT EXISTS consignments_by_owner
    ON consignments (owner_id, created_at DESC, id DESC);
