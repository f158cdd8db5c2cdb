/* log.h - one-line, timestamped log messages on stderr, and the assertions
 * that stay on in release builds.
 *
 * A broken invariant is a bug whose effects nobody can bound (a ring index
 * past its array, a frame released twice, a state that cannot be): the
 * process stops at once with the place, as Redis's serverAssert does, rather
 * than go on corrupting what it serves. tc_assert is never compiled out. */
#ifndef TIPCAST_LOG_H
#define TIPCAST_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Messages above this level are dropped. Default LOG_INFO. */
void log_set_level(int level);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Logs "assertion failed: EXPR at FILE:LINE" and aborts. */
_Noreturn void tc_assert_fail(const char *expr, const char *file, int line);

#define tc_assert(cond) ((cond) ? (void)0 : tc_assert_fail(#cond, __FILE__, __LINE__))

#endif
