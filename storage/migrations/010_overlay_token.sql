-- 010_overlay_token: the admin API's side of an OBS overlay's token
-- (POST /api/v1/creators/{id}/overlay-token, docs/admin-api.md). The function
-- checks the creator and the lifetime and writes the audit row; tipcastd
-- signs the token itself (the JWT secret never reaches PostgreSQL) and adds
-- it to the answer.

CREATE FUNCTION tipcast_api_overlay_token(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    cid text := tipcast_path_id(ctx);
    ttl bigint := coalesce(tipcast_arg_int(ctx, 'ttl_s', 60, 31536000, 'body', false), 2592000);
    exp bigint := floor(extract(epoch FROM now()))::bigint + ttl;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM creators WHERE id = cid) THEN
        PERFORM tipcast_refuse('not_found', format('no creator %s', cid));
    END IF;
    PERFORM tipcast_audit(ctx, 'overlay.token', cid, NULL,
                          jsonb_build_object('room', cid, 'role', 'overlay', 'exp', exp));
    RETURN tipcast_ok(jsonb_build_object('room', cid, 'role', 'overlay', 'exp', exp), 201);
END;
$$;
