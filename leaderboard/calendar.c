/* calendar.c - time zone and calendar arithmetic (see calendar.h). */
#include "calendar.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Longest zone name accepted. */
#define CALENDAR_ZONE_MAX 255

int calendar_tz_init(const char *zone, char *err, size_t errlen)
{
    /* Only names of the tz database: a path or a POSIX rule string would
     * be read by glibc as something else, or not at all. */
    if (!zone[0] || strlen(zone) > CALENDAR_ZONE_MAX || zone[0] == '/' || strstr(zone, "..") ||
        strpbrk(zone, " ,<>:")) {
        snprintf(err, errlen, "board-tz '%s' is not a time zone name (e.g. UTC, Asia/Tokyo)", zone);
        return -1;
    }
    const char *dir = getenv("TZDIR");
    char path[CALENDAR_ZONE_MAX + 512];
    snprintf(path, sizeof path, "%.400s/%s", dir && dir[0] ? dir : "/usr/share/zoneinfo", zone);
    /* A zone is a TZif file: the folder holds directories ("Asia") and
     * tables ("zone.tab") too, which glibc would read as UTC. */
    char magic[4];
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(magic, 1, sizeof magic, f) : 0;
    if (f)
        fclose(f);
    if (got != sizeof magic || memcmp(magic, "TZif", sizeof magic) != 0) {
        snprintf(err, errlen, "board-tz '%s' is not in the time zone database (%s)", zone, path);
        return -1;
    }
    if (setenv("TZ", zone, 1) != 0) {
        snprintf(err, errlen, "cannot set TZ");
        return -1;
    }
    tzset();
    return 0;
}

int64_t calendar_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void calendar_civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

void calendar_date_of(int64_t t_s, struct calendar_date *cd)
{
    static int64_t last_t = INT64_MIN;
    static struct calendar_date last;
    if (t_s == last_t) {
        *cd = last;
        return;
    }
    time_t t = (time_t)t_s;
    struct tm tm;
    if (!localtime_r(&t, &tm))
        memset(&tm, 0, sizeof tm); /* only for a time past year 2^31 */
    cd->y = tm.tm_year + 1900;
    cd->m = tm.tm_mon + 1;
    cd->d = tm.tm_mday;
    int64_t monday = calendar_days_from_civil(cd->y, cd->m, cd->d) - (tm.tm_wday + 6) % 7;
    calendar_civil_from_days(monday, &cd->wy, &cd->wm, &cd->wd);
    last = *cd;
    last_t = t_s;
}
