/* config.h - tipcastd configuration: defaults, file, environment, flags.
 *
 * Every setting has one entry in a table (config.c) that gives its name, its
 * type, its default, its bounds and its help text. The same table drives the
 * config file (`key = value` lines, '#' comments), the environment
 * (TIPCAST_<KEY> with the key upper-cased, '-' as '_') and the command line
 * (`--key=value` or `--key value`), applied in that order, so a flag beats the
 * environment, which beats the file, which beats the default.
 */
#ifndef TIPCAST_CONFIG_H
#define TIPCAST_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "cidr.h"

/* Bounds of string settings and of lists held in fixed arrays. */
#define CONFIG_STR_MAX 256
#define CONFIG_SECRETS_MAX 8
/* Shortest jwt-secret accepted: HS256's key should be as long as its hash. */
#define CONFIG_SECRET_MIN 32
/* Shortest webhook-secret accepted. */
#define CONFIG_WEBHOOK_SECRET_MIN 16
#define CONFIG_ORIGINS_MAX 16
#define CONFIG_CIDRS_MAX 16

/* A setting that lists address blocks (CONFIG_T_CIDRS). */
struct config_cidrs {
    struct cidr block[CONFIG_CIDRS_MAX];
    int n;
};

struct config_secret {
    char kid[64];      /* "" for the default secret (token without kid) */
    char key[CONFIG_STR_MAX];
    int key_len;
};

struct config {
    /* Network */
    char listen_addr[CONFIG_STR_MAX];  /* "listen-addr", default 127.0.0.1 */
    int port;                          /* "port", default 8080 */
    char tls_cert[CONFIG_STR_MAX];     /* "tls-cert", PEM file; "" = plain ws */
    char tls_key[CONFIG_STR_MAX];      /* "tls-key", PEM file */
    int reuse_port;                    /* "reuse-port", 0/1, default 0 */
    int fanout_threads;                /* "fanout-threads", send helper threads, default 1 */
    char web_root[CONFIG_STR_MAX];     /* "web-root", directory of the web page; "" = no page */
    char web_sdk_root[CONFIG_STR_MAX]; /* "web-sdk-root", the JS SDK served at /sdk/; "" = none */
    char web_connect_src[CONFIG_STR_MAX]; /* "web-connect-src", extra CSP connect-src of the pages */
    /* "metrics-allow": comma-separated address blocks that may read
     * /metrics, default loopback; an empty list turns /metrics off. */
    struct config_cidrs metrics_allow;

    /* Backends */
    char redis_host[CONFIG_STR_MAX];   /* "redis-host", default 127.0.0.1 */
    int redis_port;                    /* "redis-port", default 6379 */
    char redis_cluster[CONFIG_STR_MAX]; /* "redis-cluster": seed nodes, or empty */
    int redis_start_timeout_s;         /* "redis-start-timeout-s", default 30 */
    int redis_wait_replicas;           /* "redis-wait-replicas", default 0 (no WAIT) */
    int redis_wait_timeout_ms;         /* "redis-wait-timeout-ms", default 1000 */
    char pg_conninfo[CONFIG_STR_MAX];  /* "pg", libpq conninfo, default "host=127.0.0.1 port=5432 dbname=tipcast" */

    /* Authentication. "jwt-secret" is "secret" or "kid:secret[,kid:secret...]";
     * a token whose header has no kid is checked against the entry without a
     * kid, or the first entry when every entry has one. */
    struct config_secret secrets[CONFIG_SECRETS_MAX];
    int secrets_count;
    /* "allowed-origins": comma-separated Origin values ("https://a.example");
     * "*" allows any. A handshake without an Origin header (native apps) is
     * always allowed; one with an Origin not in the list is refused. */
    char origins[CONFIG_ORIGINS_MAX][CONFIG_STR_MAX];
    int origins_count;
    int origins_any;
    /* "demo", 0/1, default 0: GET /demo/token hands out tokens of the demo
     * users and the page's own origin may open WebSockets. Never in production. */
    int demo;

    /* Timers */
    int auth_timeout_ms;               /* "auth-timeout-ms", default 5000 */
    int ping_interval_s;               /* "ping-interval-s", default 20 */
    int idle_timeout_s;                /* "idle-timeout-s", default 60 */
    int http_timeout_s;                /* "http-timeout-s", default 5 */

    /* Limits */
    int max_frame_bytes;               /* "max-frame-bytes", default 8192 */
    int max_msgs_per_s;                /* "max-msgs-per-s", default 20 */
    int max_burst;                     /* "max-burst", default 40 */
    int max_queued_bytes;              /* "max-queued-bytes", default 1048576 */
    int slow_consumer_ms;              /* "slow-consumer-ms", default 5000 */
    int max_unsent_bytes;              /* "max-unsent-bytes", TCP_NOTSENT_LOWAT, default 65536, 0 = kernel's */
    int max_rooms_per_conn;            /* "max-rooms-per-conn", default 8 */
    int max_members_per_room;          /* "max-members-per-room", default 50000 */
    int max_connections;               /* "max-connections", WebSockets, default 19000 */
    int max_http_connections;          /* "max-http-connections", other client sockets, default 1024 */
    int history_len;                   /* "history-len", default 200 */
    int snapshot_events;               /* "snapshot-events", default 20 */
    int sndbuf_bytes;                  /* "sndbuf-bytes", per-socket SO_SNDBUF, default 65536, 0 = kernel's */
    int max_conns_per_user;            /* "max-conns-per-user", default 16 */
    int max_conns_per_address;         /* "max-conns-per-address", default 1000 */
    /* "conns-per-address-exempt": address blocks not counted per address
     * (proxies), default loopback. */
    struct config_cidrs conns_exempt;
    int history_reads_max;             /* "history-reads-max", default 64 */
    int history_queued_bytes;          /* "history-queued-bytes", default 32 MiB */

    /* Money */
    int wallet_shards;                 /* "wallet-shards", default 16 */
    int idem_ttl_s;                    /* "idem-ttl-s", default 3600 */
    int external_idem_hours;           /* "external-idempotency-hours", default 720 */
    int tip_min;                       /* "tip-min", default 1 */
    int tip_max;                       /* "tip-max", default 1000000 */
    int gift_max_count;                /* "gift-max-count", default 9999 */
    int outbox_max_backlog;            /* "outbox-max-backlog", default 100000 per shard */
    int ledger_batch;                  /* "ledger-batch", default 5000 */
    int ledger_flush_ms;               /* "ledger-flush-ms", default 200 */
    int rooms_gather_ms;               /* "rooms-gather-ms", default 50 */
    int rooms_gather_from;             /* "rooms-gather-from", default 2000 entries/s */
    char board_tz[CONFIG_STR_MAX];     /* "board-tz", IANA zone of the day/week/month boards, default UTC */
    int board_push_ms;                 /* "board-push-ms", default 500 */
    int combo_window_ms;               /* "combo-window-ms", default 3000 */
    char fan_levels[CONFIG_STR_MAX];   /* "fan-levels", "THRESHOLD:BADGE,..." (leaderboard/fanlevel.h) */
    int pin_min_amount;                /* "pin-min-amount", default 1000 */
    char pin_tiers[CONFIG_STR_MAX];    /* "pin-tiers", "AMOUNT:SECONDS,..." (rooms/pins.h) */
    int redis_unsafe;                  /* "redis-unsafe", accept a Redis without AOF / with eviction */

    /* Settlement (docs/admin-api.md, docs/settlement.md) */
    char admin_listen[CONFIG_STR_MAX]; /* "admin-listen", ADDR:PORT, default 127.0.0.1:8081, "" = none */
    int admin_body_max;                /* "admin-body-max", default 65536 */
    int admin_max_connections;         /* "admin-max-connections", default 64 */
    int admin_pg_connections;          /* "admin-pg-connections", default 4 */
    char payment_secret[CONFIG_STR_MAX]; /* "payment-secret", "" = callbacks refused */
    int settlement_delay_days;         /* "settlement-delay-days", default 7 */
    int settlement_interval_s;         /* "settlement-interval-s", default 3600 */
    int withdrawal_min;                /* "withdrawal-min", default 1000 */
    int reconcile_interval_s;          /* "reconcile-interval-s", default 86400, 0 = off */
    int risk_scan_interval_s;          /* "risk-scan-interval-s", default 60, 0 = no scan */
    int campaign_fee_bp;               /* "campaign-fee-bp", default 500 */
    int campaign_interval_ms;          /* "campaign-interval-ms", default 1000 */
    int campaign_surge_pledges;        /* "campaign-surge-pledges", default 100, 0 = no alert */
    int campaign_refunds_per_tick;     /* "campaign-refunds-per-tick", default 500 */

    /* Webhooks (docs/settlement.md, "Webhooks") */
    char webhook_url[CONFIG_STR_MAX];  /* "webhook-url", http://HOST[:PORT]/PATH, "" = no webhooks */
    char webhook_secret[CONFIG_STR_MAX]; /* "webhook-secret", HMAC key, >= 16 bytes when webhook-url is set */
    int webhook_timeout_ms;            /* "webhook-timeout-ms", default 5000 */
    int webhook_retry_base_ms;         /* "webhook-retry-base-ms", default 1000 */
    int webhook_give_up_s;             /* "webhook-give-up-s", default 86400 */
    int webhook_poll_ms;               /* "webhook-poll-ms", default 500 */

    /* Logging */
    int log_level;                     /* "log-level" error|warn|info|debug, default info */
    int log_format;                    /* "log-format" logfmt|json (enum log_format), default logfmt */
    int log_repeat_s;                  /* "log-repeat-s", window of repeated warnings, default 10 */
};

/* 1 when webhooks are configured (webhook-url): the settlement functions
 * and the ledger then queue them with their events. */
static inline int config_webhooks_on(const struct config *cfg) { return cfg->webhook_url[0] != '\0'; }

/* Fills `cfg` with the defaults. */
void config_defaults(struct config *cfg);

/* Applies, in order: the file named by a `--config PATH` flag (if any), the
 * TIPCAST_* environment, then the other flags. `--help` prints the help and
 * returns 1. Returns 0 on success, 1 when the caller should exit 0 (help),
 * -1 on error with a message written to `err` (size errlen). On error `cfg`
 * may be partly updated and must not be used. */
int config_load(struct config *cfg, int argc, char **argv, char *err, size_t errlen);

/* config_load without the checks that only tipcastd needs (a jwt-secret,
 * settings that go together): for tools that read the same settings to
 * find the same databases (tipcast-admin). */
int config_read(struct config *cfg, int argc, char **argv, char *err, size_t errlen);

/* Sets one setting by its key from a string value. Returns 0, or -1 with a
 * message in `err`. Used by config_load and by tests. */
int config_set(struct config *cfg, const char *key, const char *value, char *err, size_t errlen);

/* The secret tokens that tipcastd mints are signed with (demo and overlay
 * tokens): the entry without a kid, else the first one; the same choice the
 * verifier makes for a token without kid. NULL when none is configured. */
const struct config_secret *config_sign_secret(const struct config *cfg);

/* Writes the help text (every setting, its default and its meaning) to `out`. */
void config_help(FILE *out);

#endif
