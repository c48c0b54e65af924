-- Per-customer caps, so that one account cannot empty the shop; stock sets them at start from
-- its configuration. Checked in the write itself (one writer: the count it reads is exact).
CREATE TABLE customer_caps (
    only_row              INTEGER PRIMARY KEY CHECK (only_row = 1),
    max_open_rentals      INTEGER NOT NULL,
    max_purchases_per_day INTEGER NOT NULL
);
INSERT INTO customer_caps VALUES (1, 10, 20);
CREATE INDEX purchases_by_customer ON purchases (customer_id, purchased_ms);
