-- A request id is an idempotency key: it is remembered for a while (a day by default,
-- STOCK_REQUEST_ID_TTL_HOURS), long enough for any retry, then forgotten by setting it NULL.
-- The unique (customer_id, request_id) constraint ignores NULLs, so a forgotten id may be used
-- again. SQLite cannot drop a NOT NULL, so both tables are rebuilt (nothing refers to them).
CREATE TABLE rentals_new (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id        INTEGER NOT NULL REFERENCES accounts (id),
    movie_id           INTEGER NOT NULL REFERENCES inventory (movie_id),
    days               INTEGER NOT NULL CHECK (days > 0),
    rented_ms          INTEGER NOT NULL,
    due_ms             INTEGER NOT NULL,
    returned_ms        INTEGER,
    currency           TEXT    NOT NULL,
    price_per_day_minor INTEGER NOT NULL,
    price_minor        INTEGER NOT NULL,
    late_fee_minor     INTEGER NOT NULL DEFAULT 0,
    request_id         TEXT,
    UNIQUE (customer_id, request_id)
);
INSERT INTO rentals_new SELECT * FROM rentals;
DROP TABLE rentals;
ALTER TABLE rentals_new RENAME TO rentals;
CREATE INDEX rentals_open_by_movie ON rentals (movie_id) WHERE returned_ms IS NULL;
CREATE INDEX rentals_by_customer ON rentals (customer_id, returned_ms);
CREATE INDEX rentals_remembered ON rentals (rented_ms) WHERE request_id IS NOT NULL;

CREATE TABLE purchases_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id  INTEGER NOT NULL REFERENCES accounts (id),
    movie_id     INTEGER NOT NULL REFERENCES inventory (movie_id),
    currency     TEXT    NOT NULL,
    price_minor  INTEGER NOT NULL,
    purchased_ms INTEGER NOT NULL,
    request_id   TEXT,
    UNIQUE (customer_id, request_id)
);
INSERT INTO purchases_new SELECT * FROM purchases;
DROP TABLE purchases;
ALTER TABLE purchases_new RENAME TO purchases;
CREATE INDEX purchases_remembered ON purchases (purchased_ms) WHERE request_id IS NOT NULL;
