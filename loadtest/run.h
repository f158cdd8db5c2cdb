/* run.h - the state of one tipcast-bench run, one struct that every part
 * of the bench is handed: bench.c sets a run up and starts it; clients.c
 * holds the connections (their lws callback, what they send and what comes
 * back); phases.c steps through the phases of a run, keeps the send
 * timetable and ends the run; second.c writes a row of results every second.
 *
 * One libuv loop carries libwebsockets' client connections and the bench's
 * timers, so the struct is only touched on the loop's thread (the server
 * sampler runs on a thread of its own, behind sample.h).
 *
 * Every send has a scheduled time on a fixed timetable (open loop). The
 * time travels with the message (tipcast: in the request id and in the
 * gift's combo "t<usec>.<run id>"; peers: the first 8 bytes of the payload,
 * then the run id), so acks and deliveries are measured from the schedule,
 * not from when the bench managed to write: a slow server cannot hide its
 * latency by slowing the bench down.
 */
#ifndef TIPCAST_BENCH_RUN_H
#define TIPCAST_BENCH_RUN_H

#include <libwebsockets.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "hist.h"
#include "opts.h"
#include "results.h"
#include "sample.h"

/* Scheduled sends waiting for their sender's next WRITEABLE; past it the
 * send is counted as the error "bench_backlog" (the server is far behind). */
#define BENCH_SENDQ 1024
/* How long a run may go on past its warm-up and duration, and the funding
 * phase at most. */
#define BENCH_HARD_EXTRA_S 10.0
/* A --refine step waits for the answers to earlier sends: at least the
 * first, at most the second (and never past the step's latest start). */
#define BENCH_SETTLE_MIN_S 1.0
#define BENCH_SETTLE_MAX_S 10.0
#define BENCH_FUND_TIMEOUT_S 15.0

enum bench_role { ROLE_SUB, ROLE_SENDER, ROLE_FUNDER };
enum cstate { CS_IDLE, CS_CONNECTING, CS_OPEN, CS_AUTHED, CS_READY, CS_FAILED, CS_CLOSED };
enum phase { PH_OPEN, PH_FUND, PH_RUN, PH_DRAIN, PH_DONE };

struct bench;
struct rawconn;

struct bconn {
    struct bench *b; /* the run it belongs to */
    struct lws *wsi;
    struct rawconn *raw; /* instead of wsi, but with --idle (rawrx.c) */
    uint32_t idx;  /* user bench-u<user_base + idx> */
    uint32_t room;
    uint8_t role, state, want_join, rx_drop;
    uint32_t seq;
    uint16_t qhead, qcount;
    uint64_t *q; /* senders: BENCH_SENDQ scheduled times (usec, realtime) */
    uint8_t *rx;
    uint32_t rx_len, rx_cap;
};

struct bench {
    struct opts o;
    struct results r;
    uv_loop_t loop;
    struct lws_context *ctx;
    uv_timer_t tick, second;
    uv_signal_t sigint, sigterm;
    struct bconn *c;
    int nconns;      /* o.connections, plus the funder */
    int funder;      /* index of the admin connection, -1 when none */
    uint32_t *members; /* per room: this bench's members (tipcast) or subscribers (peers) */
    int *ready;      /* indexes of the senders that made it */
    int nready;
    char src[256][16];
    int raw; /* all but --idle: the connections are rawrx.c's */
    uint8_t *payload; /* peers' senders: one frame of --frame-bytes, LWS_PRE in front */
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
    uint64_t run_start_us, measure_start_us;
    double run_start_s, measure_start_s;
    int measuring;
    uint64_t answered; /* gift acks + gift errors */
    /* --find-max. */
    int step_on;
    double step_end_s;
    uint64_t step_start_us, step_sent, step_answered, step_errors;
    struct hist step_ack, step_deliv;
    /* --refine: the bracket [lo, hi) the next step halves (geometrically),
     * the steps left, and the pause before a step until every send is
     * answered (settle_end_s its bound). */
    double refine_lo, refine_hi;
    int refine_left, refining, settling;
    double settle_min_s, settle_end_s;
    /* This second. */
    struct hist sec_ack, sec_deliv;
    uint64_t sec_sent, sec_acks, sec_deliveries, sec_errors;
    int sec_t;
    struct sample prev, measure_sample, measure_proc;
    uint64_t rx_us;  /* when the frame being handled came (clients.c), 0 until read */
    uint8_t tag[8]; /* run id, padded: bytes 8..15 of a peer payload */
    size_t run_id_len;
    int exit_code;
};

static inline double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline uint64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static inline int bench_tipcast(const struct bench *b) { return b->o.target == TARGET_TIPCAST; }

/* Counts one error of `code`, in the run and in this second. */
static inline void bench_error(struct bench *b, const char *code)
{
    results_error(&b->r, code);
    b->sec_errors++;
}


/* clients.c: the lws protocol of every connection; opening one (-1 when it
 * failed at once, counted); asking for its next WRITEABLE. */
const struct lws_protocols *conn_protocols(void);
int conn_open(struct bconn *c);
void conn_want_write(struct bconn *c);

/* What a connection's transport (lws's callback in clients.c, or rawrx.c)
 * reports to clients.c: the WebSocket is open; a whole message came; the
 * server sent a close with this code; the connection is gone (or never
 * opened). */
struct conn_events {
    void (*established)(struct bconn *c);
    void (*received)(struct bconn *c, const uint8_t *buf, size_t len);
    void (*peer_closed)(struct bconn *c, int code);
    void (*closed)(struct bconn *c);
};

/* rawrx.c: a connection of the bench (all but --idle's): opening it (-1 when
 * nothing was started; a failure later is reported as closed), a request
 * frame (text or binary), closing it. */
int rawrx_open(struct bconn *c, const char *path, const char *protocol, const struct conn_events *ev);
int rawrx_send(struct bconn *c, int text, const uint8_t *payload, size_t len);
void rawrx_close(struct bconn *c);

/* phases.c: the loop's tick (the timer's data is the bench), which opens,
 * funds, runs and drains; and the end of the sending (on --duration, the
 * last --find-max step or a signal). */
void phases_tick(uv_timer_t *t);
void phases_stop_sending(struct bench *b, double now_s);
/* phases.c: stops the timers and closes every connection; the loop then
 * ends by itself once lws has closed its handles. */
void phases_finish(struct bench *b);

/* second.c: the one-second timer (its data is the bench): a progress line
 * while opening and funding, then a row of results. */
void second_tick(uv_timer_t *t);

#endif
