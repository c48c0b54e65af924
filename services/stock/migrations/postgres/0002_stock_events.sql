-- Every change of a film's stock, written in the change's own transaction by a trigger, so no
-- write can forget it; then a notification on channel `stock_changes` saying "film:version",
-- delivered to listeners when (and only if) the transaction commits.
--
-- Per film, versions go up by exactly one per change, and they commit in order: a change holds
-- the film's inventory row until it commits. So a replica that hears of version v knows every
-- version before it is committed and here to be read: the notification is only a doorbell, the
-- table is what is read.
CREATE TABLE stock_events (
    movie_id             BIGINT      NOT NULL,
    version              BIGINT      NOT NULL,
    copies_owned         INTEGER     NOT NULL,
    copies_available     INTEGER     NOT NULL,
    currency             TEXT        NOT NULL,
    rental_price_minor   BIGINT      NOT NULL,
    purchase_price_minor BIGINT      NOT NULL,
    committed_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (movie_id, version)
);
CREATE INDEX stock_events_by_time ON stock_events (committed_at);

CREATE FUNCTION stock_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stock_events (movie_id, version, copies_owned, copies_available, currency,
                              rental_price_minor, purchase_price_minor)
    VALUES (NEW.movie_id, NEW.version, NEW.copies_owned, NEW.copies_available, NEW.currency,
            NEW.rental_price_minor, NEW.purchase_price_minor);
    PERFORM pg_notify('stock_changes', NEW.movie_id || ':' || NEW.version);
    RETURN NULL;
END
$$;

CREATE TRIGGER inventory_changed AFTER INSERT OR UPDATE ON inventory
    FOR EACH ROW EXECUTE FUNCTION stock_changed();

-- The films stocked before this migration start their history here.
INSERT INTO stock_events (movie_id, version, copies_owned, copies_available, currency,
                          rental_price_minor, purchase_price_minor)
SELECT movie_id, version, copies_owned, copies_available, currency, rental_price_minor,
       purchase_price_minor
FROM inventory;
