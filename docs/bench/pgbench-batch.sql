-- Sixteen rents in one statement, then their sixteen returns in one statement, for pgbench:
-- what batching rents would make of the rentals scenario in the database alone (compare
-- docs/bench/pgbench-pair.sql, one rent and one return per statement; set up the cluster the
-- way that file says). Each rent's fate is settled inside the statement: a request id already
-- used makes nothing, films are locked in one order (`ORDER BY movie_id FOR NO KEY UPDATE`, so
-- that two batches cannot deadlock), each film gives at most the copies it has, in request
-- order, and its version goes up once per batch.
--   pgbench -n -M prepared -c 3 -j 2 -T 12 -D films=8 -f docs/bench/pgbench-batch.sql
-- pgbench's tps times 16 is rent+return pairs a second. Customers 1-48 rent (16 per connection).
\set c1 1 + :client_id * 16
\set m1 random(1, :films)
\set c2 2 + :client_id * 16
\set m2 random(1, :films)
\set c3 3 + :client_id * 16
\set m3 random(1, :films)
\set c4 4 + :client_id * 16
\set m4 random(1, :films)
\set c5 5 + :client_id * 16
\set m5 random(1, :films)
\set c6 6 + :client_id * 16
\set m6 random(1, :films)
\set c7 7 + :client_id * 16
\set m7 random(1, :films)
\set c8 8 + :client_id * 16
\set m8 random(1, :films)
\set c9 9 + :client_id * 16
\set m9 random(1, :films)
\set c10 10 + :client_id * 16
\set m10 random(1, :films)
\set c11 11 + :client_id * 16
\set m11 random(1, :films)
\set c12 12 + :client_id * 16
\set m12 random(1, :films)
\set c13 13 + :client_id * 16
\set m13 random(1, :films)
\set c14 14 + :client_id * 16
\set m14 random(1, :films)
\set c15 15 + :client_id * 16
\set m15 random(1, :films)
\set c16 16 + :client_id * 16
\set m16 random(1, :films)
\set q random(1, 1000000000000)
WITH req AS (SELECT * FROM unnest(ARRAY[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16], ARRAY[:c1,:c2,:c3,:c4,:c5,:c6,:c7,:c8,:c9,:c10,:c11,:c12,:c13,:c14,:c15,:c16]::bigint[], ARRAY[:m1,:m2,:m3,:m4,:m5,:m6,:m7,:m8,:m9,:m10,:m11,:m12,:m13,:m14,:m15,:m16]::bigint[], ARRAY['1-' || :q,'2-' || :q,'3-' || :q,'4-' || :q,'5-' || :q,'6-' || :q,'7-' || :q,'8-' || :q,'9-' || :q,'10-' || :q,'11-' || :q,'12-' || :q,'13-' || :q,'14-' || :q,'15-' || :q,'16-' || :q]) AS r(idx, customer_id, movie_id, request_id)), fresh AS (SELECT req.*, row_number() OVER (PARTITION BY movie_id ORDER BY idx) AS place FROM req WHERE NOT EXISTS (SELECT 1 FROM rentals x WHERE x.customer_id = req.customer_id AND x.request_id = req.request_id)), wanted AS (SELECT movie_id, count(*) AS n FROM fresh GROUP BY movie_id), locked AS (SELECT i.movie_id, i.copies_available AS before FROM inventory i WHERE i.movie_id IN (SELECT movie_id FROM wanted) AND i.copies_available > 0 ORDER BY i.movie_id FOR NO KEY UPDATE), taken AS (UPDATE inventory i SET copies_available = i.copies_available - least(w.n, l.before), version = i.version + 1 FROM wanted w JOIN locked l USING (movie_id) WHERE i.movie_id = w.movie_id RETURNING i.movie_id, i.copies_owned, i.copies_available, i.currency, i.rental_price_minor, i.purchase_price_minor, i.version, least(w.n, l.before) AS granted), made AS (INSERT INTO rentals (customer_id, movie_id, days, rented_ms, due_ms, currency, price_per_day_minor, price_minor, request_id) SELECT f.customer_id, f.movie_id, 1, 1000, 86401000, t.currency, t.rental_price_minor, t.rental_price_minor, f.request_id FROM fresh f JOIN taken t ON t.movie_id = f.movie_id AND f.place <= t.granted ORDER BY f.customer_id RETURNING id) SELECT array_agg(id)::text AS rids FROM made \gset
WITH returned AS (UPDATE rentals SET returned_ms = 2000, late_fee_minor = 0 WHERE id = ANY(:rids::bigint[]) AND returned_ms IS NULL RETURNING movie_id), per AS (SELECT movie_id, count(*) AS n FROM returned GROUP BY movie_id), locked AS (SELECT i.movie_id FROM inventory i WHERE i.movie_id IN (SELECT movie_id FROM per) ORDER BY i.movie_id FOR NO KEY UPDATE), back AS (UPDATE inventory SET copies_available = copies_available + per.n, version = version + 1 FROM per JOIN locked USING (movie_id) WHERE inventory.movie_id = per.movie_id RETURNING inventory.movie_id) SELECT count(*) FROM back;
