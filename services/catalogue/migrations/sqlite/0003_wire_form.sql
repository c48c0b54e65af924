-- Each film's wire form (the encoding the gRPC layer serves), kept beside its columns by every
-- write, so a bulk read copies one value per film instead of rebuilding it field by field. NULL
-- until the store encodes the films, which it does when it opens and finds `wire_form` holding
-- another version than its encoder's (after this migration: no version at all).
ALTER TABLE movies ADD COLUMN wire BLOB;

-- The version of the encoding the `wire` column holds: one row.
CREATE TABLE wire_form (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    version   INTEGER NOT NULL
);
