/* config_suggest.c - the setting an unknown name was probably meant to be,
 * for "did you mean" in the errors of config.c (see config_table.h). */
#include "config_table.h"

#include <string.h>

/* Names longer than this are never close to a setting (the longest is 20). */
#define SUGGEST_NAME_MAX 64

size_t config_distance(const char *a, const char *b)
{
    /* Optimal string alignment: insertions, deletions, substitutions and
     * swaps of two neighbours ("prot" -> "port" is one edit), over three
     * rows of the usual table. */
    size_t la = strlen(a), lb = strlen(b);
    size_t rows[3][SUGGEST_NAME_MAX + 1];
    if (la > SUGGEST_NAME_MAX || lb > SUGGEST_NAME_MAX)
        return (size_t)-1;
    size_t *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t d = prev[j] + 1;
            if (cur[j - 1] + 1 < d)
                d = cur[j - 1] + 1;
            if (prev[j - 1] + cost < d)
                d = prev[j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && prev2[j - 2] + 1 < d)
                d = prev2[j - 2] + 1;
            cur[j] = d;
        }
        size_t *t = prev2;
        prev2 = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

const char *config_suggest(const char *key)
{
    /* Close enough to be a typo rather than another word: one edit in a
     * short name, two in a longer one, three in a long one. */
    size_t len = strlen(key);
    size_t limit = len <= 4 ? 1 : len <= 10 ? 2 : 3;
    const char *best = NULL;
    size_t best_d = limit + 1;
    for (size_t i = 0; i < config_table_len; i++) {
        size_t d = config_distance(key, config_table[i].key);
        if (d < best_d) {
            best = config_table[i].key;
            best_d = d;
        }
    }
    return best;
}
