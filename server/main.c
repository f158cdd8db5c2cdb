/* main.c - tipcastd: configuration, the loop, signals. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <uv.h>

#include "board.h"
#include "catalog.h"
#include "conn.h"
#include "log.h"
#include "migrate.h"
#include "server.h"

/* jemalloc's settings, read at its start. Pages freed by a burst (the
 * handshakes of thousands of connections opening) go back to the system
 * after a second rather than ten: what an idle connection costs is then what
 * it holds, not what its handshake left behind. Ignored by other
 * allocators (the sanitizer builds). */
const char *malloc_conf = "dirty_decay_ms:1000,muzzy_decay_ms:0";

static void make_node_id(void)
{
    unsigned char r[6];
    char host[64] = "node";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    host[16] = '\0';
    if (RAND_bytes(r, sizeof r) != 1)
        memset(r, 0, sizeof r);
    snprintf(srv.node_id, sizeof srv.node_id, "%s-%d-%02x%02x%02x%02x%02x%02x", host, (int)getpid(), r[0], r[1],
             r[2], r[3], r[4], r[5]);
}

int main(int argc, char **argv)
{
    char err[512];
    config_defaults(&srv.cfg);
    int rc = config_load(&srv.cfg, argc, argv, err, sizeof err);
    if (rc > 0)
        return 0;
    if (rc < 0) {
        fprintf(stderr, "tipcastd: %s\n(see tipcastd --help)\n", err);
        return 2;
    }
    /* The leaderboards' days, weeks and months are local time in board-tz
     * (leaderboard/board.h): TZ is set once, before anything else runs. */
    if (board_tz_init(srv.cfg.board_tz, err, sizeof err) < 0) {
        fprintf(stderr, "tipcastd: %s\n", err);
        return 2;
    }
    log_set_level(srv.cfg.log_level);
    signal(SIGPIPE, SIG_IGN);
    make_node_id();

    /* The schema first (the catalog lives in it). Blocking is fine here:
     * the loop has not started. */
    if (migrate_run(srv.cfg.pg_conninfo, err, sizeof err) < 0) {
        fprintf(stderr, "tipcastd: cannot bring the PostgreSQL schema up to date: %s\n", err);
        return 1;
    }

    /* The catalog prices every gift: without it no gift can be sent, so it
     * is loaded before the server starts taking connections. */
    if (catalog_load_blocking(srv.cfg.pg_conninfo, err, sizeof err) < 0) {
        fprintf(stderr, "tipcastd: cannot load the gift catalog from PostgreSQL: %s\n", err);
        return 1;
    }

    uv_loop_t loop;
    uv_loop_init(&loop);
    if (server_start(&loop) < 0) {
        /* Not uv_run: lws 4.1 may have unloaded its libuv plugin with a
         * failed context's handles still on the loop. The process ends. */
        uv_loop_close(&loop);
        conn_table_free();
        catalog_free();
        return 1;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    int busy = uv_loop_close(&loop);
    conn_table_free();
    catalog_free();
    if (busy) {
        log_msg(LOG_ERROR, "the loop still had handles at exit");
        return 1;
    }
    return srv.exit_code;
}
