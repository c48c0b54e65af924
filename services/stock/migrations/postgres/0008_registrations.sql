-- Registrations waiting for their address to be confirmed. No account exists until then, so
-- Register answers alike whether an address is free or taken. Each is kept under the SHA-256 of
-- the code that was mailed: this table never holds a usable code.
CREATE TABLE registrations (
    token_hash    BYTEA   PRIMARY KEY,
    email         TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    expires_ms    BIGINT  NOT NULL
);
CREATE INDEX registrations_by_expiry ON registrations (expires_ms);
CREATE INDEX registrations_by_email ON registrations (lower(email));

-- Mail to deliver, written in the transaction that decided to send it. A sender claims rows
-- for a while (claimed_until_ms), delivers them, then deletes them: the claims of a sender that
-- died run out and another delivers them, so a mail may come twice but is never lost. Replicas
-- claim with SKIP LOCKED, so two never deliver the same row at once.
CREATE TABLE outbox (
    id               BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recipient        TEXT    NOT NULL,
    subject          TEXT    NOT NULL,
    body             TEXT    NOT NULL,
    created_ms       BIGINT  NOT NULL,
    claimed_until_ms BIGINT  NOT NULL DEFAULT 0
);
