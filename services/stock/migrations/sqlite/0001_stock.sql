-- Copies and prices per film. The invariant copies_available = copies_owned - open rentals is
-- kept by every write (all in transactions); the CHECKs make an oversell impossible to commit.
CREATE TABLE inventory (
    movie_id             INTEGER PRIMARY KEY,
    copies_owned         INTEGER NOT NULL CHECK (copies_owned >= 0),
    copies_available     INTEGER NOT NULL CHECK (copies_available >= 0 AND copies_available <= copies_owned),
    currency             TEXT    NOT NULL,
    rental_price_minor   INTEGER NOT NULL CHECK (rental_price_minor >= 0),
    purchase_price_minor INTEGER NOT NULL CHECK (purchase_price_minor >= 0),
    version              INTEGER NOT NULL
);

CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    name          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('customer', 'staff')),
    created_ms    INTEGER NOT NULL
);

CREATE TABLE rentals (
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
    request_id         TEXT    NOT NULL,
    UNIQUE (customer_id, request_id)
);

CREATE INDEX rentals_open_by_movie ON rentals (movie_id) WHERE returned_ms IS NULL;
CREATE INDEX rentals_by_customer ON rentals (customer_id, returned_ms);

CREATE TABLE purchases (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id  INTEGER NOT NULL REFERENCES accounts (id),
    movie_id     INTEGER NOT NULL REFERENCES inventory (movie_id),
    currency     TEXT    NOT NULL,
    price_minor  INTEGER NOT NULL,
    purchased_ms INTEGER NOT NULL,
    request_id   TEXT    NOT NULL,
    UNIQUE (customer_id, request_id)
);
