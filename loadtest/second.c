/* second.c - the bench's one-second timer: a progress line while the
 * connections open and the senders are funded, then a row of results (the
 * second's sends, answers, latencies and the server's samples). */
#include <stdio.h>

#include "run.h"
#include "report.h"

static double cpu_pct(const struct sample *now, const struct sample *prev)
{
    if (now->cpu_s < 0 || prev->cpu_s < 0 || now->at_s <= prev->at_s)
        return -1;
    return (now->cpu_s - prev->cpu_s) * 100.0 / (now->at_s - prev->at_s);
}

void second_tick(uv_timer_t *t)
{
    struct bench *b = t->data;
    struct sample s;
    sample_latest(&s);
    if (b->phase == PH_OPEN || b->phase == PH_FUND) {
        if (!b->o.quiet) {
            printf("%s: %llu connected, %llu joined, %llu failed of %d\n", b->phase == PH_OPEN ? "opening" : "funding",
                   (unsigned long long)b->r.conn_opened, (unsigned long long)b->r.conn_joined,
                   (unsigned long long)b->r.conn_failed, b->nconns);
            fflush(stdout);
        }
        b->prev = s;
        return;
    }
    struct results_second row = {0};
    row.t = ++b->sec_t;
    row.rate = b->sending ? b->rate : 0;
    row.sent = b->sec_sent;
    row.acks = b->sec_acks;
    row.deliveries = b->sec_deliveries;
    row.errors = b->sec_errors;
    row.ack_p50_ms = (double)hist_percentile(&b->sec_ack, 50) / 1000.0;
    row.ack_p99_ms = (double)hist_percentile(&b->sec_ack, 99) / 1000.0;
    row.deliv_p50_ms = (double)hist_percentile(&b->sec_deliv, 50) / 1000.0;
    row.deliv_p99_ms = (double)hist_percentile(&b->sec_deliv, 99) / 1000.0;
    row.cpu_pct = cpu_pct(&s, &b->prev);
    row.rss_kb = s.rss_kb;
    row.backlog = s.backlog;
    row.pg_per_s = s.orders >= 0 && b->prev.orders >= 0 && s.at_s > b->prev.at_s
                       ? (double)(s.orders - b->prev.orders) / (s.at_s - b->prev.at_s)
                       : -1;
    if (s.at_s > b->prev.at_s)
        b->prev = s;
    if (s.rss_kb > b->r.rss_kb_max)
        b->r.rss_kb_max = s.rss_kb;
    if (s.backlog > b->r.backlog_max)
        b->r.backlog_max = s.backlog;
    if (b->r.nsecs < RESULTS_SECONDS_MAX)
        b->r.secs[b->r.nsecs++] = row;
    if (!b->o.quiet)
        report_progress(&b->o, &row);
    b->sec_sent = b->sec_acks = b->sec_deliveries = b->sec_errors = 0;
    hist_reset(&b->sec_ack);
    hist_reset(&b->sec_deliv);
}
