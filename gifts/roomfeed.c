/* roomfeed.c - the "rooms" consumer group (see roomfeed.h). */
#include "roomfeed.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <msgpack.h>

#include "board.h"
#include "log.h"
#include "outbox.h"
#include "rlink.h"
#include "room.h"
#include "server.h"

/* Longest stream id "ms-seq" (two 64-bit numbers). */
#define FEED_ID_MAX 42
/* Most ids in one XACK (rlink takes RLINK_ARGS_MAX arguments). */
#define FEED_ACK_MAX 200

/* Where a shard is in its reading: nothing (not ours), claiming a previous
 * consumer's pending entries, reading our own pending entries from `cursor`,
 * or reading new entries. */
enum phase { PH_IDLE, PH_CLAIM, PH_PENDING, PH_LIVE };

struct shard {
    enum phase phase;
    char cursor[FEED_ID_MAX + 1];
    int64_t not_before_ms; /* a failed step waits until then */
    uint32_t gen;          /* bumped at every lease change */
};

static struct {
    struct outbox_leases leases;
    int link;
    int started, stopping;
    int groups_sent;
    int busy;          /* a read or a batch of scripts is outstanding */
    int next_chunk;    /* round robin over the live shards past FEED_STREAMS_MAX */
    uv_timer_t lease_timer;
    uv_timer_t retry_timer;
    struct shard sh[OUTBOX_SHARDS_MAX];
} F;

static void pump(void);

static void on_retry(uv_timer_t *t)
{
    (void)t;
    pump();
}

static void pump_later(int ms)
{
    if (!F.stopping)
        uv_timer_start(&F.retry_timer, on_retry, (uint64_t)ms, 0);
}

static void shard_rewind(int s, uint32_t gen)
{
    struct shard *sh = &F.sh[s];
    if (sh->gen != gen || sh->phase == PH_IDLE)
        return; /* the lease changed meanwhile: the new phase stands */
    sh->phase = PH_PENDING;
    snprintf(sh->cursor, sizeof sh->cursor, "0");
    sh->not_before_ms = now_mono_ms() + FEED_RETRY_MS;
}

static void on_lease_change(int s, int owned)
{
    struct shard *sh = &F.sh[s];
    sh->gen++;
    sh->not_before_ms = 0;
    if (owned) {
        sh->phase = PH_CLAIM;
        snprintf(sh->cursor, sizeof sh->cursor, "0-0");
        pump();
    } else {
        sh->phase = PH_IDLE;
    }
}

/* The shard of a key "tc:{w:N}:outbox", or -1. */
static int key_shard(const redisReply *k)
{
    if (k->type != REDIS_REPLY_STRING)
        return -1;
    int s = -1, n = 0;
    if (sscanf(k->str, "tc:{w:%d}:outbox%n", &s, &n) != 1 || (size_t)n != k->len || s < 0 ||
        s >= srv.cfg.wallet_shards)
        return -1;
    return s;
}

/* ---- One entry ----------------------------------------------------------------- */

/* The fields of an entry that the room needs (outbox.h; "ro", the
 * sender's role, is optional), pointing into the reply. */
enum { E_K, E_U, E_R, E_G, E_GN, E_AN, E_N, E_A, E_M, E_T, E_TS, E_RO, E_NFIELDS };
static const char *const entry_names[E_NFIELDS] = {"k", "u", "r", "g", "gn", "an", "n", "a", "m", "t", "ts", "ro"};

struct entry {
    const char *f[E_NFIELDS];
    size_t len[E_NFIELDS];
};

static void entry_read(const redisReply *fields, struct entry *e)
{
    memset(e, 0, sizeof *e);
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i], *v = fields->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        for (int f = 0; f < E_NFIELDS; f++)
            if (strcmp(k->str, entry_names[f]) == 0) {
                e->f[f] = v->str;
                e->len[f] = v->len;
            }
    }
}

/* A decimal integer field; 0 and *ok = 0 when absent or malformed. */
static int64_t entry_int(const struct entry *e, int f, int *ok)
{
    if (!e->f[f] || e->len[f] == 0 || e->len[f] > 19) {
        *ok = 0;
        return 0;
    }
    int64_t v = 0;
    for (size_t i = 0; i < e->len[f]; i++) {
        char c = e->f[f][i];
        if (c < '0' || c > '9') {
            *ok = 0;
            return 0;
        }
        v = v * 10 + (c - '0');
    }
    return v;
}

static const char *entry_str(const struct entry *e, int f, size_t *len)
{
    *len = e->f[f] ? e->len[f] : 0;
    return e->f[f] ? e->f[f] : "";
}

struct body_buf {
    uint8_t *p;
    size_t len, cap;
    int overflow;
};

static int body_write(void *data, const char *s, size_t len)
{
    struct body_buf *b = data;
    if (b->overflow || len > b->cap - b->len) {
        b->overflow = 1;
        return -1;
    }
    memcpy(b->p + b->len, s, len);
    b->len += len;
    return 0;
}

static void pk_str(msgpack_packer *pk, const char *s, size_t len) { msgpack_pack_str_with_body(pk, s, len); }
static void pk_key(msgpack_packer *pk, const char *k) { pk_str(pk, k, strlen(k)); }

/* Builds the event body of a gift or tip entry into out (cap bytes), "kind"
 * first (room.c recognises gift and tip events by it). Returns its length,
 * or -1 when the entry is malformed or the body does not fit. */
static int entry_body(const struct entry *e, int gift, const char *order, uint8_t *out, size_t cap)
{
    int ok = 1;
    int64_t amount = entry_int(e, E_A, &ok), ts = entry_int(e, E_TS, &ok);
    int64_t gift_id = gift ? entry_int(e, E_G, &ok) : 0, count = gift ? entry_int(e, E_N, &ok) : 0;
    if (!ok || amount <= 0)
        return -1;
    struct body_buf b = {out, 0, cap, 0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, body_write);
    size_t ul, sl;
    const char *u = entry_str(e, E_U, &ul);
    msgpack_pack_map(&pk, gift ? 11 : 6);
    pk_key(&pk, "kind");
    pk_key(&pk, gift ? "gift" : "tip");
    pk_key(&pk, "from");
    pk_str(&pk, u, ul);
    if (gift) {
        const char *role = entry_str(e, E_RO, &sl);
        pk_key(&pk, "role");
        if (sl)
            pk_str(&pk, role, sl);
        else
            pk_key(&pk, "viewer");
    }
    pk_key(&pk, "order");
    pk_key(&pk, order);
    if (gift) {
        pk_key(&pk, "gift");
        msgpack_pack_int64(&pk, gift_id);
        const char *s = entry_str(e, E_GN, &sl);
        pk_key(&pk, "name");
        pk_str(&pk, s, sl);
        s = entry_str(e, E_AN, &sl);
        pk_key(&pk, "animation");
        pk_str(&pk, s, sl);
        pk_key(&pk, "count");
        msgpack_pack_int64(&pk, count);
        s = entry_str(e, E_M, &sl);
        pk_key(&pk, "combo");
        pk_str(&pk, s, sl);
    }
    pk_key(&pk, "amount");
    msgpack_pack_int64(&pk, amount);
    if (!gift) {
        const char *s = entry_str(e, E_T, &sl);
        pk_key(&pk, "text");
        pk_str(&pk, s, sl);
    }
    pk_key(&pk, "ts");
    msgpack_pack_int64(&pk, ts);
    return b.overflow ? -1 : (int)b.len;
}

/* ---- A batch: the entries of one read, applied and then acknowledged ---------- */

enum item_state { IT_SENT, IT_OK, IT_FAILED };

struct item {
    int shard;
    uint32_t gen;
    enum item_state state;
    char id[FEED_ID_MAX + 1];
    char room[ID_MAX + 1]; /* "" when the entry concerns no room */
};

struct batch {
    int waiting; /* calls not yet answered, plus one while sending */
    size_t n;
    struct item items[];
};

/* One room_apply call: the items it carries, in the order of its
 * arguments. Owned by the call; freed in its callback. */
struct call {
    struct batch *b;
    int n;
    uint32_t item[FEED_APPLY_MAX];
};

static void on_acked(redisReply *reply, void *priv)
{
    (void)priv;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_msg(LOG_WARN, "rooms: XACK: %s", reply->str);
}

static void xack(int shard, const char *const *ids, int nids)
{
    char key[128];
    outbox_key(shard, key, sizeof key);
    const char *argv[3 + FEED_ACK_MAX];
    size_t len[3 + FEED_ACK_MAX];
    argv[0] = "XACK";
    argv[1] = key;
    argv[2] = OUTBOX_GROUP_ROOMS;
    for (int i = 0; i < nids; i++)
        argv[3 + i] = ids[i];
    for (int i = 0; i < 3 + nids; i++)
        len[i] = strlen(argv[i]);
    /* Fire and forget: an entry whose XACK is lost stays pending and is
     * read again by its shard's next owner, which the watermark makes
     * harmless. */
    rlink_command(RLINK_CMD_LINK, 3 + nids, argv, len, on_acked, NULL);
}

static void batch_done(struct batch *b)
{
    /* Acknowledge per shard, in chunks of FEED_ACK_MAX ids, every entry
     * that was applied (or needed nothing); a shard with a failed entry
     * reads its pending entries again. */
    const char *ids[FEED_ACK_MAX];
    for (size_t i = 0; i < b->n;) {
        int s = b->items[i].shard;
        uint32_t gen = b->items[i].gen;
        int nids = 0, failed = 0;
        for (; i < b->n && b->items[i].shard == s; i++) {
            if (b->items[i].state != IT_OK) {
                failed = 1;
                continue;
            }
            ids[nids++] = b->items[i].id;
            if (nids == FEED_ACK_MAX) {
                xack(s, ids, nids);
                nids = 0;
            }
        }
        if (nids)
            xack(s, ids, nids);
        if (failed)
            shard_rewind(s, gen);
    }
    free(b);
    F.busy = 0;
    pump();
}

static void on_applied(redisReply *reply, void *priv)
{
    struct call *cl = priv;
    struct batch *b = cl->b;
    int whole = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == (size_t)cl->n;
    for (int i = 0; whole && i < cl->n; i++)
        if (reply->element[i]->type != REDIS_REPLY_INTEGER)
            whole = 0;
    for (int i = 0; i < cl->n; i++) {
        struct item *it = &b->items[cl->item[i]];
        if (whole && reply->element[i]->integer >= 0) {
            it->state = IT_OK;
            continue;
        }
        it->state = IT_FAILED;
        if (whole)
            log_msg(LOG_INFO, "rooms: %d-%s waits for an earlier entry of room %s", it->shard, it->id, it->room);
    }
    if (!whole && reply)
        log_msg(LOG_ERROR, "rooms: room_apply of %d entries (room %s): %s", cl->n, b->items[cl->item[0]].room,
                reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
    free(cl);
    if (--b->waiting == 0) {
        if (F.stopping) {
            free(b);
            return;
        }
        batch_done(b);
    }
}

/* The stream id of the last item before `k` of the same shard and room
 * that was sent to its script, or "". */
static const char *predecessor(const struct batch *b, size_t k)
{
    const struct item *it = &b->items[k];
    for (size_t i = k; i-- > 0;) {
        const struct item *p = &b->items[i];
        if (p->shard != it->shard)
            break; /* a shard's entries are contiguous in the batch */
        if (p->room[0] && strcmp(p->room, it->room) == 0)
            return p->id;
    }
    return "";
}

/* What the grouping of one batch needs per item, for the length of
 * batch_start (it points into the read's reply). */
struct prep {
    struct entry e;
    int gift;
    int64_t ts;
    uint32_t next; /* the next item of the same call, or UINT32_MAX */
};

/* The items of one room and period, in batch order: one call, or several
 * when there are more than FEED_APPLY_MAX. */
struct group {
    char day[BOARD_KEY_MAX]; /* the day board's key names the room and the period */
    uint32_t first, last;
    int n;
};

/* Reads item k's entry: settles it (IT_OK: nothing to apply, or
 * malformed) or leaves it IT_SENT with its room set, to be grouped. */
static void prepare(struct batch *b, size_t k, const redisReply *fields, struct prep *p)
{
    struct item *it = &b->items[k];
    it->state = IT_OK;
    if (!fields || fields->type != REDIS_REPLY_ARRAY)
        return; /* trimmed from the stream: nothing to apply */
    entry_read(fields, &p->e);
    size_t kl, rl, ul;
    const char *kind = entry_str(&p->e, E_K, &kl);
    const char *room = entry_str(&p->e, E_R, &rl);
    const char *user = entry_str(&p->e, E_U, &ul);
    p->gift = kl == 4 && memcmp(kind, "gift", 4) == 0;
    int tip = kl == 3 && memcmp(kind, "tip", 3) == 0;
    if (!p->gift && !tip)
        return; /* credit: no room */
    int ok = 1;
    p->ts = entry_int(&p->e, E_TS, &ok);
    int64_t amount = entry_int(&p->e, E_A, &ok);
    if (!ok || amount <= 0 || !id_valid(room, rl) || !id_valid(user, ul)) {
        /* Nothing can ever apply it: acknowledged so that it does not stop
         * the shard. The ledger still has the order. */
        char order[OUTBOX_ORDER_ID_MAX + 16];
        outbox_order_id(it->shard, it->id, order, sizeof order);
        log_msg(LOG_ERROR, "rooms: entry %s is malformed; no room event for it", order);
        return;
    }
    memcpy(it->room, room, rl);
    it->room[rl] = '\0';
    it->state = IT_SENT;
}

static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* Puts every IT_SENT item into the group of its room and period (the
 * groups in the order of their first item). Returns the number of groups,
 * or -1 when out of memory. */
static int group_items(struct batch *b, struct prep *pre, struct group *gr)
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
        if (b->items[k].state != IT_SENT)
            continue;
        struct board_keys bk;
        board_keys(b->items[k].room, pre[k].ts, &bk);
        size_t h = hash_str(bk.key[BOARD_DAY]) & (cap - 1);
        while (slot[h] >= 0 && strcmp(gr[slot[h]].day, bk.key[BOARD_DAY]) != 0)
            h = (h + 1) & (cap - 1);
        pre[k].next = UINT32_MAX;
        struct group *g = slot[h] >= 0 ? &gr[slot[h]] : NULL;
        if (g && g->n < FEED_APPLY_MAX) {
            pre[g->last].next = (uint32_t)k;
            g->last = (uint32_t)k;
            g->n++;
            continue;
        }
        /* A new group; a full one stays behind, sent before this one. */
        g = &gr[ng];
        snprintf(g->day, sizeof g->day, "%s", bk.key[BOARD_DAY]);
        g->first = g->last = (uint32_t)k;
        g->n = 1;
        slot[h] = ng++;
    }
    free(slot);
    return ng;
}

/* Sends one room_apply call for group g. Its items end up IT_SENT (the
 * callback will come) or settled (IT_OK when malformed, IT_FAILED). */
static void send_group(struct batch *b, const struct group *g, const struct prep *pre)
{
    /* Argument storage for one call; only the loop's thread uses it. */
    static uint8_t body[FEED_APPLY_MAX][ROOM_BODY_MAX];
    static char shard[FEED_APPLY_MAX][16];
    /* 7 keys, 5 arguments and the entry count, then 6 per entry. */
    enum { NKEYS = 7, NFIXED = 12, PER = 6, ARGS_MAX = NFIXED + 1 + PER * FEED_APPLY_MAX };
    _Static_assert(ARGS_MAX <= RLINK_ARGS_MAX, "a room_apply call exceeds rlink's argument bound");
    const char *argv[ARGS_MAX];
    size_t len[ARGS_MAX];
    struct call *cl = malloc(sizeof *cl);
    if (!cl) {
        for (uint32_t k = g->first; k != UINT32_MAX; k = pre[k].next)
            b->items[k].state = IT_FAILED;
        return;
    }
    cl->b = b;
    cl->n = 0;
    const struct item *lead = &b->items[g->first];
    struct room_keys rk;
    struct board_keys bk;
    room_keys(lead->room, &rk);
    board_keys(lead->room, pre[g->first].ts, &bk);
    char hl[16], ttl[BOARD_PERIODS][24], count[16];
    snprintf(hl, sizeof hl, "%d", srv.cfg.history_len);
    for (int p = 0; p < BOARD_PERIODS; p++)
        snprintf(ttl[p], sizeof ttl[p], "%lld", (long long)bk.ttl_s[p]);
    argv[0] = rk.seq;
    argv[1] = rk.hist;
    argv[2] = rk.wm;
    argv[3] = bk.key[BOARD_ALL];
    argv[4] = bk.key[BOARD_DAY];
    argv[5] = bk.key[BOARD_WEEK];
    argv[6] = bk.key[BOARD_MONTH];
    argv[7] = hl;
    argv[8] = rk.chan;
    argv[9] = ttl[BOARD_DAY];
    argv[10] = ttl[BOARD_WEEK];
    argv[11] = ttl[BOARD_MONTH];
    argv[12] = count;
    int argc = NFIXED + 1;
    for (int i = 0; i < NFIXED + 1; i++)
        len[i] = strlen(argv[i]);
    for (uint32_t k = g->first; k != UINT32_MAX; k = pre[k].next) {
        struct item *it = &b->items[k];
        char order[OUTBOX_ORDER_ID_MAX + 16];
        outbox_order_id(it->shard, it->id, order, sizeof order);
        int blen = entry_body(&pre[k].e, pre[k].gift, order, body[cl->n], sizeof body[0]);
        if (blen < 0) {
            log_msg(LOG_ERROR, "rooms: entry %s is malformed; no room event for it", order);
            it->room[0] = '\0';
            it->state = IT_OK;
            continue;
        }
        int sl = snprintf(shard[cl->n], sizeof shard[0], "%d", it->shard);
        const char *prev = predecessor(b, k);
        /* hiredis ends every string of a reply with a NUL, and the user id
         * and the amount were checked to hold none. */
        argv[argc] = shard[cl->n];
        len[argc++] = (size_t)sl;
        argv[argc] = it->id;
        len[argc++] = strlen(it->id);
        argv[argc] = prev;
        len[argc++] = strlen(prev);
        argv[argc] = (const char *)body[cl->n];
        len[argc++] = (size_t)blen;
        argv[argc] = pre[k].e.f[E_U];
        len[argc++] = pre[k].e.len[E_U];
        argv[argc] = pre[k].e.f[E_A];
        len[argc++] = pre[k].e.len[E_A];
        cl->item[cl->n++] = k;
    }
    if (cl->n == 0) {
        free(cl);
        return;
    }
    len[NFIXED] = (size_t)snprintf(count, sizeof count, "%d", cl->n);
    b->waiting++;
    if (rlink_eval(SCRIPT_ROOM_APPLY, NKEYS, argc, argv, len, on_applied, cl) < 0) {
        b->waiting--;
        for (int i = 0; i < cl->n; i++)
            b->items[cl->item[i]].state = IT_FAILED;
        free(cl);
    }
}

/* Applies every entry of a read reply: [[key, [[id, fields], ...]], ...],
 * one room_apply call per room (and period). Returns the number of entries
 * (0: nothing came). */
static size_t batch_start(const redisReply *reply)
{
    size_t n = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *st = reply->element[i];
        if (st->type == REDIS_REPLY_ARRAY && st->elements == 2 && st->element[1]->type == REDIS_REPLY_ARRAY)
            n += st->element[1]->elements;
    }
    if (n == 0)
        return 0;
    struct batch *b = calloc(1, sizeof *b + n * sizeof b->items[0]);
    struct prep *pre = malloc(n * sizeof *pre);
    struct group *gr = malloc(n * sizeof *gr);
    if (!b || !pre || !gr) {
        /* The entries stay pending: their shards read them again. */
        log_msg(LOG_ERROR, "rooms: out of memory for a batch of %zu entries", n);
        free(b);
        free(pre);
        free(gr);
        for (size_t i = 0; i < reply->elements; i++) {
            const redisReply *st = reply->element[i];
            int s = st->type == REDIS_REPLY_ARRAY && st->elements == 2 ? key_shard(st->element[0]) : -1;
            if (s >= 0)
                shard_rewind(s, F.sh[s].gen);
        }
        pump_later(FEED_RETRY_MS);
        return n;
    }
    b->waiting = 1;
    F.busy = 1;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *st = reply->element[i];
        int s;
        if (st->type != REDIS_REPLY_ARRAY || st->elements != 2 || st->element[1]->type != REDIS_REPLY_ARRAY ||
            (s = key_shard(st->element[0])) < 0)
            continue;
        const redisReply *ents = st->element[1];
        for (size_t j = 0; j < ents->elements; j++) {
            const redisReply *en = ents->element[j];
            if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 || en->element[0]->type != REDIS_REPLY_STRING ||
                en->element[0]->len > FEED_ID_MAX)
                continue;
            struct item *it = &b->items[b->n];
            it->shard = s;
            it->gen = F.sh[s].gen;
            memcpy(it->id, en->element[0]->str, en->element[0]->len + 1);
            b->n++;
            prepare(b, b->n - 1, en->element[1], &pre[b->n - 1]);
        }
        /* A pending read goes on after the last entry it got. */
        if (F.sh[s].phase == PH_PENDING && ents->elements > 0) {
            const redisReply *last = ents->element[ents->elements - 1];
            if (last->type == REDIS_REPLY_ARRAY && last->elements == 2 &&
                last->element[0]->type == REDIS_REPLY_STRING && last->element[0]->len <= FEED_ID_MAX)
                memcpy(F.sh[s].cursor, last->element[0]->str, last->element[0]->len + 1);
        }
    }
    int ng = group_items(b, pre, gr);
    if (ng < 0) {
        log_msg(LOG_ERROR, "rooms: out of memory grouping a batch of %zu entries", b->n);
        for (size_t k = 0; k < b->n; k++)
            if (b->items[k].state == IT_SENT)
                b->items[k].state = IT_FAILED;
        ng = 0;
    }
    for (int g = 0; g < ng; g++)
        send_group(b, &gr[g], pre);
    free(pre);
    free(gr);
    if (--b->waiting == 0)
        batch_done(b);
    return n;
}

/* ---- Reads on the rooms connection ----------------------------------------------- */

/* What a command on the rooms connection was for. */
struct readreq {
    int shard;    /* -1 for a read of the live shards */
    uint32_t gen; /* the shard's lease generation when it was sent */
};

static void read_failed(const struct readreq *q, const redisReply *reply)
{
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        log_msg(LOG_WARN, "rooms: %s", reply->str);
        if (strncmp(reply->str, "NOGROUP", 7) == 0)
            F.groups_sent = 0; /* Redis lost the groups (FLUSHALL, a new Redis) */
    }
    if (q->shard >= 0 && F.sh[q->shard].gen == q->gen)
        F.sh[q->shard].not_before_ms = now_mono_ms() + FEED_RETRY_MS;
    pump_later(FEED_RETRY_MS);
}

static void on_claimed(redisReply *reply, void *priv)
{
    struct readreq *q = priv;
    F.busy = 0;
    if (F.stopping) {
        free(q);
        return;
    }
    struct shard *sh = &F.sh[q->shard];
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING || reply->element[0]->len > FEED_ID_MAX) {
        read_failed(q, reply);
        free(q);
        return;
    }
    if (sh->gen == q->gen && sh->phase == PH_CLAIM) {
        const char *next = reply->element[0]->str;
        if (strcmp(next, "0-0") == 0) {
            sh->phase = PH_PENDING;
            snprintf(sh->cursor, sizeof sh->cursor, "0");
        } else {
            snprintf(sh->cursor, sizeof sh->cursor, "%s", next);
        }
    }
    free(q);
    pump();
}

static void on_read(redisReply *reply, void *priv)
{
    struct readreq *q = priv;
    F.busy = 0;
    if (F.stopping) {
        free(q);
        return;
    }
    if (reply && reply->type == REDIS_REPLY_NIL) {
        free(q); /* BLOCK timed out: nothing new */
        pump();
        return;
    }
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        read_failed(q, reply);
        free(q);
        return;
    }
    size_t n = batch_start(reply);
    /* A pending read that found nothing more has caught up: new entries
     * from now on. */
    if (q->shard >= 0 && n == 0) {
        struct shard *sh = &F.sh[q->shard];
        if (sh->gen == q->gen && sh->phase == PH_PENDING)
            sh->phase = PH_LIVE;
    }
    free(q);
    if (!F.busy)
        pump();
}

static int send_read(int argc, const char **argv, rlink_reply_cb *cb, int shard)
{
    struct readreq *q = malloc(sizeof *q);
    if (!q)
        return -1;
    q->shard = shard;
    q->gen = shard >= 0 ? F.sh[shard].gen : 0;
    size_t len[8 + 2 * FEED_STREAMS_MAX];
    for (int i = 0; i < argc; i++)
        len[i] = strlen(argv[i]);
    if (rlink_command(F.link, argc, argv, len, cb, q) < 0) {
        free(q);
        return -1;
    }
    F.busy = 1;
    return 0;
}

static int claim(int s)
{
    char key[128], count[16];
    outbox_key(s, key, sizeof key);
    snprintf(count, sizeof count, "%d", FEED_COUNT);
    /* min-idle 0: every entry pending in the group is a previous owner's,
     * since this node holds the lease. JUSTID: the entries are read next,
     * with this node's own pending ones. */
    const char *argv[] = {"XAUTOCLAIM", key, OUTBOX_GROUP_ROOMS, srv.node_id, "0", F.sh[s].cursor,
                          "COUNT", count, "JUSTID"};
    return send_read(9, argv, on_claimed, s);
}

static int read_pending(int s)
{
    char key[128], count[16];
    outbox_key(s, key, sizeof key);
    snprintf(count, sizeof count, "%d", FEED_COUNT);
    const char *argv[] = {"XREADGROUP", "GROUP", OUTBOX_GROUP_ROOMS, srv.node_id, "COUNT", count,
                          "STREAMS", key, F.sh[s].cursor};
    return send_read(9, argv, on_read, s);
}

static int read_live(void)
{
    int live[OUTBOX_SHARDS_MAX], n = 0;
    for (int s = 0; s < srv.cfg.wallet_shards; s++)
        if (F.leases.owned[s] && F.sh[s].phase == PH_LIVE)
            live[n++] = s;
    if (n == 0)
        return 1;
    /* More live shards than one command may name: read them in chunks,
     * blocking each for a share of FEED_BLOCK_MS. */
    int chunks = (n + FEED_STREAMS_MAX - 1) / FEED_STREAMS_MAX;
    int c = F.next_chunk++ % chunks;
    int from = c * FEED_STREAMS_MAX, to = from + FEED_STREAMS_MAX < n ? from + FEED_STREAMS_MAX : n;
    char count[16], block[16];
    static char keys[FEED_STREAMS_MAX][32];
    snprintf(count, sizeof count, "%d", FEED_COUNT);
    snprintf(block, sizeof block, "%d", FEED_BLOCK_MS / chunks > 0 ? FEED_BLOCK_MS / chunks : 1);
    const char *argv[8 + 2 * FEED_STREAMS_MAX] = {"XREADGROUP", "GROUP", OUTBOX_GROUP_ROOMS, srv.node_id,
                                                  "COUNT", count, "BLOCK", block};
    int argc = 8;
    argv[argc++] = "STREAMS";
    for (int i = from; i < to; i++) {
        outbox_key(live[i], keys[i - from], sizeof keys[0]);
        argv[argc++] = keys[i - from];
    }
    for (int i = from; i < to; i++)
        argv[argc++] = ">";
    return send_read(argc, argv, on_read, -1) < 0 ? -1 : 0;
}

/* Starts the next step, unless one is outstanding: claims first, then
 * pending entries, then new entries of every live shard. */
static void pump(void)
{
    if (!F.started || F.stopping || F.busy)
        return;
    if (!rlink_up(F.link) || !rlink_cmd_ready()) {
        pump_later(FEED_RETRY_MS);
        return;
    }
    int64_t now = now_mono_ms();
    int waiting = 0;
    for (int s = 0; s < srv.cfg.wallet_shards; s++) {
        struct shard *sh = &F.sh[s];
        if (!F.leases.owned[s] || (sh->phase != PH_CLAIM && sh->phase != PH_PENDING))
            continue;
        if (sh->not_before_ms > now) {
            waiting = 1;
            continue;
        }
        if ((sh->phase == PH_CLAIM ? claim(s) : read_pending(s)) < 0)
            pump_later(FEED_RETRY_MS);
        return;
    }
    int rc = read_live();
    if (rc < 0)
        pump_later(FEED_RETRY_MS);
    else if (rc > 0)
        pump_later(waiting ? FEED_RETRY_MS / 4 : FEED_BLOCK_MS);
}

/* ---- Lifecycle ---------------------------------------------------------------------- */

static void on_lease_tick(uv_timer_t *t)
{
    (void)t;
    if (!rlink_cmd_ready())
        return;
    if (!F.groups_sent) {
        /* Sent on the command connection before the lease scripts, so the
         * groups exist by the time this node reads a shard. */
        outbox_ensure_groups();
        F.groups_sent = 1;
    }
    outbox_lease_tick(&F.leases);
}

int roomfeed_start(void)
{
    memset(&F, 0, sizeof F);
    F.leases.group = OUTBOX_GROUP_ROOMS;
    F.leases.on_change = on_lease_change;
    F.link = rlink_open("rooms");
    if (F.link < 0) {
        log_msg(LOG_ERROR, "rooms: no Redis connection left for the rooms feed");
        return -1;
    }
    uv_timer_init(srv.loop, &F.lease_timer);
    uv_timer_init(srv.loop, &F.retry_timer);
    uv_timer_start(&F.lease_timer, on_lease_tick, 0, OUTBOX_LEASE_TICK_MS);
    F.started = 1;
    return 0;
}

void roomfeed_stop(void)
{
    if (!F.started || F.stopping)
        return;
    F.stopping = 1;
    outbox_lease_release_all(&F.leases);
    uv_timer_stop(&F.lease_timer);
    uv_timer_stop(&F.retry_timer);
    uv_close((uv_handle_t *)&F.lease_timer, NULL);
    uv_close((uv_handle_t *)&F.retry_timer, NULL);
}
