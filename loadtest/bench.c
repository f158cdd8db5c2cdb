/* bench.c - tipcast-bench's main: it reads the options, sets a run up
 * (the connections' slots, the fd limit, the lws context on a libuv loop,
 * the timers), runs the loop until the run has ended, and reports. See
 * run.h for how a run goes and `tipcast-bench --help` for the options. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "run.h"
#include "report.h"

#define BENCH_TICK_MS 1
#define BENCH_OPEN_EXTRA_S 15.0
/* File descriptors kept for lws, the sampler, stdio and the output files. */
#define BENCH_FD_RESERVE 64

/* ---- Setup ---------------------------------------------------------------------- */

static void lws_log(int level, const char *line)
{
    (void)level;
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

static int setup(struct bench *b)
{
    int n = b->o.connections;
    b->funder = bench_tipcast(b) && !b->o.idle ? n : -1;
    b->raw = !b->o.idle;
    b->nconns = n + (b->funder >= 0);
    b->c = calloc((size_t)b->nconns, sizeof *b->c);
    b->members = calloc((size_t)b->o.rooms, sizeof *b->members);
    b->ready = calloc((size_t)(b->o.senders + 1), sizeof *b->ready);
    if (!b->c || !b->members || !b->ready)
        return -1;
    for (int i = 0; i < n; i++) {
        struct bconn *c = &b->c[i];
        c->b = b;
        c->idx = (uint32_t)i;
        if (bench_tipcast(b)) {
            c->role = i < b->o.senders ? ROLE_SENDER : ROLE_SUB;
            c->room = (uint32_t)(i % b->o.rooms);
        } else {
            /* Publishers first, one per room round robin; then subscribers. */
            c->role = i < b->o.senders ? ROLE_SENDER : ROLE_SUB;
            c->room = (uint32_t)((i < b->o.senders ? i : i - b->o.senders) % b->o.rooms);
        }
        if (c->role == ROLE_SENDER && !b->o.idle) {
            c->q = malloc(sizeof *c->q * BENCH_SENDQ);
            if (!c->q)
                return -1;
        }
    }
    if (b->funder >= 0) {
        /* The admin connection that credits the senders: the last slot,
         * opened before all the others. */
        struct bconn *f = &b->c[b->funder];
        f->b = b;
        f->role = ROLE_FUNDER;
        f->idx = (uint32_t)b->funder;
    }
    if (!bench_tipcast(b) && !b->o.idle) {
        b->payload = malloc(LWS_PRE + (size_t)b->o.frame_bytes);
        if (!b->payload)
            return -1;
    }
    for (int i = 1; i < 255; i++)
        snprintf(b->src[i], sizeof b->src[i], "127.0.0.%d", i);
    memset(b->tag, '_', sizeof b->tag);
    b->run_id_len = strlen(b->o.run_id);
    memcpy(b->tag, b->o.run_id, b->run_id_len < 8 ? b->run_id_len : 8);
    return 0;
}

/* The loop and the lws context whose connections it carries. */
static int open_context(struct bench *b, rlim_t fds)
{
    uv_loop_init(&b->loop);
    /* --quiet: not even lws's errors. */
    lws_set_log_level(b->o.quiet ? 0 : LLL_ERR, lws_log);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    void *loops[1] = {&b->loop};
    info.foreign_loops = loops;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = conn_protocols();
    info.options = LWS_SERVER_OPTION_LIBUV;
    /* Every fd this process may open can be a connection of lws's one
     * service thread (lws sizes its fd table from this). */
    info.fd_limit_per_thread = (unsigned int)fds;
    info.count_threads = 1;
    info.pt_serv_buf_size = 64 * 1024;
    info.timeout_secs = 10;
    b->ctx = lws_create_context(&info);
    return b->ctx ? 0 : -1;
}

/* ---- Start and end ---------------------------------------------------------------- */

static void on_signal(uv_signal_t *h, int signum)
{
    struct bench *b = h->data;
    fprintf(stderr, "tipcast-bench: signal %d: stopping\n", signum);
    if (b->phase == PH_RUN)
        phases_stop_sending(b, mono_s());
    else
        phases_finish(b);
}

/* Opens the funder, then lets the timers open the rest and run. */
static void start(struct bench *b, double open_s)
{
    b->phase = PH_OPEN;
    b->open_start_s = mono_s();
    b->phase_deadline_s = b->open_start_s + open_s;
    if (b->funder >= 0) {
        /* The admin connection opens first. */
        conn_open(&b->c[b->funder]);
    }
    uv_timer_init(&b->loop, &b->tick);
    uv_timer_init(&b->loop, &b->second);
    b->tick.data = b->second.data = b;
    uv_timer_start(&b->tick, phases_tick, BENCH_TICK_MS, BENCH_TICK_MS);
    uv_timer_start(&b->second, second_tick, 1000, 1000);
    uv_signal_init(&b->loop, &b->sigint);
    uv_signal_init(&b->loop, &b->sigterm);
    b->sigint.data = b->sigterm.data = b;
    uv_signal_start(&b->sigint, on_signal, SIGINT);
    uv_signal_start(&b->sigterm, on_signal, SIGTERM);
}

static void release(struct bench *b)
{
    for (int i = 0; i < b->nconns; i++) {
        free(b->c[i].q);
        free(b->c[i].rx);
    }
    free(b->c);
    free(b->members);
    free(b->ready);
    free(b->payload);
}

int main(int argc, char **argv)
{
    static struct bench bench;
    struct bench *b = &bench;
    char err[512];
    int rc = opts_parse(&b->o, argc, argv, err, sizeof err);
    if (rc > 0)
        return 0;
    if (rc < 0) {
        fprintf(stderr, "tipcast-bench: %s\n(see tipcast-bench --help)\n", err);
        return 2;
    }
    /* --idle holds the connections for --duration: nothing to warm up. */
    if (b->o.idle)
        b->o.warmup_s = 0;
    rlim_t fds;
    if (raise_fd_limit(&fds) < 0) {
        fprintf(stderr, "tipcast-bench: cannot read the fd limit: %s\n", strerror(errno));
        return 1;
    }
    if ((rlim_t)b->o.connections + 1 + BENCH_FD_RESERVE > fds) {
        fprintf(stderr,
                "tipcast-bench: %d connections need %d file descriptors; this process may open %llu: "
                "run several bench processes (--user-base) instead\n",
                b->o.connections, b->o.connections + 1 + BENCH_FD_RESERVE, (unsigned long long)fds);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    memset(&b->r, 0, sizeof b->r);
    b->r.cpu_s = b->r.rss_kb_per_conn = b->r.pg_orders_per_s = -1;
    b->r.rss_kb_max = b->r.backlog_max = -1;
    time_t now = time(NULL);
    strftime(b->r.started, sizeof b->r.started, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    if (setup(b) < 0) {
        fprintf(stderr, "tipcast-bench: out of memory\n");
        return 1;
    }
    struct sample base;
    sample_proc(&b->o, &base);
    b->r.rss_kb_before = base.rss_kb;
    b->r.rss_kb_max = base.rss_kb;

    /* A last resort: whatever happens, the process ends. */
    double open_s = (double)b->nconns / b->o.open_rate + BENCH_OPEN_EXTRA_S;
    alarm((unsigned)(open_s + BENCH_FUND_TIMEOUT_S + b->o.warmup_s + b->o.duration_s + BENCH_HARD_EXTRA_S + 30));

    if (open_context(b, fds) < 0) {
        fprintf(stderr, "tipcast-bench: cannot create the libwebsockets context\n");
        return 1;
    }
    if (sample_start(&b->o) < 0)
        fprintf(stderr, "tipcast-bench: no server sampling (cannot start its thread)\n");
    sample_latest(&b->prev);

    start(b, open_s);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    uv_loop_close(&b->loop);
    sample_stop();
    alarm(0);

    if (b->exit_code == 0) {
        report_summary(&b->o, &b->r);
        if (b->o.json_path[0] && report_json(&b->o, &b->r, b->o.json_path) < 0)
            b->exit_code = 1;
        if (b->o.svg_path[0] && report_svg(&b->o, &b->r, b->o.svg_path) < 0)
            b->exit_code = 1;
    }
    release(b);
    return b->exit_code;
}
