/* unit_config.c - tests of server/config.c: defaults, parsing of every type,
 * the error messages an operator sees, precedence of file, environment and
 * flags, and the help text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "config_table.h"
#include "unit.h"

/* Appended to the secrets below: jwt-secret takes no secret shorter than
 * CONFIG_SECRET_MIN (32) bytes. */
#define PAD "_0123456789abcdef0123456789abcdef"
#define PAD_LEN 33

extern char **environ;

/* The harness's environment must not leak into these tests. */
static void clear_tipcast_env(void)
{
    for (int guard = 0; guard < 1000; guard++) {
        char name[256];
        char **e;
        const char *eq;

        for (e = environ; *e != NULL; e++) {
            if (strncmp(*e, "TIPCAST_", 8) == 0)
                break;
        }
        if (*e == NULL)
            return;
        eq = strchr(*e, '=');
        if (eq == NULL || (size_t)(eq - *e) >= sizeof(name))
            return;
        memcpy(name, *e, (size_t)(eq - *e));
        name[eq - *e] = '\0';
        unsetenv(name);
    }
}

/* Writes text to a new temporary file and returns its path (static). */
static const char *write_temp(const char *text)
{
    static char path[64];
    int fd;
    FILE *f;

    snprintf(path, sizeof(path), "/tmp/unit_config_XXXXXX");
    fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    f = fdopen(fd, "w");
    if (f == NULL)
        return NULL;
    fputs(text, f);
    fclose(f);
    return path;
}

/* config_load with argv given as a NULL-terminated list after argv[0]. */
static int load(struct config *cfg, char *err, size_t errlen, char **args)
{
    char *argv[32] = {"tipcastd"};
    int argc = 1;

    while (args[argc - 1] != NULL && argc < 31) {
        argv[argc] = args[argc - 1];
        argc++;
    }
    argv[argc] = NULL;
    config_defaults(cfg);
    err[0] = '\0';
    return config_load(cfg, argc, argv, err, errlen);
}

/* Runs config_load with stdout sent to /dev/null, for --help. */
static int load_quiet(struct config *cfg, char *err, size_t errlen, char **args)
{
    int saved = dup(STDOUT_FILENO);
    FILE *null = fopen("/dev/null", "w");
    int r;

    fflush(stdout);
    if (null != NULL)
        dup2(fileno(null), STDOUT_FILENO);
    r = load(cfg, err, errlen, args);
    fflush(stdout);
    if (saved >= 0) {
        dup2(saved, STDOUT_FILENO);
        close(saved);
    }
    if (null != NULL)
        fclose(null);
    return r;
}

static void test_defaults(void)
{
    struct config c;

    memset(&c, 0x5A, sizeof(c));
    config_defaults(&c);
    CHECK_STR(c.listen_addr, "127.0.0.1");
    CHECK_INT(c.port, 8080);
    CHECK_STR(c.tls_cert, "");
    CHECK_STR(c.tls_key, "");
    CHECK_INT(c.reuse_port, 0);
    CHECK_STR(c.redis_host, "127.0.0.1");
    CHECK_INT(c.redis_port, 6379);
    CHECK_STR(c.pg_conninfo, "host=127.0.0.1 port=5432 dbname=tipcast");
    CHECK_INT(c.secrets_count, 0);
    CHECK_INT(c.origins_count, 0);
    CHECK_INT(c.origins_any, 0);
    CHECK_INT(c.auth_timeout_ms, 5000);
    CHECK_INT(c.ping_interval_s, 20);
    CHECK_INT(c.idle_timeout_s, 60);
    CHECK_INT(c.max_frame_bytes, 8192);
    CHECK_INT(c.max_msgs_per_s, 20);
    CHECK_INT(c.max_burst, 40);
    CHECK_INT(c.max_queued_bytes, 1048576);
    CHECK_INT(c.max_rooms_per_conn, 8);
    CHECK_INT(c.max_members_per_room, 50000);
    CHECK_INT(c.max_connections, 19000);
    CHECK_INT(c.history_len, 200);
    CHECK_INT(c.snapshot_events, 20);
    CHECK_INT(c.sndbuf_bytes, 65536);
    CHECK_INT(c.log_level, 2);
}

static void test_set(void)
{
    struct config c;
    char err[256];
    char longv[CONFIG_STR_MAX + 1];

    config_defaults(&c);
    CHECK_INT(config_set(&c, "max-frame-bytes", "12x", err, sizeof(err)), -1);
    CHECK_STR(err, "max-frame-bytes: 12x is not an integer");
    CHECK_INT(config_set(&c, "port", "70000", err, sizeof(err)), -1);
    CHECK_STR(err, "port: 70000 is out of range 1..65535");
    CHECK_INT(config_set(&c, "port", "0", err, sizeof(err)), -1);
    CHECK_INT(config_set(&c, "port", "-1", err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "out of range");
    CHECK_INT(config_set(&c, "port", "", err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "port: ");
    CHECK_INT(config_set(&c, "port", " 80", err, sizeof(err)), -1);
    CHECK_INT(config_set(&c, "port", "+80", err, sizeof(err)), -1);
    CHECK_INT(config_set(&c, "port", "80 ", err, sizeof(err)), -1);
    CHECK_INT(config_set(&c, "port", "0x50", err, sizeof(err)), -1);
    CHECK_INT(config_set(&c, "port", "99999999999999999999999", err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "out of range");
    CHECK_INT(c.port, 8080);
    CHECK_INT(config_set(&c, "port", "65535", err, sizeof(err)), 0);
    CHECK_INT(c.port, 65535);

    /* Bounds, both edges. */
    CHECK_INT(config_set(&c, "max-frame-bytes", "255", err, sizeof(err)), -1);
    CHECK_INT(config_set(&c, "max-frame-bytes", "256", err, sizeof(err)), 0);
    CHECK_INT(config_set(&c, "max-frame-bytes", "1048576", err, sizeof(err)), 0);
    CHECK_INT(config_set(&c, "max-frame-bytes", "1048577", err, sizeof(err)), -1);
    CHECK_INT(config_set(&c, "max-queued-bytes", "4095", err, sizeof(err)), -1);
    CHECK_INT(config_set(&c, "max-queued-bytes", "1073741824", err, sizeof(err)), 0);
    CHECK_INT(c.max_queued_bytes, 1073741824);
    CHECK_INT(config_set(&c, "max-queued-bytes", "1073741825", err, sizeof(err)), -1);
    CHECK_INT(config_set(&c, "snapshot-events", "0", err, sizeof(err)), 0);
    CHECK_INT(config_set(&c, "snapshot-events", "100", err, sizeof(err)), 0);
    CHECK_INT(config_set(&c, "snapshot-events", "101", err, sizeof(err)), -1);
    CHECK_INT(config_set(&c, "auth-timeout-ms", "49", err, sizeof(err)), -1);
    CHECK_INT(config_set(&c, "auth-timeout-ms", "600000", err, sizeof(err)), 0);
    CHECK_INT(config_set(&c, "idle-timeout-s", "86401", err, sizeof(err)), -1);
    CHECK_INT(config_set(&c, "ping-interval-s", "3601", err, sizeof(err)), -1);
    CHECK_INT(config_set(&c, "history-len", "0", err, sizeof(err)), -1);
    CHECK_INT(config_set(&c, "sndbuf-bytes", "16777217", err, sizeof(err)), -1);
    CHECK_INT(config_set(&c, "max-connections", "1000001", err, sizeof(err)), -1);
    CHECK_INT(config_set(&c, "max-burst", "0", err, sizeof(err)), -1);

    /* Unknown keys name themselves; "config" belongs to the command line. */
    CHECK_INT(config_set(&c, "max-frames", "1", err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "max-frames");
    CHECK_CONTAINS(err, "unknown");
    CHECK_INT(config_set(&c, "config", "/etc/x", err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "command line");

    /* Strings: up to CONFIG_STR_MAX - 1 bytes. */
    memset(longv, 'h', CONFIG_STR_MAX - 1);
    longv[CONFIG_STR_MAX - 1] = '\0';
    CHECK_INT(config_set(&c, "redis-host", longv, err, sizeof(err)), 0);
    CHECK_INT(strlen(c.redis_host), CONFIG_STR_MAX - 1);
    longv[CONFIG_STR_MAX - 1] = 'h';
    longv[CONFIG_STR_MAX] = '\0';
    CHECK_INT(config_set(&c, "redis-host", longv, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "redis-host");
    CHECK_INT(config_set(&c, "tls-cert", "/etc/tipcast/cert.pem", err, sizeof(err)), 0);
    CHECK_STR(c.tls_cert, "/etc/tipcast/cert.pem");

    /* Booleans. */
    CHECK_INT(config_set(&c, "reuse-port", "yes", err, sizeof(err)), 0);
    CHECK_INT(c.reuse_port, 1);
    CHECK_INT(config_set(&c, "reuse-port", "false", err, sizeof(err)), 0);
    CHECK_INT(c.reuse_port, 0);
    CHECK_INT(config_set(&c, "reuse-port", "TRUE", err, sizeof(err)), 0);
    CHECK_INT(c.reuse_port, 1);
    CHECK_INT(config_set(&c, "reuse-port", "0", err, sizeof(err)), 0);
    CHECK_INT(c.reuse_port, 0);
    CHECK_INT(config_set(&c, "reuse-port", "2", err, sizeof(err)), -1);
    CHECK_INT(config_set(&c, "reuse-port", "on", err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "reuse-port: on is not a boolean");

    /* Log levels. */
    CHECK_INT(config_set(&c, "log-level", "error", err, sizeof(err)), 0);
    CHECK_INT(c.log_level, 0);
    CHECK_INT(config_set(&c, "log-level", "warn", err, sizeof(err)), 0);
    CHECK_INT(c.log_level, 1);
    CHECK_INT(config_set(&c, "log-level", "debug", err, sizeof(err)), 0);
    CHECK_INT(c.log_level, 3);
    CHECK_INT(config_set(&c, "log-level", "info", err, sizeof(err)), 0);
    CHECK_INT(c.log_level, 2);
    CHECK_INT(config_set(&c, "log-level", "verbose", err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "log-level");

    /* A tiny error buffer truncates; it is never overrun (ASan watches). */
    {
        char tiny[8];
        CHECK_INT(config_set(&c, "port", "70000", tiny, sizeof(tiny)), -1);
        CHECK_STR(tiny, "port: 7");
        CHECK_INT(config_set(&c, "port", "70000", NULL, 0), -1);
    }
}

static void test_secrets(void)
{
    struct config c;
    char err[256];

    config_defaults(&c);
    CHECK_INT(config_set(&c, "jwt-secret", "plain" PAD, err, sizeof(err)), 0);
    CHECK_INT(c.secrets_count, 1);
    CHECK_STR(c.secrets[0].kid, "");
    CHECK_STR(c.secrets[0].key, "plain" PAD);
    CHECK_INT(c.secrets[0].key_len, 5 + PAD_LEN);

    /* A secret may contain ':' after its kid's. */
    CHECK_INT(config_set(&c, "jwt-secret", "k1:a" PAD ",k2:b:c" PAD, err, sizeof(err)), 0);
    CHECK_INT(c.secrets_count, 2);
    CHECK_STR(c.secrets[0].kid, "k1");
    CHECK_STR(c.secrets[0].key, "a" PAD);
    CHECK_INT(c.secrets[0].key_len, 1 + PAD_LEN);
    CHECK_STR(c.secrets[1].kid, "k2");
    CHECK_STR(c.secrets[1].key, "b:c" PAD);
    CHECK_INT(c.secrets[1].key_len, 3 + PAD_LEN);

    /* Blanks around entries, kids and secrets are dropped. */
    CHECK_INT(config_set(&c, "jwt-secret", " k1 : a" PAD " , bare" PAD " ", err, sizeof(err)), 0);
    CHECK_INT(c.secrets_count, 2);
    CHECK_STR(c.secrets[0].kid, "k1");
    CHECK_STR(c.secrets[0].key, "a" PAD);
    CHECK_STR(c.secrets[1].kid, "");
    CHECK_STR(c.secrets[1].key, "bare" PAD);

    /* ":SECRET" is the no-kid secret, for one that contains ':'. */
    CHECK_INT(config_set(&c, "jwt-secret", ":x:y" PAD, err, sizeof(err)), 0);
    CHECK_INT(c.secrets_count, 1);
    CHECK_STR(c.secrets[0].kid, "");
    CHECK_STR(c.secrets[0].key, "x:y" PAD);

    /* Eight entries fit; nine do not. */
    CHECK_INT(config_set(&c, "jwt-secret", "a:1" PAD ",b:2" PAD ",c:3" PAD ",d:4" PAD ",e:5" PAD ",f:6" PAD ",g:7" PAD ",h:8" PAD, err, sizeof(err)),
              0);
    CHECK_INT(c.secrets_count, CONFIG_SECRETS_MAX);
    CHECK_STR(c.secrets[7].kid, "h");
    CHECK_INT(config_set(&c, "jwt-secret", "a:1" PAD ",b:2" PAD ",c:3" PAD ",d:4" PAD ",e:5" PAD ",f:6" PAD ",g:7" PAD ",h:8" PAD ",i:9" PAD, err,
                         sizeof(err)),
              -1);
    CHECK_CONTAINS(err, "more than 8");
    /* A refused value leaves the previous list alone. */
    CHECK_INT(c.secrets_count, CONFIG_SECRETS_MAX);

    CHECK_INT(config_set(&c, "jwt-secret", "", err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "jwt-secret");
    CHECK_INT(config_set(&c, "jwt-secret", "   ", err, sizeof(err)), -1);
    CHECK_INT(config_set(&c, "jwt-secret", "k1:", err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "empty secret");
    /* Shorter than 32 bytes: refused, with the way to make a good one. */
    CHECK_INT(config_set(&c, "jwt-secret", "s", err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "at least 32");
    CHECK_INT(config_set(&c, "jwt-secret", "0123456789abcdef0123456789abcde", err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "31 bytes");
    CHECK_INT(config_set(&c, "jwt-secret", "k1:" PAD ",k2:tiny", err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "entry 2");
    CHECK(strstr(err, "tiny") == NULL);
    CHECK_INT(config_set(&c, "jwt-secret", "0123456789abcdef0123456789abcdef", err, sizeof(err)), 0);
    CHECK_INT(c.secrets[0].key_len, 32);
    CHECK_INT(config_set(&c, "jwt-secret", "k1:", err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "empty secret");
    CHECK_INT(config_set(&c, "jwt-secret", "k1:a" PAD ",", err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "entry 2 is empty");
    CHECK_INT(config_set(&c, "jwt-secret",  ",k1:a" PAD, err, sizeof(err)), -1);
    CHECK_INT(config_set(&c, "jwt-secret", "one" PAD ",two" PAD, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "without a kid");
    CHECK_INT(config_set(&c, "jwt-secret", "k1:topsecret" PAD ",k1:othersecret" PAD, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "k1");
    /* Secrets never appear in messages, which end up in logs. */
    CHECK(strstr(err, "topsecret") == NULL);
    CHECK(strstr(err, "othersecret") == NULL);
    CHECK_INT(config_set(&c, "jwt-secret", "k 1:a", err, sizeof(err)), -1);
    {
        char v[300];
        memset(v, 'k', 64);
        strcpy(v + 64, ":s");
        CHECK_INT(config_set(&c, "jwt-secret", v, err, sizeof(err)), -1);
        memset(v, 's', 256);
        v[256] = '\0';
        CHECK_INT(config_set(&c, "jwt-secret", v, err, sizeof(err)), -1);
        v[255] = '\0';
        CHECK_INT(config_set(&c, "jwt-secret", v, err, sizeof(err)), 0);
        CHECK_INT(c.secrets[0].key_len, 255);
    }
    CHECK_INT(c.secrets_count, 1);
}

static void test_origins(void)
{
    struct config c;
    char err[256];

    config_defaults(&c);
    CHECK_INT(config_set(&c, "allowed-origins", " https://a.example , http://b.example:8080",
                         err, sizeof(err)),
              0);
    CHECK_INT(c.origins_count, 2);
    CHECK_INT(c.origins_any, 0);
    CHECK_STR(c.origins[0], "https://a.example");
    CHECK_STR(c.origins[1], "http://b.example:8080");

    CHECK_INT(config_set(&c, "allowed-origins", "*", err, sizeof(err)), 0);
    CHECK_INT(c.origins_any, 1);
    CHECK_INT(c.origins_count, 0);

    CHECK_INT(config_set(&c, "allowed-origins", "", err, sizeof(err)), 0);
    CHECK_INT(c.origins_any, 0);
    CHECK_INT(c.origins_count, 0);

    CHECK_INT(config_set(&c, "allowed-origins", "https://a.example/", err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "allowed-origins");
    CHECK_CONTAINS(err, "https://a.example/");
    CHECK_INT(config_set(&c, "allowed-origins", "https://a.example/app", err, sizeof(err)), -1);
    CHECK_INT(config_set(&c, "allowed-origins", "a.example", err, sizeof(err)), -1);
    CHECK_INT(config_set(&c, "allowed-origins", "https://", err, sizeof(err)), -1);
    CHECK_INT(config_set(&c, "allowed-origins", "https://a.example,,https://b.example", err,
                         sizeof(err)),
              -1);
    CHECK_CONTAINS(err, "entry 2 is empty");
    {
        char v[1024] = "";
        for (int i = 0; i < CONFIG_ORIGINS_MAX; i++) {
            char one[40];
            snprintf(one, sizeof(one), "%shttps://o%d.example", i ? "," : "", i);
            strcat(v, one);
        }
        CHECK_INT(config_set(&c, "allowed-origins", v, err, sizeof(err)), 0);
        CHECK_INT(c.origins_count, CONFIG_ORIGINS_MAX);
        CHECK_STR(c.origins[15], "https://o15.example");
        strcat(v, ",https://one-too-many.example");
        CHECK_INT(config_set(&c, "allowed-origins", v, err, sizeof(err)), -1);
        CHECK_CONTAINS(err, "more than 16");
    }
}

static void test_precedence(void)
{
    struct config c;
    char err[512];
    char cfgarg[128];
    const char *path = write_temp("# tipcastd test config\n"
                                  "\n"
                                  "port = 1111\n"
                                  "  max-burst=7  \n"
                                  "history-len = 300\n"
                                  "log-level = debug\n"
                                  "listen-addr = \"  spaced  \"\n"
                                  "jwt-secret = file-secret" PAD "\n"
                                  "allowed-origins = https://file.example\r\n"
                                  "\t# indented comment\n"
                                  "redis-port = 6380");
    CHECK(path != NULL);
    if (path == NULL)
        return;

    /* File over defaults. */
    clear_tipcast_env();
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--config", (char *)path, NULL}), 0);
    CHECK_INT(c.port, 1111);
    CHECK_INT(c.max_burst, 7);
    CHECK_INT(c.history_len, 300);
    CHECK_INT(c.log_level, 3);
    CHECK_STR(c.listen_addr, "  spaced  ");
    CHECK_STR(c.secrets[0].key, "file-secret" PAD);
    CHECK_STR(c.origins[0], "https://file.example");
    CHECK_INT(c.redis_port, 6380);
    CHECK_INT(c.max_frame_bytes, 8192);

    /* Environment over file; flags over both, in either form. */
    setenv("TIPCAST_PORT", "2222", 1);
    setenv("TIPCAST_MAX_BURST", "8", 1);
    setenv("TIPCAST_JWT_SECRET", "kid1:env-secret" PAD, 1);
    snprintf(cfgarg, sizeof(cfgarg), "--config=%s", path);
    CHECK_INT(load(&c, err, sizeof(err),
                   (char *[]){"--port=3333", cfgarg, "--history-len", "400", NULL}),
              0);
    CHECK_INT(c.port, 3333);
    CHECK_INT(c.max_burst, 8);
    CHECK_INT(c.history_len, 400);
    CHECK_INT(c.log_level, 3);
    CHECK_INT(c.secrets_count, 1);
    CHECK_STR(c.secrets[0].kid, "kid1");
    CHECK_STR(c.secrets[0].key, "env-secret" PAD);
    /* Later flags beat earlier ones. */
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--port=1", "--port", "2", NULL}), 0);
    CHECK_INT(c.port, 2);

    /* Environment alone, without a file. */
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){NULL}), 0);
    CHECK_INT(c.port, 2222);
    CHECK_INT(c.history_len, 200);

    /* A bad environment value names its variable. */
    setenv("TIPCAST_IDLE_TIMEOUT_S", "soon", 1);
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){NULL}), -1);
    CHECK_CONTAINS(err, "TIPCAST_IDLE_TIMEOUT_S");
    CHECK_CONTAINS(err, "idle-timeout-s: soon is not an integer");
    clear_tipcast_env();
    unlink(path);
}

static void test_file_errors(void)
{
    struct config c;
    char err[512];
    char expect[256];
    const char *path;
    char line[1200];

    clear_tipcast_env();
    setenv("TIPCAST_JWT_SECRET", "s" PAD, 1);

    path = write_temp("port = 80\n\nbogus-key = 1\n");
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--config", (char *)path, NULL}), -1);
    snprintf(expect, sizeof(expect), "%s:3: unknown setting \"bogus-key\"", path);
    CHECK_CONTAINS(err, expect);
    unlink(path);

    path = write_temp("# ok\nport = 7x\n");
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--config", (char *)path, NULL}), -1);
    snprintf(expect, sizeof(expect), "%s:2: port: 7x is not an integer", path);
    CHECK_STR(err, expect);
    unlink(path);

    path = write_temp("port 80\n");
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--config", (char *)path, NULL}), -1);
    CHECK_CONTAINS(err, ":1: expected key = value");
    unlink(path);

    path = write_temp("listen-addr = \"0.0.0.0\n");
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--config", (char *)path, NULL}), -1);
    CHECK_CONTAINS(err, ":1: listen-addr: unterminated quote");
    unlink(path);

    path = write_temp("config = /etc/other.conf\n");
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--config", (char *)path, NULL}), -1);
    CHECK_CONTAINS(err, ":1: config");
    unlink(path);

    /* 1024 bytes is the longest line; 1025 is refused. */
    memset(line, ' ', sizeof(line));
    memcpy(line, "port = 81", 9);
    line[1024] = '\n';
    line[1025] = '\0';
    path = write_temp(line);
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--config", (char *)path, NULL}), 0);
    CHECK_INT(c.port, 81);
    unlink(path);
    line[1024] = ' ';
    line[1025] = '\n';
    line[1026] = '\0';
    path = write_temp(line);
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--config", (char *)path, NULL}), -1);
    CHECK_CONTAINS(err, ":1: line longer than 1024 bytes");
    unlink(path);

    CHECK_INT(load(&c, err, sizeof(err),
                   (char *[]){"--config", "/nonexistent/tipcast.conf", NULL}),
              -1);
    CHECK_CONTAINS(err, "/nonexistent/tipcast.conf");
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--config", NULL}), -1);
    CHECK_CONTAINS(err, "config");
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--config=a", "--config=b", NULL}), -1);
    CHECK_CONTAINS(err, "more than once");
    clear_tipcast_env();
}

static void test_flags(void)
{
    struct config c;
    char err[512];

    clear_tipcast_env();
    setenv("TIPCAST_JWT_SECRET", "s" PAD, 1);

    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"serve", NULL}), -1);
    CHECK_CONTAINS(err, "serve");
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"-p", "80", NULL}), -1);
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--", NULL}), -1);
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--port", NULL}), -1);
    CHECK_CONTAINS(err, "--port needs a value");
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--port", "--max-burst=3", NULL}), -1);
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--nope=1", NULL}), -1);
    CHECK_STR(err, "unknown setting \"nope\"");
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--port=70000", NULL}), -1);
    CHECK_STR(err, "port: 70000 is out of range 1..65535");

    /* A boolean flag alone means true, and does not swallow the next flag. */
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--reuse-port", "--port", "9", NULL}), 0);
    CHECK_INT(c.reuse_port, 1);
    CHECK_INT(c.port, 9);
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--reuse-port", "no", NULL}), 0);
    CHECK_INT(c.reuse_port, 0);
    /* An empty value is a value. */
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--allowed-origins=", NULL}), 0);
    CHECK_INT(c.origins_count, 0);

    /* Help, wherever it is, even among mistakes. */
    CHECK_INT(load_quiet(&c, err, sizeof(err), (char *[]){"--help", NULL}), 1);
    CHECK_INT(load_quiet(&c, err, sizeof(err), (char *[]){"-h", NULL}), 1);
    CHECK_INT(load_quiet(&c, err, sizeof(err), (char *[]){"--port=x", "bad", "--help", NULL}),
              1);
    clear_tipcast_env();
}

static void test_validate(void)
{
    struct config c;
    char err[512];

    clear_tipcast_env();
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){NULL}), -1);
    CHECK_CONTAINS(err, "jwt-secret is required");
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--jwt-secret=s" PAD, NULL}), 0);
    CHECK_INT(c.secrets_count, 1);
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--jwt-secret=s" PAD, "--tls-cert=c.pem", NULL}),
              -1);
    CHECK_CONTAINS(err, "tls-cert and tls-key");
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--jwt-secret=s" PAD, "--tls-key=k.pem", NULL}),
              -1);
    CHECK_INT(load(&c, err, sizeof(err),
                   (char *[]){"--jwt-secret=s" PAD, "--tls-key=k.pem", "--tls-cert=c.pem", NULL}),
              0);
    CHECK_STR(c.tls_key, "k.pem");
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--jwt-secret=s" PAD, "--max-burst=0", NULL}),
              -1);
    CHECK_CONTAINS(err, "max-burst");
}

static void test_help(void)
{
    static const char *const keys[] = {
        "listen-addr", "port", "tls-cert", "tls-key", "reuse-port", "redis-host",
        "redis-port", "pg", "jwt-secret", "allowed-origins", "auth-timeout-ms",
        "ping-interval-s", "idle-timeout-s", "max-frame-bytes", "max-msgs-per-s", "max-burst",
        "max-queued-bytes", "max-rooms-per-conn", "max-members-per-room", "max-connections",
        "history-len", "snapshot-events", "sndbuf-bytes", "log-level",
    };
    FILE *f = tmpfile();
    static char text[32768];
    size_t n;
    char line_buf[256];
    int long_lines = 0;

    CHECK(f != NULL);
    if (f == NULL)
        return;
    config_help(f);
    rewind(f);
    n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    CHECK(n > 1000 && n < sizeof(text) - 1);
    {
        const char *usage = "Usage: tipcastd [--config FILE] [--KEY=VALUE ...]\n";
        CHECK(strncmp(text, usage, strlen(usage)) == 0);
    }
    CHECK_CONTAINS(text, "TIPCAST_");
    CHECK_CONTAINS(text, "beats the environment");
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char flag[64];
        snprintf(flag, sizeof(flag), "  --%s=", keys[i]);
        CHECK_CONTAINS(text, flag);
    }
    CHECK_CONTAINS(text, "slow consumer");
    CHECK_CONTAINS(text, "4009");
    CHECK_CONTAINS(text, "default: 1048576");
    CHECK_CONTAINS(text, "default: host=127.0.0.1 port=5432 dbname=tipcast");
    CHECK_CONTAINS(text, "Network:");
    CHECK_CONTAINS(text, "Backends:");
    CHECK_CONTAINS(text, "Authentication:");
    CHECK_CONTAINS(text, "Timers:");
    CHECK_CONTAINS(text, "Limits:");
    CHECK_CONTAINS(text, "Logging:");
    /* Fits an 80-column terminal: at most 79 characters and the newline. */
    rewind(f);
    while (fgets(line_buf, sizeof(line_buf), f) != NULL) {
        if (strlen(line_buf) > 80)
            long_lines++;
    }
    CHECK_INT(long_lines, 0);
    fclose(f);
}

/* The edit distance and the "did you mean" of unknown names, on the
 * command line and in a file. */
static void test_suggest(void)
{
    struct config c;
    char err[512];
    const char *path;

    clear_tipcast_env();
    CHECK_INT(config_distance("port", "port"), 0);
    CHECK_INT(config_distance("prot", "port"), 1);       /* a swap is one edit */
    CHECK_INT(config_distance("kitten", "sitting"), 3);
    CHECK_INT(config_distance("", "abc"), 3);
    CHECK_INT(config_distance("abc", ""), 3);
    CHECK_INT(config_distance("max_burst", "max-burst"), 1);
    CHECK_INT(config_distance("ca", "abc"), 3);          /* no edit twice in OSA */
    /* A name longer than SUGGEST_NAME_MAX (64) is never compared: no
     * setting is near it, and the table stays on the stack. */
    char long_name[66];
    memset(long_name, 'x', 65);
    long_name[65] = '\0';
    CHECK(config_distance("x", long_name) == (size_t)-1);

    CHECK_STR(config_suggest("prot"), "port");
    CHECK_STR(config_suggest("Port"), "port");
    CHECK_STR(config_suggest("max_burst"), "max-burst");
    CHECK_STR(config_suggest("log-formt"), "log-format");
    CHECK_STR(config_suggest("max-frame-byte"), "max-frame-bytes");
    CHECK_STR(config_suggest("redis-hots"), "redis-host");
    CHECK(config_suggest("zzzz") == NULL);
    CHECK(config_suggest("nope") == NULL);
    CHECK(config_suggest("") == NULL);

    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--prot", "8080", NULL}), -1);
    CHECK_STR(err, "unknown setting \"prot\" (did you mean \"port\"?)");
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--prot=8080", NULL}), -1);
    CHECK_STR(err, "unknown setting \"prot\" (did you mean \"port\"?)");
    CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--jwt-secret=s" PAD, "--wallet-shard=4", NULL}), -1);
    CHECK_STR(err, "unknown setting \"wallet-shard\" (did you mean \"wallet-shards\"?)");
    path = write_temp("port = 1\n# comment\nprot = 2\n");
    CHECK(path != NULL);
    if (path != NULL) {
        char want[600];
        CHECK_INT(load(&c, err, sizeof(err), (char *[]){"--config", (char *)path, NULL}), -1);
        snprintf(want, sizeof(want), "%s:3: unknown setting \"prot\" (did you mean \"port\"?)", path);
        CHECK_STR(err, want);
        unlink(path);
    }
}

/* docs/tipcastd.conf.example names every setting with its default: loaded,
 * it gives exactly the defaults, and each key of the table has its line
 * ("# key =" for the one without a default, jwt-secret). */
static void test_example_file(void)
{
    struct config c, want;
    char err[512];
    char text[16384];
    size_t n;
    FILE *f;

    clear_tipcast_env();
    CHECK_INT(load(&c, err, sizeof(err),
                   (char *[]){"--config", TIPCAST_EXAMPLE_CONF, "--jwt-secret=s" PAD, NULL}), 0);
    CHECK_STR(err, "");
    config_defaults(&want);
    CHECK_INT(config_set(&want, "jwt-secret", "s" PAD, err, sizeof(err)), 0);
    CHECK(memcmp(&c, &want, sizeof(c)) == 0);

    f = fopen(TIPCAST_EXAMPLE_CONF, "r");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    CHECK(n < sizeof(text) - 1);
    text[n] = '\0';
    for (size_t i = 0; i < config_table_len; i++) {
        const struct config_entry *e = &config_table[i];
        char line[128];
        snprintf(line, sizeof(line), "\n%s%s = ", e->def == NULL ? "# " : "", e->key);
        CHECK_CONTAINS(text, line);
    }
}

int main(void)
{
    clear_tipcast_env();
    test_defaults();
    test_set();
    test_secrets();
    test_origins();
    test_precedence();
    test_file_errors();
    test_flags();
    test_validate();
    test_help();
    test_suggest();
    test_example_file();
    return unit_finish("unit_config");
}
