/* cli.c - `tipcast`, the command line client on libtipcast: watch a room,
 * send gifts and tips, read balances and boards, and (cli_admin.c) call the
 * admin API. Exit codes are in cli.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libwebsockets.h>

#include "cli.h"
#include "libtipcast.h"

#define DEFAULT_URL "ws://127.0.0.1:8080/ws"
#define DEFAULT_ADMIN "http://127.0.0.1:8081"
#define DEFAULT_TIMEOUT_S 10.0

static const char USAGE[] =
    "usage: tipcast [OPTIONS] COMMAND [ARGS]\n"
    "\n"
    "A client of tipcastd: watch a room's live events, send gifts and tips,\n"
    "read balances, history and boards, and call the admin API.\n"
    "\n"
    "Options (anywhere on the line):\n"
    "  --url URL        WebSocket endpoint (env TIPCAST_URL; default " DEFAULT_URL ")\n"
    "  --token JWT      the token (env TIPCAST_TOKEN); admin commands send it as Bearer\n"
    "  --admin URL      admin API base (env TIPCAST_ADMIN; default " DEFAULT_ADMIN ")\n"
    "  --json           print one JSON object (watch: one per event, one a line)\n"
    "  --timeout S      give up after S seconds (default 10; watch: run until stopped)\n"
    "  -h, --help       this help; `tipcast COMMAND --help` for a command's\n"
    "  --version        print the version\n"
    "\n"
    "Commands (WebSocket, protocol tipcast.v1.msgpack):\n"
    "  watch ROOM [--count N]              print the room's live events, in seq order, each\n"
    "                                      once; resumes after a lost connection\n"
    "  gift ROOM GIFT [--count N] [--combo ID] [--id REQID]\n"
    "                                      send a gift (GIFT: catalog id); prints the ack\n"
    "  tip ROOM AMOUNT [--text T] [--id REQID]\n"
    "                                      send a tip of AMOUNT coins\n"
    "  balance                             your wallet's balance\n"
    "  history ROOM [--after SEQ]          the room's events after SEQ (default 0; at most 100)\n"
    "  catalog                             the gift catalog\n"
    "  leaderboard ROOM                    the room's boards (all, day, week, month)\n"
    "  earnings [CREATOR]                  a creator's earnings (own; an admin names one)\n"
    "  notice ROOM TEXT                    a notice to the room (its owner, or an admin)\n"
    "  credit USER AMOUNT [--text T] [--id REQID]\n"
    "                                      credit a wallet (admin token)\n"
    "\n"
    "Admin commands (the admin API, HTTP; PATH is under /api/v1 unless it starts with /api/):\n"
    "  admin get PATH                      GET PATH, print the answer\n"
    "  admin post PATH [JSON]              POST PATH with the JSON body (default {})\n"
    "  admin put PATH JSON                 PUT PATH with the JSON body\n"
    "  admin me                            who the token is\n"
    "  admin order ORDER                   an order, its split and refunds\n"
    "  admin refund ORDER --reason R [--amount N] [--id REFUND_ID]\n"
    "                                      refund an order (default: what is left of it)\n"
    "  admin balance CREATOR               a creator's earnings balance\n"
    "  admin transactions USER             a user's ledger rows\n"
    "  admin withdrawals [--state S] [--creator C]\n"
    "                                      list withdrawals\n"
    "  admin approve ID | admin reject ID --reason R | admin pay ID --reference REF\n"
    "                                      decide a withdrawal\n"
    "  admin freeze USER --reason R | admin unfreeze USER [--reason R]\n"
    "  admin overlay-token CREATOR [--ttl S]\n"
    "                                      mint a room-scoped overlay token\n"
    "\n"
    "Request options: --id REQID is the idempotency key of a gift, tip, credit or\n"
    "refund (default: a fresh one); sending again with the same id moves no money\n"
    "and answers the first ack, marked replayed.\n"
    "\n"
    "Exit codes:\n"
    "  0  done\n"
    "  1  the server refused the request (its error code is printed, e.g. insufficient_balance)\n"
    "  2  usage: bad command line\n"
    "  3  cannot connect, the connection was lost, or the server is unavailable\n"
    "  4  authentication failed: no token, or the token was refused\n"
    "  5  timeout: no answer within --timeout (watch --count: too few events)\n";

struct cmd_help {
    const char *name, *text;
};

static const struct cmd_help HELPS[] = {
    {"watch",
     "usage: tipcast watch ROOM [--json] [--count N] [--timeout S]\n"
     "Joins ROOM and prints its live events as they come, in seq order, each\n"
     "exactly once. After a lost connection it reconnects (backoff 250 ms up to\n"
     "5 s) and fetches what it missed with history; when the server no longer\n"
     "holds those events it says so on stderr and goes on from a fresh snapshot.\n"
     "Human lines go to stdout: `ROOM #SEQ KIND from USER: ...`; --json prints each\n"
     "event as received, one JSON object a line. Connection news goes to stderr.\n"
     "--count N: exit 0 after N events. --timeout S: stop after S seconds (exit 0,\n"
     "or 5 when --count N events had not all come). Exits 3 when the first\n"
     "connection cannot be made, 4 when the token is refused.\n"},
    {"gift",
     "usage: tipcast gift ROOM GIFT [--count N] [--combo ID] [--id REQID] [--json]\n"
     "Sends a gift (GIFT is the catalog id) and prints the ack:\n"
     "  order ORDER amount N balance N [replayed]\n"
     "The gift keeps its id (--id, or a fresh one) and is sent again with it after\n"
     "a lost connection or an unavailable/backlogged/rate-limited answer, until\n"
     "--timeout: it is paid at most once. Exit 1 with the code on a refusal\n"
     "(insufficient_balance, room_not_live, unknown_gift, idempotency_conflict...).\n"},
    {"tip",
     "usage: tipcast tip ROOM AMOUNT [--text T] [--id REQID] [--json]\n"
     "Sends a tip of AMOUNT coins with an optional message; retried like a gift.\n"},
    {"balance", "usage: tipcast balance [--json]\nPrints the wallet's balance in coins.\n"},
    {"history",
     "usage: tipcast history ROOM [--after SEQ] [--json]\n"
     "Prints the room's events after SEQ (default 0), oldest first, at most 100\n"
     "(ask again from the last one for more). Exit 1 with history_gone when the\n"
     "room no longer keeps them.\n"},
    {"catalog", "usage: tipcast catalog [--json]\nPrints the gift catalog: id, name, price, tier.\n"},
    {"leaderboard",
     "usage: tipcast leaderboard ROOM [--json]\nPrints the room's top senders of all time, today, this week and month.\n"},
    {"earnings", "usage: tipcast earnings [CREATOR] [--json]\nA creator's earnings as recorded in PostgreSQL.\n"},
    {"notice", "usage: tipcast notice ROOM TEXT [--json]\nSends a notice (the room's owner or an admin).\n"},
    {"credit",
     "usage: tipcast credit USER AMOUNT [--text T] [--id REQID] [--json]\n"
     "Credits USER's wallet (an admin token); idempotent by id.\n"},
    {"admin",
     "usage: tipcast admin SUBCOMMAND ... [--admin URL] [--token JWT] [--json]\n"
     "Calls the admin API over HTTP/1.1 (docs/admin-api.md) and prints the JSON\n"
     "answer. PATH is taken under /api/v1 unless it starts with /api/.\n"
     "  get PATH | post PATH [JSON] | put PATH JSON\n"
     "  me | order ORDER | refund ORDER --reason R [--amount N] [--id REFUND_ID]\n"
     "  balance CREATOR | transactions USER | withdrawals [--state S] [--creator C]\n"
     "  approve ID | reject ID --reason R | pay ID --reference REF\n"
     "  freeze USER --reason R | unfreeze USER [--reason R]\n"
     "  overlay-token CREATOR [--ttl S]\n"
     "Exit: 0 on 2xx; 4 on 401; 3 on 503 or no connection; 5 on timeout; else 1\n"
     "with the error's code.\n"},
};

/* ---- Output -------------------------------------------------------------------- */

static void print_json(const tc_msg *m)
{
    char *j = tc_msg_json(m);
    if (j) {
        printf("%s\n", j);
        free(j);
    }
}

/* A value of m under key, as text for a human line (strings raw, numbers). */
static void field(const tc_msg *m, const char *key, char *out, size_t n)
{
    int64_t v;
    if (tc_msg_int(m, key, &v))
        snprintf(out, n, "%" PRId64, v);
    else
        tc_msg_strcpy(m, key, out, n);
}

static void print_event(const tc_msg *ev)
{
    char room[72], seq[24], kind[32], from[72], a[600], b[600], order[96], amount[24];
    field(ev, "room", room, sizeof room);
    field(ev, "seq", seq, sizeof seq);
    field(ev, "kind", kind, sizeof kind);
    field(ev, "from", from, sizeof from);
    field(ev, "order", order, sizeof order);
    field(ev, "amount", amount, sizeof amount);
    if (tc_msg_is(ev, "kind", "gift")) {
        char combo[72];
        field(ev, "name", a, sizeof a);
        field(ev, "count", b, sizeof b);
        field(ev, "combo", combo, sizeof combo);
        printf("%s #%s gift from %s: %s x%s (%s coins)%s%s order %s\n", room, seq, from, a, b, amount,
               combo[0] ? " combo " : "", combo, order);
    } else if (tc_msg_is(ev, "kind", "tip")) {
        field(ev, "text", a, sizeof a);
        printf("%s #%s tip from %s: %s coins%s%s%s order %s\n", room, seq, from, amount, a[0] ? " \"" : "", a,
               a[0] ? "\"" : "", order);
    } else {
        field(ev, "text", a, sizeof a);
        printf("%s #%s %s from %s: %s\n", room, seq, kind, from, a);
    }
}

static void print_board(const char *name, tc_msg list)
{
    printf("%s:", name);
    size_t n = tc_msg_len(list);
    if (!n)
        printf(" -");
    for (size_t i = 0; i < n; i++) {
        tc_msg e = tc_msg_at(list, i);
        char user[72];
        printf("%s %s %" PRId64, i ? "," : "", tc_msg_strcpy(&e, "user", user, sizeof user),
               tc_msg_int_or(&e, "total", 0));
    }
    printf("\n");
}

/* ---- The run -------------------------------------------------------------------- */

struct run {
    struct cli *o;
    tc_client *c;
    const char *cmd;
    int done, rc;
    /* watch */
    const char *room;
    int opened;        /* connections that reached welcome */
    int64_t remaining; /* watch --count: events still to print; -1: no count */
    int watching;
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int exit_for_code(const char *code)
{
    if (!strcmp(code, "auth_invalid") || !strcmp(code, "auth_expired") || !strcmp(code, "auth_required"))
        return EXIT_AUTH;
    if (!strcmp(code, "unavailable") || !strcmp(code, "closed") || !strcmp(code, "not_connected"))
        return EXIT_UNREACHABLE;
    if (!strcmp(code, "timeout"))
        return EXIT_TIMEOUT;
    return EXIT_REFUSED;
}

static void finish(struct run *r, int rc)
{
    if (r->done)
        return;
    r->done = 1;
    r->rc = rc;
    tc_client_stop(r->c);
}

/* A request's answer: print it, or its error, and end the run. */
static void on_reply(tc_client *c, const tc_msg *msg, const char *code, void *ud)
{
    struct run *r = ud;
    (void)c;
    if (r->done)
        return; /* answered already (e.g. the refused token said so) */
    if (code) {
        if (!strcmp(code, "closed") && tc_client_close_reason(r->c) == TC_CLOSE_AUTH) {
            cli_err(r->o, tc_client_close_code(r->c), "the token was refused");
            finish(r, EXIT_AUTH);
            return;
        }
        if (msg) {
            char m[512];
            tc_msg_strcpy(msg, "message", m, sizeof m);
            fprintf(stderr, "tipcast: %s: %s\n", code, m);
            if (r->o->json)
                print_json(msg);
        } else {
            cli_err(r->o, code, !strcmp(code, "timeout") ? "no answer in time" : "the connection was lost");
        }
        finish(r, exit_for_code(code));
        return;
    }
    if (r->o->json) {
        print_json(msg);
    } else if (tc_msg_is(msg, "type", "ack") && tc_msg_get(msg, "order").obj) {
        char order[96];
        printf("order %s amount %" PRId64 " balance %" PRId64 "%s\n", tc_msg_strcpy(msg, "order", order, sizeof order),
               tc_msg_int_or(msg, "amount", 0), tc_msg_int_or(msg, "balance", 0),
               tc_msg_get(msg, "replayed").obj && tc_msg_get(msg, "replayed").obj->type == MSGPACK_OBJECT_BOOLEAN &&
                       tc_msg_get(msg, "replayed").obj->via.boolean
                   ? " replayed"
                   : "");
    } else if (tc_msg_is(msg, "type", "ack")) {
        printf("seq %" PRId64 "\n", tc_msg_int_or(msg, "seq", 0));
    } else if (tc_msg_is(msg, "type", "balance")) {
        printf("%" PRId64 "\n", tc_msg_int_or(msg, "balance", 0));
    } else if (tc_msg_is(msg, "type", "history")) {
        tc_msg evs = tc_msg_get(msg, "events");
        for (size_t i = 0; i < tc_msg_len(evs); i++) {
            tc_msg e = tc_msg_at(evs, i);
            print_event(&e);
        }
    } else if (tc_msg_is(msg, "type", "catalog")) {
        tc_msg gifts = tc_msg_get(msg, "gifts");
        for (size_t i = 0; i < tc_msg_len(gifts); i++) {
            tc_msg g = tc_msg_at(gifts, i);
            char name[128];
            printf("%" PRId64 "\t%s\t%" PRId64 " coins\ttier %" PRId64 "\n", tc_msg_int_or(&g, "id", 0),
                   tc_msg_strcpy(&g, "name", name, sizeof name), tc_msg_int_or(&g, "price", 0),
                   tc_msg_int_or(&g, "tier", 0));
        }
    } else if (tc_msg_is(msg, "type", "leaderboard")) {
        print_board("all", tc_msg_get(msg, "top"));
        print_board("day", tc_msg_get(msg, "day"));
        print_board("week", tc_msg_get(msg, "week"));
        print_board("month", tc_msg_get(msg, "month"));
    } else if (tc_msg_is(msg, "type", "earnings")) {
        char who[72];
        printf("%s: %" PRId64 " coins from %" PRId64 " orders\n", tc_msg_strcpy(msg, "creator", who, sizeof who),
               tc_msg_int_or(msg, "total", 0), tc_msg_int_or(msg, "orders", 0));
    } else {
        print_json(msg);
    }
    finish(r, EXIT_OK);
}

static void on_state(tc_client *c, enum tc_state st, int attempt, int delay_ms, void *ud)
{
    struct run *r = ud;
    (void)c;
    (void)attempt;
    if (st == TC_RECONNECTING) {
        if (!r->opened) {
            cli_err(r->o, "unreachable", "cannot connect to %s", r->o->url);
            finish(r, EXIT_UNREACHABLE);
            return;
        }
        fprintf(stderr, "tipcast: connection lost; reconnecting in %d ms\n", delay_ms);
    } else if (st == TC_CLOSED) {
        if (tc_client_close_reason(r->c) == TC_CLOSE_AUTH) {
            cli_err(r->o, tc_client_close_code(r->c), "the token was refused");
            finish(r, EXIT_AUTH);
        }
    }
}

static void on_welcome(tc_client *c, const tc_msg *msg, void *ud)
{
    struct run *r = ud;
    (void)c;
    (void)msg;
    if (++r->opened > 1 && r->watching)
        fprintf(stderr, "tipcast: connected again\n");
}

static void on_event(tc_client *c, const tc_msg *ev, void *ud)
{
    struct run *r = ud;
    (void)c;
    if (!r->watching || r->done)
        return;
    if (r->o->json)
        print_json(ev);
    else
        print_event(ev);
    fflush(stdout);
    if (r->remaining > 0 && --r->remaining == 0)
        finish(r, EXIT_OK);
}

static void on_snapshot(tc_client *c, const tc_msg *joined, int reset, void *ud)
{
    (void)c;
    (void)ud;
    char room[72];
    tc_msg_strcpy(joined, "room", room, sizeof room);
    if (reset)
        fprintf(stderr, "tipcast: %s: events were missed (no longer kept); going on from seq %" PRId64 "\n", room,
                tc_msg_int_or(joined, "seq", 0));
    else
        fprintf(stderr, "tipcast: watching %s from seq %" PRId64 " (%s)\n", room, tc_msg_int_or(joined, "seq", 0),
                tc_msg_get(joined, "live").obj && tc_msg_get(joined, "live").obj->type == MSGPACK_OBJECT_BOOLEAN &&
                        tc_msg_get(joined, "live").obj->via.boolean
                    ? "live"
                    : "not live");
}

static void on_watch_join(tc_client *c, const tc_msg *msg, const char *code, void *ud)
{
    /* A lost connection before the answer is fine: the room is joined again. */
    if (code && strcmp(code, "closed") != 0 && strcmp(code, "timeout") != 0)
        on_reply(c, msg, code, ud);
}

/* ---- Parsing -------------------------------------------------------------------- */

static int parse_i64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return -1;
    *out = v;
    return 0;
}

static int usage_err(const char *fmt, const char *arg)
{
    fprintf(stderr, "tipcast: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(tipcast --help for usage)\n");
    return EXIT_USAGE;
}

static const char *cmd_help(const char *name)
{
    for (size_t i = 0; i < sizeof HELPS / sizeof *HELPS; i++)
        if (!strcmp(HELPS[i].name, name))
            return HELPS[i].text;
    return NULL;
}

/* Which options each command takes (others are a usage error). */
static int allowed(const char *cmd, const char *opt)
{
    static const struct {
        const char *cmd, *opts;
    } table[] = {
        {"watch", " count "},
        {"gift", " count combo id "},
        {"tip", " text id "},
        {"history", " after "},
        {"credit", " text id "},
        {"admin", " reason amount id state creator reference ttl "},
    };
    char key[40];
    snprintf(key, sizeof key, " %s ", opt);
    for (size_t i = 0; i < sizeof table / sizeof *table; i++)
        if (!strcmp(table[i].cmd, cmd))
            return strstr(table[i].opts, key) != NULL;
    return 0;
}

int main(int argc, char **argv)
{
    struct cli o;
    memset(&o, 0, sizeof o);
    o.timeout_s = -1;
    o.count = o.after = o.amount = o.ttl = -1;
    char *pos[argc + 1]; /* on the stack: every early return leaves nothing behind */
    memset(pos, 0, sizeof pos);
    o.pos = pos;
    int help = 0;
    const char *given[16];
    int ngiven = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            while (++i < argc)
                o.pos[o.pos_n++] = argv[i];
            break;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help = 1;
            continue;
        }
        if (!strcmp(a, "--version")) {
            printf("tipcast %s (libtipcast, libwebsockets %s)\n", TIPCAST_VERSION, lws_get_library_version());
            return EXIT_OK;
        }
        if (!strcmp(a, "--json")) {
            o.json = 1;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            o.pos[o.pos_n++] = argv[i];
            continue;
        }
        /* --name VALUE or --name=VALUE */
        char name[32];
        const char *eq = strchr(a, '='), *val;
        size_t nl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (nl >= sizeof name)
            return usage_err("unknown option %s", a);
        memcpy(name, a + 2, nl);
        name[nl] = '\0';
        if (eq) {
            val = eq + 1;
        } else {
            if (i + 1 >= argc)
                return usage_err("option %s needs a value", a);
            val = argv[++i];
        }
        int64_t *num = NULL;
        const char **str = NULL;
        if (!strcmp(name, "url")) str = &o.url;
        else if (!strcmp(name, "token")) str = &o.token;
        else if (!strcmp(name, "admin")) str = &o.admin;
        else if (!strcmp(name, "combo")) str = &o.combo;
        else if (!strcmp(name, "id")) str = &o.id;
        else if (!strcmp(name, "text")) str = &o.text;
        else if (!strcmp(name, "reason")) str = &o.reason;
        else if (!strcmp(name, "state")) str = &o.state;
        else if (!strcmp(name, "creator")) str = &o.creator;
        else if (!strcmp(name, "reference")) str = &o.reference;
        else if (!strcmp(name, "count")) num = &o.count;
        else if (!strcmp(name, "after")) num = &o.after;
        else if (!strcmp(name, "amount")) num = &o.amount;
        else if (!strcmp(name, "ttl")) num = &o.ttl;
        else if (!strcmp(name, "timeout")) {
            char *end;
            o.timeout_s = strtod(val, &end);
            if (end == val || *end || o.timeout_s <= 0)
                return usage_err("--timeout needs a number of seconds above 0, not %s", val);
            continue;
        } else {
            return usage_err("unknown option %s", a);
        }
        if (str) {
            *str = val;
        } else if (parse_i64(val, num) < 0 || *num < 0) {
            return usage_err("bad number %s", val);
        }
        if (ngiven < 16 && strcmp(name, "url") && strcmp(name, "token") && strcmp(name, "admin"))
            given[ngiven++] = argv[i - (eq ? 0 : 1)] + 2;
    }
    if (!o.pos_n) {
        if (help) {
            fputs(USAGE, stdout);
            return EXIT_OK;
        }
        fputs(USAGE, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = o.pos[0];
    if (help) {
        const char *h = cmd_help(cmd);
        fputs(h ? h : USAGE, stdout);
        return h ? EXIT_OK : EXIT_USAGE;
    }
    if (!cmd_help(cmd))
        return usage_err("unknown command %s", cmd);
    for (int i = 0; i < ngiven; i++) {
        char name[32];
        size_t nl = strcspn(given[i], "=");
        snprintf(name, sizeof name, "%.*s", (int)nl, given[i]);
        if (!allowed(cmd, name)) {
            fprintf(stderr, "tipcast: %s takes no --%s\n", cmd, name);
            return EXIT_USAGE;
        }
    }
    if (!o.url)
        o.url = getenv("TIPCAST_URL") && *getenv("TIPCAST_URL") ? getenv("TIPCAST_URL") : DEFAULT_URL;
    if (!o.admin)
        o.admin = getenv("TIPCAST_ADMIN") && *getenv("TIPCAST_ADMIN") ? getenv("TIPCAST_ADMIN") : DEFAULT_ADMIN;
    if (!o.token)
        o.token = getenv("TIPCAST_TOKEN");

    /* Operands per command: exact counts, so a typo is said, not guessed. */
    int need_min, need_max;
    if (!strcmp(cmd, "watch") || !strcmp(cmd, "history") || !strcmp(cmd, "leaderboard"))
        need_min = need_max = 1;
    else if (!strcmp(cmd, "gift") || !strcmp(cmd, "tip") || !strcmp(cmd, "notice") || !strcmp(cmd, "credit"))
        need_min = need_max = 2;
    else if (!strcmp(cmd, "earnings"))
        need_min = 0, need_max = 1;
    else if (!strcmp(cmd, "admin"))
        need_min = 1, need_max = 3;
    else
        need_min = need_max = 0;
    if (o.pos_n - 1 < need_min || o.pos_n - 1 > need_max) {
        fprintf(stderr, "tipcast: %s: wrong number of arguments\n%s", cmd, cmd_help(cmd));
        return EXIT_USAGE;
    }
    if (!o.token || !*o.token) {
        cli_err(&o, "auth_required", "no token: give --token JWT or set TIPCAST_TOKEN");
        return EXIT_AUTH;
    }
    if (!strcmp(cmd, "admin"))
        return cli_admin(&o);

    int64_t n1 = 0;
    if ((!strcmp(cmd, "gift") || !strcmp(cmd, "tip") || !strcmp(cmd, "credit")) && parse_i64(o.pos[2], &n1) < 0)
        return usage_err("not an integer: %s", o.pos[2]);
    if (!strcmp(cmd, "gift") && o.count == 0)
        return usage_err("--count must be at least 1%s", "");

    /* lws's own chatter is not for the user of a CLI (TIPCAST_LWS_LOG=N sets lws's log mask, for debugging). */
    lws_set_log_level(getenv("TIPCAST_LWS_LOG") ? atoi(getenv("TIPCAST_LWS_LOG")) : 0, NULL);
    struct run r;
    memset(&r, 0, sizeof r);
    r.o = &o;
    r.cmd = cmd;
    r.watching = !strcmp(cmd, "watch");
    r.remaining = o.count > 0 ? o.count : -1;
    double timeout = o.timeout_s > 0 ? o.timeout_s : r.watching ? 0 : DEFAULT_TIMEOUT_S;
    struct tc_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.url = o.url;
    cfg.token = o.token;
    cfg.reconnect = 1;
    cfg.reconnect_max_ms = 5000;
    cfg.request_timeout_ms = timeout > 0 ? (int)(timeout * 1000) : 10000;
    cfg.money_retry_ms = timeout > 0 ? (int)(timeout * 1000) : 120000;
    cfg.connect_timeout_ms = timeout > 0 && timeout < 10 ? (int)(timeout * 1000) : 10000;
    cfg.on_event = on_event;
    cfg.on_snapshot = on_snapshot;
    cfg.on_state = on_state;
    cfg.on_welcome = on_welcome;
    cfg.ud = &r;
    r.c = tc_client_new(&cfg);
    if (!r.c) {
        fprintf(stderr, "tipcast: bad --url %s (ws://HOST:PORT/PATH or wss://...)\n", o.url);
        return EXIT_USAGE;
    }
    int q;
    if (r.watching) {
        q = tc_join(r.c, o.pos[1], on_watch_join, &r);
    } else if (!strcmp(cmd, "gift")) {
        struct tc_gift g = {o.pos[1], n1, o.count > 0 ? o.count : 0, o.combo, o.id};
        q = tc_gift(r.c, &g, on_reply, &r);
    } else if (!strcmp(cmd, "tip")) {
        struct tc_tip t = {o.pos[1], n1, o.text, o.id};
        q = tc_tip(r.c, &t, on_reply, &r);
    } else if (!strcmp(cmd, "credit")) {
        q = tc_credit(r.c, o.pos[1], n1, o.text, o.id, on_reply, &r);
    } else if (!strcmp(cmd, "balance")) {
        q = tc_balance(r.c, on_reply, &r);
    } else if (!strcmp(cmd, "history")) {
        q = tc_history(r.c, o.pos[1], o.after > 0 ? o.after : 0, on_reply, &r);
    } else if (!strcmp(cmd, "catalog")) {
        q = tc_catalog(r.c, on_reply, &r);
    } else if (!strcmp(cmd, "leaderboard")) {
        q = tc_leaderboard(r.c, o.pos[1], on_reply, &r);
    } else if (!strcmp(cmd, "earnings")) {
        q = tc_earnings(r.c, o.pos_n > 1 ? o.pos[1] : NULL, on_reply, &r);
    } else { /* notice */
        q = tc_notice(r.c, o.pos[1], o.pos[2], on_reply, &r);
    }
    if (q < 0) {
        tc_client_free(r.c);
        fprintf(stderr, "tipcast: %s: an id, room or text is too long or empty\n", cmd);
        return EXIT_USAGE;
    }
    tc_client_connect(r.c);
    double deadline = timeout > 0 ? mono_s() + timeout : 0;
    while (!r.done) {
        if (tc_client_service(r.c) < 0 && !r.done) {
            if (tc_client_state(r.c) == TC_CLOSED) {
                if (tc_client_close_reason(r.c) == TC_CLOSE_AUTH) {
                    cli_err(&o, tc_client_close_code(r.c), "the token was refused");
                    finish(&r, EXIT_AUTH);
                } else {
                    cli_err(&o, "unreachable", "the connection was closed");
                    finish(&r, EXIT_UNREACHABLE);
                }
            }
        }
        if (!r.done && deadline && mono_s() >= deadline) {
            if (r.watching && r.remaining < 0) {
                finish(&r, EXIT_OK);
            } else {
                cli_err(&o, "timeout", r.watching ? "fewer events than --count came in time" : "no answer in time");
                finish(&r, EXIT_TIMEOUT);
            }
        }
    }
    fflush(stdout);
    tc_client_free(r.c);
    return r.rc;
}
