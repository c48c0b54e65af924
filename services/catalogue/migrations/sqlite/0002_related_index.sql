-- Related films (the best rated films sharing a genre) straight from an index, instead of
-- sorting every film of the genre on each film page: each genre row carries its film's rating
-- and folded title, kept in step by every write of the film.
ALTER TABLE movie_genres ADD COLUMN audience_rating REAL NOT NULL DEFAULT 0;
ALTER TABLE movie_genres ADD COLUMN title_key TEXT NOT NULL DEFAULT '';

UPDATE movie_genres SET
    audience_rating = (SELECT audience_rating FROM movies WHERE movies.id = movie_genres.movie_id),
    title_key = (SELECT title_key FROM movies WHERE movies.id = movie_genres.movie_id);

CREATE INDEX movie_genres_by_rating
    ON movie_genres (genre, audience_rating DESC, title_key, movie_id);
