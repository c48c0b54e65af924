-- Every change of a film's stock, written in the change's own transaction by a trigger, so no
-- write can forget it: what a watcher that reconnects reads to resume from the version it has.
CREATE TABLE stock_events (
    movie_id             INTEGER NOT NULL,
    version              INTEGER NOT NULL,
    copies_owned         INTEGER NOT NULL,
    copies_available     INTEGER NOT NULL,
    currency             TEXT    NOT NULL,
    rental_price_minor   INTEGER NOT NULL,
    purchase_price_minor INTEGER NOT NULL,
    committed_ms         INTEGER NOT NULL,
    PRIMARY KEY (movie_id, version)
) WITHOUT ROWID;
CREATE INDEX stock_events_by_time ON stock_events (committed_ms);

CREATE TRIGGER inventory_inserted AFTER INSERT ON inventory BEGIN
    INSERT INTO stock_events VALUES (NEW.movie_id, NEW.version, NEW.copies_owned,
        NEW.copies_available, NEW.currency, NEW.rental_price_minor, NEW.purchase_price_minor,
        CAST(unixepoch('subsec') * 1000 AS INTEGER));
END;

CREATE TRIGGER inventory_updated AFTER UPDATE ON inventory BEGIN
    INSERT INTO stock_events VALUES (NEW.movie_id, NEW.version, NEW.copies_owned,
        NEW.copies_available, NEW.currency, NEW.rental_price_minor, NEW.purchase_price_minor,
        CAST(unixepoch('subsec') * 1000 AS INTEGER));
END;

-- The films stocked before this migration start their history here.
INSERT INTO stock_events
SELECT movie_id, version, copies_owned, copies_available, currency, rental_price_minor,
       purchase_price_minor, CAST(unixepoch('subsec') * 1000 AS INTEGER)
FROM inventory;
