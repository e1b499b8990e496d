-- Where each consignment is in its life (see `domain::State`): placing one
-- reserves room in vessel-service first, and only confirmed ones are listed.
-- Consignments stored before this were placed whole: confirmed.
ALTER TABLE consignments
    ADD COLUMN IF NOT EXISTS state TEXT NOT NULL DEFAULT 'confirmed'
        CHECK (state IN ('pending', 'confirmed', 'cancelling', 'cancelled'));

-- GetConsignments: one owner's confirmed ones, newest first.
CREATE INDEX IF NOT EXISTS consignments_confirmed_by_owner
    ON consignments (owner_id, created_at DESC, id DESC) WHERE state = 'confirmed';
DROP INDEX IF EXISTS consignments_by_owner;

-- The recovery sweep: consignments a create or cancel left half-done.
CREATE INDEX IF NOT EXISTS consignments_unsettled
    ON consignments (state, created_at) WHERE state IN ('pending', 'cancelling');
