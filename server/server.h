/* server.h - the tipcastd process: configuration, loop, lws context, and the
 * few facts every module reads (the clock, the node id). One instance per
 * process; every module runs on its loop thread. */
#ifndef TIPCAST_SERVER_H
#define TIPCAST_SERVER_H

#include <stdint.h>

#include <libwebsockets.h>
#include <uv.h>

#include "config.h"

struct server {
    struct config cfg;
    uv_loop_t *loop;
    struct lws_context *lws;
    char node_id[40];
    int stopping;
    int exit_code; /* the process's exit status once the loop ends */
};

extern struct server srv;

/* Milliseconds since the epoch (wall clock), and a monotonic clock in ms. */
int64_t now_wall_ms(void);
int64_t now_mono_ms(void);

/* Creates the lws context on the loop and starts the backends. Returns 0 or
 * -1 with the reason logged. */
int server_start(uv_loop_t *loop);
/* Starts the shutdown: stop accepting, close every connection with 1001,
 * then tear down lws and the backends. The loop ends when all is closed. */
void server_stop(void);

#endif
