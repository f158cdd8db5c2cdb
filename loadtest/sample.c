/* sample.c - server sampling on a thread of its own (see sample.h). */
#include "sample.h"

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SAMPLE_PERIOD_MS 1000
/* Bounds on the blocking calls, well under the period. */
#define SAMPLE_REDIS_TIMEOUT_MS 300
#define SAMPLE_PG_TIMEOUT_MS 700

static struct {
    const struct opts *o;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int running, stop;
    struct sample latest;
    redisContext *redis;
    PGconn *pg;
} S = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static double clock_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void sample_proc(const struct opts *o, struct sample *s)
{
    long tick = sysconf(_SC_CLK_TCK);
    s->cpu_s = o->nserver_pids ? 0 : -1;
    s->rss_kb = o->nserver_pids ? 0 : -1;
    s->at_s = clock_s();
    for (int i = 0; i < o->nserver_pids; i++) {
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%d/stat", o->server_pids[i]);
        FILE *f = fopen(path, "r");
        if (!f) {
            s->cpu_s = s->rss_kb = -1;
            return;
        }
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        /* Fields after the command name, which may hold spaces: state is
         * field 3, utime 14 and stime 15. */
        char *p = strrchr(buf, ')');
        unsigned long ut = 0, st = 0;
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) {
            s->cpu_s = s->rss_kb = -1;
            return;
        }
        s->cpu_s += (double)(ut + st) / (double)tick;
        snprintf(path, sizeof path, "/proc/%d/status", o->server_pids[i]);
        f = fopen(path, "r");
        if (!f) {
            s->rss_kb = -1;
            return;
        }
        long kb = -1;
        while (fgets(buf, sizeof buf, f))
            if (sscanf(buf, "VmRSS: %ld", &kb) == 1)
                break;
        fclose(f);
        if (kb < 0 || s->rss_kb < 0)
            s->rss_kb = -1;
        else
            s->rss_kb += kb;
    }
}

static long long read_backlog(void)
{
    const struct opts *o = S.o;
    if (!o->redis_port)
        return -1;
    if (!S.redis) {
        struct timeval tv = {0, SAMPLE_REDIS_TIMEOUT_MS * 1000};
        S.redis = redisConnectWithTimeout(o->redis_host, o->redis_port, tv);
        if (!S.redis || S.redis->err) {
            redisFree(S.redis);
            S.redis = NULL;
            return -1;
        }
        redisSetTimeout(S.redis, tv);
    }
    /* One pipelined round trip for every shard. */
    for (int i = 0; i < o->wallet_shards; i++)
        redisAppendCommand(S.redis, "XLEN tc:{w:%d}:outbox", i);
    long long sum = 0;
    for (int i = 0; i < o->wallet_shards; i++) {
        redisReply *r = NULL;
        if (redisGetReply(S.redis, (void **)&r) != REDIS_OK || !r) {
            redisFree(S.redis);
            S.redis = NULL;
            return -1;
        }
        if (r->type == REDIS_REPLY_INTEGER)
            sum += r->integer;
        freeReplyObject(r);
    }
    return sum;
}

static long long read_orders(void)
{
    const struct opts *o = S.o;
    if (!o->pg[0])
        return -1;
    if (!S.pg) {
        char conninfo[sizeof o->pg + 96];
        snprintf(conninfo, sizeof conninfo, "%s connect_timeout=2 options='-c statement_timeout=%d'", o->pg,
                 SAMPLE_PG_TIMEOUT_MS);
        S.pg = PQconnectdb(conninfo);
        if (PQstatus(S.pg) != CONNECTION_OK) {
            PQfinish(S.pg);
            S.pg = NULL;
            return -1;
        }
    }
    PGresult *res = PQexec(S.pg, "SELECT count(*) FROM orders");
    long long n = -1;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        n = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    if (n < 0 && PQstatus(S.pg) != CONNECTION_OK) {
        PQfinish(S.pg);
        S.pg = NULL;
    }
    return n;
}

static void *run(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&S.lock);
    while (!S.stop) {
        pthread_mutex_unlock(&S.lock);
        struct sample s;
        sample_proc(S.o, &s);
        s.backlog = read_backlog();
        s.orders = read_orders();
        pthread_mutex_lock(&S.lock);
        S.latest = s;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += SAMPLE_PERIOD_MS / 1000;
        while (!S.stop && pthread_cond_timedwait(&S.wake, &S.lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&S.lock);
    return NULL;
}

int sample_start(const struct opts *o)
{
    S.o = o;
    S.latest = (struct sample){-1, -1, -1, -1, 0};
    S.stop = 0;
    if (pthread_create(&S.thread, NULL, run, NULL) != 0)
        return -1;
    S.running = 1;
    return 0;
}

void sample_latest(struct sample *s)
{
    pthread_mutex_lock(&S.lock);
    *s = S.latest;
    pthread_mutex_unlock(&S.lock);
}

void sample_stop(void)
{
    if (!S.running)
        return;
    pthread_mutex_lock(&S.lock);
    S.stop = 1;
    pthread_cond_signal(&S.wake);
    pthread_mutex_unlock(&S.lock);
    pthread_join(S.thread, NULL);
    S.running = 0;
    if (S.redis)
        redisFree(S.redis);
    if (S.pg)
        PQfinish(S.pg);
    S.redis = NULL;
    S.pg = NULL;
}
