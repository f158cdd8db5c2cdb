/* metrics.c - the metrics page, made from the modules' counters (see
 * metrics.h and docs/operations.md, "Metrics"). */
#include "metrics.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "prom.h"
#include "server.h"

/* The resident set, from /proc/self/statm (a procfs read, which never
 * waits on a device; once per scrape). 0 when it cannot be read. */
static uint64_t resident_bytes(void)
{
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    unsigned long long size, resident;
    if (sscanf(buf, "%llu %llu", &size, &resident) != 2)
        return 0;
    long page = sysconf(_SC_PAGESIZE);
    return (uint64_t)resident * (uint64_t)(page > 0 ? page : 4096);
}

static void connections(struct prom *p, const struct conns *t)
{
    prom_single(p, "tipcast_connections_open", "gauge", "WebSocket connections open on this node.",
                t->count);
    prom_single(p, "tipcast_connections_opened_total", "counter", "WebSocket connections accepted.",
                (int64_t)t->stats.opened);
    prom_single(p, "tipcast_connections_refused_total", "counter",
                "WebSocket connections refused at once (max-connections reached, or shutting down).",
                (int64_t)t->stats.refused);
    prom_family(p, "tipcast_connections_closed_total", "counter",
                "WebSocket connections closed, by close code: ours when the server closed first, the "
                "client's when it did, 1006 when the connection ended without a close handshake; codes "
                "not listed count as other.");
    char code[16];
    for (int i = 0; i < CONN_CLOSE_CODES; i++) {
        snprintf(code, sizeof code, "%d", conn_close_code_at(i));
        prom_u64(p, "tipcast_connections_closed_total", PROM_L("code", code), PROM_NONE, t->stats.closes[i]);
    }
    prom_u64(p, "tipcast_connections_closed_total", PROM_L("code", "other"), PROM_NONE,
             t->stats.closes[CONN_CLOSE_CODES]);
    prom_single(p, "tipcast_replies_queued_bytes", "gauge",
                "Bytes of replies queued for this node's connections and not yet written (history stops "
                "being served past history-queued-bytes).",
                (int64_t)t->queued_bytes);
    prom_single(p, "tipcast_slow_consumer_closes_total", "counter",
                "Connections closed as slow consumers (4009): too much unsent, or behind the room's ring.",
                (int64_t)t->stats.slow_consumer);
    prom_family(p, "tipcast_delivery_latency_seconds", "histogram",
                "Room frames written to members: from when this node got the oldest event of the frame "
                "from Redis (pub/sub, or a catch-up read of the history) to when the frame was written to "
                "the member's socket.");
    prom_histogram(p, "tipcast_delivery_latency_seconds", PROM_NONE, &t->stats.delivery);
}

static void rooms(struct prom *p, const struct rooms *rs)
{
    int64_t nrooms = 0, members = 0;
    for (uint32_t b = 0; b < rs->nbuckets; b++)
        for (const struct room *r = rs->buckets[b]; r; r = r->hnext)
            if (r->nmembers) {
                nrooms++;
                members += r->nmembers;
            }
    prom_single(p, "tipcast_rooms", "gauge", "Rooms with members on this node.",
                nrooms);
    prom_single(p, "tipcast_room_members", "gauge", "Room memberships on this node (a connection in two rooms "
                "counts twice).",
                members);
    static const char *const by[] = {"ring", "redis", "refused"};
    prom_family(p, "tipcast_history_requests_total", "counter",
                "history requests by how they were answered: from this node's own events (ring), by a read "
                "of Redis (redis), or refused by a bound with rate_limited (refused).");
    for (int i = 0; i < 3; i++)
        prom_u64(p, "tipcast_history_requests_total", PROM_L("answer", by[i]), PROM_NONE, rs->history_by[i]);
    prom_single(p, "tipcast_history_reads_waiting", "gauge", "history reads waiting for Redis now.",
                rs->history_reads);
    prom_single(p, "tipcast_room_snapshot_joins_total", "counter",
                "Joins (and joins again) that asked for their room's snapshot.", (int64_t)rs->snap_joins);
    prom_single(p, "tipcast_room_snapshot_reads_total", "counter",
                "Snapshot reads sent to Redis: the joins of a room that come while one is in flight share the next.",
                (int64_t)rs->snap_reads);
}

static void messages(struct prom *p, const struct metrics *m)
{
    prom_family(p, "tipcast_messages_received_total", "counter",
                "Messages received from clients, by request type; invalid: not a request of a known type "
                "(malformed, unknown type, wrong frame type).");
    for (int t = 0; t < REQ_COUNT; t++)
        prom_u64(p, "tipcast_messages_received_total", PROM_L("type", request_type_name((enum req_type)t)),
                 PROM_NONE, m->messages[t]);
    prom_u64(p, "tipcast_messages_received_total", PROM_L("type", "invalid"), PROM_NONE,
             m->messages[METRICS_MSG_INVALID]);
}

static void money(struct prom *p, const struct wallet *w)
{
    prom_family(p, "tipcast_money_requests_total", "counter",
                "Money requests answered, by kind (gift, tip, credit, balance) and result: ok, replayed (a "
                "retry answered with the first result) or the error code.");
    for (int k = 0; k < WALLET_KINDS; k++)
        for (int r = 0; r < WALLET_RESULTS; r++)
            prom_u64(p, "tipcast_money_requests_total", PROM_L("kind", wallet_kind_name((enum wallet_kind)k)),
                     PROM_L("result", wallet_result_name(r)), w->stats.results[k][r]);
    prom_family(p, "tipcast_ack_latency_seconds", "histogram",
                "Money requests acknowledged (ack, or the balance), by kind: from the request's arrival to "
                "its answer being written to the connection (or queued behind earlier frames).");
    for (int k = 0; k < WALLET_KINDS; k++)
        prom_histogram(p, "tipcast_ack_latency_seconds", PROM_L("kind", wallet_kind_name((enum wallet_kind)k)),
                       &w->stats.ack[k]);
}

static void outbox(struct prom *p, const struct backlog *b, const struct ledger *l, const struct roomfeed *f)
{
    if (b->have) {
        prom_family(p, "tipcast_outbox_pending_entries", "gauge",
                    "Outbox entries delivered to a consumer of the group and not yet acknowledged, over "
                    "every wallet shard (XINFO GROUPS, polled every 5 s).");
        for (int i = 0; i < BACKLOG_GROUPS; i++)
            prom_i64(p, "tipcast_outbox_pending_entries", PROM_L("group", backlog_group_name(i)), PROM_NONE,
                     b->last[i].pending);
        prom_family(p, "tipcast_outbox_lag_entries", "gauge",
                    "Outbox entries not yet delivered to the group, over every wallet shard (XINFO GROUPS "
                    "lag, polled every 5 s); NaN when Redis could not tell for some shard.");
        for (int i = 0; i < BACKLOG_GROUPS; i++)
            prom_f64(p, "tipcast_outbox_lag_entries", PROM_L("group", backlog_group_name(i)), PROM_NONE,
                     b->last[i].lag_known ? (double)b->last[i].lag : NAN);
    }
    prom_single(p, "tipcast_ledger_entries_total", "counter",
                "Outbox entries this node's ledger committed to PostgreSQL and acknowledged (replays "
                "included).",
                (int64_t)l->consumer.stats.entries);
    prom_family(p, "tipcast_ledger_rows_written_total", "counter",
                "New rows written by this node's ledger, by kind: order (orders row of a gift or tip), "
                "credit (credit movement), reject (malformed entry set aside in outbox_rejects).");
    prom_u64(p, "tipcast_ledger_rows_written_total", PROM_L("kind", "order"), PROM_NONE, l->stats.orders);
    prom_u64(p, "tipcast_ledger_rows_written_total", PROM_L("kind", "credit"), PROM_NONE, l->stats.credits);
    prom_u64(p, "tipcast_ledger_rows_written_total", PROM_L("kind", "reject"), PROM_NONE, l->stats.rejects);
    prom_family(p, "tipcast_ledger_flush_seconds", "histogram",
                "Ledger transactions committed: from sending the batch to PostgreSQL to its commit.");
    prom_histogram(p, "tipcast_ledger_flush_seconds", PROM_NONE, &l->stats.flush);
    prom_single(p, "tipcast_rooms_entries_total", "counter",
                "Outbox entries this node's rooms consumer applied and acknowledged (replays included).",
                (int64_t)f->consumer.stats.entries);
    prom_single(p, "tipcast_rooms_apply_calls_total", "counter",
                "room_apply script calls this node's rooms consumer sent (one per room and day of a read, "
                "up to 36 entries each).",
                (int64_t)f->calls);
    prom_single(p, "tipcast_rooms_gathering", "gauge",
                "1 while this node's rooms consumer gathers room events (rooms-gather-ms, rooms-gather-from).",
                f->gathering);
}

static void backends(struct prom *p, const struct server *s)
{
    prom_single(p, "tipcast_redis_command_up", "gauge", "1 when the Redis command connection is up.",
                redis_cmd_ready(&s->redis));
    prom_single(p, "tipcast_redis_subscriber_up", "gauge", "1 when the Redis subscriber connection is up.",
                redis_sub_ready(&s->redis));
    prom_single(p, "tipcast_redis_reads_up", "gauge",
                "1 when the Redis reads connection (history, snapshots, leaderboards) is up.",
                redis_up(&s->redis, RLINK_READ_LINK));
    prom_single(p, "tipcast_redis_checked", "gauge",
                "1 when the Redis behind the command connection passed the persistence and wallet-shards "
                "checks (money can move).",
                redis_cmd_ready(&s->redis) && s->wallet.checked);
    prom_single(p, "tipcast_redis_waits_total", "counter",
                "WAITs sent after a loop turn's scripts (redis-wait-replicas).", redis_waits(&s->redis, 0));
    prom_single(p, "tipcast_redis_waits_short_total", "counter",
                "WAITs answered with fewer replicas than redis-wait-replicas: their requests were answered "
                "unavailable.",
                redis_waits(&s->redis, 1));
    prom_single(p, "tipcast_postgres_up", "gauge", "1 when PostgreSQL answered the latest health check.",
                pgcheck_ok(&s->pgcheck));
}

static void webhooks(struct prom *p, const struct webhook_stats *w)
{
    prom_family(p, "tipcast_webhook_deliveries_total", "counter",
                "Webhook attempts of this node by result: delivered (answered 2xx), failed (any other answer, "
                "refused, timed out), dead (rows given up after webhook-give-up-s; their last attempt is also "
                "counted failed).");
    prom_u64(p, "tipcast_webhook_deliveries_total", PROM_L("result", "delivered"), PROM_NONE, w->delivered);
    prom_u64(p, "tipcast_webhook_deliveries_total", PROM_L("result", "failed"), PROM_NONE, w->failed);
    prom_u64(p, "tipcast_webhook_deliveries_total", PROM_L("result", "dead"), PROM_NONE, w->dead);
    if (w->pending >= 0)
        prom_single(p, "tipcast_webhook_pending", "gauge",
                    "Webhooks waiting to be delivered, of every node (counted every 5 s by nodes with webhook-url).",
                    w->pending);
}

static void process(struct prom *p, const struct metrics *m)
{
    prom_single(p, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
                (int64_t)resident_bytes());
    prom_family(p, "process_start_time_seconds", "gauge", "Start time of the process since the epoch in seconds.");
    prom_f64(p, "process_start_time_seconds", PROM_NONE, PROM_NONE, (double)m->started_wall_ms / 1000.0);
}

/* The admin API (admin.c) and the settlement jobs. */
static void admin(struct prom *p, const struct server *s)
{
    static const unsigned admin_statuses[ADMIN_STATUSES] = ADMIN_STATUS_LIST;
    prom_family(p, "tipcast_admin_answers_total", "counter",
                "Admin API answers (and /healthz, /readyz, /metrics on the admin listener), by HTTP status.");
    for (int i = 0; i < ADMIN_STATUSES; i++) {
        char status[12];
        snprintf(status, sizeof status, "%u", admin_statuses[i]);
        prom_u64(p, "tipcast_admin_answers_total", PROM_L("status", admin_statuses[i] ? status : "other"), PROM_NONE,
                 s->admin_answered[i]);
    }
    prom_single(p, "tipcast_admin_calls_waiting", "gauge",
                "Admin API calls (and settlement jobs) queued for or running on the admin PostgreSQL connections.",
                s->admin_pool ? pgpool_waiting(s->admin_pool) : 0);
    prom_family(p, "tipcast_settlement_runs_total", "counter",
                "Settlement runs of this node (pending earnings older than settlement-delay-days made available), "
                "by result.");
    prom_u64(p, "tipcast_settlement_runs_total", PROM_L("result", "ok"), PROM_NONE, s->jobs.stats.settle_runs);
    prom_u64(p, "tipcast_settlement_runs_total", PROM_L("result", "failed"), PROM_NONE, s->jobs.stats.settle_failures);
    prom_family(p, "tipcast_wallet_credits_redriven_total", "counter",
                "Wallet credits of paid recharges and accepted refunds made again by this node because their own "
                "request did not finish them, by result.");
    prom_u64(p, "tipcast_wallet_credits_redriven_total", PROM_L("result", "ok"), PROM_NONE, s->jobs.stats.redriven);
    prom_u64(p, "tipcast_wallet_credits_redriven_total", PROM_L("result", "failed"), PROM_NONE,
             s->jobs.stats.redrive_failures);
    prom_family(p, "tipcast_reconcile_runs_total", "counter",
                "Scheduled reconciliation runs of this node (docs/settlement.md, \"Reconciliation\"), by result.");
    prom_u64(p, "tipcast_reconcile_runs_total", PROM_L("result", "clean"), PROM_NONE, s->recon.stats.clean);
    prom_u64(p, "tipcast_reconcile_runs_total", PROM_L("result", "mismatch"), PROM_NONE, s->recon.stats.mismatch);
    prom_u64(p, "tipcast_reconcile_runs_total", PROM_L("result", "error"), PROM_NONE, s->recon.stats.error);
    prom_single(p, "tipcast_reconcile_findings", "gauge",
                "Findings of this node's last scheduled reconciliation run (-1 before its first).",
                s->recon.stats.findings);
}

/* Risk control (risk/): refusals by code and check, alerts raised by kind. */
/* PK battles and campaigns (issue 14). */
static void features(struct prom *p, const struct server *s)
{
    const struct pk_stats *k = &s->pk.stats;
    prom_single(p, "tipcast_pk_battles_running", "gauge",
                "PK battles running now, as this node's last PK tick read them.", pk_running(&s->pk));
    prom_family(p, "tipcast_pk_decisions_total", "counter",
                "PK results this node computed: stored (it decided the battle), verified (computed again, the "
                "same as stored) or differs (computed again, NOT the same: an error, alert on it).");
    prom_u64(p, "tipcast_pk_decisions_total", PROM_L("result", "stored"), PROM_NONE, k->stored);
    prom_u64(p, "tipcast_pk_decisions_total", PROM_L("result", "verified"), PROM_NONE, k->verified);
    prom_u64(p, "tipcast_pk_decisions_total", PROM_L("result", "differs"), PROM_NONE, k->differs);
    prom_single(p, "tipcast_pk_announced_total", "counter",
                "Decided PK battles this node announced (the pk_end event in both rooms).", (int64_t)k->announced);
    const struct campaign_stats *c = &s->campaigns.stats;
    prom_family(p, "tipcast_campaign_job_runs_total", "counter",
                "Runs of the campaign job on this node (one node at a time runs it), by result.");
    prom_u64(p, "tipcast_campaign_job_runs_total", PROM_L("result", "ok"), PROM_NONE, c->ticks);
    prom_u64(p, "tipcast_campaign_job_runs_total", PROM_L("result", "failed"), PROM_NONE, c->tick_failures);
    prom_family(p, "tipcast_campaign_steps_total", "counter",
                "Campaigns this node opened to pledges or sealed at their deadline.");
    prom_u64(p, "tipcast_campaign_steps_total", PROM_L("step", "opened"), PROM_NONE, c->opened);
    prom_u64(p, "tipcast_campaign_steps_total", PROM_L("step", "sealed"), PROM_NONE, c->sealed);
    prom_family(p, "tipcast_campaign_refund_credits_total", "counter",
                "Refund credits of missed all-or-nothing campaigns this node sent to the wallets, by result "
                "(failed ones are sent again by a later run).");
    prom_u64(p, "tipcast_campaign_refund_credits_total", PROM_L("result", "sent"), PROM_NONE, c->refunds_sent);
    prom_u64(p, "tipcast_campaign_refund_credits_total", PROM_L("result", "failed"), PROM_NONE,
             c->refund_failures);
    prom_single(p, "tipcast_campaign_events_total", "counter",
                "Campaign events (progress, updates, results) this node published into rooms.",
                (int64_t)c->events);
}

static void risk(struct prom *p, const struct server *s)
{
    prom_family(p, "tipcast_risk_refusals_total", "counter",
                "Requests refused by risk control on this node, by error code and check: frozen, user_rate, "
                "ip_rate (gifts and tips), daily_cap (the wallet script's spend caps), api (recharges and "
                "withdrawals refused by the admin API).");
    for (int k = 0; k < RISK_REFUSALS; k++)
        prom_u64(p, "tipcast_risk_refusals_total", PROM_L("code", risk_refusal_code((enum risk_refusal)k)),
                 PROM_L("check", risk_refusal_check((enum risk_refusal)k)), s->risk.refusals[k]);
    uint64_t capped = s->wallet.stats.results[WALLET_GIFT][WALLET_RESULT_ERR(ERR_SPEND_CAP_EXCEEDED)] +
                      s->wallet.stats.results[WALLET_TIP][WALLET_RESULT_ERR(ERR_SPEND_CAP_EXCEEDED)];
    prom_u64(p, "tipcast_risk_refusals_total", PROM_L("code", "spend_cap_exceeded"), PROM_L("check", "daily_cap"),
             capped);
    prom_family(p, "tipcast_risk_alerts_total", "counter",
                "Risk alerts raised by this node's scans (risk-scan-interval-s), by kind.");
    for (int k = 0; k < RISK_ALERTS; k++)
        prom_u64(p, "tipcast_risk_alerts_total", PROM_L("kind", risk_alert_name((enum risk_alert)k)), PROM_NONE,
                 s->risk_scan.alerts[k]);
    prom_family(p, "tipcast_risk_scans_total", "counter", "Risk scans called by this node, by result (a scan "
                "another node ran in the same interval counts as ok and raises nothing here).");
    prom_u64(p, "tipcast_risk_scans_total", PROM_L("result", "ok"), PROM_NONE, s->risk_scan.runs);
    prom_u64(p, "tipcast_risk_scans_total", PROM_L("result", "failed"), PROM_NONE, s->risk_scan.failures);
}

long metrics_write(const struct server *s, char *buf, size_t cap)
{
    struct prom p;
    prom_init(&p, buf, cap);
    connections(&p, &s->conns);
    prom_single(&p, "tipcast_http_connections_open", "gauge",
                "Client sockets open that are not WebSocket connections: HTTP requests and keep-alives, "
                "upgrades under way.",
                s->sockets - s->conns.count);
    prom_single(&p, "tipcast_http_connections_refused_total", "counter",
                "Client sockets closed as they were accepted, max-connections + max-http-connections being "
                "reached.",
                (int64_t)s->http_refused);
    rooms(&p, &s->rooms);
    messages(&p, &s->metrics);
    money(&p, &s->wallet);
    outbox(&p, &s->backlog, &s->ledger, &s->feed);
    backends(&p, s);
    admin(&p, s);
    webhooks(&p, &s->webhook.stats);
    risk(&p, s);
    features(&p, s);
    process(&p, &s->metrics);
    return prom_finish(&p);
}
