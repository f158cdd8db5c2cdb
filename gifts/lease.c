/* lease.c - shard leases of a consumer group (see lease.h). */
#include "lease.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "clock.h"
#include "log.h"
#include "ranges.h"

extern const char lua_outbox_lease[];

void lease_init(struct leases *l, struct outbox *ob, const char *group,
                void (*on_change)(void *ctx, int shard, int owned), void *ctx)
{
    memset(l, 0, sizeof *l);
    l->ob = ob;
    l->group = group;
    l->on_change = on_change;
    l->ctx = ctx;
    l->script = (struct rlink_script){.name = "outbox_lease", .src = lua_outbox_lease};
    redis_script_add(ob->rl, &l->script);
}

/* The reply to one shard's lease script names its lease set and shard. */
struct lease_req {
    struct leases *l;
    int shard;
    int64_t sent_ms;
};

/* Longest shard list in a log line; a longer one ends with "..." (the
 * count is exact). */
#define LEASE_LOG_LIST_MAX 512

static void change(struct leases *l, int shard, int held)
{
    l->owned[shard] = (uint8_t)held;
    /* A shard lost and taken back within one round nets out. */
    if (held && l->lost[shard])
        l->lost[shard] = 0;
    else if (!held && l->taken[shard])
        l->taken[shard] = 0;
    else if (held)
        l->taken[shard] = 1;
    else
        l->lost[shard] = 1;
    l->on_change(l->ctx, shard, held);
}

static void log_changes(struct leases *l, uint8_t *set, int level, const char *msg)
{
    char list[LEASE_LOG_LIST_MAX];
    int n = ranges_format(set, l->ob->shards, list, sizeof list);
    if (n > 0)
        log_kv(level, msg, LOG_STR("group", l->group), LOG_STR("shards", list), LOG_INT("count", n),
               LOG_INT("held", lease_count(l)));
    memset(set, 0, (size_t)l->ob->shards);
}

/* One line per kind of change once the round's replies are all in (or
 * none will come): not one per shard, which at start would be a line for
 * each of the wallet-shards. */
static void round_done(struct leases *l)
{
    if (l->inflight > 0)
        return;
    /* Losses are warnings: another node took the shard, or Redis did not
     * answer in time. Not held back as repeats: msg is shared, but each
     * line says which shards. */
    log_changes(l, l->taken, LOG_INFO, "outbox shards taken");
    log_changes(l, l->lost, LOG_WARN, "outbox shards lost");
}

static void on_lease(redisReply *reply, void *priv)
{
    struct lease_req *q = priv;
    struct leases *l = q->l;
    int held = reply && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
    if (held)
        l->renewed_ms[q->shard] = q->sent_ms;
    if (held != l->owned[q->shard])
        change(l, q->shard, held);
    free(q);
    l->inflight--;
    round_done(l);
}

static void lease_call(struct leases *l, int shard, const char *take)
{
    char key[OUTBOX_KEY_MAX], ttl[16];
    outbox_lease_key(shard, l->group, key, sizeof key);
    snprintf(ttl, sizeof ttl, "%d", LEASE_MS);
    const char *node = l->ob->node_id;
    const char *argv[] = {key, node, ttl, take};
    size_t len[] = {strlen(key), strlen(node), strlen(ttl), 1};
    struct lease_req *q = malloc(sizeof *q);
    if (!q)
        return;
    *q = (struct lease_req){l, shard, clock_mono_ms()};
    if (redis_eval(l->ob->rl, &l->script, 1, 4, argv, len, on_lease, q) < 0)
        free(q);
    else
        l->inflight++;
}

void lease_tick(struct leases *l)
{
    int64_t now = clock_mono_ms();
    for (int s = 0; s < l->ob->shards; s++) {
        /* A lease not confirmed for most of its life may have passed to
         * another node: stop using it before that can happen. */
        if (l->owned[s] && now - l->renewed_ms[s] > LEASE_MS - LEASE_TICK_MS) {
            log_msg(LOG_WARN, "outbox %s: shard %d lease not renewed in time; dropped", l->group, s);
            change(l, s, 0);
        }
        lease_call(l, s, "1");
    }
    /* Nothing sent (no Redis): the drops above are the round. */
    round_done(l);
}

static void on_release(redisReply *reply, void *priv)
{
    (void)reply;
    (void)priv;
}

void lease_release_all(struct leases *l)
{
    uint8_t released[OUTBOX_SHARDS_MAX];
    memcpy(released, l->owned, (size_t)l->ob->shards);
    for (int s = 0; s < l->ob->shards; s++) {
        if (!l->owned[s])
            continue;
        l->owned[s] = 0;
        char key[OUTBOX_KEY_MAX];
        outbox_lease_key(s, l->group, key, sizeof key);
        const char *node = l->ob->node_id;
        const char *argv[] = {key, node, "0", "0"};
        size_t len[] = {strlen(key), strlen(node), 1, 1};
        redis_eval(l->ob->rl, &l->script, 1, 4, argv, len, on_release, NULL);
    }
    log_changes(l, released, LOG_INFO, "outbox shards released");
}

int lease_count(const struct leases *l)
{
    int n = 0;
    for (int s = 0; s < l->ob->shards; s++)
        n += l->owned[s];
    return n;
}
