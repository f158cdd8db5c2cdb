-- 015_coupon_revoke: staff can revoke a gift coupon that was not used yet.
--
-- POST /api/v1/coupons/{code}/revoke marks the coupon revoked; from then on
-- the gift path's lookup (storage/promo.c) finds no coupon (`coupon_invalid`, nothing moves).
-- A node that looked the coupon up just before may still complete that one
-- gift: the coupon stays single use (the wallet's marker) either way.

ALTER TABLE coupons ADD COLUMN revoked_at timestamptz, ADD COLUMN revoked_by text;

CREATE OR REPLACE FUNCTION tipcast_coupon_json(c coupons) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('code', c.code, 'user', c.user_id, 'gift_id', c.gift_id, 'discount', c.discount,
        'expires_at', tipcast_ts(c.expires_at), 'created_by', c.created_by, 'created_at', tipcast_ts(c.created_at),
        'used', u.movement_id IS NOT NULL, 'used_at', tipcast_ts(u.created_at), 'credit', u.movement_id,
        'revoked_at', tipcast_ts(c.revoked_at), 'revoked_by', c.revoked_by)
    FROM (SELECT 1) one
    LEFT JOIN LATERAL (SELECT l.movement_id, l.created_at FROM ledger l
                       WHERE l.account = 'user:' || c.user_id AND l.kind = 'credit' AND l.note = 'coupon:' || c.code
                       ORDER BY l.id LIMIT 1) u ON true;
$$;

-- The gift path's lookup is storage/promo.c's own query (it skips revoked
-- coupons); 011's lookup function was never called.
DROP FUNCTION tipcast_coupon_lookup(text);

-- POST /api/v1/coupons/{code}/revoke: 200 with the coupon, revoked; again:
-- the same (the first revocation stands); 404 for an unknown code.
CREATE FUNCTION tipcast_api_coupon_revoke(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    c coupons;
    old coupons;
BEGIN
    SELECT * INTO old FROM coupons WHERE code = tipcast_path_id(ctx) FOR UPDATE;
    IF old.code IS NULL THEN
        PERFORM tipcast_refuse('not_found', 'no such coupon');
    END IF;
    IF old.revoked_at IS NOT NULL THEN
        RETURN tipcast_ok(tipcast_coupon_json(old));
    END IF;
    UPDATE coupons SET revoked_at = now(), revoked_by = coalesce(ctx->>'actor', '-')
    WHERE code = old.code RETURNING * INTO c;
    PERFORM tipcast_audit(ctx, 'coupon.revoke', c.code, to_jsonb(old), to_jsonb(c));
    RETURN tipcast_ok(tipcast_coupon_json(c));
END;
$$;
