/* roomfeed.c - the "rooms" consumer group's applier (see roomfeed.h). */
#include "roomfeed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "board.h"
#include "clock.h"
#include "hash.h"
#include "log.h"
#include "roomkeys.h"
#include "text.h"

extern const char lua_room_apply[];

/* One room_apply call: the entries it carries, in the order of its
 * arguments. Owned by the call; freed in its callback. */
struct call {
    struct roomfeed *f;
    int n;
    uint32_t entry[FEED_APPLY_MAX];
};

/* The entries of one room and day, in batch order: one call, or several
 * when there are more than FEED_APPLY_MAX. */
struct room_group {
    char day[BOARD_KEY_MAX]; /* the day board's key names the room and the day */
    uint32_t first, last;
    int n;
};

static void send_more(struct roomfeed *f);

static void batch_done(struct roomfeed *f)
{
    struct entry_batch *b = f->batch;
    f->batch = NULL;
    f->sent = f->ngroups = 0;
    consumer_applied(&f->consumer, b);
}

static void on_applied(redisReply *reply, void *priv)
{
    struct call *cl = priv;
    struct roomfeed *f = cl->f;
    struct entry_batch *b = f->batch;
    tc_assert(f->waiting > 0);
    f->in_flight -= cl->n;
    if (!b) { /* stopped meanwhile */
        f->waiting--;
        free(cl);
        return;
    }
    int whole = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == (size_t)cl->n;
    for (int i = 0; whole && i < cl->n; i++)
        if (reply->element[i]->type != REDIS_REPLY_INTEGER)
            whole = 0;
    for (int i = 0; i < cl->n; i++) {
        struct entry *e = &b->e[cl->entry[i]];
        if (whole && reply->element[i]->integer >= 0)
            continue;
        e->retry = 1;
        if (whole)
            log_msg(LOG_INFO, "rooms: %d-%s waits for an earlier entry of room %s", e->shard, e->id, e->room.s);
    }
    if (!whole && reply)
        log_msg(LOG_ERROR, "rooms: room_apply of %d entries (room %s): %s", cl->n, b->e[cl->entry[0]].room.s,
                reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
    free(cl);
    f->waiting--;
    send_more(f);
}

/* The entries the room script applies: gifts and tips (a room event and a
 * board bump each) and refunds (the boards lowered, no event). */
static int to_room(const struct entry *e)
{
    return e->kind == ENTRY_GIFT || e->kind == ENTRY_TIP || e->kind == ENTRY_REFUND;
}

/* The time whose board periods an entry changes: a refund's is the
 * refunded order's, so that it comes off the day, week and month the gift
 * counted in. */
static int64_t board_time(const struct entry *e)
{
    return e->kind == ENTRY_REFUND ? e->order_ts_ms : e->ts_ms;
}

/* The stream id of the last entry before `k` of the same shard and room
 * that goes to its script, or "". */
static const char *predecessor(const struct entry_batch *b, size_t k)
{
    const struct entry *e = &b->e[k];
    for (size_t i = k; i-- > 0;) {
        const struct entry *p = &b->e[i];
        if (p->shard != e->shard)
            break; /* a shard's entries are contiguous in the batch */
        if (to_room(p) && strcmp(p->room.s, e->room.s) == 0)
            return p->id;
    }
    return "";
}

/* Puts every gift, tip and refund into the group of its room and day (the groups
 * in the order of their first entry), linking each group's entries through
 * next[]. Returns the number of groups, or -1 when out of memory. */
static int group_entries(const struct entry_batch *b, uint32_t *next, struct room_group *gr)
{
    size_t cap = 16;
    while (cap < 2 * b->n)
        cap *= 2;
    int *slot = malloc(cap * sizeof *slot);
    if (!slot)
        return -1;
    for (size_t i = 0; i < cap; i++)
        slot[i] = -1;
    int ng = 0;
    for (size_t k = 0; k < b->n; k++) {
        const struct entry *e = &b->e[k];
        if (!to_room(e))
            continue;
        char day[BOARD_KEY_MAX];
        board_day_key(e->room.s, board_time(e), day);
        size_t h = hash_fnv1a(day, strlen(day)) & (cap - 1);
        while (slot[h] >= 0 && strcmp(gr[slot[h]].day, day) != 0)
            h = (h + 1) & (cap - 1);
        next[k] = UINT32_MAX;
        struct room_group *g = slot[h] >= 0 ? &gr[slot[h]] : NULL;
        if (g && g->n < FEED_APPLY_MAX) {
            next[g->last] = (uint32_t)k;
            g->last = (uint32_t)k;
            g->n++;
            continue;
        }
        /* A new group; a full one stays behind, sent before this one. */
        g = &gr[ng];
        text_cat(g->day, sizeof g->day, 0, day);
        g->first = g->last = (uint32_t)k;
        g->n = 1;
        slot[h] = ng++;
    }
    free(slot);
    return ng;
}

/* Sends one room_apply call for group g. Its entries end up waiting for the
 * call's answer, or marked `retry` when it could not be sent. */
static void send_group(struct roomfeed *f, const struct room_group *g, const uint32_t *next)
{
    struct entry_batch *b = f->batch;
    /* 16 keys, 9 arguments and the entry count, then 8 per entry. */
    enum { NKEYS = 16, NFIXED = 25, PER = 8, ARGS_MAX = NFIXED + 1 + PER * FEED_APPLY_MAX };
    _Static_assert(ARGS_MAX <= RLINK_ARGS_MAX, "a room_apply call exceeds rlink's argument bound");
    const char *argv[ARGS_MAX];
    size_t len[ARGS_MAX];
    struct call *cl = malloc(sizeof *cl);
    if (!cl) {
        for (uint32_t k = g->first; k != UINT32_MAX; k = next[k])
            b->e[k].retry = 1;
        return;
    }
    cl->f = f;
    cl->n = 0;
    const struct entry *lead = &b->e[g->first];
    struct room_keys rk;
    struct board_keys bk;
    room_keys(lead->room.s, &rk);
    board_keys(lead->room.s, board_time(lead), &bk);
    /* count is filled once the entries are known; "0" until then, so that
     * the length taken of every fixed argument below reads a string. */
    char hl[TEXT_I64_MAX + 1], ttl[BOARD_PERIODS][TEXT_I64_MAX + 1], count[TEXT_I64_MAX + 1] = "0";
    text_cat_i64(hl, sizeof hl, 0, f->history_len);
    for (int p = 0; p < BOARD_PERIODS; p++)
        text_cat_i64(ttl[p], sizeof ttl[p], 0, bk.ttl_s[p]);
    const char *fixed[NFIXED + 1] = {
        rk.seq, rk.hist, rk.wm, bk.key[BOARD_ALL], bk.key[BOARD_DAY], bk.key[BOARD_WEEK], bk.key[BOARD_MONTH],
        bk.sum[BOARD_ALL], bk.sum[BOARD_DAY], bk.sum[BOARD_WEEK], bk.sum[BOARD_MONTH], rk.combo, rk.combo_due, bk.goal, rk.pins,
        rk.pin, hl, rk.chan, ttl[BOARD_DAY], ttl[BOARD_WEEK], ttl[BOARD_MONTH], f->combo_window, f->fan_levels,
        f->pin_min, f->pin_tiers, count};
    int argc = NFIXED + 1;
    for (int i = 0; i < argc; i++) {
        argv[i] = fixed[i];
        len[i] = strlen(fixed[i]);
    }
    for (uint32_t k = g->first; k != UINT32_MAX; k = next[k]) {
        struct entry *e = &b->e[k];
        char order[OUTBOX_ORDER_ID_MAX + 1];
        entry_order_id(e, order, sizeof order);
        int refund = e->kind == ENTRY_REFUND;
        int blen = refund ? 0 : event_body_order(f->body[cl->n], sizeof f->body[0], e, order, 1);
        if (blen < 0) {
            /* Too large for an event: nothing can ever apply it. The ledger
             * still has the order. */
            log_msg(LOG_ERROR, "rooms: entry %s does not fit an event; no room event for it", order);
            e->kind = ENTRY_BAD; /* so that no later entry waits for it */
            continue;
        }
        size_t sl = text_cat_i64(f->shard[cl->n], sizeof f->shard[0], 0, e->shard);
        size_t al = text_cat_i64(f->amount[cl->n], sizeof f->amount[0], 0, e->amount);
        const char *prev = predecessor(b, k);
        const char *kind = refund ? "refund" : event_kind_name(e->kind == ENTRY_GIFT ? EVENT_GIFT : EVENT_TIP);
        int gift = e->kind == ENTRY_GIFT;
        char *tgc = f->tgc[cl->n];
        size_t tl = text_cat(tgc, sizeof f->tgc[0], text_cat_i64(tgc, sizeof f->tgc[0], 0, e->ts_ms), ":");
        tl = text_cat(tgc, sizeof f->tgc[0], text_cat_i64(tgc, sizeof f->tgc[0], tl, gift ? e->gift_id : 0), ":");
        tl = text_cat_i64(tgc, sizeof f->tgc[0], tl, gift ? e->count : 0);
        const char *args[PER] = {f->shard[cl->n], e->id, prev, (const char *)f->body[cl->n], e->user.s,
                                 f->amount[cl->n], kind, f->tgc[cl->n]};
        size_t lens[PER] = {sl, strlen(e->id), strlen(prev), (size_t)blen, e->user.len, al, strlen(kind), tl};
        for (int i = 0; i < PER; i++) {
            argv[argc] = args[i];
            len[argc++] = lens[i];
        }
        cl->entry[cl->n++] = k;
    }
    if (cl->n == 0) {
        free(cl);
        return;
    }
    len[NFIXED] = text_cat_i64(count, sizeof count, 0, cl->n);
    f->waiting++;
    f->in_flight += cl->n;
    f->calls++;
    if (redis_eval(f->rl, &f->apply, NKEYS, argc, argv, len, on_applied, cl) < 0) {
        f->waiting--;
        f->in_flight -= cl->n;
        for (int i = 0; i < cl->n; i++)
            b->e[cl->entry[i]].retry = 1;
        free(cl);
    }
}

/* ---- When to gather -------------------------------------------------------------- */

/* Counts an entry of `room` in the window (a room that finds no slot within
 * a few probes is not counted). */
static void count_room(struct roomfeed *f, const char *room)
{
    _Static_assert((FEED_GATHER_ROOMS & (FEED_GATHER_ROOMS - 1)) == 0, "FEED_GATHER_ROOMS is a power of two");
    uint32_t h = hash_fnv1a(room, strlen(room)) | 1; /* 0 marks a free slot */
    for (uint32_t i = h, n = 0; n < 16; i++, n++) {
        struct feed_room_count *r = &f->rooms[i & (FEED_GATHER_ROOMS - 1)];
        if (r->hash == h || r->hash == 0) {
            r->hash = h;
            r->count++;
            return;
        }
    }
}

/* Ends the window when it is over: the next one gathers when the entries of
 * rooms that had two or more per gather time came at rooms-gather-from a
 * second or more. */
static void roll_window(struct roomfeed *f, int64_t now)
{
    int64_t took = now - f->window_ms;
    if (took < FEED_GATHER_WINDOW_MS)
        return;
    int64_t shared = 0;
    for (int k = 0; k < FEED_GATHER_ROOMS; k++)
        if ((int64_t)f->rooms[k].count * f->gather_ms >= 2 * took)
            shared += f->rooms[k].count;
    f->gathering = shared * 1000 >= (int64_t)f->gather_from * took;
    memset(f->rooms, 0, FEED_GATHER_ROOMS * sizeof *f->rooms);
    f->window_ms = now;
}

static int gather(void *ctx)
{
    struct roomfeed *f = ctx;
    return f->gathering;
}

/* ---- Applying -------------------------------------------------------------------- */

/* Makes room for the grouping of n entries. Returns 0 when out of memory. */
static int grow(struct roomfeed *f, size_t n)
{
    if (n <= f->cap)
        return 1;
    uint32_t *next = realloc(f->next, n * sizeof *next);
    if (next)
        f->next = next;
    struct room_group *gr = realloc(f->groups, n * sizeof *gr);
    if (gr)
        f->groups = gr;
    if (!next || !gr)
        return 0;
    f->cap = n;
    return 1;
}

/* Sends the batch's next calls while fewer than FEED_ENTRIES_IN_FLIGHT
 * entries are in calls not yet answered; the batch is done when the last
 * answer has come. */
static void send_more(struct roomfeed *f)
{
    f->waiting++; /* holds the batch open while sending */
    while (f->batch && f->sent < f->ngroups && f->in_flight < FEED_ENTRIES_IN_FLIGHT)
        send_group(f, &f->groups[f->sent++], f->next);
    if (--f->waiting == 0 && f->batch && f->sent == f->ngroups)
        batch_done(f);
}

/* The consumer's batch: one room_apply call per room and day. */
static void apply(void *ctx, struct entry_batch *b)
{
    struct roomfeed *f = ctx;
    tc_assert(!f->batch && f->waiting == 0);
    f->batch = b;
    f->sent = 0;
    f->ngroups = 0;
    if (f->rooms) {
        roll_window(f, clock_mono_ms());
        for (size_t k = 0; k < b->n; k++)
            if (to_room(&b->e[k]))
                count_room(f, b->e[k].room.s);
    }
    if (!grow(f, b->n) || (f->ngroups = group_entries(b, f->next, f->groups)) < 0) {
        log_msg(LOG_ERROR, "rooms: out of memory grouping a batch of %zu entries", b->n);
        for (size_t k = 0; k < b->n; k++)
            b->e[k].retry = 1;
        f->ngroups = 0;
    }
    send_more(f);
}

static int ready(void *ctx)
{
    struct roomfeed *f = ctx;
    return redis_cmd_ready(f->rl);
}

void roomfeed_init(struct roomfeed *f, struct outbox *ob, uv_loop_t *loop, const struct config *cfg)
{
    memset(f, 0, sizeof *f);
    snprintf(f->pin_min, sizeof f->pin_min, "%lld", (long long)cfg->pin_min_amount);
    f->pin_tiers = cfg->pin_tiers;
    f->rl = ob->rl;
    f->history_len = cfg->history_len;
    snprintf(f->combo_window, sizeof f->combo_window, "%d", cfg->combo_window_ms);
    f->fan_levels = cfg->fan_levels;
    f->gather_ms = cfg->rooms_gather_ms;
    f->gather_from = cfg->rooms_gather_from;
    f->window_ms = clock_mono_ms();
    if (f->gather_ms > 0 && !(f->rooms = calloc(FEED_GATHER_ROOMS, sizeof *f->rooms)))
        log_msg(LOG_WARN, "rooms: out of memory for the gather counts; rooms-gather-ms is off");
    /* Durable like a money movement: with redis-wait-replicas, the entries
     * are acknowledged in the outbox (on their wallet shard's master) only
     * once the room's replicas have the events, so a room master that fails
     * over loses none. */
    f->apply = (struct rlink_script){.name = "room_apply", .src = lua_room_apply, .durable = 1};
    redis_script_add(f->rl, &f->apply);
    static const struct consumer_ops ops = {.ready = ready, .apply = apply, .gather = gather};
    const struct consumer_cfg group = {.group = OUTBOX_GROUP_ROOMS, .per_read = FEED_READ_MAX,
                                       .block_ms = FEED_BLOCK_MS, .gather_ms = f->gather_ms, .trims = 0};
    consumer_init(&f->consumer, ob, loop, &group, &ops, f);
}

int roomfeed_start(struct roomfeed *f) { return consumer_start(&f->consumer); }

void roomfeed_stop(struct roomfeed *f)
{
    consumer_stop(&f->consumer);
    if (f->batch) {
        /* The calls' answers find no batch and are dropped. */
        struct entry_batch *b = f->batch;
        f->batch = NULL;
        entry_batch_clear(b);
    }
}

void roomfeed_free(struct roomfeed *f)
{
    free(f->groups);
    free(f->next);
    free(f->rooms);
    f->groups = NULL;
    f->next = NULL;
    f->rooms = NULL;
    f->cap = 0;
}
