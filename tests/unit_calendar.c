/* unit_calendar.c - tests of leaderboard/calendar.c and board_keys: civil-date arithmetic over a
 * wide range, the Monday of each week, the time zone setting's refusals, local dates near midnight,
 * and the exact board key names. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "board.h"
#include "calendar.h"
#include "unit.h"

static int leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

static int month_days(int64_t y, int m)
{
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap(y) ? 29 : d[m - 1];
}

static void test_known_days(void)
{
    static const struct {
        int64_t y;
        int m, d;
        int64_t days; /* python3: (date(y, m, d) - date(1970, 1, 1)).days */
    } v[] = {
        {1970, 1, 1, 0},       {1969, 12, 31, -1},     {1970, 1, 2, 1},       {2000, 1, 1, 10957},
        {2000, 3, 1, 11017},   {2000, 2, 29, 11016},   {2024, 2, 29, 19782},  {2024, 3, 1, 19783},
        {1900, 3, 1, -25508},  {1900, 2, 28, -25509},  {1600, 1, 1, -135140}, {2600, 12, 31, 230467},
        {9999, 12, 31, 2932896}, {1, 1, 1, -719162},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        CHECK_INT(calendar_days_from_civil(v[i].y, v[i].m, v[i].d), v[i].days);
        int64_t y;
        int m, d;
        calendar_civil_from_days(v[i].days, &y, &m, &d);
        CHECK(y == v[i].y && m == v[i].m && d == v[i].d);
    }
}

/* Every day from 1600-01-01 to 2600-12-31, walked with the test's own
 * month lengths, both ways. */
static void test_every_day(void)
{
    int64_t y = 1600, day = calendar_days_from_civil(1600, 1, 1);
    int m = 1, d = 1;
    long bad = 0, n = 0;
    while (y <= 2600) {
        int64_t yy;
        int mm, dd;
        calendar_civil_from_days(day, &yy, &mm, &dd);
        if ((calendar_days_from_civil(y, m, d) != day || yy != y || mm != m || dd != d) && bad++ < 5)
            fprintf(stderr, "%lld-%02d-%02d (day %lld): from_civil %lld, to_civil %lld-%02d-%02d\n",
                    (long long)y, m, d, (long long)day, (long long)calendar_days_from_civil(y, m, d),
                    (long long)yy, mm, dd);
        n++;
        day++;
        if (++d > month_days(y, m)) {
            d = 1;
            if (++m > 12) {
                m = 1;
                y++;
            }
        }
    }
    CHECK_INT(bad, 0);
    CHECK_INT(n, 365608); /* python3: (date(2600, 12, 31) - date(1600, 1, 1)).days + 1 */
    CHECK_INT(day, calendar_days_from_civil(2601, 1, 1));
}

/* Far from today, in both directions: month ends and starts meet. */
static void test_strided(void)
{
    long bad = 0;
    for (int64_t y = -1000000; y <= 1000000; y += 997)
        for (int m = 1; m <= 12; m++) {
            int last = month_days(y, m); /* proleptic: year 0 and -400 are leap years, -100 is not */
            static const int dd[] = {1, 15, 28};
            for (int i = 0; i < 3; i++) {
                int64_t yy;
                int mm, d2;
                calendar_civil_from_days(calendar_days_from_civil(y, m, dd[i]), &yy, &mm, &d2);
                bad += yy != y || mm != m || d2 != dd[i];
            }
            int64_t end = calendar_days_from_civil(y, m, last);
            int64_t next = m == 12 ? calendar_days_from_civil(y + 1, 1, 1) : calendar_days_from_civil(y, m + 1, 1);
            bad += next != end + 1;
        }
    CHECK_INT(bad, 0);
}

static void set_tz(const char *zone)
{
    char err[256];
    if (calendar_tz_init(zone, err, sizeof err) != 0) {
        unit_failed++;
        fprintf(stderr, "calendar_tz_init(%s): %s\n", zone, err);
    }
    unit_checks++;
}

static void check_date(int64_t t_s, const char *want, int line)
{
    struct calendar_date cd;
    char got[64];
    calendar_date_of(t_s, &cd);
    snprintf(got, sizeof got, "%04lld-%02d-%02d w %04lld-%02d-%02d", (long long)cd.y, cd.m, cd.d, (long long)cd.wy,
             cd.wm, cd.wd);
    unit_checks++;
    if (strcmp(got, want) != 0) {
        unit_failed++;
        fprintf(stderr, "%s:%d: calendar_date_of(%lld) = %s, want %s\n", __FILE__, line, (long long)t_s, got, want);
    }
}

#define DATE(t, want) check_date((t), (want), __LINE__)
#define DAY(y, m, d) (calendar_days_from_civil(y, m, d) * 86400)

static void test_tz_init(void)
{
    char err[256];
    char big[300];
    memset(big, 'A', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const char *refused[] = {"",         "/usr/share/zoneinfo/UTC", "../zoneinfo/UTC", "Asia/../UTC", "..",
                             "America/New York", " UTC", "UTC ", "EST5EDT,M3.2.0,M11.1.0", ":UTC", "<+09>-9",
                             "Not/AZone", "utc0", "Asia/Tokio", big,
                             /* In the database's folder but not zones: glibc would read
                              * them as UTC without a word. */
                             "Asia", "zone.tab", "tzdata.zi"};
    set_tz("Asia/Tokyo");
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        err[0] = '\0';
        int rc = calendar_tz_init(refused[i], err, sizeof err);
        if (rc != -1)
            fprintf(stderr, "board-tz '%.40s' was accepted\n", refused[i]);
        CHECK_INT(rc, -1);
        CHECK(strstr(err, "board-tz") != NULL);
    }
    /* A refusal leaves the zone as it was. */
    DATE(DAY(2024, 2, 29) + 15 * 3600, "2024-03-01 w 2024-02-26");
    CHECK_STR(getenv("TZ"), "Asia/Tokyo");
    /* The error names the zone, cut to the buffer. */
    CHECK_INT(calendar_tz_init("Not/AZone", err, sizeof err), -1);
    CHECK(strstr(err, "'Not/AZone'") != NULL);
    CHECK_INT(calendar_tz_init("", err, 8), -1);
    CHECK_INT(strlen(err), 7);
    /* Accepted: names of the database, TZDIR honoured. */
    CHECK_INT(calendar_tz_init("UTC", err, sizeof err), 0);
    CHECK_INT(calendar_tz_init("Europe/Paris", err, sizeof err), 0);
    CHECK_INT(calendar_tz_init("Etc/GMT+5", err, sizeof err), 0);
    setenv("TZDIR", "/nonexistent", 1);
    CHECK_INT(calendar_tz_init("Asia/Tokyo", err, sizeof err), -1);
    unsetenv("TZDIR");
    CHECK_INT(calendar_tz_init("Asia/Tokyo", err, sizeof err), 0);
}

static void test_dates(void)
{
    /* UTC. */
    set_tz("UTC");
    DATE(0, "1970-01-01 w 1969-12-29");
    DATE(-1, "1969-12-31 w 1969-12-29");
    DATE(DAY(2024, 2, 29) + 86399, "2024-02-29 w 2024-02-26");
    DATE(DAY(2024, 3, 1), "2024-03-01 w 2024-02-26");            /* a week across a month */
    DATE(DAY(2024, 3, 3) + 86399, "2024-03-03 w 2024-02-26");    /* its Sunday */
    DATE(DAY(2024, 3, 4), "2024-03-04 w 2024-03-04");            /* the next Monday */
    DATE(DAY(2025, 1, 1), "2025-01-01 w 2024-12-30");            /* a week across a year */
    DATE(DAY(2024, 12, 30), "2024-12-30 w 2024-12-30");
    DATE(DAY(2021, 1, 3) + 43200, "2021-01-03 w 2020-12-28");
    DATE(DAY(2100, 3, 1), "2100-03-01 w 2100-03-01");            /* not a leap year */
    DATE(DAY(2100, 2, 28) + 1, "2100-02-28 w 2100-02-22");
    DATE(DAY(9999, 12, 31) + 86399, "9999-12-31 w 9999-12-27");

    /* Asia/Tokyo, UTC+9: the same instants near midnight. */
    set_tz("Asia/Tokyo");
    DATE(DAY(2024, 2, 29) + 15 * 3600 - 1, "2024-02-29 w 2024-02-26");
    DATE(DAY(2024, 2, 29) + 15 * 3600, "2024-03-01 w 2024-02-26");
    DATE(DAY(2024, 12, 31) + 15 * 3600 - 1, "2024-12-31 w 2024-12-30");
    DATE(DAY(2024, 12, 31) + 15 * 3600, "2025-01-01 w 2024-12-30");
    DATE(DAY(2025, 1, 5) + 15 * 3600 - 1, "2025-01-05 w 2024-12-30");
    DATE(DAY(2025, 1, 5) + 15 * 3600, "2025-01-06 w 2025-01-06");
    DATE(-1, "1970-01-01 w 1969-12-29");
    /* The last answer is kept, per instant (calendar.h): asked twice in a
     * row, the same. */
    DATE(DAY(2024, 2, 29) + 15 * 3600, "2024-03-01 w 2024-02-26");
    DATE(DAY(2024, 2, 29) + 15 * 3600, "2024-03-01 w 2024-02-26");

    /* Every day's Monday, across 150 years at 5 past midnight local time:
     * a Monday (day 4 was one), at most 6 days before. */
    long bad = 0;
    for (int64_t day = 0; day < 150 * 366; day++) {
        struct calendar_date cd;
        calendar_date_of(day * 86400 - 9 * 3600 + 300, &cd);
        int64_t local = calendar_days_from_civil(cd.y, cd.m, cd.d);
        int64_t monday = calendar_days_from_civil(cd.wy, cd.wm, cd.wd);
        bad += local != day || local - monday < 0 || local - monday > 6 || ((monday - 4) % 7 + 7) % 7 != 0;
    }
    CHECK_INT(bad, 0);
}

static void test_board_keys(void)
{
    struct board_keys k;
    set_tz("UTC");
    /* 2024-02-29 12:00:00.123 UTC, a Thursday. */
    board_keys("room1", (DAY(2024, 2, 29) + 43200) * 1000 + 123, &k);
    CHECK_STR(k.key[BOARD_ALL], "tc:{r:room1}:board:all");
    CHECK_STR(k.key[BOARD_DAY], "tc:{r:room1}:board:d:20240229");
    CHECK_STR(k.key[BOARD_WEEK], "tc:{r:room1}:board:w:20240226");
    CHECK_STR(k.key[BOARD_MONTH], "tc:{r:room1}:board:m:202402");
    CHECK_STR(k.sum[BOARD_ALL], "tc:{r:room1}:sum:all");
    CHECK_STR(k.sum[BOARD_DAY], "tc:{r:room1}:sum:d:20240229");
    CHECK_STR(k.sum[BOARD_WEEK], "tc:{r:room1}:sum:w:20240226");
    CHECK_STR(k.sum[BOARD_MONTH], "tc:{r:room1}:sum:m:202402");
    CHECK_INT(k.ttl_s[BOARD_ALL], 0);
    CHECK_INT(k.ttl_s[BOARD_DAY], 2 * 86400);
    CHECK_INT(k.ttl_s[BOARD_WEEK], 14 * 86400);
    CHECK_INT(k.ttl_s[BOARD_MONTH], 62 * 86400);
    /* The last millisecond of a year, then the first of the next. */
    board_keys("r", DAY(2025, 1, 1) * 1000 - 1, &k);
    CHECK_STR(k.key[BOARD_DAY], "tc:{r:r}:board:d:20241231");
    CHECK_STR(k.key[BOARD_WEEK], "tc:{r:r}:board:w:20241230");
    CHECK_STR(k.key[BOARD_MONTH], "tc:{r:r}:board:m:202412");
    board_keys("r", DAY(2025, 1, 1) * 1000, &k);
    CHECK_STR(k.key[BOARD_DAY], "tc:{r:r}:board:d:20250101");
    CHECK_STR(k.key[BOARD_WEEK], "tc:{r:r}:board:w:20241230");
    CHECK_STR(k.key[BOARD_MONTH], "tc:{r:r}:board:m:202501");
    /* The same instant in Tokyo is already the next day (and month). */
    set_tz("Asia/Tokyo");
    board_keys("room1", (DAY(2024, 2, 29) + 15 * 3600) * 1000 + 5, &k);
    CHECK_STR(k.key[BOARD_DAY], "tc:{r:room1}:board:d:20240301");
    CHECK_STR(k.key[BOARD_WEEK], "tc:{r:room1}:board:w:20240226");
    CHECK_STR(k.key[BOARD_MONTH], "tc:{r:room1}:board:m:202403");
    board_keys("room1", (DAY(2024, 2, 29) + 15 * 3600) * 1000 - 1, &k);
    CHECK_STR(k.key[BOARD_DAY], "tc:{r:room1}:board:d:20240229");
    CHECK_STR(k.key[BOARD_MONTH], "tc:{r:room1}:board:m:202402");
    /* The longest room id: the longest key fits. */
    char room[ID_MAX + 1], want[BOARD_KEY_MAX + 8];
    memset(room, 'x', ID_MAX);
    room[ID_MAX] = '\0';
    board_keys(room, DAY(2024, 6, 1) * 1000, &k);
    snprintf(want, sizeof want, "tc:{r:%s}:board:w:20240527", room);
    CHECK_STR(k.key[BOARD_WEEK], want);
    /* The end of year 9999, the latest time an entry may carry. */
    set_tz("UTC");
    board_keys("r", 253402300799999LL, &k);
    CHECK_STR(k.key[BOARD_DAY], "tc:{r:r}:board:d:99991231");
    CHECK_STR(k.key[BOARD_WEEK], "tc:{r:r}:board:w:99991227");
}

int main(void)
{
    test_known_days();
    test_every_day();
    test_strided();
    test_tz_init();
    test_dates();
    test_board_keys();
    return unit_finish("unit_calendar");
}
