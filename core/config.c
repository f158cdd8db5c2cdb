/* config.c - tipcastd configuration: defaults, the config file, the
 * TIPCAST_* environment, the command line and the help text, all driven by
 * one table (config_table.c). */
#include "config_table.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A config file line, without its newline, may be this long. */
#define CONFIG_LINE_MAX 1024
/* A config file may have this many lines; a longer one is surely not ours. */
#define CONFIG_FILE_LINES_MAX 10000
/* Longest setting name; longer names are unknown by construction. */
#define CONFIG_KEY_MAX 64
/* Columns of the help text: where the explanation starts, where it wraps. */
#define CONFIG_HELP_COL 30
#define CONFIG_HELP_WIDTH 79

/* The message for a name that is no setting, with the one it was probably
 * meant to be. */
static void config_unknown(const char *key, char *err, size_t errlen)
{
    const char *near = config_suggest(key);
    if (near != NULL)
        config_err(err, errlen, "unknown setting \"%.64s\" (did you mean \"%s\"?)", key, near);
    else
        config_err(err, errlen, "unknown setting \"%.64s\"", key);
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
        config_unknown(key, err, errlen);
        return -1;
    }
    return config_set_value(e, cfg, value, err, errlen);
}

void config_defaults(struct config *cfg)
{
    char err[256];

    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < config_table_len; i++) {
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

    for (size_t i = 0; i < config_table_len; i++) {
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
        config_err(err, errlen, "unknown setting \"%.64s\"", name);
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
        config_unknown(key, err, errlen);
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
    if (cfg->payment_secret[0] && strlen(cfg->payment_secret) < 16) {
        config_err(err, errlen, "payment-secret: at least 16 bytes (or empty for no payment callback)");
        return -1;
    }
    if (cfg->webhook_url[0]) {
        const char *url = cfg->webhook_url;
        if (strncmp(url, "https://", 8) == 0) {
            config_err(err, errlen, "webhook-url: https is not spoken; point it at a TLS-terminating proxy or "
                                    "sidecar on this host (http://...)");
            return -1;
        }
        size_t host = strncmp(url, "http://", 7) == 0 ? strcspn(url + 7, ":/?") : 0;
        for (const char *p = url; *p && host; p++)
            if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
                host = 0;
        if (host == 0) {
            config_err(err, errlen, "webhook-url: expected http://HOST[:PORT][/PATH] without blanks");
            return -1;
        }
        if (strlen(cfg->webhook_secret) < CONFIG_WEBHOOK_SECRET_MIN) {
            config_err(err, errlen, "webhook-secret: required with webhook-url, at least %d bytes",
                       CONFIG_WEBHOOK_SECRET_MIN);
            return -1;
        }
    }
    if (cfg->secrets_count < 1) {
        config_err(err, errlen,
                   "jwt-secret is required: without it no client can authenticate "
                   "(set TIPCAST_JWT_SECRET, jwt-secret in the config file, or --jwt-secret)");
        return -1;
    }
    return 0;
}

int config_read(struct config *cfg, int argc, char **argv, char *err, size_t errlen)
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
    return 0;
}

int config_load(struct config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    int rc = config_read(cfg, argc, argv, err, errlen);
    return rc != 0 ? rc : config_validate(cfg, err, errlen);
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
    fprintf(out, "Usage: tipcastd [--config FILE] [--KEY=VALUE ...]\n"
                 "       tipcastd [--config FILE] [--KEY=VALUE ...] --check-config\n"
                 "       tipcastd --version\n\n");
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
        for (size_t i = 0; i < config_table_len; i++) {
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

const struct config_secret *config_sign_secret(const struct config *cfg)
{
    for (int i = 0; i < cfg->secrets_count; i++)
        if (cfg->secrets[i].kid[0] == '\0')
            return &cfg->secrets[i];
    return cfg->secrets_count > 0 ? &cfg->secrets[0] : NULL;
}
