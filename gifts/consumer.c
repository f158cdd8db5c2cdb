/* consumer.c - an outbox consumer group's state machine (see consumer.h). */
#include "consumer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "clock.h"
#include "log.h"

static void pump(struct consumer *c);
static void on_gather(uv_timer_t *t);

/* ---- Failures and shard phases --------------------------------------------- */

static void backoff(struct consumer *c, const char *why)
{
    c->stats.failures++;
    c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : CONSUMER_BACKOFF_MIN_MS;
    if (c->backoff_ms > CONSUMER_BACKOFF_MAX_MS)
        c->backoff_ms = CONSUMER_BACKOFF_MAX_MS;
    c->retry_at_ms = clock_mono_ms() + c->backoff_ms;
    log_msg(LOG_DEBUG, "%s: %s; retrying in %d ms", c->cfg.group, why, c->backoff_ms);
}

/* The shard's entries in flight may be pending or acknowledged: reading
 * its pending entries from the start sorts that out. A shard being claimed,
 * or no longer ours, is left as it is. */
static void rewind_shard(struct consumer *c, int shard)
{
    struct consumer_shard *sh = &c->sh[shard];
    if (sh->phase != PHASE_PENDING && sh->phase != PHASE_LIVE)
        return;
    sh->phase = PHASE_PENDING;
    snprintf(sh->cursor, sizeof sh->cursor, "0");
    sh->gen++;
}

static void rewind_all(struct consumer *c)
{
    for (int s = 0; s < c->ob->shards; s++)
        rewind_shard(c, s);
}

static void step_idle(struct consumer *c)
{
    c->step = STEP_IDLE;
    pump(c);
}

/* A failed command's reply: NOGROUP means Redis lost the groups (FLUSHALL,
 * a new Redis), and they are made again. */
static void note_error(struct consumer *c, const char *what, const redisReply *reply)
{
    if (!reply || reply->type != REDIS_REPLY_ERROR)
        return;
    log_msg(LOG_WARN, "%s: %s: %s", c->cfg.group, what, reply->str);
    if (strncmp(reply->str, "NOGROUP", 7) == 0 && redis_cmd_ready(c->rl))
        outbox_ensure_groups(c->ob);
}

static int command(struct consumer *c, int argc, const char **argv, rlink_reply_cb *cb, void *priv)
{
    size_t len[9 + 2 * CONSUMER_STREAMS_PER_READ];
    tc_assert(argc <= (int)(sizeof len / sizeof len[0]));
    for (int i = 0; i < argc; i++)
        len[i] = strlen(argv[i]);
    return redis_command(c->rl, c->link, argc, argv, len, cb, priv);
}

/* ---- Acknowledging ------------------------------------------------------------ */

static void on_ack(redisReply *reply, void *priv)
{
    struct consumer *c = priv;
    if (c->stopping)
        return;
    tc_assert(c->step == STEP_ACKING && c->acks_pending > 0);
    if (!reply || reply->type != REDIS_REPLY_INTEGER) {
        note_error(c, "XACK", reply);
        c->ack_failed = 1;
    }
    if (--c->acks_pending > 0)
        return;
    if (c->ack_failed) {
        /* Applied but maybe not acknowledged: reading the pending entries
         * again finds them, and applying them again changes nothing. */
        rewind_all(c);
        backoff(c, "XACK failed");
    }
    step_idle(c);
}

/* Acknowledges b's applied entries: one XACK per run of a shard's entries,
 * in chunks, counted in acks_pending. Returns -1 when one could not be
 * sent. */
static int ack(struct consumer *c, const struct entry_batch *b)
{
    const char *argv[3 + CONSUMER_ACK_IDS_MAX];
    char key[OUTBOX_KEY_MAX];
    argv[0] = "XACK";
    argv[1] = key;
    argv[2] = c->cfg.group;
    int n = 3, rc = 0;
    for (size_t i = 0; i < b->n; i++) {
        const struct entry *e = &b->e[i];
        if (n == 3)
            outbox_key(e->shard, key, sizeof key);
        if (!e->retry)
            argv[n++] = e->id;
        int run_ends = i + 1 == b->n || b->e[i + 1].shard != e->shard;
        if (!run_ends && n < 3 + CONSUMER_ACK_IDS_MAX)
            continue;
        if (n > 3) {
            if (command(c, n, argv, on_ack, c) == 0)
                c->acks_pending++;
            else
                rc = -1;
        }
        n = 3;
    }
    return rc;
}

void consumer_applied(struct consumer *c, struct entry_batch *b)
{
    tc_assert(b == &c->batch);
    if (c->stopping) {
        entry_batch_clear(b);
        return;
    }
    tc_assert(c->step == STEP_APPLYING);
    size_t retried = 0;
    for (size_t i = 0; i < b->n; i++)
        if (b->e[i].retry) {
            retried++;
            rewind_shard(c, b->e[i].shard);
        }
    c->acks_pending = 0;
    c->ack_failed = 0;
    c->step = STEP_ACKING;
    int sent = ack(c, b);
    c->stats.batches++;
    c->stats.entries += b->n - retried;
    c->stats.retried += retried;
    entry_batch_reset(b);
    if (sent < 0) {
        rewind_all(c);
        backoff(c, "XACK not sent");
    } else if (retried) {
        backoff(c, "entries not applied");
    } else {
        c->backoff_ms = 0;
    }
    if (c->acks_pending == 0)
        step_idle(c);
}

/* ---- Reading ------------------------------------------------------------------- */

/* The wait after a read that was not full: gather_ms (when the applier
 * has no say or says it pays), and on a cluster (one command per stream, no
 * BLOCK) at least `least`. */
static int64_t gather_ms(const struct consumer *c, int least)
{
    int64_t ms = !c->ops.gather || c->ops.gather(c->ctx) ? c->cfg.gather_ms : 0;
    return redis_is_cluster(c->rl) && ms < least ? least : ms;
}

static void read_done(struct consumer *c, redisReply *reply)
{
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        note_error(c, "XREADGROUP", reply);
        backoff(c, "XREADGROUP failed");
        step_idle(c);
        return;
    }
    if (reply->type == REDIS_REPLY_NIL) { /* BLOCK ran out: nothing new */
        if (redis_is_cluster(c->rl)) /* no BLOCK there: the next read waits instead */
            c->next_read_ms = c->read_sent_ms + gather_ms(c, CONSUMER_POLL_MS);
        step_idle(c);
        return;
    }
    struct entry_batch *b = &c->batch;
    if (entry_batch_fill(b, c->ob, reply) < 0) {
        rewind_all(c);
        backoff(c, "XREADGROUP: unexpected reply or out of memory");
        step_idle(c);
        return;
    }
    /* A PENDING shard goes on after the last entry it got; one that got
     * fewer than asked has no more pending: new entries come next (once
     * these are applied; a failure rewinds it). A shard whose phase was set
     * anew while the read was out is left as it is now. */
    int got[OUTBOX_SHARDS_MAX] = {0};
    const char *last[OUTBOX_SHARDS_MAX];
    for (size_t i = 0; i < b->n; i++) {
        got[b->e[i].shard]++;
        last[b->e[i].shard] = b->e[i].id;
    }
    /* A stream that filled its share has more waiting: the next read goes
     * at once. Else it waits out the gather time. */
    c->next_read_ms = c->read_sent_ms + gather_ms(c, CONSUMER_SPLIT_GATHER_MS);
    for (int k = 0; k < c->nread; k++) {
        int s = c->read_shards[k];
        struct consumer_shard *sh = &c->sh[s];
        if (got[s] >= c->read_count)
            c->next_read_ms = 0;
        if (sh->phase != PHASE_PENDING || sh->gen != c->read_gen[k])
            continue;
        if (got[s] < c->read_count)
            sh->phase = PHASE_LIVE;
        else
            snprintf(sh->cursor, sizeof sh->cursor, "%s", last[s]);
    }
    if (b->n == 0) {
        step_idle(c);
        return;
    }
    if (!c->ops.ready(c->ctx)) {
        /* The applier went away during the read: the entries stay pending. */
        for (size_t i = 0; i < b->n; i++)
            rewind_shard(c, b->e[i].shard);
        entry_batch_reset(b);
        step_idle(c);
        return;
    }
    c->step = STEP_APPLYING;
    c->ops.apply(c->ctx, b);
}

static void on_read(redisReply *reply, void *priv)
{
    struct consumer *c = priv;
    if (c->stopping)
        return;
    tc_assert(c->step == STEP_READING);
    read_done(c, reply);
}

struct read_part {
    struct consumer *c;
    int k;
};

/* One stream's answer of a cluster read; the last one hands them on as one
 * answer, as a read of all the streams would have been. */
static void on_read_part(redisReply *reply, void *priv)
{
    struct read_part p = *(struct read_part *)priv;
    free(priv);
    struct consumer *c = p.c;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (!c->stopping)
            note_error(c, "XREADGROUP", reply);
        c->parts_failed = 1;
    } else if (reply->type == REDIS_REPLY_ARRAY && !(c->parts[p.k] = rlink_reply_copy(reply))) {
        c->parts_failed = 1;
    }
    if (--c->parts_out > 0)
        return;
    redisReply all = {.type = REDIS_REPLY_ARRAY}, *streams[CONSUMER_STREAMS_PER_READ];
    for (int k = 0; k < c->nread; k++)
        if (c->parts[k] && c->parts[k]->elements > 0)
            streams[all.elements++] = c->parts[k]->element[0];
    all.element = streams;
    if (all.elements == 0)
        all.type = REDIS_REPLY_NIL;
    if (c->stopping) {
        /* Dropped: the entries stay pending for the next owner. */
    } else if (c->parts_failed) {
        /* Those read are pending at this consumer: reading the pending
         * entries again finds them. */
        rewind_all(c);
        backoff(c, "XREADGROUP failed");
        step_idle(c);
    } else {
        tc_assert(c->step == STEP_READING);
        read_done(c, &all);
    }
    for (int k = 0; k < c->nread; k++) {
        if (c->parts[k])
            freeReplyObject(c->parts[k]);
        c->parts[k] = NULL;
    }
}

/* A cluster's read: one XREADGROUP per stream, sent together. Returns 0
 * when at least one was sent. */
static int read_parts(struct consumer *c, const char *count, char keys[][OUTBOX_KEY_MAX])
{
    c->parts_out = c->parts_failed = 0;
    for (int k = 0; k < c->nread; k++) {
        int s = c->read_shards[k];
        struct read_part *p = malloc(sizeof *p);
        const char *argv[] = {"XREADGROUP", "GROUP", c->cfg.group, c->ob->node_id, "COUNT", count, "STREAMS",
                              keys[k], c->sh[s].phase == PHASE_PENDING ? c->sh[s].cursor : ">"};
        if (p)
            *p = (struct read_part){c, k};
        if (!p || command(c, 9, argv, on_read_part, p) < 0) {
            free(p);
            /* The streams not sent are left out of this read. */
            c->nread = k;
            break;
        }
        c->parts_out++;
    }
    return c->parts_out > 0 ? 0 : -1;
}

static void read_start(struct consumer *c)
{
    int shards = c->ob->shards;
    char keys[CONSUMER_STREAMS_PER_READ][OUTBOX_KEY_MAX]; /* Redis copies the arguments */
    c->nread = 0;
    for (int i = 0; i < shards && c->nread < CONSUMER_STREAMS_PER_READ; i++) {
        int s = (c->read_from + i) % shards;
        if (c->leases.owned[s] && (c->sh[s].phase == PHASE_PENDING || c->sh[s].phase == PHASE_LIVE)) {
            outbox_key(s, keys[c->nread], sizeof keys[0]);
            c->read_gen[c->nread] = c->sh[s].gen;
            c->read_shards[c->nread++] = s;
        }
    }
    if (c->nread == 0)
        return;
    c->read_from = (c->read_from + 1) % shards;
    /* The read's size bounds a batch: it is shared among the streams. */
    c->read_count = c->cfg.per_read / c->nread;
    if (c->read_count < 1)
        c->read_count = 1;
    char count[16], block[16];
    snprintf(count, sizeof count, "%d", c->read_count);
    snprintf(block, sizeof block, "%d", c->cfg.block_ms);
    const char *argv[9 + 2 * CONSUMER_STREAMS_PER_READ] = {
        "XREADGROUP", "GROUP", c->cfg.group, c->ob->node_id, "COUNT", count, "BLOCK", block, "STREAMS"};
    for (int i = 0; i < c->nread; i++) {
        int s = c->read_shards[i];
        argv[9 + i] = keys[i];
        argv[9 + c->nread + i] = c->sh[s].phase == PHASE_PENDING ? c->sh[s].cursor : ">";
    }
    if (redis_is_cluster(c->rl) ? read_parts(c, count, keys) < 0 : command(c, 9 + 2 * c->nread, argv, on_read, c) < 0) {
        backoff(c, "XREADGROUP not sent");
        return;
    }
    c->read_sent_ms = clock_mono_ms();
    c->step = STEP_READING;
}

/* ---- Claiming ------------------------------------------------------------------- */

static void on_consumers(redisReply *reply, void *priv);

/* Every start of a node leaves a consumer name in the group. Once this node
 * owns the shard and has claimed what they had pending, those without
 * pending entries that have long stopped reading are only clutter. (One
 * with pending entries is never deleted: that would drop its entries from
 * the group's pending list.) */
struct forget {
    struct consumer *c;
    int shard;
};

static void forget_consumers(struct consumer *c, int shard)
{
    struct forget *f = malloc(sizeof *f);
    if (!f)
        return;
    *f = (struct forget){c, shard};
    char key[OUTBOX_KEY_MAX];
    outbox_key(shard, key, sizeof key);
    const char *argv[] = {"XINFO", "CONSUMERS", key, c->cfg.group};
    if (command(c, 4, argv, on_consumers, f) < 0)
        free(f);
}

static void on_ignored(redisReply *reply, void *priv)
{
    (void)reply;
    (void)priv;
}

static void on_consumers(redisReply *reply, void *priv)
{
    struct forget *f = priv;
    struct consumer *c = f->c;
    int shard = f->shard;
    free(f);
    if (c->stopping || !reply || reply->type != REDIS_REPLY_ARRAY)
        return;
    char key[OUTBOX_KEY_MAX];
    outbox_key(shard, key, sizeof key);
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *r = reply->element[i];
        const char *name = NULL;
        long long pending = -1, idle = -1;
        for (size_t k = 0; r->type == REDIS_REPLY_ARRAY && k + 1 < r->elements; k += 2) {
            const redisReply *fk = r->element[k], *v = r->element[k + 1];
            if (fk->type != REDIS_REPLY_STRING)
                continue;
            if (strcmp(fk->str, "name") == 0 && v->type == REDIS_REPLY_STRING)
                name = v->str;
            else if (strcmp(fk->str, "pending") == 0 && v->type == REDIS_REPLY_INTEGER)
                pending = v->integer;
            else if (strcmp(fk->str, "idle") == 0 && v->type == REDIS_REPLY_INTEGER)
                idle = v->integer;
        }
        if (!name || strcmp(name, c->ob->node_id) == 0 || pending != 0 || idle < CONSUMER_IDLE_MS)
            continue;
        const char *argv[] = {"XGROUP", "DELCONSUMER", key, c->cfg.group, name};
        if (command(c, 5, argv, on_ignored, NULL) == 0)
            log_msg(LOG_DEBUG, "%s: shard %d: forgot the idle consumer %s", c->cfg.group, shard, name);
    }
}

struct claim {
    struct consumer *c;
    int shard;
    uint32_t gen; /* the shard's when the claim was sent */
};

static void on_claim(redisReply *reply, void *priv)
{
    struct claim q = *(struct claim *)priv;
    free(priv);
    struct consumer *c = q.c;
    if (c->stopping)
        return;
    tc_assert(c->step == STEP_CLAIMING);
    struct consumer_shard *sh = &c->sh[q.shard];
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING || reply->element[0]->len >= sizeof sh->cursor) {
        note_error(c, "XAUTOCLAIM", reply);
        backoff(c, "XAUTOCLAIM failed");
        step_idle(c);
        return;
    }
    const redisReply *claimed = reply->element[1];
    if (claimed->type == REDIS_REPLY_ARRAY && claimed->elements > 0)
        log_msg(LOG_INFO, "%s: shard %d: claimed %zu pending entries of a previous consumer", c->cfg.group,
                q.shard, claimed->elements);
    if (sh->phase == PHASE_CLAIM && sh->gen == q.gen) {
        const char *next = reply->element[0]->str;
        if (strcmp(next, "0-0") == 0) {
            sh->phase = PHASE_PENDING;
            snprintf(sh->cursor, sizeof sh->cursor, "0");
            forget_consumers(c, q.shard);
        } else {
            snprintf(sh->cursor, sizeof sh->cursor, "%s", next);
        }
    }
    step_idle(c);
}

/* Moves the entries pending at any consumer of the group to this one: they
 * are read next as its own pending entries. The lease guarantees that no
 * live consumer is working on them. */
static void claim_start(struct consumer *c, int shard)
{
    struct claim *q = malloc(sizeof *q);
    if (!q) {
        backoff(c, "out of memory");
        return;
    }
    *q = (struct claim){c, shard, c->sh[shard].gen};
    char key[OUTBOX_KEY_MAX], count[16];
    outbox_key(shard, key, sizeof key);
    snprintf(count, sizeof count, "%d", CONSUMER_CLAIM_COUNT);
    /* min-idle 0: every entry pending in the group is a previous owner's,
     * since this node holds the lease. JUSTID: the entries are read next,
     * with this node's own pending ones. */
    const char *argv[] = {"XAUTOCLAIM", key, c->cfg.group, c->ob->node_id, "0", c->sh[shard].cursor,
                          "COUNT", count, "JUSTID"};
    if (command(c, 9, argv, on_claim, q) < 0) {
        free(q);
        backoff(c, "XAUTOCLAIM not sent");
        return;
    }
    c->step = STEP_CLAIMING;
}

/* ---- Driving --------------------------------------------------------------------- */

/* Starts the next step when nothing is in flight: claims first, then a
 * read of the owned shards. */
static void pump(struct consumer *c)
{
    if (!c->started || c->stopping || c->step != STEP_IDLE || clock_mono_ms() < c->retry_at_ms ||
        !redis_up(c->rl, c->link))
        return;
    for (int s = 0; s < c->ob->shards; s++)
        if (c->leases.owned[s] && c->sh[s].phase == PHASE_CLAIM) {
            claim_start(c, s);
            return;
        }
    if (!c->ops.ready(c->ctx))
        return;
    int64_t wait = c->next_read_ms - clock_mono_ms();
    if (wait > 0) {
        if (!uv_is_active((uv_handle_t *)&c->gather))
            uv_timer_start(&c->gather, on_gather, (uint64_t)wait, 0);
        return;
    }
    read_start(c);
}

static void on_gather(uv_timer_t *t) { pump(t->data); }

void consumer_kick(struct consumer *c) { pump(c); }

static void on_lease_change(void *ctx, int shard, int owned)
{
    struct consumer *c = ctx;
    struct consumer_shard *sh = &c->sh[shard];
    sh->gen++;
    if (owned) {
        sh->phase = PHASE_CLAIM;
        snprintf(sh->cursor, sizeof sh->cursor, "0-0");
    } else {
        sh->phase = PHASE_IDLE;
    }
    pump(c);
}

static void on_tick(uv_timer_t *t)
{
    struct consumer *c = t->data;
    int64_t now = clock_mono_ms();
    int ready = redis_cmd_ready(c->rl);
    if (ready && !c->cmd_was_ready) {
        outbox_ensure_groups(c->ob); /* again after a Redis restart, too */
        c->next_lease_ms = now;      /* and the leases at once, not a tick later */
    }
    c->cmd_was_ready = ready;
    if (now >= c->next_lease_ms) {
        c->next_lease_ms = now + LEASE_TICK_MS;
        if (ready)
            lease_tick(&c->leases);
    }
    if (c->cfg.trims && now >= c->next_trim_ms) {
        c->next_trim_ms = now + CONSUMER_TRIM_MS;
        for (int s = 0; ready && s < c->ob->shards; s++)
            if (c->leases.owned[s])
                outbox_trim(c->ob, s, &c->stats.trimmed);
    }
    if (now >= c->next_stats_ms) {
        c->next_stats_ms = now + CONSUMER_STATS_LOG_MS;
        uint64_t n = c->stats.entries - c->logged_entries;
        if (n)
            log_msg(LOG_DEBUG,
                    "%s: %" PRIu64 " entries in the last %d s (%.0f/s), %d shards held; since start %" PRIu64
                    " batches, %" PRIu64 " entries retried, %" PRIu64 " failed steps, %" PRIu64 " trimmed",
                    c->cfg.group, n, CONSUMER_STATS_LOG_MS / 1000, n * 1000.0 / CONSUMER_STATS_LOG_MS,
                    lease_count(&c->leases), c->stats.batches, c->stats.retried, c->stats.failures,
                    c->stats.trimmed);
        c->logged_entries = c->stats.entries;
    }
    pump(c);
}

void consumer_init(struct consumer *c, struct outbox *ob, uv_loop_t *loop, const struct consumer_cfg *cfg,
                   const struct consumer_ops *ops, void *ctx)
{
    memset(c, 0, sizeof *c);
    c->ob = ob;
    c->rl = ob->rl;
    c->loop = loop;
    c->cfg = *cfg;
    c->ops = *ops;
    c->ctx = ctx;
    c->link = -1;
    lease_init(&c->leases, ob, cfg->group, on_lease_change, c);
}

int consumer_start(struct consumer *c)
{
    c->link = redis_open(c->rl, c->cfg.group);
    if (c->link < 0) {
        log_msg(LOG_ERROR, "%s: no Redis connection left for the consumer", c->cfg.group);
        return -1;
    }
    uv_timer_init(c->loop, &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, on_tick, 0, CONSUMER_TICK_MS);
    uv_timer_init(c->loop, &c->gather);
    c->gather.data = c;
    c->started = 1;
    return 0;
}

void consumer_stop(struct consumer *c)
{
    if (!c->started || c->stopping)
        return;
    c->stopping = 1;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, NULL);
    uv_timer_stop(&c->gather);
    uv_close((uv_handle_t *)&c->gather, NULL);
    /* Another node can take the shards at once instead of after the
     * leases run out. */
    lease_release_all(&c->leases);
    if (c->step != STEP_APPLYING)
        entry_batch_clear(&c->batch);
}
