/* bench.c - tipcast-bench: the connections, the send timetable and the
 * phases of a run (open, fund, run, drain). One libuv loop carries
 * libwebsockets' client connections and the bench's timers; the server
 * sampler runs on a thread of its own (sample.h). See /tmp/bench_spec.md
 * and `tipcast-bench --help`.
 *
 * Every send has a scheduled time on a fixed timetable (open loop). The
 * time travels with the message (tipcast: in the request id and in the
 * gift's combo "t<usec>.<run id>"; peers: the first 8 bytes of the payload,
 * then the run id), so acks and deliveries are measured from the schedule,
 * not from when the bench managed to write: a slow server cannot hide its
 * latency by slowing the bench down.
 */
#include <errno.h>
#include <libwebsockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "hist.h"
#include "jwt.h"
#include "opts.h"
#include "report.h"
#include "results.h"
#include "sample.h"
#include "wire.h"

/* Scheduled sends waiting for their sender's next WRITEABLE; past it the
 * send is counted as the error "bench_backlog" (the server is far behind). */
#define BENCH_SENDQ 1024
/* A message reassembled from fragments past this is dropped (tipcastd's
 * batches are at most 32 KiB). */
#define BENCH_RX_MAX (256 * 1024)
#define BENCH_TICK_MS 1
/* Sends scheduled by one tick at most: a stalled loop catches up in steps. */
#define BENCH_SCHED_PER_TICK_MAX 20000
#define BENCH_DRAIN_S 5.0
#define BENCH_HARD_EXTRA_S 10.0
#define BENCH_OPEN_EXTRA_S 15.0
#define BENCH_FUND_TIMEOUT_S 15.0
#define BENCH_FUND_COINS 1000000000LL
#define BENCH_TOKEN_TTL_S 7200
/* File descriptors kept for lws, the sampler, stdio and the output files. */
#define BENCH_FD_RESERVE 64
/* A run may not open more than this share of failed connections. */
#define BENCH_FAIL_RATIO 0.01
#define BENCH_FRAME_MAX 512

enum bench_role { ROLE_SUB, ROLE_SENDER, ROLE_FUNDER };
enum cstate { CS_IDLE, CS_CONNECTING, CS_OPEN, CS_AUTHED, CS_READY, CS_FAILED, CS_CLOSED };
enum phase { PH_OPEN, PH_FUND, PH_RUN, PH_DRAIN, PH_DONE };

struct bconn {
    struct lws *wsi;
    uint32_t idx;  /* user bench-u<user_base + idx> */
    uint32_t room;
    uint8_t role, state, want_join, rx_drop;
    uint32_t seq;
    uint16_t qhead, qcount;
    uint64_t *q; /* senders: BENCH_SENDQ scheduled times (usec, realtime) */
    uint8_t *rx;
    uint32_t rx_len, rx_cap;
};

static struct opts O;
static struct results R;

static struct {
    uv_loop_t loop;
    struct lws_context *ctx;
    uv_timer_t tick, second;
    uv_signal_t sigint, sigterm;
    struct bconn *c;
    int nconns;      /* O.connections, plus the funder */
    int funder;      /* index of the admin connection, -1 when none */
    uint32_t *members; /* per room: this bench's members (tipcast) or subscribers (peers) */
    int *ready;      /* indexes of the senders that made it */
    int nready;
    char src[256][16];
    enum phase phase;
    double phase_deadline_s, hard_deadline_s;
    double open_start_s;
    int open_next;
    int resolved;    /* connections that are ready, failed or closed */
    int fund_next, fund_answered;
    /* The timetable. */
    int sending;
    double rate;
    uint64_t sched_base_us, sched_base_n, sched_n;
    uint64_t run_start_us, measure_start_us, send_end_us;
    double run_start_s, measure_start_s;
    int measuring;
    uint64_t answered; /* gift acks + gift errors */
    /* --find-max. */
    int step_on;
    double step_end_s;
    uint64_t step_start_us, step_sent, step_answered, step_errors;
    struct hist step_ack, step_deliv;
    /* This second. */
    struct hist sec_ack, sec_deliv;
    uint64_t sec_sent, sec_acks, sec_deliveries, sec_errors;
    int sec_t;
    struct sample prev, measure_sample, measure_proc;
    uint8_t tag[8]; /* run id, padded: bytes 8..15 of a peer payload */
    int exit_code;
} B;

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int is_tipcast(void) { return O.target == TARGET_TIPCAST; }

static void room_name(uint32_t room, char *buf, size_t cap)
{
    snprintf(buf, cap, is_tipcast() ? "bench-room-%u" : "benchroom%u", room);
}

static void error_count(const char *code)
{
    results_error(&R, code);
    B.sec_errors++;
}

/* ---- Connections ------------------------------------------------------------ */

static void resolve(struct bconn *c, enum cstate st)
{
    int was_pending = c->state == CS_CONNECTING || c->state == CS_OPEN || c->state == CS_AUTHED;
    c->state = (uint8_t)st;
    if (was_pending)
        B.resolved++;
}

static int connect_one(struct bconn *c)
{
    char path[JWT_MAX_BYTES + 64], room[80];
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    room_name(c->room, room, sizeof room);
    if (is_tipcast()) {
        char user[ID_MAX + 1], token[1024];
        int admin = c->role == ROLE_FUNDER;
        if (admin)
            snprintf(user, sizeof user, "bench-admin");
        else
            snprintf(user, sizeof user, "bench-u%u", (unsigned)O.user_base + c->idx);
        if (jwt_sign(O.secret, strlen(O.secret), NULL, user, admin ? ROLE_ADMIN : ROLE_VIEWER,
                     (int64_t)(wall_us() / 1000000u) + BENCH_TOKEN_TTL_S, token, sizeof token) < 0)
            return -1;
        snprintf(path, sizeof path, "/ws?token=%s", token);
        ci.protocol = O.json ? "tipcast.v1.json" : "tipcast.v1.msgpack";
    } else {
        snprintf(path, sizeof path, "/%s/%s", c->role == ROLE_SENDER ? "pub" : "sub", room);
    }
    /* No lws keepalive timers: lws keeps every connection's in one sorted
     * list, so each insert walks all of them (quadratic in connections). */
    static const lws_retry_bo_t no_validity;
    ci.retry_and_idle_policy = &no_validity;
    ci.context = B.ctx;
    ci.address = O.host;
    ci.port = O.port;
    ci.path = path;
    ci.host = O.host;
    ci.local_protocol_name = "tipcast-bench";
    ci.iface = B.src[O.src_lo + (int)(c->idx % (uint32_t)(O.src_hi - O.src_lo + 1))];
    ci.opaque_user_data = c;
    ci.pwsi = &c->wsi;
    c->state = CS_CONNECTING;
    if (!lws_client_connect_via_info(&ci)) {
        /* The error callback may or may not have run: resolve once. */
        if (c->state == CS_CONNECTING) {
            resolve(c, CS_FAILED);
            R.conn_failed++;
            error_count("connect_failed");
        }
        c->wsi = NULL;
        return -1;
    }
    return 0;
}

static void want_write(struct bconn *c)
{
    if (c->wsi)
        lws_callback_on_writable(c->wsi);
}

/* ---- What comes back -------------------------------------------------------- */

static void on_delivery(uint64_t sched_us, int own)
{
    if (sched_us < B.run_start_us)
        return; /* an event of an earlier run */
    uint64_t now = wall_us();
    uint64_t lat = now > sched_us ? now - sched_us : 0;
    if (own)
        R.delivered++;
    else
        R.delivered_foreign++;
    B.sec_deliveries++;
    hist_record(&B.sec_deliv, lat);
    if (B.measuring && sched_us >= B.measure_start_us) {
        R.deliveries_measured++;
        hist_record(&R.deliv, lat);
    }
    if (B.step_on && sched_us >= B.step_start_us)
        hist_record(&B.step_deliv, lat);
}

/* "t<usec>.<run id>": the combo of a gift the bench sent. */
static void on_combo(void *ctx, const char *s, size_t n)
{
    (void)ctx;
    if (n < 2 || s[0] != 't')
        return;
    uint64_t t = 0;
    size_t i = 1;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
        t = t * 10 + (uint64_t)(s[i] - '0');
    if (i == 1)
        return;
    size_t idlen = strlen(O.run_id);
    int own = n - i == idlen + 1 && s[i] == '.' && memcmp(s + i + 1, O.run_id, idlen) == 0;
    on_delivery(t, own);
}

/* A gift's request id: "g<run id>-<scheduled usec>-<n>". Returns the
 * scheduled time, 0 when the id is not one of this run's gifts. */
static uint64_t gift_time(const char *id)
{
    size_t idlen = strlen(O.run_id);
    if (id[0] != 'g' || strncmp(id + 1, O.run_id, idlen) != 0 || id[1 + idlen] != '-')
        return 0;
    return strtoull(id + 2 + idlen, NULL, 10);
}

static void on_gift_answer(struct bconn *c, uint64_t sched_us, const char *error_code)
{
    uint64_t now = wall_us();
    uint64_t lat = now > sched_us ? now - sched_us : 0;
    int in_step = B.step_on && sched_us >= B.step_start_us;
    B.answered++;
    if (in_step)
        B.step_answered++;
    if (error_code) {
        error_count(error_code);
        if (in_step)
            B.step_errors++;
        return;
    }
    R.acked++;
    R.expected_deliveries += B.members[c->room];
    B.sec_acks++;
    hist_record(&B.sec_ack, lat);
    if (B.measuring && sched_us >= B.measure_start_us) {
        R.acks_measured++;
        hist_record(&R.ack, lat);
    }
    if (in_step)
        hist_record(&B.step_ack, lat);
}

static void handle_tipcast(struct bconn *c, const uint8_t *buf, size_t len)
{
    struct wire_msg m;
    if (wire_read(O.json, buf, len, &m, on_combo, NULL) < 0) {
        error_count("bench_unreadable_frame");
        return;
    }
    char code[WIRE_CODE_MAX + 16];
    uint64_t t;
    switch (m.type) {
    case WIRE_WELCOME:
        if (c->state == CS_OPEN) {
            c->state = CS_AUTHED;
            R.conn_authed++;
            if (c->role == ROLE_FUNDER) {
                resolve(c, CS_READY);
            } else {
                c->want_join = 1;
                want_write(c);
            }
        }
        break;
    case WIRE_JOINED:
        if (c->state == CS_AUTHED) {
            resolve(c, CS_READY);
            R.conn_joined++;
            B.members[c->room]++;
        }
        break;
    case WIRE_ACK:
        if ((t = gift_time(m.id)))
            on_gift_answer(c, t, NULL);
        else if (strncmp(m.id, "bench-fund-", 11) == 0)
            B.fund_answered++;
        break;
    case WIRE_ERROR:
        if ((t = gift_time(m.id))) {
            on_gift_answer(c, t, m.code[0] ? m.code : "error");
        } else if (strncmp(m.id, "bench-fund-", 11) == 0) {
            B.fund_answered++;
            snprintf(code, sizeof code, "fund_%s", m.code);
            error_count(code);
        } else if (c->state == CS_AUTHED) {
            snprintf(code, sizeof code, "join_%s", m.code);
            error_count(code);
            resolve(c, CS_FAILED);
            R.conn_failed++;
        } else {
            snprintf(code, sizeof code, "%s", m.code[0] ? m.code : "error");
            error_count(code);
        }
        break;
    default:
        break; /* events were counted by on_combo; leaderboards etc. are not measured */
    }
}

static void handle_peer(struct bconn *c, const uint8_t *buf, size_t len)
{
    if (c->role != ROLE_SUB || len < 16)
        return;
    uint64_t t = 0;
    for (int i = 0; i < 8; i++)
        t = t << 8 | buf[i];
    on_delivery(t, memcmp(buf + 8, B.tag, 8) == 0);
}

static void handle(struct bconn *c, const uint8_t *buf, size_t len)
{
    if (is_tipcast())
        handle_tipcast(c, buf, len);
    else
        handle_peer(c, buf, len);
}

static void receive(struct bconn *c, struct lws *wsi, const uint8_t *in, size_t len)
{
    int first = lws_is_first_fragment(wsi);
    int last = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;
    if (first && last) {
        handle(c, in, len); /* the usual case: no copy */
        return;
    }
    if (first) {
        c->rx_len = 0;
        c->rx_drop = 0;
    }
    if (!c->rx_drop && c->rx_len + len > BENCH_RX_MAX) {
        c->rx_drop = 1;
        error_count("bench_frame_too_big");
    }
    if (!c->rx_drop) {
        if (c->rx_len + len > c->rx_cap) {
            uint32_t cap = c->rx_cap ? c->rx_cap : 4096;
            while (cap < c->rx_len + len)
                cap *= 2;
            uint8_t *p = realloc(c->rx, cap);
            if (!p) {
                c->rx_drop = 1;
                error_count("bench_out_of_memory");
                return;
            }
            c->rx = p;
            c->rx_cap = cap;
        }
        memcpy(c->rx + c->rx_len, in, len);
        c->rx_len += (uint32_t)len;
    }
    if (last) {
        if (!c->rx_drop)
            handle(c, c->rx, c->rx_len);
        c->rx_len = 0;
        /* Thousands of idle connections should not each keep a buffer. */
        free(c->rx);
        c->rx = NULL;
        c->rx_cap = 0;
    }
}

/* ---- What goes out: one lws_write per WRITEABLE ------------------------------ */

static int write_frame(struct bconn *c, uint8_t *frame, int n, int binary)
{
    if (n < 0)
        return -1;
    return lws_write(c->wsi, frame, (size_t)n, binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) < n ? -1 : 0;
}

static int writeable(struct bconn *c)
{
    uint8_t buf[LWS_PRE + BENCH_FRAME_MAX], *f = buf + LWS_PRE;
    static uint8_t *payload; /* peers: one reusable frame of --frame-bytes */
    char id[WIRE_ID_MAX + 1], room[80], user[24], combo[64];
    int rc = 0;
    room_name(c->room, room, sizeof room);
    if (c->want_join) {
        c->want_join = 0;
        rc = write_frame(c, f, wire_join(O.json, f, BENCH_FRAME_MAX, "j", room), !O.json);
    } else if (c->role == ROLE_FUNDER) {
        if (B.phase != PH_FUND || B.fund_next >= B.nready)
            return 0;
        struct bconn *s = &B.c[B.ready[B.fund_next++]];
        snprintf(user, sizeof user, "bench-u%u", (unsigned)O.user_base + s->idx);
        snprintf(id, sizeof id, "bench-fund-%s-%s", user, O.run_id);
        rc = write_frame(c, f, wire_credit(O.json, f, BENCH_FRAME_MAX, id, user, BENCH_FUND_COINS), !O.json);
        if (B.fund_next < B.nready)
            want_write(c);
        return rc;
    } else if (c->qcount) {
        uint64_t t = c->q[c->qhead];
        c->qhead = (uint16_t)((c->qhead + 1) % BENCH_SENDQ);
        c->qcount--;
        if (is_tipcast()) {
            snprintf(id, sizeof id, "g%s-%llu-%u", O.run_id, (unsigned long long)t, ++c->seq);
            snprintf(combo, sizeof combo, "t%llu.%s", (unsigned long long)t, O.run_id);
            rc = write_frame(c, f, wire_gift(O.json, f, BENCH_FRAME_MAX, id, room, O.gift, combo), !O.json);
        } else {
            if (!payload) {
                payload = malloc(LWS_PRE + (size_t)O.frame_bytes);
                if (!payload)
                    return -1;
            }
            /* Written whole every time: lws masks a client frame in place. */
            memset(payload + LWS_PRE, 'x', (size_t)O.frame_bytes);
            memcpy(payload + LWS_PRE + 8, B.tag, 8);
            for (int i = 0; i < 8; i++)
                payload[LWS_PRE + i] = (uint8_t)(t >> (56 - 8 * i));
            rc = write_frame(c, payload + LWS_PRE, O.frame_bytes, 1);
            /* No acks from the peers: the send itself is the answer. */
            R.expected_deliveries += B.members[c->room];
        }
        if (rc == 0) {
            R.sent++;
            B.sec_sent++;
            if (B.step_on && t >= B.step_start_us)
                B.step_sent++;
        }
    }
    if (c->qcount)
        want_write(c);
    return rc;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct bconn *c = lws_get_opaque_user_data(wsi);
    (void)user;
    if (!c)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (c->state == CS_CONNECTING) {
            resolve(c, CS_FAILED);
            R.conn_failed++;
            error_count("connect_failed");
        }
        c->wsi = NULL;
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        c->wsi = wsi;
        c->state = CS_OPEN;
        R.conn_opened++;
        if (!is_tipcast()) {
            resolve(c, CS_READY);
            if (c->role == ROLE_SUB)
                B.members[c->room]++;
        }
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        receive(c, wsi, in, len);
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return c->wsi ? writeable(c) : 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (B.phase != PH_DONE && len >= 2) {
            char code[32];
            snprintf(code, sizeof code, "close_%d", ((const uint8_t *)in)[0] << 8 | ((const uint8_t *)in)[1]);
            error_count(code);
        }
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (c->state == CS_READY && (c->role == ROLE_SUB || is_tipcast()) && c->role != ROLE_FUNDER)
            B.members[c->room]--;
        if (B.phase != PH_DONE) {
            R.conn_lost++;
            error_count("connection_lost");
        }
        resolve(c, CS_CLOSED);
        c->wsi = NULL;
        free(c->rx);
        c->rx = NULL;
        c->rx_cap = c->rx_len = 0;
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols protocols[] = {
    {"tipcast-bench", callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- The timetable ----------------------------------------------------------- */

static void set_rate(double rate, uint64_t now_us)
{
    B.rate = rate;
    B.sched_base_us = now_us;
    B.sched_base_n = B.sched_n;
}

static void schedule(uint64_t now_us)
{
    if (!B.sending || !B.nready)
        return;
    for (int k = 0; k < BENCH_SCHED_PER_TICK_MAX; k++) {
        uint64_t t = B.sched_base_us + (uint64_t)((double)(B.sched_n - B.sched_base_n) * 1e6 / B.rate);
        if (t > now_us)
            return;
        struct bconn *c = &B.c[B.ready[B.sched_n % (uint64_t)B.nready]];
        B.sched_n++;
        int in_step = B.step_on && t >= B.step_start_us;
        if (!c->wsi || c->state != CS_READY) {
            error_count("bench_sender_down");
            B.step_sent += in_step;
            B.step_errors += in_step;
            continue;
        }
        if (c->qcount == BENCH_SENDQ) {
            error_count("bench_backlog");
            B.step_sent += in_step;
            B.step_errors += in_step;
            continue;
        }
        c->q[(c->qhead + c->qcount) % BENCH_SENDQ] = t;
        c->qcount++;
        want_write(c);
    }
}

/* ---- Phases -------------------------------------------------------------------- */

static void finish(void);

static void start_step(double rate, double now_s, uint64_t now_us)
{
    set_rate(rate, now_us);
    B.step_on = 1;
    B.step_start_us = now_us;
    B.step_end_s = now_s + O.step_s;
    B.step_sent = B.step_answered = B.step_errors = 0;
    hist_reset(&B.step_ack);
    hist_reset(&B.step_deliv);
}

static void start_measuring(double now_s, uint64_t now_us)
{
    B.measuring = 1;
    B.measure_start_us = now_us;
    B.measure_start_s = now_s;
    hist_reset(&R.ack);
    hist_reset(&R.deliv);
    R.acks_measured = R.deliveries_measured = 0;
    sample_proc(&O, &B.measure_proc);
    sample_latest(&B.measure_sample);
    if (O.find_max)
        start_step(O.rate, now_s, now_us);
}

static void stop_sending(double now_s, uint64_t now_us)
{
    B.sending = 0;
    B.step_on = 0;
    B.send_end_us = now_us;
    R.measured_s = B.measuring ? now_s - B.measure_start_s : 0;
    struct sample p, s;
    sample_proc(&O, &p);
    sample_latest(&s);
    R.cpu_s = p.cpu_s >= 0 && B.measuring && B.measure_proc.cpu_s >= 0 ? p.cpu_s - B.measure_proc.cpu_s : -1;
    if (s.orders >= 0 && B.measure_sample.orders >= 0 && s.at_s > B.measure_sample.at_s)
        R.pg_orders_per_s = (double)(s.orders - B.measure_sample.orders) / (s.at_s - B.measure_sample.at_s);
    if (O.idle && p.rss_kb >= 0 && R.rss_kb_before >= 0) {
        uint64_t n = is_tipcast() ? R.conn_joined : R.conn_opened;
        if (n)
            R.rss_kb_per_conn = (double)(p.rss_kb - R.rss_kb_before) / (double)n;
        if (p.rss_kb > R.rss_kb_max)
            R.rss_kb_max = p.rss_kb;
    }
    B.phase = PH_DRAIN;
    B.phase_deadline_s = now_s + BENCH_DRAIN_S;
    if (B.phase_deadline_s > B.hard_deadline_s)
        B.phase_deadline_s = B.hard_deadline_s;
}

/* Ends a --find-max step: records it; the next step at 1.5x when it held. */
static void end_step(double now_s, uint64_t now_us)
{
    struct results_step *st = &R.steps[R.nsteps++];
    st->rate = B.rate;
    st->ack_p99_ms = (double)hist_percentile(&B.step_ack, 99) / 1000.0;
    st->deliv_p99_ms = (double)hist_percentile(&B.step_deliv, 99) / 1000.0;
    st->sent = B.step_sent;
    st->answered = is_tipcast() ? B.step_answered : B.step_sent;
    st->errors = B.step_errors;
    double p99 = is_tipcast() ? st->ack_p99_ms : st->deliv_p99_ms;
    double bound = (double)st->sent * BENCH_FAIL_RATIO;
    st->held = st->sent > 0 && p99 <= O.p99_bound_ms && (double)st->errors <= bound &&
               (double)(st->sent - st->answered) <= bound + 1;
    if (st->held)
        R.max_rate = st->rate;
    int time_left = now_s + O.step_s <= B.measure_start_s + O.duration_s + 1e-6;
    if (st->held && time_left && R.nsteps < RESULTS_STEPS_MAX && B.rate * 1.5 <= OPTS_RATE_MAX)
        start_step(B.rate * 1.5, now_s, now_us);
    else
        stop_sending(now_s, now_us);
}

static int open_done(void) { return B.open_next >= O.connections && B.resolved >= B.nconns; }

static void start_run(double now_s)
{
    uint64_t now_us = wall_us();
    B.phase = PH_RUN;
    B.run_start_us = now_us;
    B.run_start_s = now_s;
    B.hard_deadline_s = now_s + O.warmup_s + O.duration_s + BENCH_HARD_EXTRA_S;
    if (O.idle) {
        start_measuring(now_s, now_us);
        return;
    }
    B.sending = 1;
    set_rate(O.rate, now_us);
    if (O.warmup_s <= 0)
        start_measuring(now_s, now_us);
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
    double now_s = mono_s();
    uint64_t now_us;
    switch (B.phase) {
    case PH_OPEN: {
        int due = (int)((now_s - B.open_start_s) * O.open_rate) + 1;
        while (B.open_next < O.connections && B.open_next < due)
            connect_one(&B.c[B.open_next++]);
        if (!open_done() && now_s < B.phase_deadline_s)
            return;
        /* Refused, closed before they were ready, or still pending. */
        int failed = 0, in_state[CS_CLOSED + 1] = {0};
        for (int i = 0; i < B.nconns; i++) {
            failed += B.c[i].state != CS_READY;
            in_state[B.c[i].state]++;
        }
        if ((double)failed > BENCH_FAIL_RATIO * B.nconns) {
            fprintf(stderr,
                    "tipcast-bench: %d of %d connections failed or did not get ready (not opened %d, "
                    "connecting %d, open %d, authenticated %d, failed %d, closed %d)\n",
                    failed, B.nconns, in_state[CS_IDLE], in_state[CS_CONNECTING], in_state[CS_OPEN],
                    in_state[CS_AUTHED], in_state[CS_FAILED], in_state[CS_CLOSED]);
            B.exit_code = 1;
            finish();
            return;
        }
        B.nready = 0;
        for (int i = 0; i < O.connections; i++)
            if (B.c[i].role == ROLE_SENDER && B.c[i].state == CS_READY)
                B.ready[B.nready++] = i;
        if (B.funder >= 0 && !O.idle && B.c[B.funder].state == CS_READY) {
            B.phase = PH_FUND;
            B.phase_deadline_s = now_s + BENCH_FUND_TIMEOUT_S;
            want_write(&B.c[B.funder]);
        } else {
            if (B.funder >= 0 && !O.idle)
                error_count("fund_no_admin_connection");
            start_run(now_s);
        }
        return;
    }
    case PH_FUND:
        if (B.fund_answered >= B.nready || now_s >= B.phase_deadline_s) {
            if (B.fund_answered < B.nready)
                error_count("fund_timeout");
            start_run(now_s);
        }
        return;
    case PH_RUN:
        now_us = wall_us();
        if (!B.measuring && now_s >= B.run_start_s + O.warmup_s)
            start_measuring(now_s, now_us);
        schedule(now_us);
        if (O.find_max && B.step_on && now_s >= B.step_end_s)
            end_step(now_s, now_us);
        else if (!O.find_max && now_s >= B.run_start_s + O.warmup_s + O.duration_s)
            stop_sending(now_s, now_us);
        if (now_s >= B.hard_deadline_s && B.phase == PH_RUN)
            stop_sending(now_s, now_us);
        return;
    case PH_DRAIN: {
        int answered = !is_tipcast() || B.answered >= R.sent;
        if ((answered && R.delivered >= R.expected_deliveries) || now_s >= B.phase_deadline_s)
            finish();
        return;
    }
    case PH_DONE:
        return;
    }
}

static double cpu_pct(const struct sample *now, const struct sample *prev)
{
    if (now->cpu_s < 0 || prev->cpu_s < 0 || now->at_s <= prev->at_s)
        return -1;
    return (now->cpu_s - prev->cpu_s) * 100.0 / (now->at_s - prev->at_s);
}

static void on_second(uv_timer_t *t)
{
    (void)t;
    struct sample s;
    sample_latest(&s);
    if (B.phase == PH_OPEN || B.phase == PH_FUND) {
        if (!O.quiet) {
            printf("%s: %llu connected, %llu joined, %llu failed of %d\n", B.phase == PH_OPEN ? "opening" : "funding",
                   (unsigned long long)R.conn_opened, (unsigned long long)R.conn_joined,
                   (unsigned long long)R.conn_failed, B.nconns);
            fflush(stdout);
        }
        B.prev = s;
        return;
    }
    struct results_second row = {0};
    row.t = ++B.sec_t;
    row.rate = B.sending ? B.rate : 0;
    row.sent = B.sec_sent;
    row.acks = B.sec_acks;
    row.deliveries = B.sec_deliveries;
    row.errors = B.sec_errors;
    row.ack_p50_ms = (double)hist_percentile(&B.sec_ack, 50) / 1000.0;
    row.ack_p99_ms = (double)hist_percentile(&B.sec_ack, 99) / 1000.0;
    row.deliv_p50_ms = (double)hist_percentile(&B.sec_deliv, 50) / 1000.0;
    row.deliv_p99_ms = (double)hist_percentile(&B.sec_deliv, 99) / 1000.0;
    row.cpu_pct = cpu_pct(&s, &B.prev);
    row.rss_kb = s.rss_kb;
    row.backlog = s.backlog;
    row.pg_per_s = s.orders >= 0 && B.prev.orders >= 0 && s.at_s > B.prev.at_s
                       ? (double)(s.orders - B.prev.orders) / (s.at_s - B.prev.at_s)
                       : -1;
    if (s.at_s > B.prev.at_s)
        B.prev = s;
    if (s.rss_kb > R.rss_kb_max)
        R.rss_kb_max = s.rss_kb;
    if (s.backlog > R.backlog_max)
        R.backlog_max = s.backlog;
    if (R.nsecs < RESULTS_SECONDS_MAX)
        R.secs[R.nsecs++] = row;
    if (!O.quiet)
        report_progress(&O, &row);
    B.sec_sent = B.sec_acks = B.sec_deliveries = B.sec_errors = 0;
    hist_reset(&B.sec_ack);
    hist_reset(&B.sec_deliv);
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)h;
    fprintf(stderr, "tipcast-bench: signal %d: stopping\n", signum);
    if (B.phase == PH_RUN)
        stop_sending(mono_s(), wall_us());
    else
        finish();
}

/* Stops the timers and closes every connection; the loop then ends by
 * itself once lws has closed its handles. */
static void finish(void)
{
    if (B.phase == PH_DONE)
        return;
    B.phase = PH_DONE;
    uv_timer_stop(&B.tick);
    uv_timer_stop(&B.second);
    uv_close((uv_handle_t *)&B.tick, NULL);
    uv_close((uv_handle_t *)&B.second, NULL);
    uv_close((uv_handle_t *)&B.sigint, NULL);
    uv_close((uv_handle_t *)&B.sigterm, NULL);
    lws_context_destroy(B.ctx);
    B.ctx = NULL;
}

/* ---- Setup ---------------------------------------------------------------------- */

static void lws_log(int level, const char *line)
{
    (void)level;
    if (!O.quiet)
        fprintf(stderr, "lws: %s", line);
}

/* Raises the soft fd limit to the hard one; returns how many connections
 * this process can hold. */
static int raise_fd_limit(rlim_t *limit)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            return -1;
    }
    *limit = rl.rlim_cur;
    return 0;
}

static int setup(void)
{
    int n = O.connections;
    B.funder = is_tipcast() && !O.idle ? n : -1;
    B.nconns = n + (B.funder >= 0);
    B.c = calloc((size_t)B.nconns, sizeof *B.c);
    B.members = calloc((size_t)O.rooms, sizeof *B.members);
    B.ready = calloc((size_t)(O.senders + 1), sizeof *B.ready);
    if (!B.c || !B.members || !B.ready)
        return -1;
    for (int i = 0; i < n; i++) {
        struct bconn *c = &B.c[i];
        c->idx = (uint32_t)i;
        if (is_tipcast()) {
            c->role = i < O.senders ? ROLE_SENDER : ROLE_SUB;
            c->room = (uint32_t)(i % O.rooms);
        } else {
            /* Publishers first, one per room round robin; then subscribers. */
            c->role = i < O.senders ? ROLE_SENDER : ROLE_SUB;
            c->room = (uint32_t)((i < O.senders ? i : i - O.senders) % O.rooms);
        }
        if (c->role == ROLE_SENDER && !O.idle) {
            c->q = malloc(sizeof *c->q * BENCH_SENDQ);
            if (!c->q)
                return -1;
        }
    }
    if (B.funder >= 0) {
        /* The admin connection that credits the senders: the last slot,
         * opened before all the others. */
        struct bconn *f = &B.c[B.funder];
        f->role = ROLE_FUNDER;
        f->idx = (uint32_t)B.funder;
    }
    for (int i = 1; i < 255; i++)
        snprintf(B.src[i], sizeof B.src[i], "127.0.0.%d", i);
    memset(B.tag, '_', sizeof B.tag);
    memcpy(B.tag, O.run_id, strlen(O.run_id) < 8 ? strlen(O.run_id) : 8);
    return 0;
}

int main(int argc, char **argv)
{
    char err[512];
    int rc = opts_parse(&O, argc, argv, err, sizeof err);
    if (rc > 0)
        return 0;
    if (rc < 0) {
        fprintf(stderr, "tipcast-bench: %s\n(see tipcast-bench --help)\n", err);
        return 2;
    }
    /* --idle holds the connections for --duration: nothing to warm up. */
    if (O.idle)
        O.warmup_s = 0;
    rlim_t fds;
    if (raise_fd_limit(&fds) < 0) {
        fprintf(stderr, "tipcast-bench: cannot read the fd limit: %s\n", strerror(errno));
        return 1;
    }
    if ((rlim_t)O.connections + 1 + BENCH_FD_RESERVE > fds) {
        fprintf(stderr,
                "tipcast-bench: %d connections need %d file descriptors; this process may open %llu: "
                "run several bench processes (--user-base) instead\n",
                O.connections, O.connections + 1 + BENCH_FD_RESERVE, (unsigned long long)fds);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    memset(&R, 0, sizeof R);
    R.cpu_s = R.rss_kb_per_conn = R.pg_orders_per_s = -1;
    R.rss_kb_max = R.backlog_max = -1;
    time_t now = time(NULL);
    strftime(R.started, sizeof R.started, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    if (setup() < 0) {
        fprintf(stderr, "tipcast-bench: out of memory\n");
        return 1;
    }
    struct sample base;
    sample_proc(&O, &base);
    R.rss_kb_before = base.rss_kb;
    R.rss_kb_max = base.rss_kb;

    /* A last resort: whatever happens, the process ends. */
    double open_s = (double)B.nconns / O.open_rate + BENCH_OPEN_EXTRA_S;
    alarm((unsigned)(open_s + BENCH_FUND_TIMEOUT_S + O.warmup_s + O.duration_s + BENCH_HARD_EXTRA_S + 30));

    uv_loop_init(&B.loop);
    lws_set_log_level(LLL_ERR, lws_log);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    void *loops[1] = {&B.loop};
    info.foreign_loops = loops;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_LIBUV;
    /* Every fd this process may open can be a connection of lws's one
     * service thread (lws sizes its fd table from this). */
    info.fd_limit_per_thread = (unsigned int)fds;
    info.count_threads = 1;
    info.pt_serv_buf_size = 64 * 1024;
    info.timeout_secs = 10;
    B.ctx = lws_create_context(&info);
    if (!B.ctx) {
        fprintf(stderr, "tipcast-bench: cannot create the libwebsockets context\n");
        return 1;
    }
    if (sample_start(&O) < 0)
        fprintf(stderr, "tipcast-bench: no server sampling (cannot start its thread)\n");
    sample_latest(&B.prev);

    B.phase = PH_OPEN;
    B.open_start_s = mono_s();
    B.phase_deadline_s = B.open_start_s + open_s;
    if (B.funder >= 0) {
        /* The admin connection opens first. */
        connect_one(&B.c[B.funder]);
    }
    uv_timer_init(&B.loop, &B.tick);
    uv_timer_init(&B.loop, &B.second);
    uv_timer_start(&B.tick, on_tick, BENCH_TICK_MS, BENCH_TICK_MS);
    uv_timer_start(&B.second, on_second, 1000, 1000);
    uv_signal_init(&B.loop, &B.sigint);
    uv_signal_init(&B.loop, &B.sigterm);
    uv_signal_start(&B.sigint, on_signal, SIGINT);
    uv_signal_start(&B.sigterm, on_signal, SIGTERM);
    uv_run(&B.loop, UV_RUN_DEFAULT);
    uv_loop_close(&B.loop);
    sample_stop();
    alarm(0);

    if (B.exit_code == 0) {
        report_summary(&O, &R);
        if (O.json_path[0] && report_json(&O, &R, O.json_path) < 0)
            B.exit_code = 1;
        if (O.svg_path[0] && report_svg(&O, &R, O.svg_path) < 0)
            B.exit_code = 1;
    }
    for (int i = 0; i < B.nconns; i++) {
        free(B.c[i].q);
        free(B.c[i].rx);
    }
    free(B.c);
    free(B.members);
    free(B.ready);
    return B.exit_code;
}
