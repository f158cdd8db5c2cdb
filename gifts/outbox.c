/* outbox.c - wallet shards, outbox keys, order ids, groups and trimming
 * (see outbox.h). */
#include "outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "hash.h"
#include "log.h"
#include "text.h"

extern const char lua_outbox_trim[];

void outbox_init(struct outbox *ob, struct redis *rl, int shards, const char *node_id)
{
    tc_assert(shards >= 1 && shards <= OUTBOX_SHARDS_MAX);
    memset(ob, 0, sizeof *ob);
    ob->rl = rl;
    ob->shards = shards;
    ob->node_id = node_id;
    ob->trim_script = (struct rlink_script){.name = "outbox_trim", .src = lua_outbox_trim};
    redis_script_add(rl, &ob->trim_script);
}

int outbox_shard_of(const struct outbox *ob, const char *uid)
{
    return (int)(hash_fnv1a(uid, strlen(uid)) % (uint32_t)ob->shards);
}

size_t outbox_shard_prefix(int shard, char *buf, size_t cap)
{
    size_t n = text_cat(buf, cap, 0, "tc:{w:");
    n = text_cat_i64(buf, cap, n, shard);
    return text_cat(buf, cap, n, "}:");
}

void outbox_key(int shard, char *buf, size_t cap) { text_cat(buf, cap, outbox_shard_prefix(shard, buf, cap), "outbox"); }

size_t outbox_user_key(int shard, const char *what, const char *uid, char *buf, size_t cap)
{
    size_t n = text_cat(buf, cap, outbox_shard_prefix(shard, buf, cap), what);
    return text_cat(buf, cap, text_cat(buf, cap, n, ":"), uid);
}

void outbox_balance_key(int shard, const char *uid, char *buf, size_t cap)
{
    outbox_user_key(shard, "bal", uid, buf, cap);
}

void outbox_idem_key(int shard, const char *uid, const char *req_id, char *buf, size_t cap)
{
    text_cat(buf, cap, text_cat(buf, cap, outbox_user_key(shard, "idem", uid, buf, cap), ":"), req_id);
}

void outbox_lease_key(int shard, const char *group, char *buf, size_t cap)
{
    size_t n = text_cat(buf, cap, outbox_shard_prefix(shard, buf, cap), "lease:");
    text_cat(buf, cap, n, group);
}

int outbox_key_shard(const struct outbox *ob, const char *key, size_t len)
{
    char buf[OUTBOX_KEY_MAX];
    int shard = -1, end = 0;
    if (len >= sizeof buf)
        return -1;
    memcpy(buf, key, len);
    buf[len] = '\0';
    if (sscanf(buf, "tc:{w:%d}:outbox%n", &shard, &end) != 1 || buf[end] != '\0')
        return -1;
    return shard >= 0 && shard < ob->shards ? shard : -1;
}

void outbox_order_id(int shard, const char *stream_id, char *buf, size_t cap)
{
    size_t n = text_cat_i64(buf, cap, 0, shard);
    n = text_cat(buf, cap, n, "-");
    text_cat(buf, cap, n, stream_id);
}

/* BUSYGROUP: the group exists. LOADING: Redis is replaying its data, which
 * holds the groups if it had them; if not, the consumers' first read gets
 * NOGROUP and makes them again. */
static void on_group(redisReply *reply, void *priv)
{
    (void)priv;
    if (reply && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9) != 0 &&
        strncmp(reply->str, "LOADING", 7) != 0)
        log_msg(LOG_ERROR, "outbox: XGROUP CREATE: %s", reply->str);
}

void outbox_ensure_groups(struct outbox *ob)
{
    static const char *const groups[] = {OUTBOX_GROUP_LEDGER, OUTBOX_GROUP_ROOMS};
    for (int s = 0; s < ob->shards; s++) {
        char key[OUTBOX_KEY_MAX];
        outbox_key(s, key, sizeof key);
        for (int g = 0; g < 2; g++) {
            const char *argv[] = {"XGROUP", "CREATE", key, groups[g], "0", "MKSTREAM"};
            size_t len[6];
            for (int i = 0; i < 6; i++)
                len[i] = strlen(argv[i]);
            redis_command(ob->rl, RLINK_CMD_LINK, 6, argv, len, on_group, NULL);
        }
    }
}

struct shards_check {
    struct outbox *ob;
    void (*done)(void *ctx, enum redis_check result);
    void *ctx;
};

static void on_shards(redisReply *reply, void *priv)
{
    struct shards_check *q = priv;
    enum redis_check result = REDIS_CHECK_REFUSED;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        /* A Redis that cannot answer now (loading, link lost, out of
         * memory) may answer later: not a reason to stop. */
        log_msg(LOG_WARN, "outbox: cannot read %s yet: %s", OUTBOX_SHARDS_KEY,
                reply ? reply->str : "connection lost");
        result = REDIS_CHECK_RETRY;
    } else if (reply->type == REDIS_REPLY_NIL) {
        log_msg(LOG_INFO, "outbox: recorded wallet-shards %d in %s", q->ob->shards, OUTBOX_SHARDS_KEY);
        result = REDIS_CHECK_PASSED;
    } else if (reply->type == REDIS_REPLY_STRING && atoi(reply->str) == q->ob->shards) {
        result = REDIS_CHECK_PASSED;
    } else {
        log_msg(LOG_ERROR,
                "wallet-shards is %d here but this Redis holds wallets placed on %.16s shards (%s): "
                "changing it would move every wallet; start with --wallet-shards=%.16s",
                q->ob->shards, reply->type == REDIS_REPLY_STRING ? reply->str : "?", OUTBOX_SHARDS_KEY,
                reply->type == REDIS_REPLY_STRING ? reply->str : "?");
    }
    q->done(q->ctx, result);
    free(q);
}

int outbox_check_shards(struct outbox *ob, void (*done)(void *ctx, enum redis_check result), void *ctx)
{
    struct shards_check *q = malloc(sizeof *q);
    if (!q)
        return -1;
    *q = (struct shards_check){ob, done, ctx};
    char n[16];
    snprintf(n, sizeof n, "%d", ob->shards);
    /* Records the number unless one is there, and answers the one that was
     * (SET ... NX GET, Redis 7.0). */
    const char *argv[] = {"SET", OUTBOX_SHARDS_KEY, n, "NX", "GET"};
    size_t len[] = {3, strlen(OUTBOX_SHARDS_KEY), strlen(n), 2, 3};
    if (redis_command(ob->rl, RLINK_CMD_LINK, 5, argv, len, on_shards, q) < 0) {
        free(q);
        return -1;
    }
    return 0;
}

static void on_trim(redisReply *reply, void *priv)
{
    uint64_t *trimmed = priv;
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        *trimmed += (uint64_t)reply->integer;
    else if (reply->type == REDIS_REPLY_ERROR)
        log_msg(LOG_WARN, "outbox: trim: %s", reply->str);
}

void outbox_trim(struct outbox *ob, int shard, uint64_t *trimmed)
{
    char key[OUTBOX_KEY_MAX];
    outbox_key(shard, key, sizeof key);
    const char *argv[] = {key, OUTBOX_GROUP_LEDGER, OUTBOX_GROUP_ROOMS};
    size_t len[] = {strlen(key), strlen(OUTBOX_GROUP_LEDGER), strlen(OUTBOX_GROUP_ROOMS)};
    redis_eval(ob->rl, &ob->trim_script, 1, 3, argv, len, on_trim, trimmed);
}
