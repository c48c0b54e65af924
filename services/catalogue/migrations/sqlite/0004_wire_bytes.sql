-- The total size of the films' wire forms, kept by triggers in the transaction of every write,
-- so an export of the whole catalogue knows its message's length before it reads a film, and
-- sends the films as it reads them, the length and the films from one snapshot.
CREATE TABLE wire_bytes (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    -- No CHECK on the value: a wrong total must fail exports (they check it), not writes.
    bytes     INTEGER NOT NULL
);
INSERT INTO wire_bytes (singleton, bytes) SELECT 1, COALESCE(SUM(LENGTH(wire)), 0) FROM movies;

CREATE TRIGGER wire_bytes_insert AFTER INSERT ON movies WHEN NEW.wire IS NOT NULL
BEGIN
    UPDATE wire_bytes SET bytes = bytes + LENGTH(NEW.wire);
END;

CREATE TRIGGER wire_bytes_update AFTER UPDATE OF wire ON movies
BEGIN
    UPDATE wire_bytes
    SET bytes = bytes + COALESCE(LENGTH(NEW.wire), 0) - COALESCE(LENGTH(OLD.wire), 0);
END;

CREATE TRIGGER wire_bytes_delete AFTER DELETE ON movies WHEN OLD.wire IS NOT NULL
BEGIN
    UPDATE wire_bytes SET bytes = bytes - LENGTH(OLD.wire);
END;
