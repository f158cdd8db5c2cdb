/* log.c - log lines on stderr and the always-on assertions (see log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "logrepeat.h"

/* The log's own settings and state, set once at start (main.c) and read
 * only here. */
static int log_level = LOG_INFO;
static enum log_format log_format = LOG_FORMAT_LOGFMT;
static int64_t log_repeat_ms = LOG_REPEAT_S_DEFAULT * 1000;
static struct log_repeat log_repeats;

static const char *const log_level_names[] = {"error", "warn", "info", "debug"};

void log_set_level(int level) { log_level = level; }

void log_set_format(int format) { log_format = format == LOG_FORMAT_JSON ? LOG_FORMAT_JSON : LOG_FORMAT_LOGFMT; }

void log_set_repeat_s(int seconds) { log_repeat_ms = seconds > 0 ? (int64_t)seconds * 1000 : 0; }

/* Formats and writes one line: one fwrite, so that stderr (unbuffered)
 * gets it in one write and lines of other processes on the same file do
 * not cut into it. */
static void log_emit(int level, uint64_t site, const char *msg, size_t msglen, const struct log_field *f,
                     size_t n)
{
    long long suppressed = 0;
    if (level == LOG_WARN && !log_repeat_pass(&log_repeats, site, clock_mono_ms(), log_repeat_ms, &suppressed))
        return;
    struct timespec ts;
    struct tm tm;
    char when[64];
    char line[LOG_LINE_MAX];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    size_t len = log_format_line(line, sizeof line, log_format, when,
                                 log_level_names[level < 0 ? 0 : level > 3 ? 3 : level], msg, msglen, f, n,
                                 suppressed);
    fwrite(line, 1, len, stderr);
}

void log_msg(int level, const char *fmt, ...)
{
    if (level > log_level)
        return;
    char msg[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof msg)
        n = sizeof msg - 1;
    log_emit(level, (uint64_t)(uintptr_t)fmt, msg, (size_t)n, NULL, 0);
}

void log_fields(int level, const char *msg, const struct log_field *fields, size_t n)
{
    if (level > log_level)
        return;
    log_emit(level, (uint64_t)(uintptr_t)msg, msg, strlen(msg), fields, n);
}

void log_text(int level, const char *text, size_t len)
{
    if (level > log_level)
        return;
    /* FNV-1a over the text without its digits: the same complaint about
     * another socket or pointer is the same warning. */
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= '0' && c <= '9')
            continue;
        h = (h ^ c) * 1099511628211ull;
    }
    log_emit(level, h ? h : 1, text, len, NULL, 0);
}

void tc_assert_fail(const char *expr, const char *file, int line)
{
    log_msg(LOG_ERROR, "assertion failed: %s at %s:%d", expr, file, line);
    fflush(stderr);
    abort();
}
