-- Per-customer caps, so that one account cannot empty the shop; stock sets them at start from
-- its configuration.
CREATE TABLE customer_caps (
    only_row              BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    max_open_rentals      INTEGER NOT NULL,
    max_purchases_per_day INTEGER NOT NULL
);
INSERT INTO customer_caps VALUES (TRUE, 10, 20);
CREATE INDEX purchases_by_customer ON purchases (customer_id, purchased_ms);

-- Checked after each new rental or purchase, in its transaction. The same customer's writes on
-- every replica take turns on a transaction-scoped advisory lock (in memory: no row is written
-- for it); each count below then starts from a fresh snapshot (READ COMMITTED, a volatile
-- function) that holds what the others committed. Over the cap, the whole write is undone
-- (SQLSTATE VS001 / VS002). The lock's first key names these locks (two-key advisory locks
-- never meet the one-key ones of the migrations and the seeding); two customers whose ids share
-- the second key only wait for each other, never pass the cap.
CREATE FUNCTION enforce_customer_caps() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    held BIGINT;
    cap  INTEGER;
BEGIN
    PERFORM pg_advisory_xact_lock(1447252048, (NEW.customer_id % 2147483647)::integer);
    IF TG_TABLE_NAME = 'rentals' THEN
        SELECT max_open_rentals, (SELECT count(*) FROM rentals
                WHERE customer_id = NEW.customer_id AND returned_ms IS NULL)
            INTO cap, held FROM customer_caps;
        IF held > cap THEN
            RAISE EXCEPTION 'over the cap of % open rentals', cap
                USING ERRCODE = 'VS001', DETAIL = cap::text;
        END IF;
    ELSE
        SELECT max_purchases_per_day, (SELECT count(*) FROM purchases
                WHERE customer_id = NEW.customer_id
                AND purchased_ms > NEW.purchased_ms - 86400000)
            INTO cap, held FROM customer_caps;
        IF held > cap THEN
            RAISE EXCEPTION 'over the cap of % purchases a day', cap
                USING ERRCODE = 'VS002', DETAIL = cap::text;
        END IF;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER rentals_capped AFTER INSERT ON rentals
    FOR EACH ROW EXECUTE FUNCTION enforce_customer_caps();
CREATE TRIGGER purchases_capped AFTER INSERT ON purchases
    FOR EACH ROW EXECUTE FUNCTION enforce_customer_caps();
