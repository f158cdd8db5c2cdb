/* opts.h - tipcast-bench's command line (every option is in --help, opts.c). */
#ifndef TIPCAST_BENCH_OPTS_H
#define TIPCAST_BENCH_OPTS_H

#include <stddef.h>

#define OPTS_STR_MAX 256
#define OPTS_PIDS_MAX 8
/* Bounds that keep one bench process within its fd limit and memory. */
#define OPTS_CONNECTIONS_MAX 100000
#define OPTS_ROOMS_MAX 100000
#define OPTS_RATE_MAX 10000000.0
#define OPTS_REFINE_MAX 8
#define OPTS_DURATION_MAX_S 3600.0
#define OPTS_FRAME_BYTES_MAX 65536

enum target { TARGET_TIPCAST, TARGET_NCHAN, TARGET_WS };

struct opts {
    enum target target;
    char host[OPTS_STR_MAX];
    int port;
    int connections;
    int open_rate;
    int rooms;
    int senders; /* -1: one per room */
    double rate;
    double duration_s, warmup_s;
    int find_max;
    int refine; /* --refine: steps between the last held rate and the first failed one */
    double step_s;
    double p99_bound_ms;
    int idle;
    int src_lo, src_hi; /* last octet of 127.0.0.X */
    char secret[OPTS_STR_MAX];
    int gift;
    int json; /* --proto json */
    int frame_bytes;
    int server_pids[OPTS_PIDS_MAX];
    int nserver_pids;
    char redis_host[OPTS_STR_MAX];
    int redis_port; /* 0: no Redis sampling */
    char pg[OPTS_STR_MAX * 2];
    int wallet_shards;
    char json_path[OPTS_STR_MAX];
    char svg_path[OPTS_STR_MAX];
    int quiet;
    char run_id[24];
    int user_base;
    int room_base; /* first room number: bench-room-<room_base>.. */
};

/* Fills `o` from argv. Returns 0 to run, 1 when --help was printed (exit 0),
 * -1 on a bad option (the reason is in err). */
int opts_parse(struct opts *o, int argc, char **argv, char *err, size_t errcap);
const char *opts_target_name(enum target t);

#endif
