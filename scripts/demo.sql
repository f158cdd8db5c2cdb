-- demo.sql - the demo's gift catalog, its creator alice, and the money
-- settings of settlement: a revenue rule (30% platform fee, 25% from
-- 100,000 coins a month, 20% from 1,000,000; agencies get 10%), the agency
-- "starlight" that alice belongs to, and three recharge packages and a USD
-- rate (docs/settlement.md).
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

-- Settlement. Rules are never edited (docs/settlement.md): the demo's rule
-- has a fixed effective time, so a second run finds it and adds nothing.
INSERT INTO agencies (id, name) VALUES ('starlight', 'Starlight Talent') ON CONFLICT (id) DO NOTHING;
UPDATE creators SET agency_id = 'starlight' WHERE id = 'alice';

WITH rule AS (
    INSERT INTO revenue_rules (name, effective_at, agency_share_bp, created_by)
    VALUES ('demo: 30/25/20% by monthly volume, agencies 10%', '2020-01-01 00:00:00+00', 1000, 'demo.sql')
    ON CONFLICT (effective_at) DO NOTHING
    RETURNING id
)
INSERT INTO revenue_rule_tiers (rule_id, min_volume, platform_fee_bp)
SELECT id, t.min_volume, t.fee FROM rule, (VALUES (0, 3000), (100000, 2500), (1000000, 2000)) AS t (min_volume, fee);

INSERT INTO recharge_packages (id, currency, amount_minor, coins) VALUES
    ('usd-099', 'USD',  99,  100),
    ('usd-499', 'USD', 499,  520),
    ('usd-999', 'USD', 999, 1100)
ON CONFLICT (id) DO UPDATE SET currency = EXCLUDED.currency, amount_minor = EXCLUDED.amount_minor,
    coins = EXCLUDED.coins, enabled = true, updated_at = now();
INSERT INTO currency_rates (currency, coins_per_unit, minor_per_unit) VALUES ('USD', 100, 100)
ON CONFLICT (currency) DO UPDATE SET coins_per_unit = EXCLUDED.coins_per_unit,
    minor_per_unit = EXCLUDED.minor_per_unit, updated_at = now();

COMMIT;
