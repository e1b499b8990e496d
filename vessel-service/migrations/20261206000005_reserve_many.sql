-- Reserve, for one reservation or a batch of them, as one call: what used
-- to be a transaction of four round trips per reservation (BEGIN, the
-- owner's lock, the reserving statement, COMMIT) is one statement for the
-- whole batch, its loop running inside the server.
--
-- The owners' advisory locks are taken first, once each, in the order of
-- their keys (two batches that share owners take them in the same order,
-- so they never wait for each other in a cycle), and held to the commit:
-- what an owner holds cannot grow under a reservation of theirs. Then, per
-- item in the order given (first come, first served):
--   - an id that holds room already is answered as it is ('held'), nothing
--     more taken, whatever the cap says now (a retry);
--   - room that would take the owner past the cap: 'over_quota', with what
--     they hold;
--   - else the smallest available vessel with the room is picked and its
--     room taken by a conditional UPDATE that re-checks it on the row it
--     locks; one lost to a concurrent reserver is picked again (bounded);
--     none with room: 'no_room';
--   - the reservation is stored and the owner's holdings raised.
-- A concurrent reserver storing one of these ids first fails the whole
-- statement (a unique violation) and nothing of the batch is kept; the
-- service then takes each alone.
CREATE OR REPLACE FUNCTION reserve_many(
    ids TEXT[], owners TEXT[], capacities INTEGER[], weights INTEGER[],
    ttl_ms BIGINT, max_containers BIGINT, max_weight BIGINT)
RETURNS TABLE (
    outcome TEXT, held_capacity BIGINT, held_weight BIGINT,
    reservation_id TEXT, reservation_vessel TEXT, reservation_capacity INTEGER,
    reservation_weight INTEGER, reservation_expires_at TIMESTAMPTZ)
LANGUAGE plpgsql AS $$
DECLARE
    item INTEGER;
    picked TEXT;
    held_c BIGINT;
    held_w BIGINT;
    attempt INTEGER;
BEGIN
    -- Batches take turns (a lone reservation does not wait for them): two
    -- batches would otherwise lock vessel rows in different orders.
    IF coalesce(array_length(ids, 1), 0) > 1 THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('shippy.vessel.batch', 0));
    END IF;
    PERFORM pg_advisory_xact_lock(keys.key)
    FROM (SELECT DISTINCT hashtextextended('shippy.vessel.account:' || o, 0) AS key
          FROM unnest(owners) AS o ORDER BY key) AS keys;
    FOR item IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
        RETURN QUERY
            SELECT 'held', 0::BIGINT, 0::BIGINT, r.id::TEXT, r.vessel_id, r.capacity, r.weight,
                   r.expires_at
            FROM reservations r WHERE r.id = ids[item];
        CONTINUE WHEN FOUND;
        SELECT a.capacity, a.weight INTO held_c, held_w
        FROM account_holdings a WHERE a.owner_id = owners[item];
        IF NOT FOUND THEN
            held_c := 0;
            held_w := 0;
        END IF;
        IF held_c + capacities[item] > max_containers
           OR held_w + weights[item] > max_weight THEN
            RETURN QUERY SELECT 'over_quota', held_c, held_w, NULL::TEXT, NULL::TEXT,
                                NULL::INTEGER, NULL::INTEGER, NULL::TIMESTAMPTZ;
            CONTINUE;
        END IF;
        picked := NULL;
        FOR attempt IN 1 .. 100 LOOP
            SELECT v.id INTO picked FROM vessels v
            WHERE v.available AND v.remaining_capacity >= capacities[item]
              AND v.remaining_weight >= weights[item]
            ORDER BY v.capacity, v.max_weight, v.id LIMIT 1;
            EXIT WHEN NOT FOUND;
            UPDATE vessels v
            SET remaining_capacity = v.remaining_capacity - capacities[item],
                remaining_weight = v.remaining_weight - weights[item]
            WHERE v.id = picked AND v.available
              AND v.remaining_capacity >= capacities[item]
              AND v.remaining_weight >= weights[item];
            EXIT WHEN FOUND;
            IF attempt = 100 THEN
                RAISE EXCEPTION 'gave up after 100 lost races for room'
                    USING ERRCODE = 'lock_not_available';
            END IF;
            picked := NULL;
        END LOOP;
        IF picked IS NULL THEN
            RETURN QUERY SELECT 'no_room', held_c, held_w, NULL::TEXT, NULL::TEXT,
                                NULL::INTEGER, NULL::INTEGER, NULL::TIMESTAMPTZ;
            CONTINUE;
        END IF;
        RETURN QUERY
            INSERT INTO reservations AS r (id, vessel_id, capacity, weight, expires_at, owner_id)
            VALUES (ids[item], picked, capacities[item], weights[item],
                    now() + ttl_ms * INTERVAL '1 millisecond', owners[item])
            RETURNING 'held', held_c, held_w, r.id::TEXT, r.vessel_id, r.capacity, r.weight,
                      r.expires_at;
        INSERT INTO account_holdings AS a (owner_id, capacity, weight)
        VALUES (owners[item], capacities[item], weights[item])
        ON CONFLICT (owner_id) DO UPDATE
        SET capacity = a.capacity + EXCLUDED.capacity, weight = a.weight + EXCLUDED.weight;
    END LOOP;
END
$$;
