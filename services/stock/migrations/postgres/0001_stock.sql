-- Copies and prices per film. The invariant copies_available = copies_owned - open rentals is
-- kept by every write (all in transactions); the CHECKs make an oversell impossible to commit.
-- `version` is bumped by every change of the row.
CREATE TABLE inventory (
    movie_id             BIGINT  PRIMARY KEY,
    copies_owned         INTEGER NOT NULL CHECK (copies_owned >= 0),
    copies_available     INTEGER NOT NULL
        CHECK (copies_available >= 0 AND copies_available <= copies_owned),
    currency             TEXT    NOT NULL,
    rental_price_minor   BIGINT  NOT NULL CHECK (rental_price_minor >= 0),
    purchase_price_minor BIGINT  NOT NULL CHECK (purchase_price_minor >= 0),
    version              BIGINT  NOT NULL
);

CREATE TABLE accounts (
    id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('customer', 'staff')),
    created_ms    BIGINT  NOT NULL
);
-- One account per email, compared case-insensitively.
CREATE UNIQUE INDEX accounts_email ON accounts (lower(email));

-- A rental's request id is claimed by inserting the rental: (customer_id, request_id) is unique,
-- so of two replicas racing the same retry one inserts and the other waits, then finds it.
CREATE TABLE rentals (
    id                  BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id         BIGINT  NOT NULL REFERENCES accounts (id),
    movie_id            BIGINT  NOT NULL REFERENCES inventory (movie_id),
    days                INTEGER NOT NULL CHECK (days > 0),
    rented_ms           BIGINT  NOT NULL,
    due_ms              BIGINT  NOT NULL,
    returned_ms         BIGINT,
    currency            TEXT    NOT NULL,
    price_per_day_minor BIGINT  NOT NULL,
    price_minor         BIGINT  NOT NULL,
    late_fee_minor      BIGINT  NOT NULL DEFAULT 0,
    request_id          TEXT    NOT NULL,
    UNIQUE (customer_id, request_id)
);
CREATE INDEX rentals_open_by_movie ON rentals (movie_id) WHERE returned_ms IS NULL;
CREATE INDEX rentals_by_customer ON rentals (customer_id, returned_ms);

CREATE TABLE purchases (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  BIGINT NOT NULL REFERENCES accounts (id),
    movie_id     BIGINT NOT NULL REFERENCES inventory (movie_id),
    currency     TEXT   NOT NULL,
    price_minor  BIGINT NOT NULL,
    purchased_ms BIGINT NOT NULL,
    request_id   TEXT   NOT NULL,
    UNIQUE (customer_id, request_id)
);
