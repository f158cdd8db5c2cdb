/* opts.c - tipcast-bench's command line (see opts.h). */
#include "opts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* --help: every option. */
static void usage(FILE *f)
{
    fputs(
        "usage: tipcast-bench [options]\n"
        "Load generator for tipcastd and for the fan-out peers (Nchan, Node ws).\n"
        "\n"
        "  --target tipcast|nchan|ws  server kind (default tipcast); peers use /sub/<room> and /pub/<room>\n"
        "  --host H                   server address (default 127.0.0.1)\n"
        "  --port P                   server port (default 8080)\n"
        "  --connections N            connections in all, subscribers + senders (default 100)\n"
        "  --open-rate N              connections opened per second (default 2000)\n"
        "  --rooms R                  rooms, connections spread round robin (default 1); room ids\n"
        "                             bench-room-<i> (tipcast) or benchroom<i> (peers)\n"
        "  --room-base N              number of the first room: bench-room-<N>.. (default 0)\n"
        "  --senders S                connections that send (default one per room); tipcast: viewers among\n"
        "                             the connections; peers: publisher connections to /pub/<room>;\n"
        "                             0: this process only receives (deliveries of other processes' sends)\n"
        "  --rate G                   sends per second in all, on a fixed timetable (default 100)\n"
        "  --duration SEC             measured time (default 10)\n"
        "  --warmup SEC               time before measuring (default 2; none with --idle); hard stop at\n"
        "                             warmup+duration+10 s\n"
        "  --find-max                 raise the rate x1.5 per step until ack p99 > bound or errors > 1%\n"
        "  --step-seconds SEC         length of a --find-max step (default 5)\n"
        "  --refine N                 after the first failed --find-max step, N more steps at the geometric\n"
        "                             mean of the highest held and the lowest failed rate, each after\n"
        "                             the server has answered every send and delivered its events\n"
        "                             (1-10 s), all within --duration; default 0\n"
        "  --p99-bound-ms MS          --find-max latency bound (default 50)\n"
        "  --idle                     open, authenticate, join, hold for --duration, report server RSS per connection\n"
        "  --source-addrs A-B         bind connections round robin to 127.0.0.A..127.0.0.B (default 1-16)\n"
        "  --secret S                 tipcast JWT secret: the bench mints viewer tokens (bench-u<i>) and an admin\n"
        "                             token that credits every sender before the run\n"
        "  --gift ID                  tipcast gift id to send (default 1)\n"
        "  --proto msgpack|json       tipcast subprotocol (default msgpack)\n"
        "  --frame-bytes B            peers: payload bytes of a published frame (default 100, at least 16)\n"
        "  --server-pid PID           repeatable: sample the server's CPU and RSS every second\n"
        "  --redis H:P                sample the outbox backlog (XLEN of every wallet shard's outbox)\n"
        "  --pg CONNINFO              sample PostgreSQL's order count (orders/s)\n"
        "  --wallet-shards N          shards summed for the backlog (default 16)\n"
        "  --json FILE                write the results as JSON\n"
        "  --svg FILE                 write a latency chart (SVG)\n"
        "  --quiet                    no progress lines\n"
        "  --run-id ID                tag of this run in request ids ([A-Za-z0-9], default random)\n"
        "  --user-base N              first user number: bench-u<N>.. (default 0); give each bench process\n"
        "                             its own range when several run at once\n"
        "  --help                     this text\n"
        "\n"
        "Exit status: 0 the run completed (server errors are reported), 1 it could not run\n"
        "(more than 1% of the connections failed), 2 bad options.\n",
        f);
}

const char *opts_target_name(enum target t)
{
    return t == TARGET_NCHAN ? "nchan" : t == TARGET_WS ? "ws" : "tipcast";
}

static void defaults(struct opts *o)
{
    memset(o, 0, sizeof *o);
    o->target = TARGET_TIPCAST;
    strcpy(o->host, "127.0.0.1");
    o->port = 8080;
    o->connections = 100;
    o->open_rate = 2000;
    o->rooms = 1;
    o->senders = -1;
    o->rate = 100;
    o->duration_s = 10;
    o->warmup_s = 2;
    o->step_s = 5;
    o->p99_bound_ms = 50;
    o->src_lo = 1;
    o->src_hi = 16;
    o->gift = 1;
    o->frame_bytes = 100;
    o->wallet_shards = 16;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long seed = (unsigned long long)ts.tv_nsec ^ ((unsigned long long)getpid() << 20) ^
                              (unsigned long long)ts.tv_sec;
    snprintf(o->run_id, sizeof o->run_id, "%08llx", (seed * 0x9E3779B97F4A7C15ULL) >> 32);
}

static int num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int integer(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int str(const char *s, char *dst, size_t cap)
{
    if (strlen(s) >= cap)
        return -1;
    strcpy(dst, s);
    return 0;
}

int opts_parse(struct opts *o, int argc, char **argv, char *err, size_t errcap)
{
    defaults(o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        /* Flags without a value. */
        if (strcmp(a, "--find-max") == 0) {
            o->find_max = 1;
            continue;
        }
        if (strcmp(a, "--idle") == 0) {
            o->idle = 1;
            continue;
        }
        if (strcmp(a, "--quiet") == 0) {
            o->quiet = 1;
            continue;
        }
        /* --name value or --name=value. */
        char name[64];
        const char *v;
        const char *eq = strchr(a, '=');
        if (strncmp(a, "--", 2) != 0 || (eq ? (size_t)(eq - a) : strlen(a)) >= sizeof name) {
            snprintf(err, errcap, "unknown argument '%s'", a);
            return -1;
        }
        if (eq) {
            memcpy(name, a, (size_t)(eq - a));
            name[eq - a] = 0;
            v = eq + 1;
        } else {
            strcpy(name, a);
            if (i + 1 >= argc) {
                snprintf(err, errcap, "%s needs a value", a);
                return -1;
            }
            v = argv[++i];
        }
        int bad = 0;
        if (strcmp(name, "--target") == 0) {
            if (strcmp(v, "tipcast") == 0)
                o->target = TARGET_TIPCAST;
            else if (strcmp(v, "nchan") == 0)
                o->target = TARGET_NCHAN;
            else if (strcmp(v, "ws") == 0)
                o->target = TARGET_WS;
            else
                bad = 1;
        } else if (strcmp(name, "--host") == 0) {
            bad = str(v, o->host, sizeof o->host);
        } else if (strcmp(name, "--port") == 0) {
            bad = integer(v, 1, 65535, &o->port);
        } else if (strcmp(name, "--connections") == 0) {
            bad = integer(v, 1, OPTS_CONNECTIONS_MAX, &o->connections);
        } else if (strcmp(name, "--open-rate") == 0) {
            bad = integer(v, 1, 1000000, &o->open_rate);
        } else if (strcmp(name, "--rooms") == 0) {
            bad = integer(v, 1, OPTS_ROOMS_MAX, &o->rooms);
        } else if (strcmp(name, "--senders") == 0) {
            bad = integer(v, 0, OPTS_CONNECTIONS_MAX, &o->senders);
        } else if (strcmp(name, "--rate") == 0) {
            bad = num(v, 0.1, OPTS_RATE_MAX, &o->rate);
        } else if (strcmp(name, "--duration") == 0) {
            bad = num(v, 0.1, OPTS_DURATION_MAX_S, &o->duration_s);
        } else if (strcmp(name, "--warmup") == 0) {
            bad = num(v, 0, OPTS_DURATION_MAX_S, &o->warmup_s);
        } else if (strcmp(name, "--step-seconds") == 0) {
            bad = num(v, 0.5, OPTS_DURATION_MAX_S, &o->step_s);
        } else if (strcmp(name, "--refine") == 0) {
            bad = integer(v, 0, OPTS_REFINE_MAX, &o->refine);
        } else if (strcmp(name, "--p99-bound-ms") == 0) {
            bad = num(v, 0.01, 60000, &o->p99_bound_ms);
        } else if (strcmp(name, "--source-addrs") == 0) {
            bad = sscanf(v, "%d-%d", &o->src_lo, &o->src_hi) != 2 || o->src_lo < 1 || o->src_hi > 254 ||
                  o->src_lo > o->src_hi;
        } else if (strcmp(name, "--secret") == 0) {
            bad = str(v, o->secret, sizeof o->secret) || !v[0];
        } else if (strcmp(name, "--gift") == 0) {
            bad = integer(v, 1, 2147483647, &o->gift);
        } else if (strcmp(name, "--proto") == 0) {
            if (strcmp(v, "msgpack") == 0)
                o->json = 0;
            else if (strcmp(v, "json") == 0)
                o->json = 1;
            else
                bad = 1;
        } else if (strcmp(name, "--frame-bytes") == 0) {
            bad = integer(v, 16, OPTS_FRAME_BYTES_MAX, &o->frame_bytes);
        } else if (strcmp(name, "--server-pid") == 0) {
            bad = o->nserver_pids >= OPTS_PIDS_MAX || integer(v, 1, 1 << 30, &o->server_pids[o->nserver_pids]);
            if (!bad)
                o->nserver_pids++;
        } else if (strcmp(name, "--redis") == 0) {
            const char *colon = strrchr(v, ':');
            bad = !colon || (size_t)(colon - v) >= sizeof o->redis_host || colon == v ||
                  integer(colon + 1, 1, 65535, &o->redis_port);
            if (!bad) {
                memcpy(o->redis_host, v, (size_t)(colon - v));
                o->redis_host[colon - v] = 0;
            }
        } else if (strcmp(name, "--pg") == 0) {
            bad = str(v, o->pg, sizeof o->pg);
        } else if (strcmp(name, "--wallet-shards") == 0) {
            bad = integer(v, 1, 1024, &o->wallet_shards);
        } else if (strcmp(name, "--json") == 0) {
            bad = str(v, o->json_path, sizeof o->json_path);
        } else if (strcmp(name, "--svg") == 0) {
            bad = str(v, o->svg_path, sizeof o->svg_path);
        } else if (strcmp(name, "--run-id") == 0) {
            bad = str(v, o->run_id, 17) || !v[0] || strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != strlen(v);
        } else if (strcmp(name, "--room-base") == 0) {
            bad = integer(v, 0, 1000000000, &o->room_base);
        } else if (strcmp(name, "--user-base") == 0) {
            bad = integer(v, 0, 1000000000, &o->user_base);
        } else {
            snprintf(err, errcap, "unknown option '%s'", name);
            return -1;
        }
        if (bad) {
            snprintf(err, errcap, "bad value '%s' for %s", v, name);
            return -1;
        }
    }
    if (o->senders < 0)
        o->senders = o->rooms < o->connections ? o->rooms : o->connections;
    if (o->senders > o->connections) {
        snprintf(err, errcap, "--senders %d is more than --connections %d", o->senders, o->connections);
        return -1;
    }
    if (o->target == TARGET_TIPCAST && !o->secret[0]) {
        snprintf(err, errcap, "--target tipcast needs --secret (the JWT secret of tipcastd)");
        return -1;
    }
    if (!o->idle && o->senders == 0 && o->find_max) {
        snprintf(err, errcap, "--find-max needs senders: --senders 0 only receives");
        return -1;
    }
    return 0;
}
