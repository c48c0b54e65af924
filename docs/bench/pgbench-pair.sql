-- One rent and its return, as stock's PostgreSQL store sends them (services/stock/src/store/
-- postgres/mod.rs, with the columns it reads back trimmed), for pgbench: what the database alone
-- makes of the rentals scenario, with nothing else on the machine.
--
-- A cluster with stock's schema, 64 films and 64 customers (psql against any throwaway cluster,
-- e.g. the one testdb starts):
--   for f in services/stock/migrations/postgres/*.sql; do psql -f $f; done
--   UPDATE customer_caps SET max_open_rentals = 1000;
--   INSERT INTO inventory SELECT g, 10000, 10000, 'EUR', 199, 999, 1 FROM generate_series(1, 64) g;
--   INSERT INTO accounts (email, name, password_hash, role, created_ms)
--     SELECT 'b' || g || '@x', 'B', 'x', 'customer', 0 FROM generate_series(1, 64) g;
-- Then, as the bench's 8 films and 8 connections:
--   pgbench -n -M prepared -c 8 -j 2 -T 12 -D films=8 -f docs/bench/pgbench-pair.sql
-- pgbench's tps is rent+return pairs a second.
\set movie random(1, :films)
\set customer 1 + :client_id
\set req random(1, 1000000000000)
WITH taken AS (UPDATE inventory SET copies_available = copies_available - 1, version = version + 1 WHERE movie_id = :movie AND copies_available > 0 AND NOT EXISTS (SELECT 1 FROM rentals WHERE customer_id = :customer AND request_id = 'r' || :req) RETURNING movie_id, copies_owned, copies_available, currency, rental_price_minor, purchase_price_minor, version), made AS (INSERT INTO rentals (customer_id, movie_id, days, rented_ms, due_ms, currency, price_per_day_minor, price_minor, request_id) SELECT :customer, movie_id, 1, 1000, 86401000, currency, rental_price_minor, rental_price_minor, 'r' || :req FROM taken RETURNING id) SELECT made.id AS rid FROM taken, made \gset
WITH returned AS (UPDATE rentals SET returned_ms = 2000, late_fee_minor = 0 WHERE id = :rid AND returned_ms IS NULL AND customer_id = :customer RETURNING movie_id), back AS (UPDATE inventory SET copies_available = copies_available + 1, version = version + 1 FROM returned WHERE inventory.movie_id = returned.movie_id RETURNING inventory.movie_id) SELECT * FROM back, returned;
