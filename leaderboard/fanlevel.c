/* fanlevel.c - fan levels from the fan-levels setting (see fanlevel.h). */
#include "fanlevel.h"

#include <stdio.h>
#include <string.h>

static struct {
    int n;
    int64_t threshold[FANLEVEL_MAX];
    char badge[FANLEVEL_MAX][FANLEVEL_BADGE_MAX + 1];
} levels;

int fanlevel_init(const char *spec, char *err, size_t errlen)
{
    levels.n = 0;
    const char *p = spec;
    while (*p) {
        if (levels.n == FANLEVEL_MAX) {
            snprintf(err, errlen, "fan-levels: more than %d levels", FANLEVEL_MAX);
            return -1;
        }
        int64_t t = 0;
        const char *d = p;
        while (*p >= '0' && *p <= '9' && t <= INT64_MAX / 10 - 9)
            t = t * 10 + (*p++ - '0');
        if (p == d || *p != ':' || t < 1 || (levels.n && t <= levels.threshold[levels.n - 1])) {
            snprintf(err, errlen, "fan-levels: level %d: want THRESHOLD:BADGE, thresholds positive and increasing",
                     levels.n + 1);
            return -1;
        }
        const char *b = ++p;
        while (*p && *p != ',')
            p++;
        size_t bl = (size_t)(p - b);
        int ok = bl >= 1 && bl <= FANLEVEL_BADGE_MAX;
        for (size_t i = 0; ok && i < bl; i++) {
            char c = b[i];
            ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == ' ' ||
                 c == '_' || c == '-';
        }
        if (!ok) {
            snprintf(err, errlen, "fan-levels: level %d: a badge is 1..%d characters of [A-Za-z0-9 _-]",
                     levels.n + 1, FANLEVEL_BADGE_MAX);
            return -1;
        }
        levels.threshold[levels.n] = t;
        memcpy(levels.badge[levels.n], b, bl);
        levels.badge[levels.n][bl] = '\0';
        levels.n++;
        if (*p == ',' && !*++p) {
            snprintf(err, errlen, "fan-levels: a trailing comma");
            return -1;
        }
    }
    return 0;
}

int fanlevel_of(int64_t spend, const char **badge)
{
    int l = 0;
    while (l < levels.n && spend >= levels.threshold[l])
        l++;
    if (badge)
        *badge = l ? levels.badge[l - 1] : "";
    return l;
}
