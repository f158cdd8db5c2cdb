/* logfmt.h - one log line as text: logfmt (key=value) or one JSON object,
 * from a time, a level, a message and typed fields. Pure functions, used by
 * log.c and tested alone (tests/unit_log.c).
 *
 * Whatever bytes a message or a value holds (a Redis error, a peer's close
 * reason, a user id), the line stays one line of valid UTF-8 that a logfmt
 * or JSON parser reads back: quotes, backslashes and control characters are
 * escaped, and bytes that are not UTF-8 are written as \xNN (logfmt) or
 * U+FFFD (JSON, which has no way to carry a raw byte). */
#ifndef TIPCAST_LOGFMT_H
#define TIPCAST_LOGFMT_H

#include <stddef.h>

/* A formatted line is cut to this many bytes (with its newline); a cut line
 * ends with truncated=true and stays parseable. */
#define LOG_LINE_MAX 4096
/* The smallest buffer log_format_line accepts: room for the closing part. */
#define LOG_LINE_MIN 128

enum log_format { LOG_FORMAT_LOGFMT = 0, LOG_FORMAT_JSON = 1 };

enum log_field_type { LOG_F_STR, LOG_F_INT };

/* One key=value of a line. Keys are identifiers chosen in the code
 * ([a-z_]+); values are anything. A NULL string is written as empty. */
struct log_field {
    const char *key;
    enum log_field_type type;
    const char *s;
    long long i;
};

#define LOG_STR(k, v) ((struct log_field){(k), LOG_F_STR, (v), 0})
#define LOG_INT(k, v) ((struct log_field){(k), LOG_F_INT, NULL, (long long)(v)})

/* Writes one line, with its newline and a NUL after it, into out (cap >=
 * LOG_LINE_MIN): ts, level and msg (msglen bytes) first, then the fields,
 * then suppressed=N when suppressed > 0. Returns the length without the NUL. */
size_t log_format_line(char *out, size_t cap, enum log_format format, const char *ts, const char *level,
                       const char *msg, size_t msglen, const struct log_field *fields, size_t nfields,
                       long long suppressed);

#endif
