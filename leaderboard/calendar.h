/* calendar.h - the days, weeks and months of the leaderboards: the
 * process's time zone (board-tz) and the civil-calendar arithmetic that
 * names a period, exact across month and year boundaries.
 *
 * Time zone: the process's TZ is set once, in main() before the loop
 * starts (calendar_tz_init), and dates are read with localtime_r. Nothing
 * else in tipcastd reads local time (the log uses UTC), so the setting
 * changes nothing but the boards. */
#ifndef TIPCAST_CALENDAR_H
#define TIPCAST_CALENDAR_H

#include <stddef.h>
#include <stdint.h>

/* A day, and the Monday that starts its week (which may be in an earlier
 * month or year). */
struct calendar_date {
    int64_t y;
    int m, d;
    int64_t wy;
    int wm, wd;
};

/* Sets the process's time zone to `zone` (an IANA name such as Asia/Tokyo).
 * Call once from main() before anything else runs. Returns 0, or -1 with a
 * message in err when the name is not one of the tz database (glibc would
 * otherwise fall back to UTC without a word). */
int calendar_tz_init(const char *zone, char *err, size_t errlen);

/* Days since 1970-01-01 of a proleptic Gregorian date, and back. */
int64_t calendar_days_from_civil(int64_t y, int m, int d);
void calendar_civil_from_days(int64_t days, int64_t *y, int *m, int *d);

/* The local date of the instant t_s (seconds since the epoch) and the
 * Monday of its week. The last answer is kept: the rooms feed asks for
 * every entry, and the entries of one read mostly share their second. */
void calendar_date_of(int64_t t_s, struct calendar_date *cd);

#endif
