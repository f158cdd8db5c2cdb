/* rcluster_probe.c - core/rcluster.c under load, for tests/test_cluster.py.
 *
 *   rcluster_probe SEEDS KEYS RATE SECONDS
 *
 * Connects to the cluster, waits until it is ready (at most 20 s), then runs
 * a script that adds 1 to one of KEYS keys ("tc:{w:N}:probe", N = 0..KEYS-1,
 * round robin) RATE times a second for SECONDS, open loop, and waits for
 * every answer. Prints, one per line:
 *   "acked N COUNT"  the adds to key N that were answered with a number;
 *   "second S OK UNAVAILABLE ERRORS REFUSED"  per second of the run;
 *   "totals OK UNAVAILABLE ERRORS REFUSED"  (refused: not sent, no master);
 *   "sent N"  the adds asked for (answered or refused);
 *   "redirects R" and "refreshes F", from rcluster;
 *   "error TEXT"  the first few error replies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "rcluster.h"

#define SECONDS_MAX 120

static struct rlink_script add_script = {
    .name = "probe_add",
    .src = "return redis.call('INCRBY', KEYS[1], ARGV[1])",
};

static struct rcluster rc;
static uv_loop_t *loop;
static uv_timer_t tick;
static long nkeys, rate, seconds;
static long *acked;
static long ok[SECONDS_MAX], unavailable[SECONDS_MAX], errors[SECONDS_MAX], refused_in[SECONDS_MAX];
static long refused, sent, answered, next_key;
static uint64_t t0, t_start;
static int shown;
static int started;

struct op {
    long key;
    long second;
};

static void on_add(redisReply *r, void *priv)
{
    struct op *o = priv;
    answered++;
    if (!r) {
        unavailable[o->second]++;
    } else if (r->type == REDIS_REPLY_INTEGER) {
        ok[o->second]++;
        acked[o->key]++;
    } else {
        errors[o->second]++;
        if (shown++ < 5 && r->type == REDIS_REPLY_ERROR)
            printf("error %.*s\n", (int)r->len, r->str);
    }
    free(o);
}

static void finish(void)
{
    uv_timer_stop(&tick);
    long tok = 0, tun = 0, ter = 0;
    for (long k = 0; k < nkeys; k++)
        printf("acked %ld %ld\n", k, acked[k]);
    for (long s = 0; s < seconds; s++) {
        printf("second %ld %ld %ld %ld %ld\n", s, ok[s], unavailable[s], errors[s], refused_in[s]);
        tok += ok[s];
        tun += unavailable[s];
        ter += errors[s];
    }
    printf("totals %ld %ld %ld %ld\n", tok, tun, ter, refused);
    printf("sent %ld\n", sent);
    printf("redirects %ld\nrefreshes %ld\n", rc.redirects, rc.refreshes);
    fflush(stdout);
    rcluster_stop(&rc);
    uv_close((uv_handle_t *)&tick, NULL);
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
    uint64_t now = uv_now(loop);
    if (!started) {
        if (rcluster_ready(&rc)) {
            started = 1;
            t0 = now;
        } else if (now - t_start > 20000) {
            fprintf(stderr, "rcluster_probe: the cluster was not ready within 20 s\n");
            exit(1);
        }
        return;
    }
    uint64_t el = now - t0;
    long second = (long)(el / 1000);
    if (second < seconds) {
        long due = (long)((double)rate * (double)el / 1000.0);
        while (sent < due) {
            char key[64];
            long k = next_key++ % nkeys;
            int n = snprintf(key, sizeof key, "tc:{w:%ld}:probe", k);
            const char *argv[] = {key, "1"};
            const size_t len[] = {(size_t)n, 1};
            struct op *o = malloc(sizeof *o);
            o->key = k;
            o->second = second;
            sent++;
            if (rcluster_eval(&rc, RLINK_CMD_LINK, &add_script, 1, 2, argv, len, on_add, o) < 0) {
                refused++;
                refused_in[second]++;
                free(o);
            }
        }
    } else if (answered + refused == sent) {
        finish();
    } else if (el > (uint64_t)(seconds + 30) * 1000) {
        fprintf(stderr, "rcluster_probe: %ld answers missing 30 s after the run\n", sent - refused - answered);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: rcluster_probe SEEDS KEYS RATE SECONDS\n");
        return 2;
    }
    nkeys = atol(argv[2]);
    rate = atol(argv[3]);
    seconds = atol(argv[4]);
    if (nkeys < 1 || rate < 1 || seconds < 1 || seconds > SECONDS_MAX) {
        fprintf(stderr, "rcluster_probe: KEYS, RATE >= 1, SECONDS 1..%d\n", SECONDS_MAX);
        return 2;
    }
    acked = calloc((size_t)nkeys, sizeof *acked);
    loop = uv_default_loop();
    char err[200];
    if (rcluster_init(&rc, loop, argv[1], NULL, err, sizeof err) < 0) {
        fprintf(stderr, "rcluster_probe: %s\n", err);
        return 2;
    }
    rcluster_script_add(&rc, &add_script);
    rcluster_start(&rc);
    t_start = uv_now(loop);
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, on_tick, 1, 1);
    uv_run(loop, UV_RUN_DEFAULT);
    rcluster_free(&rc);
    free(acked);
    return 0;
}
