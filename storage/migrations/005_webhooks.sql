-- 005_webhooks: delivery of webhook_outbox (002) by settlement/webhook.c (its admin list uses the helpers of 004), and
-- the two admin routes of dead letters (docs/admin-api.md, "Webhooks";
-- docs/settlement.md, "Webhooks").
--
-- A row is 'pending' until a 2xx answer ('delivered') or until it has failed
-- for longer than webhook-give-up-s ('dead', with an alerts row). A node
-- claims due rows by moving their next_attempt_at past its lease and
-- counting the attempt; another node sees them due again only once the lease
-- has run out, so a node that dies in the middle of a delivery delays that
-- row by the lease and nothing more. attempts is the fencing token: a node
-- whose lease ran out before it could write a failure finds attempts moved
-- on and writes nothing.

-- The start of a row's delivery window: NULL for created_at, the time of its
-- latest manual retry (tipcast_api_webhook_retry) after one. created_at stays
-- the event's time: it is in the payload and in the dead-letter list.
ALTER TABLE webhook_outbox ADD COLUMN retried_at timestamptz;

-- Claims up to max_rows due rows for lease_ms. Rows locked by another node's
-- claim at this moment are skipped, not waited for.
CREATE FUNCTION tipcast_webhook_claim(lease_ms int, max_rows int)
RETURNS TABLE (id bigint, event text, idempotency_key text, payload text, attempts int)
LANGUAGE sql AS $$
    UPDATE webhook_outbox w
    SET next_attempt_at = now() + lease_ms * interval '1 millisecond', attempts = w.attempts + 1
    WHERE w.id IN (SELECT d.id FROM webhook_outbox d
                   WHERE d.state = 'pending' AND d.next_attempt_at <= now()
                   ORDER BY d.next_attempt_at
                   LIMIT max_rows
                   FOR UPDATE SKIP LOCKED)
    RETURNING w.id, w.event, w.idempotency_key, w.payload::text, w.attempts;
$$;

-- The outcome of attempt number `attempt` of row `row_id`. delivered: the
-- receiver answered 2xx (status). Otherwise status is the answer's (NULL when
-- there was none) and error says what failed; the row is tried again after
-- retry_ms, or goes dead when its window (give_up_s from created_at, or from
-- its latest retry) is over. Returns the row's state after it, or 'stale'
-- when the row was not ours any more (another node's attempt, a manual
-- retry, gone): then nothing is written. Running it twice changes nothing
-- the second time.
CREATE FUNCTION tipcast_webhook_finish(row_id bigint, attempt int, delivered boolean, status int, error text,
                                       retry_ms bigint, give_up_s int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    w webhook_outbox;
BEGIN
    SELECT * INTO w FROM webhook_outbox WHERE id = row_id FOR UPDATE;
    IF NOT FOUND OR w.state <> 'pending' THEN
        RETURN 'stale';
    END IF;
    IF delivered THEN
        -- A 2xx stands even when another node took the row over meanwhile:
        -- the receiver has the event (its copy from the other node, if any,
        -- is the duplicate that the idempotency key lets it drop).
        UPDATE webhook_outbox SET state = 'delivered', delivered_at = now(), last_status = status, last_error = NULL
        WHERE id = row_id;
        RETURN 'delivered';
    END IF;
    IF w.attempts <> attempt THEN
        RETURN 'stale';
    END IF;
    IF now() - coalesce(w.retried_at, w.created_at) > give_up_s * interval '1 second' THEN
        UPDATE webhook_outbox SET state = 'dead', last_status = status, last_error = left(error, 500)
        WHERE id = row_id;
        INSERT INTO alerts (kind, severity, subject, detail)
        VALUES ('webhook_dead', 'warning', row_id::text,
                jsonb_build_object('id', row_id, 'event', w.event, 'idempotency_key', w.idempotency_key,
                                   'attempts', w.attempts, 'last_status', status, 'last_error', left(error, 500),
                                   'created_at', w.created_at));
        RETURN 'dead';
    END IF;
    UPDATE webhook_outbox
    SET last_status = status, last_error = left(error, 500),
        next_attempt_at = now() + retry_ms * interval '1 millisecond'
    WHERE id = row_id;
    RETURN 'pending';
END;
$$;

-- GET /api/v1/webhooks/dead?limit=&after=: dead letters, newest first.
-- `next` is the id of the page's last item as a string (the `after` of the
-- next page), null on the last page. Served by the partial index
-- webhook_outbox_dead (002).
CREATE FUNCTION tipcast_api_webhooks_dead(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    lim int := tipcast_arg_limit(ctx);
    aft bigint := tipcast_arg_after_id(ctx);
BEGIN
    RETURN tipcast_paged(ARRAY(
        SELECT jsonb_build_array(w.id::text, jsonb_build_object(
                   'id', w.id, 'event', w.event, 'idempotency_key', w.idempotency_key, 'attempts', w.attempts,
                   'last_status', w.last_status, 'last_error', w.last_error, 'created_at', tipcast_ts(w.created_at)))
        FROM webhook_outbox w
        WHERE w.state = 'dead' AND (aft IS NULL OR w.id < aft)
        ORDER BY w.id DESC LIMIT lim + 1), lim);
END;
$$;

-- POST /api/v1/webhooks/{id}/retry: a dead letter back to pending, to be
-- sent at once, with a fresh delivery window of webhook-give-up-s from now
-- (retried_at) and its attempts counted from 0 again. Audited webhook.retry.
CREATE FUNCTION tipcast_api_webhook_retry(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    id_text text := ctx->'path'->>'id';
    w webhook_outbox;
BEGIN
    IF id_text IS NULL OR id_text !~ '^[0-9]{1,18}$' THEN
        RAISE EXCEPTION 'not_found' USING DETAIL = format('no webhook %s', coalesce(id_text, ''));
    END IF;
    SELECT * INTO w FROM webhook_outbox WHERE id = id_text::bigint FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'not_found' USING DETAIL = format('no webhook %s', id_text);
    END IF;
    IF w.state <> 'dead' THEN
        RAISE EXCEPTION 'invalid_state' USING DETAIL = format('webhook %s is %s, not dead', w.id, w.state);
    END IF;
    -- With webhook-url empty nothing would send it: it would sit pending.
    IF ctx->'webhooks' = 'false'::jsonb THEN
        RAISE EXCEPTION 'invalid_state' USING DETAIL = 'webhooks are off (webhook-url is empty): nothing would send it';
    END IF;
    UPDATE webhook_outbox SET state = 'pending', attempts = 0, next_attempt_at = now(), retried_at = now()
    WHERE id = w.id;
    PERFORM tipcast_audit(ctx, 'webhook.retry', w.id::text,
                          jsonb_build_object('state', w.state, 'attempts', w.attempts),
                          jsonb_build_object('state', 'pending', 'attempts', 0));
    RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object('id', w.id, 'state', 'pending'));
END;
$$;
