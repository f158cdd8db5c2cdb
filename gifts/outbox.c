/* outbox.c - outbox keys, order ids and shard leases (see outbox.h). */
#include "outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "log.h"
#include "rlink.h"
#include "server.h"

int outbox_shard_of(const char *uid)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *s = uid; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return (int)(h % (uint32_t)srv.cfg.wallet_shards);
}

void outbox_key(int shard, char *buf, size_t cap) { snprintf(buf, cap, "tc:{w:%d}:outbox", shard); }

void outbox_balance_key(int shard, const char *uid, char *buf, size_t cap)
{
    snprintf(buf, cap, "tc:{w:%d}:bal:%s", shard, uid);
}

void outbox_idem_key(int shard, const char *uid, const char *req_id, char *buf, size_t cap)
{
    snprintf(buf, cap, "tc:{w:%d}:idem:%s:%s", shard, uid, req_id);
}

void outbox_lease_key(int shard, const char *group, char *buf, size_t cap)
{
    snprintf(buf, cap, "tc:{w:%d}:lease:%s", shard, group);
}

void outbox_order_id(int shard, const char *stream_id, char *buf, size_t cap)
{
    snprintf(buf, cap, "%d-%s", shard, stream_id);
}

/* The reply to one shard's lease script names its lease set and shard. */
struct lease_req {
    struct outbox_leases *l;
    int shard;
    int64_t sent_ms;
};

static void on_lease(redisReply *reply, void *priv)
{
    struct lease_req *q = priv;
    struct outbox_leases *l = q->l;
    int held = reply && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
    if (held)
        l->renewed_ms[q->shard] = q->sent_ms;
    if (held != l->owned[q->shard]) {
        l->owned[q->shard] = (uint8_t)held;
        log_msg(LOG_INFO, "outbox %s: shard %d %s", l->group, q->shard, held ? "taken" : "lost");
        if (l->on_change)
            l->on_change(q->shard, held);
    }
    free(q);
}

static void lease_call(struct outbox_leases *l, int shard)
{
    char key[128], ttl[16];
    outbox_lease_key(shard, l->group, key, sizeof key);
    snprintf(ttl, sizeof ttl, "%d", OUTBOX_LEASE_MS);
    const char *argv[] = {key, srv.node_id, ttl, "1"};
    size_t len[] = {strlen(key), strlen(srv.node_id), strlen(ttl), 1};
    struct lease_req *q = malloc(sizeof *q);
    if (!q)
        return;
    q->l = l;
    q->shard = shard;
    q->sent_ms = now_mono_ms();
    if (rlink_eval(SCRIPT_OUTBOX_LEASE, 1, 4, argv, len, on_lease, q) < 0)
        free(q);
}

void outbox_lease_tick(struct outbox_leases *l)
{
    int64_t now = now_mono_ms();
    for (int s = 0; s < srv.cfg.wallet_shards; s++) {
        /* A lease not confirmed for most of its life may have passed to
         * another node: stop using it before that can happen. */
        if (l->owned[s] && now - l->renewed_ms[s] > OUTBOX_LEASE_MS - OUTBOX_LEASE_TICK_MS) {
            l->owned[s] = 0;
            log_msg(LOG_WARN, "outbox %s: shard %d lease not renewed in time; dropped", l->group, s);
            if (l->on_change)
                l->on_change(s, 0);
        }
        lease_call(l, s);
    }
}

static void on_release(redisReply *reply, void *priv)
{
    (void)reply;
    free(priv);
}

void outbox_lease_release_all(struct outbox_leases *l)
{
    for (int s = 0; s < srv.cfg.wallet_shards; s++) {
        if (!l->owned[s])
            continue;
        l->owned[s] = 0;
        char key[128];
        outbox_lease_key(s, l->group, key, sizeof key);
        const char *argv[] = {key, srv.node_id, "0", "0"};
        size_t len[] = {strlen(key), strlen(srv.node_id), 1, 1};
        void *tag = malloc(1);
        if (tag && rlink_eval(SCRIPT_OUTBOX_LEASE, 1, 4, argv, len, on_release, tag) < 0)
            free(tag);
    }
}

static void on_group(redisReply *reply, void *priv)
{
    (void)priv;
    if (reply && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9) != 0)
        log_msg(LOG_ERROR, "outbox: XGROUP CREATE: %s", reply->str);
}

void outbox_ensure_groups(void)
{
    static const char *const groups[] = {OUTBOX_GROUP_LEDGER, OUTBOX_GROUP_ROOMS};
    for (int s = 0; s < srv.cfg.wallet_shards; s++) {
        char key[128];
        outbox_key(s, key, sizeof key);
        for (int g = 0; g < 2; g++) {
            const char *argv[] = {"XGROUP", "CREATE", key, groups[g], "0", "MKSTREAM"};
            size_t len[6];
            for (int i = 0; i < 6; i++)
                len[i] = strlen(argv[i]);
            rlink_command(RLINK_CMD_LINK, 6, argv, len, on_group, NULL);
        }
    }
}
