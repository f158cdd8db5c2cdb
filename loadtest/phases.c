/* phases.c - the phases of a run (open the connections, fund the senders,
 * run, drain) stepped through by the loop's tick, and the open-loop send
 * timetable they drive, with its --find-max steps. */
#include <math.h>
#include <stdio.h>
#include <time.h>

#include "run.h"

/* Sends scheduled by one tick at most: a stalled loop catches up in steps. */
#define BENCH_SCHED_PER_TICK_MAX 20000
#define BENCH_DRAIN_S 5.0
/* A run may not open more than this share of failed connections, nor a
 * --find-max step see more errors or unanswered sends. */
#define BENCH_FAIL_RATIO 0.01

/* ---- The timetable ----------------------------------------------------------- */

static void set_rate(struct bench *b, double rate, uint64_t now_us)
{
    b->rate = rate;
    b->sched_base_us = now_us;
    b->sched_base_n = b->sched_n;
}

static void schedule(struct bench *b, uint64_t now_us)
{
    if (!b->sending || !b->nready)
        return;
    for (int k = 0; k < BENCH_SCHED_PER_TICK_MAX; k++) {
        uint64_t t = b->sched_base_us + (uint64_t)((double)(b->sched_n - b->sched_base_n) * 1e6 / b->rate);
        if (t > now_us)
            return;
        struct bconn *c = &b->c[b->ready[b->sched_n % (uint64_t)b->nready]];
        b->sched_n++;
        int in_step = b->step_on && t >= b->step_start_us;
        if ((!c->wsi && !c->raw) || c->state != CS_READY) {
            bench_error(b, "bench_sender_down");
            b->step_sent += in_step;
            b->step_errors += in_step;
            continue;
        }
        if (c->qcount == BENCH_SENDQ) {
            bench_error(b, "bench_backlog");
            b->step_sent += in_step;
            b->step_errors += in_step;
            continue;
        }
        c->q[(c->qhead + c->qcount) % BENCH_SENDQ] = t;
        c->qcount++;
        conn_want_write(c);
    }
}

/* ---- Phases -------------------------------------------------------------------- */

static void start_step(struct bench *b, double rate, double now_s, uint64_t now_us)
{
    set_rate(b, rate, now_us);
    b->step_on = 1;
    b->step_start_us = now_us;
    b->step_end_s = now_s + b->o.step_s;
    b->step_sent = b->step_answered = b->step_errors = 0;
    hist_reset(&b->step_ack);
    hist_reset(&b->step_deliv);
}

static void start_measuring(struct bench *b, double now_s, uint64_t now_us)
{
    b->measuring = 1;
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    b->r.measure_start_ms = (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;
    b->measure_start_us = now_us;
    b->measure_start_s = now_s;
    hist_reset(&b->r.ack);
    hist_reset(&b->r.deliv);
    b->r.acks_measured = b->r.deliveries_measured = 0;
    sample_proc(&b->o, &b->measure_proc);
    sample_latest(&b->measure_sample);
    if (b->o.find_max)
        start_step(b, b->o.rate, now_s, now_us);
}

void phases_stop_sending(struct bench *b, double now_s)
{
    b->sending = 0;
    b->step_on = 0;
    b->r.measured_s = b->measuring ? now_s - b->measure_start_s : 0;
    struct sample p, s;
    sample_proc(&b->o, &p);
    sample_latest(&s);
    b->r.cpu_s = p.cpu_s >= 0 && b->measuring && b->measure_proc.cpu_s >= 0 ? p.cpu_s - b->measure_proc.cpu_s : -1;
    if (s.orders >= 0 && b->measure_sample.orders >= 0 && s.at_s > b->measure_sample.at_s)
        b->r.pg_orders_per_s = (double)(s.orders - b->measure_sample.orders) / (s.at_s - b->measure_sample.at_s);
    if (b->o.idle && p.rss_kb >= 0 && b->r.rss_kb_before >= 0) {
        uint64_t n = bench_tipcast(b) ? b->r.conn_joined : b->r.conn_opened;
        if (n)
            b->r.rss_kb_per_conn = (double)(p.rss_kb - b->r.rss_kb_before) / (double)n;
        if (p.rss_kb > b->r.rss_kb_max)
            b->r.rss_kb_max = p.rss_kb;
    }
    b->phase = PH_DRAIN;
    b->phase_deadline_s = now_s + BENCH_DRAIN_S;
    if (b->phase_deadline_s > b->hard_deadline_s)
        b->phase_deadline_s = b->hard_deadline_s;
}

/* After the climb's first failed step (--refine): narrows the bracket
 * between the highest held rate and the lowest failed one, and pauses the
 * sends until the server has answered them; the tick then starts the step
 * at the bracket's geometric mean. 0 when there is nothing to refine or no
 * time left for it. */
static int refine_next(struct bench *b, const struct results_step *st, double now_s)
{
    if (!b->refining) {
        if (st->held || b->r.max_rate <= 0)
            return 0;
        b->refining = 1;
        b->refine_left = b->o.refine;
        b->refine_lo = b->r.max_rate;
        b->refine_hi = st->rate;
    } else if (st->held) {
        b->refine_lo = st->rate;
    } else {
        b->refine_hi = st->rate;
    }
    double last_start_s = b->measure_start_s + b->o.duration_s - b->o.step_s + 1e-6; /* a step's latest start */
    if (b->refine_left <= 0 || now_s + BENCH_SETTLE_MIN_S > last_start_s || b->r.nsteps >= RESULTS_STEPS_MAX)
        return 0;
    b->refine_left--;
    b->sending = 0;
    b->step_on = 0;
    b->settling = 1;
    b->settle_min_s = now_s + BENCH_SETTLE_MIN_S;
    b->settle_end_s = now_s + BENCH_SETTLE_MAX_S < last_start_s ? now_s + BENCH_SETTLE_MAX_S : last_start_s;
    return 1;
}

/* The pause before a --refine step: over once every send is answered and
 * its room event delivered to this process's members (the server has
 * caught up with the failed step's backlog), or at its bound; then the
 * step, at the bracket's geometric mean. */
static void settle(struct bench *b, double now_s, uint64_t now_us)
{
    int queued = 0;
    for (int i = 0; i < b->nready && !queued; i++)
        queued = b->c[b->ready[i]].qcount > 0;
    int behind = queued || b->answered < b->r.sent || b->r.delivered < b->r.expected_deliveries;
    if (now_s < b->settle_min_s || (behind && now_s < b->settle_end_s))
        return;
    b->settling = 0;
    b->sending = 1;
    start_step(b, sqrt(b->refine_lo * b->refine_hi), now_s, now_us);
}

/* Ends a --find-max step: records it; the next step at 1.5x when it held,
 * else the --refine steps. */
static void end_step(struct bench *b, double now_s, uint64_t now_us)
{
    struct results_step *st = &b->r.steps[b->r.nsteps++];
    st->rate = b->rate;
    st->refine = b->refining;
    st->ack_p99_ms = (double)hist_percentile(&b->step_ack, 99) / 1000.0;
    st->deliv_p99_ms = (double)hist_percentile(&b->step_deliv, 99) / 1000.0;
    st->sent = b->step_sent;
    st->answered = bench_tipcast(b) ? b->step_answered : b->step_sent;
    st->errors = b->step_errors;
    double p99 = bench_tipcast(b) ? st->ack_p99_ms : st->deliv_p99_ms;
    double bound = (double)st->sent * BENCH_FAIL_RATIO;
    st->held = st->sent > 0 && p99 <= b->o.p99_bound_ms && (double)st->errors <= bound &&
               (double)(st->sent - st->answered) <= bound + 1;
    if (st->held)
        b->r.max_rate = st->rate;
    int time_left = now_s + b->o.step_s <= b->measure_start_s + b->o.duration_s + 1e-6;
    if (st->held && !b->refining && time_left && b->r.nsteps < RESULTS_STEPS_MAX && b->rate * 1.5 <= OPTS_RATE_MAX)
        start_step(b, b->rate * 1.5, now_s, now_us);
    else if (!refine_next(b, st, now_s))
        phases_stop_sending(b, now_s);
}

static int open_done(const struct bench *b) { return b->open_next >= b->o.connections && b->resolved >= b->nconns; }

static void start_run(struct bench *b, double now_s)
{
    uint64_t now_us = wall_us();
    b->phase = PH_RUN;
    b->run_start_us = now_us;
    b->run_start_s = now_s;
    b->hard_deadline_s = now_s + b->o.warmup_s + b->o.duration_s + BENCH_HARD_EXTRA_S;
    if (b->o.idle) {
        start_measuring(b, now_s, now_us);
        return;
    }
    b->sending = 1;
    set_rate(b, b->o.rate, now_us);
    if (b->o.warmup_s <= 0)
        start_measuring(b, now_s, now_us);
}

void phases_tick(uv_timer_t *t)
{
    struct bench *b = t->data;
    double now_s = mono_s();
    uint64_t now_us;
    switch (b->phase) {
    case PH_OPEN: {
        int due = (int)((now_s - b->open_start_s) * b->o.open_rate) + 1;
        while (b->open_next < b->o.connections && b->open_next < due)
            conn_open(&b->c[b->open_next++]);
        if (!open_done(b) && now_s < b->phase_deadline_s)
            return;
        /* Refused, closed before they were ready, or still pending. */
        int failed = 0, in_state[CS_CLOSED + 1] = {0};
        for (int i = 0; i < b->nconns; i++) {
            failed += b->c[i].state != CS_READY;
            in_state[b->c[i].state]++;
        }
        if ((double)failed > BENCH_FAIL_RATIO * b->nconns) {
            fprintf(stderr,
                    "tipcast-bench: %d of %d connections failed or did not get ready (not opened %d, "
                    "connecting %d, open %d, authenticated %d, failed %d, closed %d)\n",
                    failed, b->nconns, in_state[CS_IDLE], in_state[CS_CONNECTING], in_state[CS_OPEN],
                    in_state[CS_AUTHED], in_state[CS_FAILED], in_state[CS_CLOSED]);
            b->exit_code = 1;
            phases_finish(b);
            return;
        }
        b->nready = 0;
        for (int i = 0; i < b->o.connections; i++)
            if (b->c[i].role == ROLE_SENDER && b->c[i].state == CS_READY)
                b->ready[b->nready++] = i;
        if (b->funder >= 0 && !b->o.idle && b->c[b->funder].state == CS_READY) {
            b->phase = PH_FUND;
            b->phase_deadline_s = now_s + BENCH_FUND_TIMEOUT_S;
            conn_want_write(&b->c[b->funder]);
        } else {
            if (b->funder >= 0 && !b->o.idle)
                bench_error(b, "fund_no_admin_connection");
            start_run(b, now_s);
        }
        return;
    }
    case PH_FUND:
        if (b->fund_answered >= b->nready || now_s >= b->phase_deadline_s) {
            if (b->fund_answered < b->nready)
                bench_error(b, "fund_timeout");
            start_run(b, now_s);
        }
        return;
    case PH_RUN:
        now_us = wall_us();
        if (!b->measuring && now_s >= b->run_start_s + b->o.warmup_s)
            start_measuring(b, now_s, now_us);
        schedule(b, now_us);
        if (b->settling)
            settle(b, now_s, now_us);
        else if (b->o.find_max && b->step_on && now_s >= b->step_end_s)
            end_step(b, now_s, now_us);
        else if (!b->o.find_max && now_s >= b->run_start_s + b->o.warmup_s + b->o.duration_s)
            phases_stop_sending(b, now_s);
        if (now_s >= b->hard_deadline_s && b->phase == PH_RUN)
            phases_stop_sending(b, now_s);
        return;
    case PH_DRAIN: {
        int answered = !bench_tipcast(b) || b->answered >= b->r.sent;
        if ((answered && b->r.delivered >= b->r.expected_deliveries) || now_s >= b->phase_deadline_s)
            phases_finish(b);
        return;
    }
    case PH_DONE:
        return;
    }
}

/* Stops the timers and closes every connection (see run.h). */
void phases_finish(struct bench *b)
{
    if (b->phase == PH_DONE)
        return;
    b->phase = PH_DONE;
    uv_timer_stop(&b->tick);
    uv_timer_stop(&b->second);
    uv_close((uv_handle_t *)&b->tick, NULL);
    uv_close((uv_handle_t *)&b->second, NULL);
    uv_close((uv_handle_t *)&b->sigint, NULL);
    uv_close((uv_handle_t *)&b->sigterm, NULL);
    lws_context_destroy(b->ctx);
    b->ctx = NULL;
    for (int i = 0; i < b->nconns; i++)
        rawrx_close(&b->c[i]);
}
