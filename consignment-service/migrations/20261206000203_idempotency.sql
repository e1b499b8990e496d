-- Idempotent creation: the caller's key (metadata `idempotency-key`) and a
-- fingerprint of what it was sent with. One consignment per owner and key;
-- a placing that failed (pending -> cancelling) frees its key.
ALTER TABLE consignments
    ADD COLUMN IF NOT EXISTS idempotency_key TEXT,
    ADD COLUMN IF NOT EXISTS request_fingerprint TEXT;

CREATE UNIQUE INDEX IF NOT EXISTS consignments_idempotency_key
    ON consignments (owner_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
