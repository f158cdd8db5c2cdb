/* unit_errors.c - the error table of docs/protocol.md and the server's own
 * (core/errors.c) say the same: every code in both, with the same extra
 * keys, so that a client written from the document meets no surprise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "unit.h"

/* Longest line of the document read. */
#define LINE_MAX_BYTES 4096

struct row {
    char code[64];
    char extras[256];
};

/* The rows of the table under "### `error`": "| `code` | when | extras |". */
static int read_table(const char *path, struct row *rows, int cap)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return -1;
    }
    char line[LINE_MAX_BYTES];
    int in_section = 0, n = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "### ", 4) == 0 || strncmp(line, "## ", 3) == 0) {
            in_section = strncmp(line, "### `error`", 11) == 0;
            continue;
        }
        if (!in_section || strncmp(line, "| `", 3) != 0)
            continue;
        char *code = line + 3, *tick = strchr(code, '`');
        char *last = strrchr(line, '|');
        if (!tick || !last || n == cap)
            continue;
        *last = '\0';
        char *extras = strrchr(line, '|');
        snprintf(rows[n].code, sizeof rows[n].code, "%.*s", (int)(tick - code), code);
        snprintf(rows[n].extras, sizeof rows[n].extras, "%s", extras ? extras + 1 : "");
        n++;
    }
    fclose(f);
    return n;
}

/* 1 when the extras cell names `key` (as `key`). */
static int names(const char *extras, const char *key)
{
    char quoted[80];
    snprintf(quoted, sizeof quoted, "`%s`", key);
    return strstr(extras, quoted) != NULL;
}

int main(void)
{
    struct row rows[2 * ERR_COUNT];
    int n = read_table(TIPCAST_PROTOCOL_MD, rows, 2 * ERR_COUNT);
    CHECK(n > 0);
    CHECK_INT(n, ERR_COUNT);
    int seen[ERR_COUNT] = {0};
    for (int i = 0; i < n; i++) {
        int e = err_lookup(rows[i].code);
        if (e < 0) {
            fprintf(stderr, "docs/protocol.md lists %s, which the server never sends\n", rows[i].code);
            CHECK(e >= 0);
            continue;
        }
        CHECK_INT(seen[e]++, 0);
        CHECK_INT(names(rows[i].extras, "field"), err_has_field((enum err)e));
        const char *key = err_extra_key((enum err)e);
        if (key)
            CHECK(names(rows[i].extras, key));
        /* No other integer key is promised than the table's. */
        static const char *const ints[] = {"retry_after_ms", "oldest_seq", "balance"};
        for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++)
            if (!key || strcmp(key, ints[k]) != 0)
                CHECK(!names(rows[i].extras, ints[k]));
    }
    for (int e = 0; e < ERR_COUNT; e++) {
        if (!seen[e])
            fprintf(stderr, "the server sends %s, which docs/protocol.md does not list\n", err_code((enum err)e));
        CHECK_INT(seen[e], 1);
    }
    return unit_finish("unit_errors");
}
