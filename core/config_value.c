/* config_value.c - parsing one setting's value by its type: integers in
 * bounds, strings, booleans, log levels, the jwt-secret key list and the
 * allowed-origins list (see config_table.h). */
#include "config_table.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void config_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
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
char *config_trim(char *s)
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

/* An enum setting: value is one of names[0..n) (any case); the field gets
 * its index. `choices` lists them for the error. */
static int config_set_choice(const struct config_entry *e, struct config *cfg, const char *value,
                             const char *const *names, size_t n, const char *choices, char *err,
                             size_t errlen)
{
    int *field = (int *)(void *)((char *)cfg + e->offset);

    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(value, names[i]) == 0) {
            *field = (int)i;
            return 0;
        }
    }
    config_err(err, errlen, "%s: %.64s is not %s", e->key, value, choices);
    return -1;
}

static int config_set_log_level(const struct config_entry *e, struct config *cfg,
                                const char *value, char *err, size_t errlen)
{
    return config_set_choice(e, cfg, value, config_log_levels,
                             sizeof(config_log_levels) / sizeof(config_log_levels[0]),
                             "one of error, warn, info, debug", err, errlen);
}

static int config_set_log_format(const struct config_entry *e, struct config *cfg,
                                 const char *value, char *err, size_t errlen)
{
    return config_set_choice(e, cfg, value, config_log_formats,
                             sizeof(config_log_formats) / sizeof(config_log_formats[0]),
                             "logfmt or json", err, errlen);
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
        if (key_len < CONFIG_SECRET_MIN) {
            config_err(err, errlen,
                       "%s: entry %d: secret of %zu bytes; it must be at least %d (HS256 keys shorter "
                       "than the hash can be guessed; e.g. openssl rand -base64 32)",
                       e->key, count + 1, key_len, CONFIG_SECRET_MIN);
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

static int config_set_cidrs(const struct config_entry *e, struct config *cfg, const char *value, char *err,
                            size_t errlen)
{
    struct cidr parsed[CONFIG_CIDRS_MAX];
    int count = 0;
    const char *all = value;
    size_t all_len = strlen(value);

    if (all_len > CONFIG_LIST_VALUE_MAX) {
        config_err(err, errlen, "%s: value is longer than %d bytes", e->key, CONFIG_LIST_VALUE_MAX);
        return -1;
    }
    /* An empty list is meaningful: nobody may read the metrics, nobody is
     * exempt. */
    config_trim_span(&all, &all_len);
    const char *p = all, *end = all + all_len;
    while (all_len > 0) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *entry = p;
        size_t entry_len = comma ? (size_t)(comma - p) : (size_t)(end - p);

        config_trim_span(&entry, &entry_len);
        if (entry_len == 0) {
            config_err(err, errlen, "%s: entry %d is empty", e->key, count + 1);
            return -1;
        }
        if (count == CONFIG_CIDRS_MAX) {
            config_err(err, errlen, "%s: more than %d address blocks", e->key, CONFIG_CIDRS_MAX);
            return -1;
        }
        if (cidr_parse(entry, entry_len, &parsed[count]) < 0) {
            config_err(err, errlen, "%s: %.*s is not an address or ADDRESS/BITS block", e->key,
                       (int)(entry_len > 64 ? 64 : entry_len), entry);
            return -1;
        }
        count++;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    struct config_cidrs *field = (struct config_cidrs *)(void *)((char *)cfg + e->offset);
    memcpy(field->block, parsed, sizeof parsed[0] * (size_t)count);
    field->n = count;
    return 0;
}

int config_set_value(const struct config_entry *e, struct config *cfg, const char *value, char *err,
                     size_t errlen)
{
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
    case CONFIG_T_CIDRS:
        return config_set_cidrs(e, cfg, value, err, errlen);
    case CONFIG_T_LOG_LEVEL:
        return config_set_log_level(e, cfg, value, err, errlen);
    case CONFIG_T_LOG_FORMAT:
        return config_set_log_format(e, cfg, value, err, errlen);
    }
    config_err(err, errlen, "%s: bad table entry", e->key);
    return -1;
}
