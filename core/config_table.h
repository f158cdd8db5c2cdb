/* config_table.h - the settings table behind config.h, shared by the files
 * that read it: config_table.c (the rows), config_value.c (parsing a value
 * by its type) and config.c (file, environment, flags, help). Not part of
 * the public interface. */
#ifndef TIPCAST_CONFIG_TABLE_H
#define TIPCAST_CONFIG_TABLE_H

#include <stddef.h>

#include "config.h"

/* Longest value of a list setting (jwt-secret, allowed-origins,
 * metrics-allow). */
#define CONFIG_LIST_VALUE_MAX 4096

enum config_type {
    CONFIG_T_INT,
    CONFIG_T_STR,
    CONFIG_T_BOOL,
    CONFIG_T_SECRETS,
    CONFIG_T_ORIGINS,
    CONFIG_T_CIDRS,
    CONFIG_T_LOG_LEVEL,
    CONFIG_T_LOG_FORMAT,
};

enum config_group {
    CONFIG_G_NETWORK,
    CONFIG_G_BACKENDS,
    CONFIG_G_AUTH,
    CONFIG_G_TIMERS,
    CONFIG_G_LIMITS,
    CONFIG_G_MONEY,
    CONFIG_G_SETTLEMENT,
    CONFIG_G_LOGGING,
    CONFIG_G_COUNT,
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


extern const struct config_entry config_table[];
extern const size_t config_table_len;
extern const char *const config_group_names[CONFIG_G_COUNT];
extern const char *const config_log_levels[4];
/* By enum log_format (core/logfmt.h). */
extern const char *const config_log_formats[2];

/* The row of setting `key`, or NULL. */
const struct config_entry *config_find(const char *key);

/* Parses `value` by the row's type into cfg. 0, or -1 with a message. */
int config_set_value(const struct config_entry *e, struct config *cfg, const char *value, char *err,
                     size_t errlen);

/* Writes a message to err, which may be NULL or empty; every error path
 * goes through here so that no caller can overflow it. */
void config_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Trims a NUL-terminated string in place; returns its new start. */
char *config_trim(char *s);

/* config_suggest.c. The edit distance (insertions, deletions,
 * substitutions, swaps of neighbours) between a and b; SIZE_MAX when either
 * is longer than 64 bytes. */
size_t config_distance(const char *a, const char *b);
/* The setting whose name is nearest to `key` when it is close enough to be
 * a typo of it, else NULL. */
const char *config_suggest(const char *key);

#endif
