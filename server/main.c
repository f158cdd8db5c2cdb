/* main.c - tipcastd: configuration, the loop, signals. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <uv.h>

#include "conn.h"
#include "log.h"
#include "server.h"

static uv_signal_t sig_int, sig_term;

static void on_signal(uv_signal_t *h, int signum)
{
    (void)h;
    log_msg(LOG_INFO, "signal %d: stopping", signum);
    /* The handles go now, so that the loop can end once the server has
     * closed everything else; a second signal gets the default action. */
    uv_close((uv_handle_t *)&sig_int, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    server_stop();
}

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
    log_set_level(srv.cfg.log_level);
    signal(SIGPIPE, SIG_IGN);
    make_node_id();

    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_signal_init(&loop, &sig_int);
    uv_signal_init(&loop, &sig_term);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_start(&sig_term, on_signal, SIGTERM);

    if (server_start(&loop) < 0) {
        uv_close((uv_handle_t *)&sig_int, NULL);
        uv_close((uv_handle_t *)&sig_term, NULL);
        server_stop();
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        conn_table_free();
        return 1;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    int busy = uv_loop_close(&loop);
    conn_table_free();
    if (busy) {
        log_msg(LOG_ERROR, "the loop still had handles at exit");
        return 1;
    }
    return 0;
}
