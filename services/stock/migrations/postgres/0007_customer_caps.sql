-- Per-customer caps, so that one account cannot empty the shop; stock sets them at start from
-- its configuration.
CREATE TABLE customer_caps (
    only_row              BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    max_open_rentals      INTEGER NOT NULL,
    max_purchases_per_day INTEGER NOT NULL
);
INSERT INTO customer_caps VALUES (TRUE, 10, 20);
CREATE INDEX purchases_by_customer ON purchases (customer_id, purchased_ms);

-- Checked after each new rental or purchase, in its transaction. The customer's account row is
-- locked first, so the same customer's writes on every replica take turns; each count below
-- then starts from a fresh snapshot (READ COMMITTED, a volatile function) that holds what the
-- others committed. Over the cap, the whole write is undone (SQLSTATE VS001 / VS002).
-- NO KEY UPDATE, not UPDATE: the insert's foreign key already holds KEY SHARE on the same row,
-- which UPDATE would wait on in the other writer (a deadlock of two rentals); NO KEY UPDATE
-- leaves KEY SHARE alone and still makes the writers take turns.
CREATE FUNCTION enforce_customer_caps() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    held BIGINT;
    cap  INTEGER;
BEGIN
    PERFORM 1 FROM accounts WHERE id = NEW.customer_id FOR NO KEY UPDATE;
    IF TG_TABLE_NAME = 'rentals' THEN
        SELECT max_open_rentals INTO cap FROM customer_caps;
        SELECT count(*) INTO held FROM rentals
            WHERE customer_id = NEW.customer_id AND returned_ms IS NULL;
        IF held > cap THEN
            RAISE EXCEPTION 'over the cap of % open rentals', cap
                USING ERRCODE = 'VS001', DETAIL = cap::text;
        END IF;
    ELSE
        SELECT max_purchases_per_day INTO cap FROM customer_caps;
        SELECT count(*) INTO held FROM purchases
            WHERE customer_id = NEW.customer_id AND purchased_ms > NEW.purchased_ms - 86400000;
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
