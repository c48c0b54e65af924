-- The notification carries the whole change ("film:version:owned:available:currency:rent:buy"),
-- so a replica that hears the very next version of a film publishes it without reading the
-- table; the table is read only to fill a gap.
CREATE OR REPLACE FUNCTION stock_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stock_events (movie_id, version, copies_owned, copies_available, currency,
                              rental_price_minor, purchase_price_minor)
    VALUES (NEW.movie_id, NEW.version, NEW.copies_owned, NEW.copies_available, NEW.currency,
            NEW.rental_price_minor, NEW.purchase_price_minor);
    PERFORM pg_notify('stock_changes', concat_ws(':', NEW.movie_id, NEW.version,
        NEW.copies_owned, NEW.copies_available, NEW.currency, NEW.rental_price_minor,
        NEW.purchase_price_minor));
    RETURN NULL;
END
$$;
