-- Films. `title_key` is the folded title (lower case, accents removed) used for search and
-- ordering; `genres` keeps the display order, `movie_genres` serves the genre filter.
CREATE TABLE movies (
    -- AUTOINCREMENT: a deleted film's id is never given to a new film, whose stock and
    -- rentals (kept by the stock service under that id) would otherwise become its own.
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    title           TEXT    NOT NULL,
    title_key       TEXT    NOT NULL,
    release_year    INTEGER NOT NULL,
    runtime_minutes INTEGER NOT NULL,
    director        TEXT    NOT NULL,
    rating          INTEGER NOT NULL,
    synopsis        TEXT    NOT NULL,
    audience_rating REAL    NOT NULL,
    external_key    TEXT    UNIQUE,
    genres          TEXT    NOT NULL,
    update_time_ms  INTEGER NOT NULL,
    -- The request id of the CreateMovie call that made the film, so a retry finds it.
    create_request  TEXT    UNIQUE
);

CREATE INDEX movies_by_title  ON movies (title_key, id);
CREATE INDEX movies_by_year   ON movies (release_year, title_key, id);
CREATE INDEX movies_by_rating ON movies (audience_rating, title_key, id);

CREATE TABLE movie_genres (
    movie_id INTEGER NOT NULL REFERENCES movies (id) ON DELETE CASCADE,
    genre    TEXT    NOT NULL COLLATE NOCASE,
    PRIMARY KEY (movie_id, genre)
);

CREATE INDEX movie_genres_by_genre ON movie_genres (genre, movie_id);
