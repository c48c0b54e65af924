-- Registrations waiting for their address to be confirmed. No account exists until then, so
-- Register answers alike whether an address is free or taken. Each is kept under the SHA-256 of
-- the code that was mailed: this table never holds a usable code.
CREATE TABLE registrations (
    token_hash    BLOB    PRIMARY KEY,
    email         TEXT    NOT NULL COLLATE NOCASE,
    name          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    expires_ms    INTEGER NOT NULL
);
CREATE INDEX registrations_by_expiry ON registrations (expires_ms);
CREATE INDEX registrations_by_email ON registrations (email);

-- Mail to deliver, written in the transaction that decided to send it. A sender claims rows
-- for a while (claimed_until_ms), delivers them, then deletes them: the claims of a sender that
-- died run out and another delivers them, so a mail may come twice but is never lost.
CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient        TEXT    NOT NULL,
    subject          TEXT    NOT NULL,
    body             TEXT    NOT NULL,
    created_ms       INTEGER NOT NULL,
    claimed_until_ms INTEGER NOT NULL DEFAULT 0
);
