/* config.c - tipcastd configuration: one table drives defaults, the config
 * file, the TIPCAST_* environment, the command line and the help text.
 *
 * Adding a setting means adding a field to struct config and one row to
 * config_table below; parsing, bounds, precedence and --help follow from it.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A config file line, without its newline, may be this long. */
#define CONFIG_LINE_MAX 1024
/* A config file may have this many lines; a longer one is surely not ours. */
#define CONFIG_FILE_LINES_MAX 10000
/* Longest setting name; longer names are unknown by construction. */
#define CONFIG_KEY_MAX 64
/* Longest value of a list setting (jwt-secret, allowed-origins). */
#define CONFIG_LIST_VALUE_MAX 4096
/* Columns of the help text: where the explanation starts, where it wraps. */
#define CONFIG_HELP_COL 30
#define CONFIG_HELP_WIDTH 79

enum config_type {
    CONFIG_T_INT,
    CONFIG_T_STR,
    CONFIG_T_BOOL,
    CONFIG_T_SECRETS,
    CONFIG_T_ORIGINS,
    CONFIG_T_LOG_LEVEL,
};

enum config_group {
    CONFIG_G_NETWORK,
    CONFIG_G_BACKENDS,
    CONFIG_G_AUTH,
    CONFIG_G_TIMERS,
    CONFIG_G_LIMITS,
    CONFIG_G_MONEY,
    CONFIG_G_LOGGING,
    CONFIG_G_COUNT,
};

static const char *const config_group_names[CONFIG_G_COUNT] = {
    "Network", "Backends", "Authentication", "Timers", "Limits", "Money", "Logging",
};

struct config_entry {
    const char *key;
    enum config_group group;
    enum config_type type;
    size_t offset;       /* of the field in struct config (int or char[]) */
    long long min, max;  /* bounds of CONFIG_T_INT */
    const char *def;     /* default as text; NULL when there is none */
    const char *metavar; /* what the value looks like, for --help */
    const char *help;
};

#define CONFIG_OFF(field) offsetof(struct config, field)

static const struct config_entry config_table[] = {
    /* Network */
    {"listen-addr", CONFIG_G_NETWORK, CONFIG_T_STR, CONFIG_OFF(listen_addr), 0, 0,
     "127.0.0.1", "ADDR",
     "IP address to listen on; 0.0.0.0 or :: listens on every interface. Keep "
     "127.0.0.1 when a reverse proxy or load balancer on the same host forwards "
     "to tipcastd."},
    {"port", CONFIG_G_NETWORK, CONFIG_T_INT, CONFIG_OFF(port), 1, 65535, "8080", "PORT",
     "TCP port of the WebSocket endpoint (/ws) and of the health checks "
     "(/healthz, /readyz)."},
    {"tls-cert", CONFIG_G_NETWORK, CONFIG_T_STR, CONFIG_OFF(tls_cert), 0, 0, "", "FILE",
     "PEM certificate chain. With tls-key, clients connect with wss://; empty "
     "serves plain ws:// for when TLS ends in a proxy in front of tipcastd."},
    {"tls-key", CONFIG_G_NETWORK, CONFIG_T_STR, CONFIG_OFF(tls_key), 0, 0, "", "FILE",
     "PEM private key of tls-cert. Set both or neither."},
    {"reuse-port", CONFIG_G_NETWORK, CONFIG_T_BOOL, CONFIG_OFF(reuse_port), 0, 1, "0", "BOOL",
     "Listen with SO_REUSEPORT, so that several tipcastd processes on one host "
     "share the port and the kernel spreads new connections across them."},
    {"web-root", CONFIG_G_NETWORK, CONFIG_T_STR, CONFIG_OFF(web_root), 0, 0, "", "DIR",
     "Directory of a web page to serve at / (its index.html) and /NAME for "
     "its other files (.html .js .css .json .svg .png .ico .txt directly in "
     "DIR). The files are read once at start; empty serves no page."},

    /* Backends */
    {"redis-host", CONFIG_G_BACKENDS, CONFIG_T_STR, CONFIG_OFF(redis_host), 0, 0,
     "127.0.0.1", "HOST",
     "Redis server that holds rooms, sequence numbers, event history and "
     "wallets, and carries room events between tipcastd nodes."},
    {"redis-port", CONFIG_G_BACKENDS, CONFIG_T_INT, CONFIG_OFF(redis_port), 1, 65535, "6379",
     "PORT", "TCP port of the Redis server."},
    {"pg", CONFIG_G_BACKENDS, CONFIG_T_STR, CONFIG_OFF(pg_conninfo), 0, 0,
     "host=127.0.0.1 port=5432 dbname=tipcast", "CONNINFO",
     "PostgreSQL connection string in libpq conninfo form; PostgreSQL is the "
     "system of record for orders and the ledger. Keep the password in "
     "~/.pgpass or PGPASSWORD rather than in this string."},

    /* Authentication */
    {"jwt-secret", CONFIG_G_AUTH, CONFIG_T_SECRETS, CONFIG_OFF(secrets), 0, 0, NULL, "KEYS",
     "Required. HS256 key that verifies client tokens: SECRET, or "
     "KID:SECRET[,KID:SECRET...] to rotate keys (configure old and new, mint "
     "with the new, then drop the old). A token's header kid picks the key; a "
     "token without kid uses the entry without KID, else the first entry. Use "
     "at least 32 random bytes, and pass it in TIPCAST_JWT_SECRET or the config "
     "file: a flag shows in the process list."},
    {"allowed-origins", CONFIG_G_AUTH, CONFIG_T_ORIGINS, CONFIG_OFF(origins), 0, 0, "",
     "ORIGINS",
     "Comma-separated Origin values that browsers may connect from, each "
     "scheme://host[:port] (e.g. https://app.example), or * for any. A handshake "
     "with another Origin is refused with HTTP 403; clients that send no Origin "
     "(mobile apps, servers) are always allowed. Empty refuses every browser."},
    {"demo", CONFIG_G_AUTH, CONFIG_T_BOOL, CONFIG_OFF(demo), 0, 1, "0", "BOOL",
     "Development only, NEVER in production: serves GET /demo/token?user=NAME, "
     "which gives anyone a valid token of a demo user (viewers bob, carol, "
     "dave, erin; creator alice), and lets pages served by this tipcastd "
     "(same origin) open WebSockets whatever allowed-origins says."},

    /* Timers */
    {"auth-timeout-ms", CONFIG_G_TIMERS, CONFIG_T_INT, CONFIG_OFF(auth_timeout_ms), 50,
     600000, "5000", "MS",
     "Time a new connection has to present a valid token (in the URL, the "
     "Authorization header or a first auth message) before it is closed with "
     "4001."},
    {"ping-interval-s", CONFIG_G_TIMERS, CONFIG_T_INT, CONFIG_OFF(ping_interval_s), 1, 3600,
     "20", "SECONDS",
     "Interval of the server's WebSocket pings, which keep NAT and proxy "
     "mappings open and reveal peers that vanished without closing."},
    {"idle-timeout-s", CONFIG_G_TIMERS, CONFIG_T_INT, CONFIG_OFF(idle_timeout_s), 1, 86400,
     "60", "SECONDS",
     "A connection that sends no frame and answers no ping for this long is "
     "closed with 4010. Keep it well above ping-interval-s."},

    /* Limits */
    {"max-frame-bytes", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(max_frame_bytes), 256,
     1048576, "8192", "BYTES",
     "Largest message a client may send; a larger one closes the connection "
     "with 1009."},
    {"max-msgs-per-s", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(max_msgs_per_s), 1, 100000,
     "20", "N",
     "Requests per second a connection may sustain; requests beyond it are "
     "answered rate_limited and dropped, and a client sending more than three "
     "times the rate in one second is closed with 4008."},
    {"max-burst", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(max_burst), 1, 1000000, "40", "N",
     "Requests a connection may send at once before max-msgs-per-s applies "
     "(the size of its token bucket)."},
    {"max-queued-bytes", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(max_queued_bytes), 4096,
     1LL << 30, "1048576", "BYTES",
     "Unsent bytes a connection may have queued before it is closed as a slow "
     "consumer (close 4009), so that one stalled reader cannot grow the "
     "server's memory."},
    {"max-rooms-per-conn", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(max_rooms_per_conn), 1,
     1024, "8", "N",
     "Rooms one connection may be in at once; one more join is answered "
     "too_many_rooms."},
    {"max-members-per-room", CONFIG_G_LIMITS, CONFIG_T_INT,
     CONFIG_OFF(max_members_per_room), 1, 10000000, "50000", "N",
     "Members one room may have on this node; one more join is answered "
     "room_full."},
    {"max-connections", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(max_connections), 1,
     1000000, "19000", "N",
     "Open client connections this node accepts; new connections beyond it "
     "are refused. Keep it below the process's open file limit (ulimit -n), "
     "which also has to cover the Redis and PostgreSQL sockets."},
    {"history-len", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(history_len), 1, 100000, "200",
     "N",
     "Events kept per room for clients that reconnect and ask for what they "
     "missed; asking for older events is answered history_gone."},
    {"snapshot-events", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(snapshot_events), 0, 100,
     "20", "N",
     "Latest events of a room sent in the joined reply, so a new member sees "
     "recent gifts and notices at once; 0 sends none."},
    {"sndbuf-bytes", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(sndbuf_bytes), 0, 16777216,
     "0", "BYTES",
     "SO_SNDBUF of each client socket; 0 keeps the kernel's default. A smaller "
     "buffer saves kernel memory with many connections and lets "
     "max-queued-bytes catch slow consumers sooner."},

    /* Money */
    {"wallet-shards", CONFIG_G_MONEY, CONFIG_T_INT, CONFIG_OFF(wallet_shards), 1, 1024, "16", "N",
     "Wallet shards: a user's wallet, its outbox stream and its idempotency "
     "records live on shard hash(user) mod N (keys tc:{w:N}:...). Fixed for "
     "the life of the data: changing it moves wallets."},
    {"idem-ttl-s", CONFIG_G_MONEY, CONFIG_T_INT, CONFIG_OFF(idem_ttl_s), 60, 604800, "3600", "SECONDS",
     "How long the result of a money request is kept under its request id, so "
     "that a retry answers the first result instead of paying twice. Each "
     "record costs Redis memory (see docs/operations.md)."},
    {"tip-min", CONFIG_G_MONEY, CONFIG_T_INT, CONFIG_OFF(tip_min), 1, 2000000000, "1", "COINS",
     "Smallest tip."},
    {"tip-max", CONFIG_G_MONEY, CONFIG_T_INT, CONFIG_OFF(tip_max), 1, 2000000000, "1000000", "COINS",
     "Largest tip."},
    {"gift-max-count", CONFIG_G_MONEY, CONFIG_T_INT, CONFIG_OFF(gift_max_count), 1, 1000000, "9999", "N",
     "Most gifts of one kind in one gift request."},
    {"outbox-max-backlog", CONFIG_G_MONEY, CONFIG_T_INT, CONFIG_OFF(outbox_max_backlog), 100, 100000000,
     "100000", "ENTRIES",
     "Entries a wallet shard's outbox may hold before new gifts are refused "
     "with the retryable error backlogged: while PostgreSQL is down the "
     "outbox grows, and this keeps it from exhausting Redis memory."},
    {"ledger-batch", CONFIG_G_MONEY, CONFIG_T_INT, CONFIG_OFF(ledger_batch), 1, 10000, "5000", "N",
     "Most outbox entries written to PostgreSQL in one transaction. Only a "
     "backlog fills one; larger ones cost PostgreSQL less per entry."},
    {"ledger-flush-ms", CONFIG_G_MONEY, CONFIG_T_INT, CONFIG_OFF(ledger_flush_ms), 1, 60000, "50", "MS",
     "Longest wait for more entries before a partial batch is written."},
    {"board-tz", CONFIG_G_MONEY, CONFIG_T_STR, CONFIG_OFF(board_tz), 0, 0, "UTC", "ZONE",
     "Time zone (IANA name, e.g. Asia/Shanghai) in which the daily, weekly "
     "(from Monday) and monthly leaderboards start."},
    {"board-push-ms", CONFIG_G_MONEY, CONFIG_T_INT, CONFIG_OFF(board_push_ms), 50, 60000, "500", "MS",
     "Shortest interval between two leaderboard pushes to a room's members, "
     "however many gifts arrive. In a big room every push is one frame per "
     "member: at 10,000 members, 2 pushes a second cost 20,000 frames a second."},
    {"redis-unsafe", CONFIG_G_MONEY, CONFIG_T_BOOL, CONFIG_OFF(redis_unsafe), 0, 1, "0", "BOOL",
     "Accept a Redis without appendonly or with an evicting maxmemory-policy, "
     "which can lose balances. Only for throw-away setups."},

    /* Logging */
    {"log-level", CONFIG_G_LOGGING, CONFIG_T_LOG_LEVEL, CONFIG_OFF(log_level), 0, 3, "info",
     "LEVEL",
     "error, warn, info or debug; messages less severe than this are not "
     "written."},
};

#define CONFIG_TABLE_LEN (sizeof(config_table) / sizeof(config_table[0]))

static const char *const config_log_levels[] = {"error", "warn", "info", "debug"};

/* Writes a message to err, which may be NULL or empty; every error path goes
 * through here so that no caller can overflow it. */
__attribute__((format(printf, 3, 4)))
static void config_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static const struct config_entry *config_find(const char *key)
{
    for (size_t i = 0; i < CONFIG_TABLE_LEN; i++) {
        if (strcmp(config_table[i].key, key) == 0)
            return &config_table[i];
    }
    return NULL;
}

static int config_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Trims [*s, *s + *len) of surrounding whitespace without writing to it. */
static void config_trim_span(const char **s, size_t *len)
{
    while (*len > 0 && config_is_space((*s)[0])) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && config_is_space((*s)[*len - 1]))
        (*len)--;
}

/* Trims a NUL-terminated string in place; returns its new start. */
static char *config_trim(char *s)
{
    size_t len;

    while (config_is_space(*s))
        s++;
    len = strlen(s);
    while (len > 0 && config_is_space(s[len - 1]))
        len--;
    s[len] = '\0';
    return s;
}

static int config_set_int(const struct config_entry *e, struct config *cfg, const char *value,
                          char *err, size_t errlen)
{
    char *end = NULL;
    long long v;

    if (value[0] == '\0') {
        config_err(err, errlen, "%s: empty value, expected an integer", e->key);
        return -1;
    }
    /* strtoll would skip leading blanks and accept "+"; a setting is digits
     * with an optional minus, nothing else. */
    if (!(isdigit((unsigned char)value[0]) || (value[0] == '-' && isdigit((unsigned char)value[1])))) {
        config_err(err, errlen, "%s: %.64s is not an integer", e->key, value);
        return -1;
    }
    errno = 0;
    v = strtoll(value, &end, 10);
    if (*end != '\0') {
        config_err(err, errlen, "%s: %.64s is not an integer", e->key, value);
        return -1;
    }
    if (errno == ERANGE || v < e->min || v > e->max) {
        config_err(err, errlen, "%s: %.64s is out of range %lld..%lld", e->key, value, e->min,
                   e->max);
        return -1;
    }
    *(int *)(void *)((char *)cfg + e->offset) = (int)v;
    return 0;
}

static int config_set_str(const struct config_entry *e, struct config *cfg, const char *value,
                          char *err, size_t errlen)
{
    size_t len = strlen(value);
    char *field = (char *)cfg + e->offset;

    if (len > CONFIG_STR_MAX - 1) {
        config_err(err, errlen, "%s: value is %zu bytes, longer than the limit of %d", e->key,
                   len, CONFIG_STR_MAX - 1);
        return -1;
    }
    memcpy(field, value, len + 1);
    return 0;
}

static int config_set_bool(const struct config_entry *e, struct config *cfg, const char *value,
                           char *err, size_t errlen)
{
    static const char *const yes[] = {"1", "true", "yes"};
    static const char *const no[] = {"0", "false", "no"};
    int *field = (int *)(void *)((char *)cfg + e->offset);

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(value, yes[i]) == 0) {
            *field = 1;
            return 0;
        }
        if (strcasecmp(value, no[i]) == 0) {
            *field = 0;
            return 0;
        }
    }
    config_err(err, errlen, "%s: %.64s is not a boolean (use 0/1, true/false or yes/no)",
               e->key, value);
    return -1;
}

static int config_set_log_level(const struct config_entry *e, struct config *cfg,
                                const char *value, char *err, size_t errlen)
{
    int *field = (int *)(void *)((char *)cfg + e->offset);

    for (size_t i = 0; i < sizeof(config_log_levels) / sizeof(config_log_levels[0]); i++) {
        if (strcasecmp(value, config_log_levels[i]) == 0) {
            *field = (int)i;
            return 0;
        }
    }
    config_err(err, errlen, "%s: %.64s is not one of error, warn, info, debug", e->key, value);
    return -1;
}

/* A kid travels in a JWT header and in this comma-separated list, so it is
 * printable ASCII without blanks and without the list's separator. */
static int config_kid_valid(const char *s, size_t len)
{
    if (len >= sizeof(((struct config_secret *)0)->kid))
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == ',')
            return 0;
    }
    return 1;
}

/* Parses "SECRET" or "KID:SECRET[,KID:SECRET...]". An entry's first ':' ends
 * its kid, so a secret may contain ':' only after one; ":SECRET" names the
 * no-kid secret explicitly for a secret that contains ':'. The whole list is
 * parsed aside first, so a bad value leaves cfg->secrets as it was. Messages
 * never quote a secret, since errors end up in logs. */
static int config_set_secrets(const struct config_entry *e, struct config *cfg,
                              const char *value, char *err, size_t errlen)
{
    struct config_secret parsed[CONFIG_SECRETS_MAX];
    int count = 0;
    int no_kid = 0;
    const char *p = value;

    memset(parsed, 0, sizeof(parsed));
    if (strlen(value) > CONFIG_LIST_VALUE_MAX) {
        config_err(err, errlen, "%s: value is longer than %d bytes", e->key,
                   CONFIG_LIST_VALUE_MAX);
        return -1;
    }
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *entry = p;
        size_t entry_len = comma ? (size_t)(comma - p) : strlen(p);
        const char *colon;
        const char *kid = "";
        size_t kid_len = 0;
        const char *key = entry;
        size_t key_len;
        struct config_secret *s;

        config_trim_span(&entry, &entry_len);
        if (entry_len == 0) {
            if (count == 0 && comma == NULL)
                config_err(err, errlen, "%s: empty; give a secret", e->key);
            else
                config_err(err, errlen, "%s: entry %d is empty", e->key, count + 1);
            return -1;
        }
        if (count == CONFIG_SECRETS_MAX) {
            config_err(err, errlen, "%s: more than %d secrets", e->key, CONFIG_SECRETS_MAX);
            return -1;
        }
        colon = memchr(entry, ':', entry_len);
        key = entry;
        key_len = entry_len;
        if (colon != NULL) {
            kid = entry;
            kid_len = (size_t)(colon - entry);
            key = colon + 1;
            key_len = entry_len - kid_len - 1;
            config_trim_span(&kid, &kid_len);
            config_trim_span(&key, &key_len);
        }
        if (!config_kid_valid(kid, kid_len)) {
            config_err(err, errlen,
                       "%s: entry %d: a kid is 1..%zu printable characters without blanks "
                       "or ','",
                       e->key, count + 1, sizeof(parsed[0].kid) - 1);
            return -1;
        }
        if (key_len == 0) {
            config_err(err, errlen, "%s: entry %d has an empty secret", e->key, count + 1);
            return -1;
        }
        if (key_len > CONFIG_STR_MAX - 1) {
            config_err(err, errlen, "%s: entry %d: secret longer than %d bytes", e->key,
                       count + 1, CONFIG_STR_MAX - 1);
            return -1;
        }
        if (kid_len == 0) {
            if (no_kid) {
                config_err(err, errlen, "%s: more than one secret without a kid", e->key);
                return -1;
            }
            no_kid = 1;
        }
        for (int i = 0; i < count; i++) {
            if (kid_len > 0 && strlen(parsed[i].kid) == kid_len &&
                memcmp(parsed[i].kid, kid, kid_len) == 0) {
                config_err(err, errlen, "%s: kid %.*s is given twice", e->key, (int)kid_len,
                           kid);
                return -1;
            }
        }
        s = &parsed[count++];
        memcpy(s->kid, kid, kid_len);
        s->kid[kid_len] = '\0';
        memcpy(s->key, key, key_len);
        s->key[key_len] = '\0';
        s->key_len = (int)key_len;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    memcpy(cfg->secrets, parsed, sizeof(parsed));
    cfg->secrets_count = count;
    return 0;
}

/* A browser's Origin header is scheme://host[:port] and nothing more; an
 * entry with a path or a trailing '/' would never match, so it is refused
 * here rather than silently locking browsers out. */
static int config_origin_valid(const char *s, size_t len)
{
    const char *sep = NULL;

    for (size_t i = 0; i + 3 <= len; i++) {
        if (memcmp(s + i, "://", 3) == 0) {
            sep = s + i;
            break;
        }
    }
    if (sep == NULL || sep == s || (size_t)(sep - s) + 3 == len)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f)
            return 0;
        if (c == '/' && (s + i < sep || s + i > sep + 2))
            return 0;
    }
    return 1;
}

static int config_set_origins(const struct config_entry *e, struct config *cfg,
                              const char *value, char *err, size_t errlen)
{
    char parsed[CONFIG_ORIGINS_MAX][CONFIG_STR_MAX];
    int count = 0;
    int any = 0;
    const char *p = value;
    const char *all = value;
    size_t all_len = strlen(value);

    if (all_len > CONFIG_LIST_VALUE_MAX) {
        config_err(err, errlen, "%s: value is longer than %d bytes", e->key,
                   CONFIG_LIST_VALUE_MAX);
        return -1;
    }
    /* An empty list is meaningful: no browser may connect. */
    config_trim_span(&all, &all_len);
    while (all_len > 0) {
        const char *comma = strchr(p, ',');
        const char *entry = p;
        size_t entry_len = comma ? (size_t)(comma - p) : strlen(p);

        config_trim_span(&entry, &entry_len);
        if (entry_len == 0) {
            config_err(err, errlen, "%s: entry %d is empty", e->key, count + 1);
            return -1;
        }
        if (entry_len == 1 && entry[0] == '*') {
            any = 1;
        } else if (count == CONFIG_ORIGINS_MAX) {
            config_err(err, errlen, "%s: more than %d origins", e->key, CONFIG_ORIGINS_MAX);
            return -1;
        } else if (entry_len > CONFIG_STR_MAX - 1) {
            config_err(err, errlen, "%s: entry %d is longer than %d bytes", e->key, count + 1,
                       CONFIG_STR_MAX - 1);
            return -1;
        } else if (!config_origin_valid(entry, entry_len)) {
            config_err(err, errlen,
                       "%s: %.*s is not an origin; write scheme://host[:port] with no path, "
                       "e.g. https://app.example",
                       e->key, (int)(entry_len > 64 ? 64 : entry_len), entry);
            return -1;
        } else {
            memcpy(parsed[count], entry, entry_len);
            parsed[count][entry_len] = '\0';
            count++;
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    memset(cfg->origins, 0, sizeof(cfg->origins));
    for (int i = 0; i < count; i++)
        memcpy(cfg->origins[i], parsed[i], strlen(parsed[i]) + 1);
    cfg->origins_count = count;
    cfg->origins_any = any;
    return 0;
}

int config_set(struct config *cfg, const char *key, const char *value, char *err,
               size_t errlen)
{
    const struct config_entry *e;

    if (cfg == NULL || key == NULL || value == NULL) {
        config_err(err, errlen, "config_set: missing argument");
        return -1;
    }
    if (strcmp(key, "config") == 0) {
        config_err(err, errlen, "config: only valid on the command line (--config FILE)");
        return -1;
    }
    e = config_find(key);
    if (e == NULL) {
        config_err(err, errlen, "%.64s: unknown setting (see --help)", key);
        return -1;
    }
    switch (e->type) {
    case CONFIG_T_INT:
        return config_set_int(e, cfg, value, err, errlen);
    case CONFIG_T_STR:
        return config_set_str(e, cfg, value, err, errlen);
    case CONFIG_T_BOOL:
        return config_set_bool(e, cfg, value, err, errlen);
    case CONFIG_T_SECRETS:
        return config_set_secrets(e, cfg, value, err, errlen);
    case CONFIG_T_ORIGINS:
        return config_set_origins(e, cfg, value, err, errlen);
    case CONFIG_T_LOG_LEVEL:
        return config_set_log_level(e, cfg, value, err, errlen);
    }
    config_err(err, errlen, "%s: bad table entry", key);
    return -1;
}

void config_defaults(struct config *cfg)
{
    char err[256];

    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < CONFIG_TABLE_LEN; i++) {
        if (config_table[i].def == NULL)
            continue;
        /* A default the table's own parser refuses is a bug in this file;
         * running with a half-filled config would be worse than stopping. */
        if (config_set(cfg, config_table[i].key, config_table[i].def, err, sizeof(err)) != 0) {
            fprintf(stderr, "config: bad default: %s\n", err);
            abort();
        }
    }
}

/* Reads one line into buf (cap >= CONFIG_LINE_MAX + 2) without its newline.
 * Returns 1 for a line, 0 at end of file, -1 for a line longer than
 * CONFIG_LINE_MAX, -2 for a NUL byte, -3 for a read error. */
static int config_read_line(FILE *f, char *buf, size_t cap)
{
    size_t n = 0;
    int c;

    for (;;) {
        c = getc(f);
        if (c == EOF) {
            if (ferror(f))
                return -3;
            buf[n] = '\0';
            return n > 0 ? 1 : 0;
        }
        if (c == '\n') {
            buf[n] = '\0';
            return 1;
        }
        if (c == '\0')
            return -2;
        if (n >= CONFIG_LINE_MAX || n + 1 >= cap)
            return -1;
        buf[n++] = (char)c;
    }
}

static int config_load_file(struct config *cfg, const char *path, char *err, size_t errlen)
{
    char line[CONFIG_LINE_MAX + 2];
    char msg[512];
    FILE *f = fopen(path, "r");
    int rc = 0;

    if (f == NULL) {
        config_err(err, errlen, "config: cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    for (int lineno = 1;; lineno++) {
        int r;
        char *s, *eq, *key, *value;
        size_t vlen;

        if (lineno > CONFIG_FILE_LINES_MAX) {
            config_err(err, errlen, "%s: more than %d lines", path, CONFIG_FILE_LINES_MAX);
            rc = -1;
            break;
        }
        r = config_read_line(f, line, sizeof(line));
        if (r == 0)
            break;
        if (r < 0) {
            config_err(err, errlen, "%s:%d: %s", path, lineno,
                       r == -1   ? "line longer than 1024 bytes"
                       : r == -2 ? "NUL byte in line"
                                 : "read error");
            rc = -1;
            break;
        }
        s = config_trim(line);
        if (s[0] == '\0' || s[0] == '#')
            continue;
        eq = strchr(s, '=');
        if (eq == NULL) {
            config_err(err, errlen, "%s:%d: expected key = value", path, lineno);
            rc = -1;
            break;
        }
        *eq = '\0';
        key = config_trim(s);
        value = config_trim(eq + 1);
        vlen = strlen(value);
        /* Quotes let a value keep leading or trailing blanks, or look empty
         * on purpose; there are no escapes inside them. */
        if (value[0] == '"') {
            if (vlen < 2 || value[vlen - 1] != '"') {
                config_err(err, errlen, "%s:%d: %.64s: unterminated quote", path, lineno, key);
                rc = -1;
                break;
            }
            value[vlen - 1] = '\0';
            value++;
        }
        if (strcmp(key, "config") == 0) {
            config_err(err, errlen, "%s:%d: config: a config file cannot name another", path,
                       lineno);
            rc = -1;
            break;
        }
        if (config_set(cfg, key, value, msg, sizeof(msg)) != 0) {
            config_err(err, errlen, "%s:%d: %s", path, lineno, msg);
            rc = -1;
            break;
        }
    }
    fclose(f);
    return rc;
}

static int config_load_env(struct config *cfg, char *err, size_t errlen)
{
    char name[sizeof("TIPCAST_") + CONFIG_KEY_MAX];
    char msg[512];

    for (size_t i = 0; i < CONFIG_TABLE_LEN; i++) {
        const char *key = config_table[i].key;
        const char *value;
        size_t n = strlen("TIPCAST_");

        memcpy(name, "TIPCAST_", n);
        for (size_t k = 0; key[k] != '\0' && n + 1 < sizeof(name); k++)
            name[n++] = key[k] == '-' ? '_' : (char)toupper((unsigned char)key[k]);
        name[n] = '\0';
        value = getenv(name);
        if (value == NULL)
            continue;
        if (config_set(cfg, key, value, msg, sizeof(msg)) != 0) {
            config_err(err, errlen, "environment %s: %s", name, msg);
            return -1;
        }
    }
    return 0;
}

/* Parses the flag at argv[*i] into key and value and advances *i past it
 * (and past its value for "--key value"). A boolean flag with no value means
 * true. Returns 0, 1 for --help/-h, or -1 with a message. */
static int config_parse_flag(int argc, char **argv, int *i, char *key, size_t keycap,
                             const char **value, char *err, size_t errlen)
{
    const char *arg = argv[*i];
    const char *name, *eq;
    const struct config_entry *e;
    size_t name_len;

    (*i)++;
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
        return 1;
    if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0' || arg[2] == '=') {
        config_err(err, errlen, "%.64s: unexpected argument; settings are --KEY=VALUE (see --help)",
                   arg);
        return -1;
    }
    name = arg + 2;
    eq = strchr(name, '=');
    name_len = eq ? (size_t)(eq - name) : strlen(name);
    if (name_len >= keycap) {
        config_err(err, errlen, "%.64s: unknown setting (see --help)", name);
        return -1;
    }
    memcpy(key, name, name_len);
    key[name_len] = '\0';
    if (eq != NULL) {
        *value = eq + 1;
        return 0;
    }
    e = config_find(key);
    if (*i < argc && strncmp(argv[*i], "--", 2) != 0) {
        *value = argv[(*i)++];
        return 0;
    }
    if (e != NULL && e->type == CONFIG_T_BOOL) {
        *value = "1";
        return 0;
    }
    if (e == NULL && strcmp(key, "config") != 0) {
        config_err(err, errlen, "%s: unknown setting (see --help)", key);
        return -1;
    }
    config_err(err, errlen, "--%s needs a value", key);
    return -1;
}

static int config_validate(const struct config *cfg, char *err, size_t errlen)
{
    if ((cfg->tls_cert[0] == '\0') != (cfg->tls_key[0] == '\0')) {
        config_err(err, errlen, "tls-cert and tls-key go together: set both or neither");
        return -1;
    }
    if (cfg->max_burst < 1) {
        config_err(err, errlen, "max-burst: must be at least 1");
        return -1;
    }
    if (cfg->secrets_count < 1) {
        config_err(err, errlen,
                   "jwt-secret is required: without it no client can authenticate "
                   "(set TIPCAST_JWT_SECRET, jwt-secret in the config file, or --jwt-secret)");
        return -1;
    }
    return 0;
}

int config_load(struct config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    char key[CONFIG_KEY_MAX];
    const char *value = NULL;
    const char *config_path = NULL;
    int help = 0;
    int bad = 0;
    char first_err[512] = "";

    if (cfg == NULL || (argc > 0 && argv == NULL)) {
        config_err(err, errlen, "config_load: missing argument");
        return -1;
    }
    /* First pass: find --help and --config and check the shape of every
     * argument, so that help wins over any other mistake and the file is
     * read before any flag is applied. */
    for (int i = 1; i < argc;) {
        int r = config_parse_flag(argc, argv, &i, key, sizeof(key), &value, first_err,
                                  sizeof(first_err));
        if (r == 1) {
            help = 1;
        } else if (r < 0) {
            bad = 1;
            break;
        } else if (strcmp(key, "config") == 0) {
            if (config_path != NULL) {
                snprintf(first_err, sizeof(first_err), "config: given more than once");
                bad = 1;
                break;
            }
            if (value[0] == '\0') {
                snprintf(first_err, sizeof(first_err), "config: empty file name");
                bad = 1;
                break;
            }
            config_path = value;
        }
    }
    if (!help) {
        /* A pass that stopped early may have missed a later --help. */
        for (int i = 1; i < argc && bad; i++) {
            if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
                help = 1;
        }
    }
    if (help) {
        config_help(stdout);
        return 1;
    }
    if (bad) {
        config_err(err, errlen, "%s", first_err);
        return -1;
    }
    if (config_path != NULL && config_load_file(cfg, config_path, err, errlen) != 0)
        return -1;
    if (config_load_env(cfg, err, errlen) != 0)
        return -1;
    for (int i = 1; i < argc;) {
        if (config_parse_flag(argc, argv, &i, key, sizeof(key), &value, err, errlen) != 0)
            return -1;
        if (strcmp(key, "config") == 0)
            continue;
        if (config_set(cfg, key, value, err, errlen) != 0)
            return -1;
    }
    return config_validate(cfg, err, errlen);
}

/* Writes text word by word from column col, wrapping at CONFIG_HELP_WIDTH
 * and starting continuation lines at column indent. */
static void config_wrap(FILE *out, const char *text, int indent, int col)
{
    const char *p = text;
    int line_start = 1;

    while (*p != '\0') {
        size_t word;

        while (*p == ' ')
            p++;
        word = strcspn(p, " ");
        if (word == 0)
            break;
        if (!line_start && col + 1 + (int)word > CONFIG_HELP_WIDTH) {
            fprintf(out, "\n%*s", indent, "");
            col = indent;
            line_start = 1;
        }
        if (!line_start) {
            fputc(' ', out);
            col++;
        }
        fwrite(p, 1, word, out);
        col += (int)word;
        p += word;
        line_start = 0;
    }
    fputc('\n', out);
}

void config_help(FILE *out)
{
    fprintf(out, "Usage: tipcastd [--config FILE] [--KEY=VALUE ...]\n\n");
    config_wrap(out,
                "tipcastd serves live rooms and gifts over WebSocket. Every setting "
                "below can be given as a flag (--KEY=VALUE or --KEY VALUE), as the "
                "environment variable TIPCAST_KEY (upper case, '-' written '_', e.g. "
                "TIPCAST_MAX_FRAME_BYTES), or as a 'key = value' line in the file named "
                "by --config ('#' starts a comment line; double quotes keep blanks). "
                "A flag beats the environment, which beats the file, which beats the "
                "default. Booleans take 0/1, true/false or yes/no; a boolean flag "
                "alone means true.",
                0, 0);
    for (int g = 0; g < CONFIG_G_COUNT; g++) {
        fprintf(out, "\n%s:\n", config_group_names[g]);
        for (size_t i = 0; i < CONFIG_TABLE_LEN; i++) {
            const struct config_entry *e = &config_table[i];
            int col;

            if ((int)e->group != g)
                continue;
            col = fprintf(out, "  --%s=%s", e->key, e->metavar);
            if (col < 0)
                return;
            if (col + 1 > CONFIG_HELP_COL) {
                fprintf(out, "\n");
                col = 0;
            }
            fprintf(out, "%*s", CONFIG_HELP_COL - col, "");
            config_wrap(out, e->help, CONFIG_HELP_COL, CONFIG_HELP_COL);
            if (e->type == CONFIG_T_INT)
                fprintf(out, "%*s(%lld..%lld) ", CONFIG_HELP_COL, "", e->min, e->max);
            else
                fprintf(out, "%*s", CONFIG_HELP_COL, "");
            if (e->def == NULL)
                fprintf(out, "no default\n");
            else if (e->def[0] == '\0')
                fprintf(out, "default: empty\n");
            else
                fprintf(out, "default: %s\n", e->def);
        }
    }
}
