/* backlog.c - the consumer groups' pending entries and lag, polled with
 * XINFO GROUPS (see backlog.h). */
#include "backlog.h"

#include <string.h>

#include <hiredis/hiredis.h>

#include "clock.h"
#include "log.h"

static const char *const group_names[BACKLOG_GROUPS] = {OUTBOX_GROUP_LEDGER, OUTBOX_GROUP_ROOMS};

const char *backlog_group_name(int i)
{
    tc_assert(i >= 0 && i < BACKLOG_GROUPS);
    return group_names[i];
}

void backlog_init(struct backlog *b, struct outbox *ob)
{
    memset(b, 0, sizeof *b);
    b->ob = ob;
}

static int group_index(const char *name)
{
    for (int i = 0; i < BACKLOG_GROUPS; i++)
        if (strcmp(name, group_names[i]) == 0)
            return i;
    return -1;
}

/* Adds one shard's XINFO GROUPS reply (an array of groups, each a flat
 * list of field, value) to the round. Returns -1 when it is not one. */
static int add_shard(struct backlog *b, const redisReply *reply)
{
    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        return -1;
    for (size_t g = 0; g < reply->elements; g++) {
        const redisReply *r = reply->element[g];
        if (r->type != REDIS_REPLY_ARRAY)
            return -1;
        int idx = -1;
        long long pending = 0, lag = -1;
        for (size_t k = 0; k + 1 < r->elements; k += 2) {
            const redisReply *f = r->element[k], *v = r->element[k + 1];
            if (f->type != REDIS_REPLY_STRING)
                continue;
            if (strcmp(f->str, "name") == 0 && v->type == REDIS_REPLY_STRING)
                idx = group_index(v->str);
            else if (strcmp(f->str, "pending") == 0 && v->type == REDIS_REPLY_INTEGER)
                pending = v->integer;
            else if (strcmp(f->str, "lag") == 0 && v->type == REDIS_REPLY_INTEGER)
                lag = v->integer; /* nil when Redis cannot tell */
        }
        if (idx < 0)
            continue; /* a group of someone else */
        b->round[idx].pending += pending;
        if (lag >= 0)
            b->round[idx].lag += lag;
        else
            b->round[idx].lag_known = 0;
    }
    return 0;
}

static void on_groups(redisReply *reply, void *priv)
{
    struct backlog *b = priv;
    tc_assert(b->inflight > 0);
    /* A stream not made yet (no shard has had an order, and the groups
     * are made with it) is an error reply: nothing pending there. */
    int missing = reply && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "ERR no such key", 15) == 0;
    if (!missing && add_shard(b, reply) < 0)
        b->failed = 1;
    if (--b->inflight > 0)
        return;
    if (!b->failed) {
        memcpy(b->last, b->round, sizeof b->last);
        b->have = 1;
        b->updated_ms = clock_mono_ms();
    }
}

void backlog_tick(struct backlog *b, int64_t now_ms)
{
    if (b->inflight || now_ms < b->next_ms || !redis_cmd_ready(b->ob->rl))
        return;
    b->next_ms = now_ms + BACKLOG_POLL_MS;
    b->failed = 0;
    for (int i = 0; i < BACKLOG_GROUPS; i++)
        b->round[i] = (struct backlog_group){0, 0, 1};
    for (int s = 0; s < b->ob->shards; s++) {
        char key[OUTBOX_KEY_MAX];
        outbox_key(s, key, sizeof key);
        const char *argv[] = {"XINFO", "GROUPS", key};
        size_t len[] = {5, 6, strlen(key)};
        if (redis_command(b->ob->rl, RLINK_CMD_LINK, 3, argv, len, on_groups, b) == 0) {
            b->inflight++;
        } else {
            b->failed = 1;
            break;
        }
    }
}
