/* campaign.c - the campaign job (see campaign.h). */
#include "campaign.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>

#include "log.h"

/* One open or seal of a campaign across every shard. */
struct shard_op {
    struct campaign_job *j;
    int64_t campaign;
    int seal;
    int left, failed;
    int64_t total, pledges;
};

static void work_done(struct campaign_job *j)
{
    tc_assert(j->work_out > 0);
    j->work_out--;
}

static void on_followup(void *priv, const struct pgpool_result *r)
{
    struct campaign_job *j = priv;
    if (r->outcome != PGPOOL_OK)
        log_msg(LOG_WARN, "campaigns: recording a step failed (%s); the next tick does it again",
                r->outcome == PGPOOL_REFUSED ? r->code : "PostgreSQL unavailable");
    work_done(j);
}

static void shard_op_finish(struct shard_op *op)
{
    struct campaign_job *j = op->j;
    if (!op->failed) {
        char id[24], total[24], n[24];
        snprintf(id, sizeof id, "%" PRId64, op->campaign);
        snprintf(total, sizeof total, "%" PRId64, op->total);
        snprintf(n, sizeof n, "%" PRId64, op->pledges);
        const char *params[3] = {id, total, n};
        int sent = op->seal ? pgpool_call(j->pool, "SELECT tipcast_campaign_sealed($1::bigint, $2::bigint, $3::bigint)",
                                          3, params, on_followup, j) != NULL
                            : pgpool_call(j->pool, "SELECT tipcast_campaign_opened($1::bigint)", 1, params,
                                          on_followup, j) != NULL;
        if (sent) {
            j->work_out++;
            if (op->seal)
                j->stats.sealed++;
            else
                j->stats.opened++;
        }
    } else {
        log_msg(LOG_WARN, "campaigns: %s campaign %" PRId64 " failed on a shard; the next tick does it again",
                op->seal ? "sealing" : "opening", op->campaign);
    }
    free(op);
    work_done(j);
}

static void on_shard(redisReply *reply, void *priv)
{
    struct shard_op *op = priv;
    if (op->seal) {
        if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
            reply->element[0]->type == REDIS_REPLY_INTEGER && reply->element[1]->type == REDIS_REPLY_INTEGER) {
            op->total += reply->element[0]->integer;
            op->pledges += reply->element[1]->integer;
        } else {
            op->failed = 1;
        }
    } else if (!reply || reply->type != REDIS_REPLY_INTEGER) {
        op->failed = 1;
    }
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_msg(LOG_ERROR, "campaigns: campaign_shard: %s", reply->str);
    if (--op->left == 0)
        shard_op_finish(op);
}

/* Opens (tiers non-NULL) or seals campaign `id` on every shard. */
static void shard_op_start(struct campaign_job *j, int64_t id, int seal, int64_t deadline_ms, const char *creator,
                           json_t *tiers)
{
    int shards = j->wallet->ob->shards;
    struct shard_op *op = calloc(1, sizeof *op);
    if (!op)
        return;
    *op = (struct shard_op){.j = j, .campaign = id, .seal = seal, .left = shards};
    j->work_out++;
    size_t nt = seal ? 0 : json_array_size(tiers);
    if (nt > CAMPAIGN_TIERS_MAX)
        nt = CAMPAIGN_TIERS_MAX;
    for (int s = 0; s < shards; s++) {
        char text[2 + 3 * CAMPAIGN_TIERS_MAX][24];
        const char *argv[2 + 3 * CAMPAIGN_TIERS_MAX];
        int argc = 0;
        if (!seal) {
            snprintf(text[0], sizeof text[0], "%" PRId64, deadline_ms);
            argv[argc++] = text[0];
            argv[argc++] = creator;
            for (size_t i = 0; i < nt; i++) {
                json_t *t = json_array_get(tiers, i);
                json_t *stock = json_object_get(t, "stock");
                snprintf(text[argc], sizeof text[0], "%" JSON_INTEGER_FORMAT,
                         json_integer_value(json_object_get(t, "tier")));
                argv[argc] = text[argc];
                argc++;
                snprintf(text[argc], sizeof text[0], "%" JSON_INTEGER_FORMAT,
                         json_integer_value(json_object_get(t, "min")));
                argv[argc] = text[argc];
                argc++;
                if (json_is_integer(stock)) {
                    /* This shard's share of the stock (wallet_pledge.lua). */
                    int64_t st = json_integer_value(stock);
                    int64_t share = st / shards + (s < st % shards ? 1 : 0);
                    snprintf(text[argc], sizeof text[0], "%" PRId64, share);
                } else {
                    text[argc][0] = '\0';
                }
                argv[argc] = text[argc];
                argc++;
            }
        }
        if (wallet_campaign_shard(j->wallet, s, id, seal ? "seal" : "open", argc, argv, on_shard, op) < 0) {
            op->failed = 1;
            if (--op->left == 0) {
                shard_op_finish(op);
                return;
            }
        }
    }
}

static void on_refund(void *ctx, int ok, enum err code, int64_t balance)
{
    struct campaign_job *j = ctx;
    (void)balance;
    if (ok) {
        j->stats.refunds_sent++;
    } else {
        j->stats.refund_failures++;
        log_msg(LOG_DEBUG, "campaigns: a refund credit failed (%s); the next tick sends it again", err_code(code));
    }
    work_done(j);
}

int campaign_event_body(const char *json, uint8_t *out, size_t cap)
{
    json_t *o = json_loads(json, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return -1;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, json_object_size(o));
    const char *k;
    json_t *v;
    int bad = 0;
    json_object_foreach(o, k, v) {
        msgpack_pack_str(&pk, strlen(k));
        msgpack_pack_str_body(&pk, k, strlen(k));
        if (json_is_string(v)) {
            msgpack_pack_str(&pk, json_string_length(v));
            msgpack_pack_str_body(&pk, json_string_value(v), json_string_length(v));
        } else if (json_is_integer(v)) {
            msgpack_pack_int64(&pk, json_integer_value(v));
        } else if (json_is_boolean(v)) {
            if (json_is_true(v))
                msgpack_pack_true(&pk);
            else
                msgpack_pack_false(&pk);
        } else if (json_is_null(v)) {
            msgpack_pack_nil(&pk);
        } else {
            bad = 1;
        }
    }
    int n = -1;
    if (!bad && sb.size <= cap) {
        memcpy(out, sb.data, sb.size);
        n = (int)sb.size;
    }
    msgpack_sbuffer_destroy(&sb);
    json_decref(o);
    return n;
}

static void event(struct campaign_job *j, json_t *a)
{
    const char *room = json_string_value(json_object_get(a, "room"));
    char *body = json_dumps(json_object_get(a, "body"), JSON_COMPACT);
    uint8_t out[4096];
    int n = body && room ? campaign_event_body(body, out, sizeof out) : -1;
    free(body);
    if (n < 0) {
        log_msg(LOG_ERROR, "campaigns: an event that cannot be written was skipped");
        return;
    }
    j->publish(j->publish_ctx, room, out, (size_t)n);
    j->stats.events++;
}

static void on_tick(void *priv, const struct pgpool_result *r)
{
    struct campaign_job *j = priv;
    j->tick_out = 0;
    if (r->outcome != PGPOOL_OK) {
        j->stats.tick_failures++;
        log_msg(LOG_WARN, "campaigns: the tick failed (%s)",
                r->outcome == PGPOOL_REFUSED ? r->code : "PostgreSQL unavailable");
        return;
    }
    j->stats.ticks++;
    int rows = PQntuples(r->res);
    j->work_out++; /* held while the actions are handed out: no tick in between */
    for (int i = 0; i < rows; i++) {
        json_t *a = json_loads(PQgetvalue(r->res, i, 0), 0, NULL);
        const char *what = json_string_value(json_object_get(a, "do"));
        json_int_t id = json_integer_value(json_object_get(a, "campaign"));
        if (!what) {
            log_msg(LOG_ERROR, "campaigns: tipcast_campaign_tick returned an action that cannot be read");
        } else if (strcmp(what, "open") == 0) {
            const char *creator = json_string_value(json_object_get(a, "creator"));
            if (creator)
                shard_op_start(j, id, 0, json_integer_value(json_object_get(a, "deadline_ms")), creator,
                               json_object_get(a, "tiers"));
        } else if (strcmp(what, "seal") == 0) {
            shard_op_start(j, id, 1, 0, NULL, NULL);
        } else if (strcmp(what, "refund") == 0) {
            char cid[24];
            snprintf(cid, sizeof cid, "%" JSON_INTEGER_FORMAT, id);
            j->work_out++; /* on_refund may run from within wallet_external */
            wallet_external(j->wallet, WALLET_EXT_CREFUND, json_string_value(json_object_get(a, "user")),
                            json_integer_value(json_object_get(a, "amount")),
                            json_string_value(json_object_get(a, "ref")), cid, 0, on_refund, j);
        } else if (strcmp(what, "event") == 0) {
            event(j, a);
        }
        json_decref(a);
    }
    work_done(j);
}

static void on_timer(uv_timer_t *t)
{
    struct campaign_job *j = t->data;
    if (j->tick_out || j->work_out || !pgpool_up(j->pool))
        return;
    char fee[16], surge[16], window[16];
    snprintf(fee, sizeof fee, "%d", j->cfg->campaign_fee_bp);
    snprintf(surge, sizeof surge, "%d", j->cfg->campaign_surge_pledges);
    snprintf(window, sizeof window, "%d", CAMPAIGN_SURGE_WINDOW_S);
    const char *params[4] = {fee, surge, window, config_webhooks_on(j->cfg) ? "true" : "false"};
    /* pgpool binds 4 parameters at most: the fifth, an integer setting,
     * is written into the statement. */
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT a::text FROM tipcast_campaign_tick($1::int, $2::int, $3::int, $4::boolean, %d) a",
             j->cfg->campaign_refunds_per_tick);
    if (pgpool_call(j->pool, sql, 4, params, on_tick, j))
        j->tick_out = 1;
}

void campaign_start(struct campaign_job *j, uv_loop_t *loop, struct pgpool *pool, struct wallet *w,
                    const struct config *cfg, campaign_publish_fn *publish, void *publish_ctx)
{
    j->pool = pool;
    j->wallet = w;
    j->cfg = cfg;
    j->publish = publish;
    j->publish_ctx = publish_ctx;
    uv_timer_init(loop, &j->timer);
    j->timer.data = j;
    uv_timer_start(&j->timer, on_timer, (uint64_t)cfg->campaign_interval_ms, (uint64_t)cfg->campaign_interval_ms);
    j->started = 1;
}

void campaign_stop(struct campaign_job *j)
{
    if (!j->started)
        return;
    j->started = 0;
    uv_close((uv_handle_t *)&j->timer, NULL);
}
