-- demo.sql - the demo's gift catalog and its creator, alice.
--
-- Run by scripts/run.sh (psql) once tipcastd has applied the migrations, and
-- by tests/test_browser.py. Idempotent: running it again puts the same rows
-- back (prices, names, alice live) without duplicating anything. The
-- triggers of storage/migrations/001_init.sql notify tipcast_catalog, so a
-- running tipcastd reloads the catalog at once.
BEGIN;

INSERT INTO gifts (id, name, price, animation, tier, enabled, sort_order) VALUES
    (1, 'Rose',      1, 'rose',   1, true, 10),
    (2, 'Heart',    10, 'heart',  1, true, 20),
    (3, 'Rocket',  500, 'rocket', 2, true, 30),
    (4, 'Castle', 5000, 'castle', 3, true, 40)
ON CONFLICT (id) DO UPDATE SET
    name = EXCLUDED.name,
    price = EXCLUDED.price,
    animation = EXCLUDED.animation,
    tier = EXCLUDED.tier,
    enabled = EXCLUDED.enabled,
    sort_order = EXCLUDED.sort_order,
    updated_at = now();

INSERT INTO creators (id, display_name, live) VALUES ('alice', 'Alice', true)
ON CONFLICT (id) DO UPDATE SET display_name = EXCLUDED.display_name, live = true;

COMMIT;
