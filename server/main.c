/* main.c - tipcastd: configuration, the schema, the catalog, the loop. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <uv.h>

#include "calendar.h"
#include "fanlevel.h"
#include "log.h"
#include "migrate.h"
#include "pins.h"
#include "server.h"
#include "version.h"

/* jemalloc's settings, read at its start: pages freed go back to the system
 * after ten seconds unused while the node is busy, and at the next sweep
 * once it is quiet (memory_sweep, server.c), so that what an idle
 * connection costs is what it holds, not what its handshake left behind.
 * Ignored by other allocators (the sanitizer builds). */
const char *malloc_conf = "dirty_decay_ms:10000,muzzy_decay_ms:0";

/* The process's only instance: big (the modules' state), so not on the
 * stack. */
static struct server server;

/* A name for this process's consumers and presence in Redis: host, pid and
 * 48 random bits, so that a restarted node is a new consumer. */
static void make_node_id(char *out, size_t cap)
{
    unsigned char r[6];
    char host[64] = "node";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    host[16] = '\0';
    if (RAND_bytes(r, sizeof r) != 1)
        memset(r, 0, sizeof r);
    snprintf(out, cap, "%s-%d-%02x%02x%02x%02x%02x%02x", host, (int)getpid(), r[0], r[1], r[2], r[3], r[4], r[5]);
}

/* Takes the flags that are modes rather than settings out of argv:
 * --version prints and exits; --check-config loads the configuration
 * (file, environment, flags) and exits 0 when it is valid, 2 when not,
 * without connecting to anything. */
static void take_mode_flags(int *argc, char **argv, int *version, int *check)
{
    int n = 1;
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--version") == 0)
            *version = 1;
        else if (strcmp(argv[i], "--check-config") == 0)
            *check = 1;
        else
            argv[n++] = argv[i];
    }
    argv[n] = NULL;
    *argc = n;
}

int main(int argc, char **argv)
{
    char err[512];
    struct server *s = &server;
    int version = 0, check = 0;
    take_mode_flags(&argc, argv, &version, &check);
    if (version) {
        version_print(stdout, "tipcastd");
        return 0;
    }
    config_defaults(&s->cfg);
    int rc = config_load(&s->cfg, argc, argv, err, sizeof err);
    if (rc > 0)
        return 0;
    if (rc < 0) {
        fprintf(stderr, "tipcastd: %s\n(see tipcastd --help)\n", err);
        return 2;
    }
    /* The leaderboards' days, weeks and months are local time in board-tz
     * (leaderboard/calendar.h): TZ is set once, before anything else runs. */
    if (calendar_tz_init(s->cfg.board_tz, err, sizeof err) < 0 ||
        fanlevel_init(s->cfg.fan_levels, err, sizeof err) < 0 || pin_tiers_check(s->cfg.pin_tiers, err, sizeof err) < 0 ||
        redis_seeds_check(s->cfg.redis_cluster, err, sizeof err) < 0) {
        fprintf(stderr, "tipcastd: %s\n", err);
        return 2;
    }
    if (check) {
        printf("tipcastd: configuration OK\n");
        return 0;
    }
    log_set_level(s->cfg.log_level);
    log_set_format(s->cfg.log_format);
    log_set_repeat_s(s->cfg.log_repeat_s);
    signal(SIGPIPE, SIG_IGN);
    /* A port in use is the commonest reason not to start: said first and
     * plainly, before the schema and the catalog are read. */
    if (listener_probe(s->cfg.listen_addr, s->cfg.port, s->cfg.reuse_port, err, sizeof err) < 0) {
        fprintf(stderr, "tipcastd: %s\n", err);
        return 1;
    }
    if (s->cfg.admin_listen[0]) {
        char addr[CONFIG_STR_MAX];
        int port;
        if (listener_parse(s->cfg.admin_listen, addr, sizeof addr, &port) < 0) {
            fprintf(stderr, "tipcastd: admin-listen %s is not ADDR:PORT (or empty for no admin API)\n",
                    s->cfg.admin_listen);
            return 1;
        }
        if (listener_probe(addr, port, s->cfg.reuse_port, err, sizeof err) < 0) {
            fprintf(stderr, "tipcastd: admin-listen: %s\n", err);
            return 1;
        }
    }
    make_node_id(s->node_id, sizeof s->node_id);

    /* The schema first (the catalog lives in it). Blocking is fine here:
     * the loop has not started. */
    if (migrate_run(s->cfg.pg_conninfo, err, sizeof err) < 0) {
        fprintf(stderr, "tipcastd: cannot bring the PostgreSQL schema up to date: %s\n", err);
        return 1;
    }
    /* The catalog prices every gift: without it no gift can be sent, so it
     * is loaded before the server starts taking connections. */
    if (catalog_load_blocking(&s->catalog, s->cfg.pg_conninfo, err, sizeof err) < 0) {
        fprintf(stderr, "tipcastd: cannot load the gift catalog from PostgreSQL: %s\n", err);
        return 1;
    }
    /* The risk rules and frozen accounts likewise: a gift is checked
     * against them from the first one on. */
    if (risk_init(&s->risk) < 0 || risk_load_blocking(&s->risk, s->cfg.pg_conninfo, err, sizeof err) < 0) {
        fprintf(stderr, "tipcastd: cannot load the risk rules from PostgreSQL: %s\n", err);
        return 1;
    }

    uv_loop_t loop;
    uv_loop_init(&loop);
    if (server_init(s, &loop) < 0) {
        log_msg(LOG_ERROR, "out of memory");
        server_free(s);
        return 1;
    }
    if (server_start(s) < 0) {
        /* Not uv_run: lws 4.1 may have unloaded its libuv plugin with a
         * failed context's handles still on the loop. The process ends. */
        uv_loop_close(&loop);
        server_free(s);
        return 1;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    int busy = uv_loop_close(&loop);
    server_free(s);
    if (busy) {
        log_msg(LOG_ERROR, "the loop still had handles at exit");
        return 1;
    }
    return s->exit_code;
}
