-- A request id is an idempotency key: it is remembered for a while (a day by default,
-- STOCK_REQUEST_ID_TTL_HOURS), long enough for any retry, then forgotten by setting it NULL.
-- The unique (customer_id, request_id) index ignores NULLs, so a forgotten id may be used again.
ALTER TABLE rentals ALTER COLUMN request_id DROP NOT NULL;
ALTER TABLE purchases ALTER COLUMN request_id DROP NOT NULL;
-- What the sweep reads: the ids still remembered, oldest first.
CREATE INDEX rentals_remembered ON rentals (rented_ms) WHERE request_id IS NOT NULL;
CREATE INDEX purchases_remembered ON purchases (purchased_ms) WHERE request_id IS NOT NULL;
