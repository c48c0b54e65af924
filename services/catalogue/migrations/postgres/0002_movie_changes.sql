-- Every committed change of a film is announced on channel `movie_changes` with the film's id,
-- delivered to listeners when (and only if) the change's transaction commits. Each catalogue
-- replica listens, drops the film from its read cache and tells its WatchChanges streams; a
-- replica that is not listening (the connection lost, notifications with it) serves nothing from
-- its cache until it listens again, then starts from an empty cache.
CREATE FUNCTION movie_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('movie_changes', OLD.id::text);
    ELSE
        PERFORM pg_notify('movie_changes', NEW.id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER movies_changed AFTER INSERT OR UPDATE OR DELETE ON movies
    FOR EACH ROW EXECUTE FUNCTION movie_changed();
