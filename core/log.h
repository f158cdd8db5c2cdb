/* log.h - log lines on stderr, one per event, in logfmt or JSON, and the
 * assertions that stay on in release builds.
 *
 * A line is `ts=... level=... msg="..."` and then fields (key=value), or
 * the same as one JSON object (logfmt.h writes both). log_msg's printf
 * text becomes msg; log_kv adds typed fields to a fixed msg, for lines
 * that tools count and filter:
 *
 *     log_kv(LOG_INFO, "outbox shards taken", LOG_STR("group", g), LOG_INT("count", n));
 *
 * Warnings repeat when something stays broken (a backend down, a client
 * misbehaving in a loop): the same warning (the same format string, or the
 * same msg of log_kv) is written at most once per log-repeat-s seconds, and
 * the next one written after that carries suppressed=N, the repeats left
 * out. Errors and other levels are never held back.
 *
 * A broken invariant is a bug whose effects nobody can bound (a ring index
 * past its array, a frame released twice, a state that cannot be): the
 * process stops at once with the place, as Redis's serverAssert does, rather
 * than go on corrupting what it serves. tc_assert is never compiled out. */
#ifndef TIPCAST_LOG_H
#define TIPCAST_LOG_H

#include <stddef.h>

#include "logfmt.h"

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Messages above this level are dropped. Default LOG_INFO. */
void log_set_level(int level);
/* LOG_FORMAT_LOGFMT (the default) or LOG_FORMAT_JSON. */
void log_set_format(int format);
/* The window of repeated warnings in seconds; 0 writes every one.
 * Default LOG_REPEAT_S_DEFAULT. */
#define LOG_REPEAT_S_DEFAULT 10
void log_set_repeat_s(int seconds);

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A line with fields: msg is a fixed text (it names the event, and keys the
 * repeat limit); the fields are LOG_STR / LOG_INT. */
#define log_kv(level, msg, ...)                                                                    \
    log_fields((level), (msg), (const struct log_field[]){__VA_ARGS__},                            \
               sizeof((const struct log_field[]){__VA_ARGS__}) / sizeof(struct log_field))
void log_fields(int level, const char *msg, const struct log_field *fields, size_t n);

/* A line written by another library (lws): its text is msg, and repeated
 * warnings are told apart by their text with the digits left out, since
 * such lines carry no format of their own. */
void log_text(int level, const char *text, size_t len);

/* Logs "assertion failed: EXPR at FILE:LINE" and aborts. */
_Noreturn void tc_assert_fail(const char *expr, const char *file, int line);

#define tc_assert(cond) ((cond) ? (void)0 : tc_assert_fail(#cond, __FILE__, __LINE__))

#endif
