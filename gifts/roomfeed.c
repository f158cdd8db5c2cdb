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
    struct batch *b;
    int shard;
    uint32_t gen;
    enum item_state state;
    char id[FEED_ID_MAX + 1];
    char room[ID_MAX + 1]; /* "" when the entry concerns no room */
};

struct batch {
    int waiting; /* scripts not yet answered, plus one while sending */
    size_t n;
    struct item items[];
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
    struct item *it = priv;
    struct batch *b = it->b;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer >= 0) {
        it->state = IT_OK;
    } else {
        it->state = IT_FAILED;
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_msg(LOG_ERROR, "rooms: room_apply of %d-%s (room %s): %s", it->shard, it->id, it->room,
                    reply->str);
        else if (reply)
            log_msg(LOG_INFO, "rooms: %d-%s waits for an earlier entry of room %s", it->shard, it->id, it->room);
    }
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

/* Sends room_apply for item k; on return the item is IT_SENT (its
 * callback will come) or settled (IT_OK: nothing to apply; IT_FAILED). */
static void apply(struct batch *b, size_t k, const redisReply *fields)
{
    struct item *it = &b->items[k];
    if (!fields || fields->type != REDIS_REPLY_ARRAY) {
        it->state = IT_OK; /* trimmed from the stream: nothing to apply */
        return;
    }
    struct entry e;
    entry_read(fields, &e);
    size_t kl, rl, ul;
    const char *kind = entry_str(&e, E_K, &kl);
    const char *room = entry_str(&e, E_R, &rl);
    const char *user = entry_str(&e, E_U, &ul);
    int gift = kl == 4 && memcmp(kind, "gift", 4) == 0;
    int tip = kl == 3 && memcmp(kind, "tip", 3) == 0;
    if (!gift && !tip) {
        it->state = IT_OK; /* credit: no room */
        return;
    }
    char order[OUTBOX_ORDER_ID_MAX + 16];
    outbox_order_id(it->shard, it->id, order, sizeof order);
    uint8_t body[ROOM_BODY_MAX];
    int blen = -1;
    if (id_valid(room, rl) && id_valid(user, ul)) {
        memcpy(it->room, room, rl);
        it->room[rl] = '\0';
        blen = entry_body(&e, gift, order, body, sizeof body);
    }
    if (blen < 0) {
        /* Nothing can ever apply it: acknowledged so that it does not stop
         * the shard. The ledger still has the order. */
        log_msg(LOG_ERROR, "rooms: entry %s is malformed; no room event for it", order);
        it->room[0] = '\0';
        it->state = IT_OK;
        return;
    }
    int ok = 1;
    int64_t ts = entry_int(&e, E_TS, &ok);
    struct room_keys rk;
    struct board_keys bk;
    room_keys(it->room, &rk);
    board_keys(it->room, ts, &bk);
    char shard[16], hl[16], ttl[BOARD_PERIODS][24];
    snprintf(shard, sizeof shard, "%d", it->shard);
    snprintf(hl, sizeof hl, "%d", srv.cfg.history_len);
    for (int p = 0; p < BOARD_PERIODS; p++)
        snprintf(ttl[p], sizeof ttl[p], "%lld", (long long)bk.ttl_s[p]);
    const char *prev = predecessor(b, k);
    /* hiredis ends every string of a reply with a NUL, and the user id and
     * the amount were checked to hold none: strlen measures them. */
    const char *argv[] = {rk.seq, rk.hist, rk.wm, bk.key[BOARD_ALL], bk.key[BOARD_DAY], bk.key[BOARD_WEEK],
                          bk.key[BOARD_MONTH], shard, it->id, prev, (const char *)body, hl, rk.chan,
                          user, e.f[E_A], ttl[BOARD_DAY], ttl[BOARD_WEEK], ttl[BOARD_MONTH]};
    enum { NARGS = sizeof argv / sizeof argv[0], BODY_ARG = 10 };
    size_t len[NARGS];
    for (int i = 0; i < NARGS; i++)
        len[i] = i == BODY_ARG ? (size_t)blen : strlen(argv[i]);
    it->state = IT_SENT;
    b->waiting++;
    if (rlink_eval(SCRIPT_ROOM_APPLY, 7, NARGS, argv, len, on_applied, it) < 0) {
        b->waiting--;
        it->state = IT_FAILED;
    }
}

/* Applies every entry of a read reply: [[key, [[id, fields], ...]], ...].
 * Returns the number of entries (0: nothing came). */
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
    if (!b) {
        /* The entries stay pending: their shards read them again. */
        log_msg(LOG_ERROR, "rooms: out of memory for a batch of %zu entries", n);
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
            it->b = b;
            it->shard = s;
            it->gen = F.sh[s].gen;
            memcpy(it->id, en->element[0]->str, en->element[0]->len + 1);
            b->n++;
            apply(b, b->n - 1, en->element[1]);
        }
        /* A pending read goes on after the last entry it got. */
        if (F.sh[s].phase == PH_PENDING && ents->elements > 0) {
            const redisReply *last = ents->element[ents->elements - 1];
            if (last->type == REDIS_REPLY_ARRAY && last->elements == 2 &&
                last->element[0]->type == REDIS_REPLY_STRING && last->element[0]->len <= FEED_ID_MAX)
                memcpy(F.sh[s].cursor, last->element[0]->str, last->element[0]->len + 1);
        }
    }
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
