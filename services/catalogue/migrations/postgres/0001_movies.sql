-- Films, as in the SQLite schema. `title_key` is the folded title used for search and ordering,
-- compared byte by byte (collation "C") as SQLite compares it, so both backends list films in
-- the same order. `genres` keeps the display order; `movie_genres` serves the genre filter and
-- the related films, each genre row carrying its film's rating and folded title.
--
-- Ids come from a sequence that never goes back: a deleted film's id is never given to a new
-- film, whose stock (kept by the stock service under that id) would otherwise become its own.
-- The store takes an id from it before inserting, since the id is part of the film's wire form.
CREATE SEQUENCE movies_id_seq;

CREATE TABLE movies (
    id              BIGINT           PRIMARY KEY DEFAULT nextval('movies_id_seq'),
    title           TEXT             NOT NULL,
    title_key       TEXT COLLATE "C" NOT NULL,
    release_year    INTEGER          NOT NULL,
    runtime_minutes INTEGER          NOT NULL,
    director        TEXT             NOT NULL,
    rating          INTEGER          NOT NULL,
    synopsis        TEXT             NOT NULL,
    audience_rating DOUBLE PRECISION NOT NULL,
    external_key    TEXT             UNIQUE,
    genres          TEXT[]           NOT NULL,
    update_time_ms  BIGINT           NOT NULL,
    -- The request id of the CreateMovie call that made the film, so a retry finds it.
    create_request  TEXT             UNIQUE,
    -- The film's wire form (see the catalogue's `wire` module), written with its columns.
    wire            BYTEA            NOT NULL
);
ALTER SEQUENCE movies_id_seq OWNED BY movies.id;

CREATE INDEX movies_by_title  ON movies (title_key, id);
CREATE INDEX movies_by_year   ON movies (release_year, title_key, id);
CREATE INDEX movies_by_rating ON movies (audience_rating, title_key, id);

CREATE TABLE movie_genres (
    movie_id        BIGINT           NOT NULL REFERENCES movies (id) ON DELETE CASCADE,
    genre           TEXT             NOT NULL,
    -- The genre in lower case: genres match case-insensitively.
    genre_key       TEXT COLLATE "C" NOT NULL,
    audience_rating DOUBLE PRECISION NOT NULL,
    title_key       TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (movie_id, genre_key)
);
CREATE INDEX movie_genres_by_rating
    ON movie_genres (genre_key, audience_rating DESC, title_key, movie_id);

-- The version of the encoding the `wire` column holds: one row.
CREATE TABLE wire_form (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    version   BIGINT  NOT NULL
);

-- The total size of the films' wire forms, kept by a trigger in the transaction of every write,
-- so an export of the whole catalogue knows its message's length before it reads a film.
CREATE TABLE wire_bytes (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    -- No CHECK on the value: a wrong total must fail exports (they check it), not writes.
    bytes     BIGINT  NOT NULL
);
INSERT INTO wire_bytes (singleton, bytes) VALUES (1, 0);

CREATE FUNCTION wire_bytes_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE wire_bytes SET bytes = bytes + octet_length(NEW.wire);
    ELSIF TG_OP = 'UPDATE' THEN
        UPDATE wire_bytes SET bytes = bytes + octet_length(NEW.wire) - octet_length(OLD.wire);
    ELSE
        UPDATE wire_bytes SET bytes = bytes - octet_length(OLD.wire);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER movies_wire_bytes AFTER INSERT OR UPDATE OF wire OR DELETE ON movies
    FOR EACH ROW EXECUTE FUNCTION wire_bytes_changed();
