-- 012_campaigns: crowdfunding campaigns with escrow (docs/settlement.md,
-- "Campaigns"; docs/admin-api.md, "Campaigns").
--
-- Life of a campaign (campaigns.state), every step checked here:
--   review -> rejected                       operations refuse it
--   review -> approved                       operations approve it
--   approved -> open                         tipcastd has written it to every wallet shard
--   approved | open -> closing               the deadline passed; every shard sealed (no pledge
--                                            after this), the shards' totals recorded
--   closing -> succeeded                     every pledge is in the ledger; target reached (or
--                                            flexible): escrow -> creator minus the fee
--   closing -> refunding -> refunded         all_or_nothing missed: every pledge credited back
--
-- Money: a pledge is a wallet script (gifts/lua/wallet_pledge.lua) whose
-- outbox entry (k=pledge) the ledger consumer writes as the movement
-- <order id>: user:U -A, escrow:K +A (ledger_in_moves, storage/ledger_sql.c).
-- A campaign refund is a wallet credit (k=crefund, x = the pledge's order
-- id, idempotent in Redis by "crefund:<pledge>"): escrow:K -A, user:U +A.
-- The payout is one transaction here: escrow:K -total, creator:C +net,
-- platform +fee. Each movement sums to zero.
--
-- The trigger below keeps campaign_pledges and the campaigns' totals from
-- the ledger rows themselves, in the ledger consumer's transaction: a
-- replayed batch adds no ledger row and so counts nothing twice.

CREATE TABLE campaigns (
    id               bigserial PRIMARY KEY,
    creator          text NOT NULL,
    request_id       text NOT NULL,
    title            text NOT NULL,
    description      text NOT NULL,
    target           bigint NOT NULL CHECK (target > 0),
    deadline         timestamptz NOT NULL,
    mode             text NOT NULL CHECK (mode IN ('all_or_nothing', 'flexible')),
    state            text NOT NULL DEFAULT 'review'
                     CHECK (state IN ('review', 'rejected', 'approved', 'open', 'closing', 'succeeded',
                                      'refunding', 'refunded')),
    reason           text,
    reviewed_by      text,
    reviewed_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    opened_at        timestamptz,
    closed_at        timestamptz,
    settled_at       timestamptz,
    -- The shards' totals when they were sealed: the ledger must reach them
    -- before the campaign is decided.
    sealed_total     bigint,
    sealed_pledges   bigint,
    -- Kept by tipcast_campaign_ledger from the ledger rows.
    pledged          bigint NOT NULL DEFAULT 0,
    pledges          bigint NOT NULL DEFAULT 0,
    backers          bigint NOT NULL DEFAULT 0,
    refunded         bigint NOT NULL DEFAULT 0,
    refunds          bigint NOT NULL DEFAULT 0,
    fee_bp           int,
    platform_fee     bigint,
    creator_net      bigint,
    -- What the room was last told (campaign_progress), so that it is told
    -- again only when something changed: coalesced to one event per tick.
    told_pledged     bigint NOT NULL DEFAULT -1,
    told_backers     bigint NOT NULL DEFAULT -1,
    told_state       text NOT NULL DEFAULT '',
    surge_alert_at   timestamptz,
    UNIQUE (creator, request_id)
);
CREATE INDEX campaigns_active ON campaigns (state, deadline)
    WHERE state IN ('approved', 'open', 'closing', 'refunding');
-- The campaigns whose room has not been told their latest totals or state.
CREATE INDEX campaigns_untold ON campaigns (id)
    WHERE told_pledged <> pledged OR told_backers <> backers OR told_state <> state;

-- Reward tiers, 1..CAMPAIGN_TIERS_MAX per campaign. stock NULL: unlimited.
CREATE TABLE campaign_tiers (
    campaign_id  bigint NOT NULL REFERENCES campaigns (id),
    tier         int NOT NULL CHECK (tier >= 1),
    min_amount   bigint NOT NULL CHECK (min_amount > 0),
    title        text NOT NULL,
    stock        bigint CHECK (stock >= 0),
    PRIMARY KEY (campaign_id, tier)
);

CREATE TABLE campaign_pledges (
    order_id     text PRIMARY KEY,
    campaign_id  bigint NOT NULL,
    user_id      text NOT NULL,
    amount       bigint NOT NULL CHECK (amount > 0),
    tier         int,
    created_at   timestamptz NOT NULL,
    state        text NOT NULL DEFAULT 'held' CHECK (state IN ('held', 'paid', 'refunded')),
    refund_entry text,
    refunded_at  timestamptz
);
CREATE INDEX campaign_pledges_campaign ON campaign_pledges (campaign_id, created_at);
CREATE INDEX campaign_pledges_held ON campaign_pledges (campaign_id, order_id) WHERE state = 'held';

CREATE TABLE campaign_backers (
    campaign_id  bigint NOT NULL,
    user_id      text NOT NULL,
    PRIMARY KEY (campaign_id, user_id)
);

CREATE TABLE campaign_updates (
    id           bigserial PRIMARY KEY,
    campaign_id  bigint NOT NULL REFERENCES campaigns (id),
    request_id   text NOT NULL,
    title        text NOT NULL,
    body         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    told         boolean NOT NULL DEFAULT false,
    UNIQUE (campaign_id, request_id)
);
CREATE INDEX campaign_updates_untold ON campaign_updates (id) WHERE NOT told;

-- ---- From the ledger ---------------------------------------------------------------

-- Pledges (escrow:K +A rows of kind pledge; the note is the tier, or NULL)
-- and campaign refunds (user:U +A rows of kind campaign_refund; the note
-- is the pledge's order id). The campaigns' rows are locked in id order
-- first: two ledger consumers touching the same campaigns never deadlock.
CREATE FUNCTION tipcast_campaign_ledger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM campaign_new_rows WHERE kind IN ('pledge', 'campaign_refund')) THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM campaigns
    WHERE id IN (SELECT substr(account, 8)::bigint FROM campaign_new_rows
                 WHERE kind IN ('pledge', 'campaign_refund') AND account LIKE 'escrow:%')
    ORDER BY id FOR UPDATE;

    WITH p AS (
        INSERT INTO campaign_pledges (order_id, campaign_id, user_id, amount, tier, created_at)
        SELECT e.movement_id, substr(e.account, 8)::bigint, substr(u.account, 6), e.delta, e.note::int,
               e.created_at
        FROM campaign_new_rows e
        JOIN campaign_new_rows u ON u.movement_id = e.movement_id AND u.account LIKE 'user:%'
        WHERE e.kind = 'pledge' AND e.account LIKE 'escrow:%'
        ON CONFLICT (order_id) DO NOTHING
        RETURNING campaign_id, user_id, amount
    ), b AS (
        INSERT INTO campaign_backers (campaign_id, user_id)
        SELECT DISTINCT campaign_id, user_id FROM p
        ON CONFLICT DO NOTHING
        RETURNING campaign_id
    ), s AS (
        SELECT campaign_id, sum(amount)::bigint AS amount, count(*) AS n FROM p GROUP BY 1
    ), nb AS (
        SELECT campaign_id, count(*) AS n FROM b GROUP BY 1
    )
    UPDATE campaigns c SET pledged = c.pledged + s.amount, pledges = c.pledges + s.n,
                           backers = c.backers + coalesce(nb.n, 0)
    FROM s LEFT JOIN nb ON nb.campaign_id = s.campaign_id
    WHERE c.id = s.campaign_id;

    WITH r AS (
        SELECT u.movement_id, u.note AS pledge, u.delta, u.created_at
        FROM campaign_new_rows u
        WHERE u.kind = 'campaign_refund' AND u.account LIKE 'user:%'
    ), done AS (
        UPDATE campaign_pledges p SET state = 'refunded', refund_entry = r.movement_id, refunded_at = r.created_at
        FROM r WHERE p.order_id = r.pledge AND p.state = 'held'
        RETURNING p.campaign_id, p.amount
    ), twice AS (
        -- A second credit of one pledge (cannot happen while the wallet's
        -- idempotency key lives): told loudly, never hidden.
        INSERT INTO alerts (kind, severity, subject, detail)
        SELECT 'ledger.external_twice', 'critical', r.pledge,
               jsonb_build_object('entry', r.movement_id, 'first', p.refund_entry, 'amount', r.delta)
        FROM r JOIN campaign_pledges p ON p.order_id = r.pledge
        WHERE p.state = 'refunded' AND p.refund_entry <> r.movement_id
        RETURNING 1
    )
    UPDATE campaigns c SET refunded = c.refunded + d.amount, refunds = c.refunds + d.n
    FROM (SELECT campaign_id, sum(amount)::bigint AS amount, count(*) AS n FROM done GROUP BY 1) d
    WHERE c.id = d.campaign_id AND (SELECT count(*) FROM twice) >= 0;
    RETURN NULL;
END;
$$;

CREATE TRIGGER ledger_campaigns AFTER INSERT ON ledger
    REFERENCING NEW TABLE AS campaign_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tipcast_campaign_ledger();

-- ---- JSON --------------------------------------------------------------------------

CREATE FUNCTION tipcast_campaign_json(c campaigns) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', c.id, 'creator', c.creator, 'room', c.creator, 'title', c.title,
        'description', c.description, 'target', c.target, 'deadline', tipcast_ts(c.deadline), 'mode', c.mode,
        'state', c.state, 'reason', c.reason, 'pledged', c.pledged, 'pledges', c.pledges, 'backers', c.backers,
        'refunded', c.refunded, 'platform_fee', c.platform_fee, 'creator_net', c.creator_net,
        'created_at', tipcast_ts(c.created_at), 'reviewed_by', c.reviewed_by,
        'reviewed_at', tipcast_ts(c.reviewed_at), 'closed_at', tipcast_ts(c.closed_at),
        'settled_at', tipcast_ts(c.settled_at),
        'tiers', coalesce((SELECT jsonb_agg(jsonb_build_object('tier', t.tier, 'min_amount', t.min_amount,
                                  'title', t.title, 'stock', t.stock,
                                  'taken', (SELECT count(*) FROM campaign_pledges p
                                            WHERE p.campaign_id = c.id AND p.tier = t.tier))
                                  ORDER BY t.tier)
                           FROM campaign_tiers t WHERE t.campaign_id = c.id), '[]'));
$$;

-- ---- Admin API ---------------------------------------------------------------------

-- A creator creates its own; an admin names the creator. Idempotent by
-- (creator, request_id): the same body again answers the campaign, another
-- body is idempotency_conflict.
CREATE FUNCTION tipcast_api_campaign_create(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    who text;
    rid text := tipcast_arg_key(ctx, 'request_id');
    ttl text := tipcast_arg_text(ctx, 'title', 200);
    descr text := coalesce(tipcast_arg_text(ctx, 'description', 5000, 'body', false), '');
    tgt bigint := tipcast_arg_amount(ctx, 'target');
    dl_text text := tipcast_arg_text(ctx, 'deadline', 64);
    md text := tipcast_arg_text(ctx, 'mode', 32, 'body', true, '^(all_or_nothing|flexible)$');
    tiers jsonb := tipcast_arg(ctx, 'body', 'tiers');
    dl timestamptz;
    c campaigns;
    t jsonb;
    i int := 0;
    prev bigint := 0;
BEGIN
    IF ctx->>'role' = 'creator' THEN
        who := ctx->>'actor';
        IF tipcast_arg(ctx, 'body', 'creator') IS NOT NULL AND ctx->'body'->>'creator' IS DISTINCT FROM who THEN
            PERFORM tipcast_refuse('forbidden', 'a creator creates campaigns only for itself');
        END IF;
    ELSE
        who := tipcast_arg_id(ctx, 'creator');
    END IF;
    BEGIN
        dl := dl_text::timestamptz;
    EXCEPTION WHEN others THEN
        PERFORM tipcast_bad('deadline', 'deadline must be an RFC 3339 time');
    END;
    IF dl_text !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9:.]+(Z|[+-][0-9]{2}:?[0-9]{2})$' THEN
        PERFORM tipcast_bad('deadline', 'deadline must be an RFC 3339 time with its offset');
    END IF;
    IF dl <= now() + interval '1 second' OR dl > now() + interval '366 days' THEN
        PERFORM tipcast_bad('deadline', 'deadline must be in the future, within 366 days');
    END IF;
    IF tiers IS NOT NULL AND (jsonb_typeof(tiers) <> 'array' OR jsonb_array_length(tiers) > 20) THEN
        PERFORM tipcast_bad('tiers', 'tiers must be an array of at most 20 tiers');
    END IF;
    SELECT * INTO c FROM campaigns WHERE campaigns.creator = who AND request_id = rid;
    IF c.id IS NOT NULL THEN
        IF c.title = ttl AND c.target = tgt AND c.deadline = dl AND c.mode = md AND c.description = descr THEN
            RETURN tipcast_ok(tipcast_campaign_json(c), 200);
        END IF;
        PERFORM tipcast_refuse('idempotency_conflict',
                               format('request_id %s was used for campaign %s', rid, c.id));
    END IF;
    INSERT INTO campaigns (creator, request_id, title, description, target, deadline, mode)
    VALUES (who, rid, ttl, descr, tgt, dl, md) RETURNING * INTO c;
    FOR t IN SELECT value FROM jsonb_array_elements(coalesce(tiers, '[]'))
    LOOP
        i := i + 1;
        IF jsonb_typeof(t) <> 'object' THEN
            PERFORM tipcast_bad('tiers', format('tier %s must be an object', i));
        END IF;
        DECLARE
            tctx jsonb := jsonb_build_object('body', t);
            tmin bigint := tipcast_arg_amount(tctx, 'min_amount');
            ttitle text := tipcast_arg_text(tctx, 'title', 200);
            tstock bigint := tipcast_arg_int(tctx, 'stock', 0, 1000000000, 'body', false);
        BEGIN
            IF tmin <= prev THEN
                PERFORM tipcast_bad('tiers', 'tiers must be in increasing min_amount');
            END IF;
            prev := tmin;
            INSERT INTO campaign_tiers (campaign_id, tier, min_amount, title, stock)
            VALUES (c.id, i, tmin, ttitle, tstock);
        END;
    END LOOP;
    PERFORM tipcast_audit(ctx, 'campaign.create', c.id::text, NULL, tipcast_campaign_json(c));
    RETURN tipcast_ok(tipcast_campaign_json(c), 201);
END;
$$;

-- A creator sees its own campaigns; staff every one; ?state= and
-- ?creator= filter; newest first, ?limit (1..200, 50) and ?after (an id).
CREATE FUNCTION tipcast_api_campaigns_list(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    lim int := coalesce(tipcast_arg_int(ctx, 'limit', 1, 200, 'query', false), 50);
    aft bigint := tipcast_arg_int(ctx, 'after', 1, 9223372036854775807, 'query', false);
    st text := tipcast_arg_text(ctx, 'state', 32, 'query', false);
    who text := CASE WHEN ctx->>'role' = 'creator' THEN ctx->>'actor'
                     ELSE tipcast_arg_id(ctx, 'creator', 'query', false) END;
BEGIN
    RETURN tipcast_paged(ARRAY(
        SELECT jsonb_build_array(c.id::text, tipcast_campaign_json(c))
        FROM campaigns c
        WHERE (who IS NULL OR c.creator = who) AND (st IS NULL OR c.state = st) AND (aft IS NULL OR c.id < aft)
        ORDER BY c.id DESC LIMIT lim + 1), lim);
END;
$$;

-- Anyone signed in may read a campaign that is past review; its creator
-- and staff also one in review or rejected.
CREATE FUNCTION tipcast_api_campaign_get(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    cid bigint := tipcast_path_serial(ctx);
    c campaigns;
BEGIN
    SELECT * INTO c FROM campaigns WHERE id = cid;
    IF c.id IS NULL OR (c.state IN ('review', 'rejected') AND ctx->>'role' IN ('viewer', 'creator')
                        AND c.creator IS DISTINCT FROM ctx->>'actor') THEN
        PERFORM tipcast_refuse('not_found', format('no campaign %s', cid));
    END IF;
    RETURN tipcast_ok(tipcast_campaign_json(c));
END;
$$;

CREATE FUNCTION tipcast_campaign_review(ctx jsonb, approve boolean) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    cid bigint := tipcast_path_serial(ctx);
    why text := CASE WHEN approve THEN tipcast_arg_text(ctx, 'reason', 500, 'body', false)
                     ELSE tipcast_arg_text(ctx, 'reason', 500) END;
    old campaigns;
    c campaigns;
BEGIN
    SELECT * INTO old FROM campaigns WHERE id = cid FOR UPDATE;
    IF old.id IS NULL THEN
        PERFORM tipcast_refuse('not_found', format('no campaign %s', cid));
    END IF;
    IF old.state <> 'review' THEN
        PERFORM tipcast_refuse('invalid_state', format('campaign %s is %s, not in review', cid, old.state));
    END IF;
    IF approve AND old.deadline <= now() THEN
        PERFORM tipcast_refuse('invalid_state', format('campaign %s: its deadline has passed', cid));
    END IF;
    UPDATE campaigns SET state = CASE WHEN approve THEN 'approved' ELSE 'rejected' END, reason = why,
                         reviewed_by = coalesce(ctx->>'actor', '-'), reviewed_at = now()
    WHERE id = cid RETURNING * INTO c;
    PERFORM tipcast_audit(ctx, CASE WHEN approve THEN 'campaign.approve' ELSE 'campaign.reject' END, cid::text,
                          tipcast_campaign_json(old), tipcast_campaign_json(c));
    PERFORM tipcast_webhook_enqueue(tipcast_webhooks_on(ctx), 'campaign.' || c.state,
                                    'campaign.' || c.state || ':' || c.id, tipcast_campaign_json(c));
    RETURN tipcast_ok(tipcast_campaign_json(c));
END;
$$;

CREATE FUNCTION tipcast_api_campaign_approve(ctx jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT tipcast_campaign_review(ctx, true); $$;

CREATE FUNCTION tipcast_api_campaign_reject(ctx jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT tipcast_campaign_review(ctx, false); $$;

-- An update from the campaign's creator (or an admin) to its backers:
-- stored, queued as the campaign.update webhook (the platform notifies
-- every backer: GET .../pledges lists them) and told to the room as a
-- campaign_update event by the campaign job. Idempotent by request_id.
CREATE FUNCTION tipcast_api_campaign_update_post(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    cid bigint := tipcast_path_serial(ctx);
    rid text := tipcast_arg_key(ctx, 'request_id');
    ttl text := tipcast_arg_text(ctx, 'title', 200);
    txt text := tipcast_arg_text(ctx, 'text', 5000);
    c campaigns;
    u campaign_updates;
    j jsonb;
BEGIN
    SELECT * INTO c FROM campaigns WHERE id = cid;
    IF c.id IS NULL OR (ctx->>'role' = 'creator' AND c.creator IS DISTINCT FROM ctx->>'actor') THEN
        PERFORM tipcast_refuse('not_found', format('no campaign %s of yours', cid));
    END IF;
    IF c.state IN ('review', 'rejected') THEN
        PERFORM tipcast_refuse('invalid_state', format('campaign %s is %s', cid, c.state));
    END IF;
    SELECT * INTO u FROM campaign_updates WHERE campaign_id = cid AND request_id = rid;
    IF u.id IS NOT NULL THEN
        IF u.title = ttl AND u.body = txt THEN
            RETURN tipcast_ok(jsonb_build_object('id', u.id, 'campaign', cid, 'title', u.title, 'text', u.body,
                                                 'created_at', tipcast_ts(u.created_at)), 200);
        END IF;
        PERFORM tipcast_refuse('idempotency_conflict', format('request_id %s was used for update %s', rid, u.id));
    END IF;
    INSERT INTO campaign_updates (campaign_id, request_id, title, body) VALUES (cid, rid, ttl, txt) RETURNING * INTO u;
    j := jsonb_build_object('id', u.id, 'campaign', cid, 'title', u.title, 'text', u.body,
                            'created_at', tipcast_ts(u.created_at));
    PERFORM tipcast_audit(ctx, 'campaign.update', cid::text, NULL, j);
    PERFORM tipcast_webhook_enqueue(tipcast_webhooks_on(ctx), 'campaign.update', 'campaign.update:' || u.id,
                                    j || jsonb_build_object('creator', c.creator, 'backers', c.backers));
    RETURN tipcast_ok(j, 201);
END;
$$;

-- The pledges of a campaign in order (the backers to notify, finance's
-- view): staff, and the campaign's creator. ?limit (1..1000, 100), ?after.
CREATE FUNCTION tipcast_api_campaign_pledges(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    cid bigint := tipcast_path_serial(ctx);
    lim int := coalesce(tipcast_arg_int(ctx, 'limit', 1, 1000, 'query', false), 100);
    aft text := tipcast_arg_text(ctx, 'after', 64, 'query', false);
    c campaigns;
BEGIN
    SELECT * INTO c FROM campaigns WHERE id = cid;
    IF c.id IS NULL OR (ctx->>'role' = 'creator' AND c.creator IS DISTINCT FROM ctx->>'actor') THEN
        PERFORM tipcast_refuse('not_found', format('no campaign %s of yours', cid));
    END IF;
    RETURN tipcast_paged(ARRAY(
        SELECT jsonb_build_array(p.order_id, jsonb_build_object('order_id', p.order_id, 'user', p.user_id,
                   'amount', p.amount, 'tier', p.tier, 'state', p.state, 'created_at', tipcast_ts(p.created_at),
                   'refund_entry', p.refund_entry, 'refunded_at', tipcast_ts(p.refunded_at)))
        FROM campaign_pledges p
        WHERE p.campaign_id = cid AND (aft IS NULL OR p.order_id > aft)
        ORDER BY p.order_id LIMIT lim + 1), lim);
END;
$$;

-- ---- The campaign job (settlement/campaign.c) ------------------------------------------

-- approved -> open, once every wallet shard holds the campaign.
CREATE FUNCTION tipcast_campaign_opened(cid bigint) RETURNS void
LANGUAGE sql AS $$
    UPDATE campaigns SET state = 'open', opened_at = now() WHERE id = cid AND state = 'approved';
$$;

-- approved | open -> closing, once every shard is sealed: total and
-- pledges are the sums of the shards' sealed counters, what the ledger must
-- reach before the campaign is decided.
CREATE FUNCTION tipcast_campaign_sealed(cid bigint, total bigint, n bigint) RETURNS void
LANGUAGE sql AS $$
    UPDATE campaigns SET state = 'closing', closed_at = now(), sealed_total = total, sealed_pledges = n
    WHERE id = cid AND state IN ('approved', 'open') AND deadline <= now();
$$;

-- One tick, on one node at a time (a transaction-level advisory lock: the
-- other nodes' ticks return nothing). Decides what PostgreSQL alone can
-- (closing -> succeeded | refunding, refunding -> refunded, surge alerts)
-- and returns what the node must do in Redis and the rooms, each an
-- idempotent action:
--   {"do": "open", "campaign", "creator", "deadline_ms", "tiers": [{"tier", "min", "stock"}]}
--   {"do": "seal", "campaign"}
--   {"do": "refund", "campaign", "user", "amount", "ref"}       (ref: the pledge's order id)
--   {"do": "event", "room", "body": {...}}                      (campaign_progress, campaign_update)
CREATE FUNCTION tipcast_campaign_tick(fee_bp int, surge_n int, surge_window_s int, webhooks boolean,
                                      refunds_max int) RETURNS SETOF jsonb
LANGUAGE plpgsql AS $$
DECLARE
    c campaigns;
    fee bigint;
    net bigint;
    j jsonb;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('tipcast_campaigns')) THEN
        RETURN;
    END IF;
    -- The campaigns this run may change, locked first and in id order, as
    -- the ledger's trigger locks them: the two never deadlock.
    PERFORM 1 FROM campaigns WHERE state IN ('approved', 'open', 'closing', 'refunding') ORDER BY id FOR UPDATE;

    -- Sealed campaigns whose every pledge is in the ledger: decided.
    FOR c IN SELECT * FROM campaigns WHERE state = 'closing' AND pledges >= sealed_pledges
                                       AND pledged >= sealed_total ORDER BY id FOR UPDATE
    LOOP
        IF c.pledges <> c.sealed_pledges OR c.pledged <> c.sealed_total THEN
            -- More in the ledger than the shards counted: never guessed at.
            INSERT INTO alerts (kind, severity, subject, detail)
            SELECT 'campaign.totals_mismatch', 'critical', c.id::text,
                   jsonb_build_object('sealed_total', c.sealed_total, 'sealed_pledges', c.sealed_pledges,
                                      'pledged', c.pledged, 'pledges', c.pledges)
            WHERE NOT EXISTS (SELECT 1 FROM alerts WHERE kind = 'campaign.totals_mismatch' AND subject = c.id::text);
            CONTINUE;
        END IF;
        IF c.pledged >= c.target OR c.mode = 'flexible' THEN
            fee := floor(c.pledged::numeric * fee_bp / 10000)::bigint;
            net := c.pledged - fee;
            UPDATE campaigns SET state = 'succeeded', settled_at = now(), fee_bp = tipcast_campaign_tick.fee_bp,
                                 platform_fee = fee, creator_net = net
            WHERE id = c.id RETURNING * INTO c;
            UPDATE campaign_pledges SET state = 'paid' WHERE campaign_id = c.id AND state = 'held';
            IF c.pledged > 0 THEN
                -- Campaign payouts are not orders: no T+N wait (the backers'
                -- coins were held until the deadline), straight to available.
                INSERT INTO creator_balances AS cb (creator, available, updated_at) VALUES (c.creator, net, now())
                ON CONFLICT (creator) DO UPDATE SET available = cb.available + net, updated_at = now();
                INSERT INTO ledger (movement_id, account, delta, kind, note, created_at)
                SELECT 'campaign:' || c.id, m.account, m.delta, 'campaign_payout', c.id::text, now()
                FROM (VALUES ('escrow:' || c.id, -c.pledged), ('creator:' || c.creator, net), ('platform', fee)) m
                     (account, delta)
                WHERE m.delta <> 0;
            END IF;
            PERFORM tipcast_webhook_enqueue(webhooks, 'campaign.succeeded', 'campaign.succeeded:' || c.id,
                                            tipcast_campaign_json(c));
        ELSE
            UPDATE campaigns SET state = CASE WHEN c.pledges = 0 THEN 'refunded' ELSE 'refunding' END,
                                 settled_at = CASE WHEN c.pledges = 0 THEN now() END
            WHERE id = c.id RETURNING * INTO c;
            PERFORM tipcast_webhook_enqueue(webhooks, 'campaign.failed', 'campaign.failed:' || c.id,
                                            tipcast_campaign_json(c));
        END IF;
    END LOOP;

    -- Refunding campaigns with every pledge credited back: done.
    FOR c IN SELECT * FROM campaigns x WHERE state = 'refunding'
             AND NOT EXISTS (SELECT 1 FROM campaign_pledges p WHERE p.campaign_id = x.id AND p.state = 'held')
             ORDER BY id FOR UPDATE
    LOOP
        UPDATE campaigns SET state = 'refunded', settled_at = now() WHERE id = c.id RETURNING * INTO c;
        PERFORM tipcast_webhook_enqueue(webhooks, 'campaign.refunded', 'campaign.refunded:' || c.id,
                                        tipcast_campaign_json(c));
    END LOOP;

    -- A surge of pledges: one alert per campaign per 10 minutes.
    FOR c IN SELECT x.* FROM campaigns x WHERE x.state = 'open' AND surge_n > 0
             AND (x.surge_alert_at IS NULL OR x.surge_alert_at < now() - interval '10 minutes')
             AND (SELECT count(*) FROM campaign_pledges p WHERE p.campaign_id = x.id
                  AND p.created_at > now() - make_interval(secs => surge_window_s)) >= surge_n
             ORDER BY x.id FOR UPDATE
    LOOP
        UPDATE campaigns SET surge_alert_at = now() WHERE id = c.id;
        j := jsonb_build_object('campaign', c.id, 'creator', c.creator, 'window_s', surge_window_s,
                                'threshold', surge_n,
                                'pledges', (SELECT count(*) FROM campaign_pledges p WHERE p.campaign_id = c.id
                                            AND p.created_at > now() - make_interval(secs => surge_window_s)));
        INSERT INTO alerts (kind, severity, subject, detail)
        VALUES ('campaign.pledge_surge', 'warning', c.id::text, j);
        PERFORM tipcast_webhook_enqueue(webhooks, 'alert.raised',
                                        'alert.raised:campaign.pledge_surge:' || c.id || ':' || extract(epoch FROM now())::bigint,
                                        jsonb_build_object('kind', 'campaign.pledge_surge', 'severity', 'warning',
                                                           'subject', c.id::text, 'detail', j));
    END LOOP;

    -- What the node does in Redis.
    RETURN QUERY
    SELECT jsonb_build_object('do', 'open', 'campaign', x.id, 'creator', x.creator,
               'deadline_ms', (extract(epoch FROM x.deadline) * 1000)::bigint,
               'tiers', coalesce((SELECT jsonb_agg(jsonb_build_object('tier', t.tier, 'min', t.min_amount,
                                                                     'stock', t.stock) ORDER BY t.tier)
                                  FROM campaign_tiers t WHERE t.campaign_id = x.id), '[]'))
    FROM campaigns x WHERE x.state = 'approved' AND x.deadline > now() ORDER BY x.id LIMIT 50;
    RETURN QUERY
    SELECT jsonb_build_object('do', 'seal', 'campaign', x.id)
    FROM campaigns x WHERE x.state IN ('approved', 'open') AND x.deadline <= now() ORDER BY x.id LIMIT 50;
    RETURN QUERY
    SELECT jsonb_build_object('do', 'refund', 'campaign', p.campaign_id, 'user', p.user_id, 'amount', p.amount,
                              'ref', p.order_id)
    FROM campaigns x JOIN campaign_pledges p ON p.campaign_id = x.id AND p.state = 'held'
    WHERE x.state = 'refunding' ORDER BY x.id, p.order_id LIMIT refunds_max;

    -- The rooms: progress when it changed (coalesced to one per tick),
    -- then the updates not told yet.
    RETURN QUERY
    WITH told AS (
        UPDATE campaigns x SET told_pledged = x.pledged, told_backers = x.backers, told_state = x.state
        WHERE (x.told_pledged <> x.pledged OR x.told_backers <> x.backers OR x.told_state <> x.state)
          AND x.state NOT IN ('review', 'rejected', 'approved')
        RETURNING x.*
    )
    SELECT jsonb_build_object('do', 'event', 'room', x.creator, 'body',
               jsonb_build_object('kind', 'campaign_progress', 'campaign', x.id, 'state', x.state,
                                  'pledged', x.pledged, 'backers', x.backers, 'target', x.target,
                                  'refunded', x.refunded, 'deadline_ms', (extract(epoch FROM x.deadline) * 1000)::bigint,
                                  'ts', (extract(epoch FROM now()) * 1000)::bigint))
    FROM told x ORDER BY x.id;
    RETURN QUERY
    WITH told AS (
        UPDATE campaign_updates u SET told = true
        WHERE u.id IN (SELECT id FROM campaign_updates WHERE NOT told ORDER BY id LIMIT 50)
        RETURNING u.*
    )
    SELECT jsonb_build_object('do', 'event', 'room', c2.creator, 'body',
               jsonb_build_object('kind', 'campaign_update', 'campaign', u.campaign_id, 'update', u.id,
                                  'title', u.title, 'text', u.body,
                                  'ts', (extract(epoch FROM u.created_at) * 1000)::bigint))
    FROM told u JOIN campaigns c2 ON c2.id = u.campaign_id ORDER BY u.id;
END;
$$;

-- ---- Reconciliation (007) ------------------------------------------------------------

-- 007's accounts check derives creator:C and platform from orders, refunds,
-- recharges, credits and withdrawals; a campaign payout is none of them. So
-- 007's check is kept as it is and wrapped: its `account` findings are
-- computed again with the payouts of succeeded campaigns (creator_net to the
-- creator, platform_fee to the platform) added to what is expected, and the
-- ones that then agree are dropped; and a campaign check is added: each
-- escrow:K's ledger sum against what the campaign's state says it holds
-- (pledged - refunded while held or refunding; 0 once paid out or refunded).
ALTER FUNCTION tipcast_reconcile_check(bigint, boolean, timestamptz, timestamptz)
    RENAME TO tipcast_reconcile_check_007;

CREATE FUNCTION tipcast_reconcile_check(idle_ms bigint, statement boolean, st_from timestamptz,
                                        st_to timestamptz) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    r jsonb := tipcast_reconcile_check_007(idle_ms, statement, st_from, st_to);
    out jsonb;
BEGIN
    WITH pay AS (
        SELECT 'creator:' || creator AS account, creator_net AS coins FROM campaigns
        WHERE state = 'succeeded' AND creator_net > 0
        UNION ALL
        SELECT 'platform', platform_fee FROM campaigns WHERE state = 'succeeded' AND platform_fee > 0
    ), p AS (
        SELECT account, sum(coins)::bigint AS coins FROM pay GROUP BY account
    ), redone AS (
        SELECT CASE WHEN x.f->>'check' = 'accounts' AND x.f->>'kind' = 'account' AND p.account IS NOT NULL
                    THEN tipcast_rc_finding('accounts', 'account', x.f->>'subject',
                                            (x.f->>'expected')::bigint + p.coins, (x.f->>'actual')::bigint,
                                            x.f->'detail' || '{"campaigns": "payouts of succeeded campaigns"}')
                    ELSE x.f END AS f, x.n
        FROM jsonb_array_elements(r->'findings') WITH ORDINALITY AS x (f, n)
        LEFT JOIN p ON p.account = x.f->>'subject'
    ), escrow AS (
        SELECT c.id, c.state, CASE WHEN c.state IN ('succeeded', 'refunded') THEN 0
                                   ELSE c.pledged - c.refunded END AS expected,
               coalesce((SELECT sum(delta) FROM ledger l WHERE l.account = 'escrow:' || c.id), 0)::bigint AS actual
        FROM campaigns c WHERE c.state NOT IN ('review', 'rejected')
    )
    SELECT coalesce(jsonb_agg(q.f ORDER BY q.n), '[]') INTO out
    FROM (SELECT f, n FROM redone WHERE (f->>'off')::numeric <> 0 OR f->>'check' <> 'accounts'
                                        OR f->>'kind' <> 'account'
          UNION ALL
          SELECT tipcast_rc_finding('accounts', 'escrow', 'escrow:' || e.id, e.expected, e.actual,
                                    jsonb_build_object('state', e.state)), 1000000000 + e.id
          FROM escrow e WHERE e.expected <> e.actual) q;
    RETURN jsonb_set(r, '{findings}', out);
END;
$$;
