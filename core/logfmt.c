/* logfmt.c - one log line as logfmt or JSON (see logfmt.h). */
#include "logfmt.h"

#include <stdio.h>
#include <string.h>

#include "utf8.h"

/* Bytes kept back for what closes a line: a closing quote, the
 * truncated=true field, the JSON brace, the newline and the NUL. */
#define LOG_TAIL_RESERVE 40
/* The longest escape of one byte: \u00XX or \ufffd. */
#define LOG_ESCAPE_MAX 6

struct w {
    char *out;
    size_t len;
    size_t limit; /* where fields and values stop; the tail goes past it */
    int full;
};

static int fits(struct w *w, size_t n)
{
    if (w->full || w->len + n > w->limit) {
        w->full = 1;
        return 0;
    }
    return 1;
}

static void put(struct w *w, const char *s, size_t n)
{
    if (fits(w, n)) {
        memcpy(w->out + w->len, s, n);
        w->len += n;
    }
}

/* Past the limit: only for the tail, whose room was reserved. */
static void put_tail(struct w *w, const char *s)
{
    size_t n = strlen(s);
    memcpy(w->out + w->len, s, n);
    w->len += n;
}

/* logfmt leaves a value bare when a reader cannot mistake where it ends. */
static int bare_ok(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '=' || c == '\\')
            return 0;
    }
    return 1;
}

/* The body of a quoted string, escaped for logfmt (json = 0) or JSON. It
 * stops at a character boundary when the line is full; the caller closes
 * the quote in the reserved tail. */
static void put_escaped(struct w *w, const char *s, size_t n, int json)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n && !w->full) {
        /* Runs of plain bytes go in one copy. */
        size_t run = 0;
        while (i + run < n && p[i + run] >= 0x20 && p[i + run] < 0x7f && p[i + run] != '"' &&
               p[i + run] != '\\')
            run++;
        if (run) {
            /* Plain ASCII may be cut anywhere: what fits goes in. */
            size_t avail = w->limit - w->len;
            if (run > avail) {
                run = avail;
                w->full = 1;
            }
            memcpy(w->out + w->len, s + i, run);
            w->len += run;
            i += run;
            continue;
        }
        unsigned char c = p[i];
        char esc[LOG_ESCAPE_MAX + 1];
        size_t len;
        if (c >= 0x80) {
            len = utf8_seq(p + i, n - i);
            if (len > 0) {
                put(w, s + i, len);
                i += len;
                continue;
            }
            if (json)
                memcpy(esc, "\\ufffd", len = 6);
            else
                len = (size_t)snprintf(esc, sizeof esc, "\\x%02x", c);
        } else if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            len = 2;
        } else if (c == '\n') {
            memcpy(esc, "\\n", len = 2);
        } else if (c == '\r') {
            memcpy(esc, "\\r", len = 2);
        } else if (c == '\t') {
            memcpy(esc, "\\t", len = 2);
        } else if (json && c == 0x7f) {
            /* DEL is a plain character in JSON. */
            esc[0] = (char)c;
            len = 1;
        } else if (json) {
            len = (size_t)snprintf(esc, sizeof esc, "\\u%04x", c);
        } else {
            len = (size_t)snprintf(esc, sizeof esc, "\\x%02x", c);
        }
        put(w, esc, len);
        i++;
    }
}

static void put_quoted(struct w *w, const char *s, size_t n, int json)
{
    if (!fits(w, 2))
        return;
    put(w, "\"", 1);
    /* The body stops one byte early, so that the closing quote always fits
     * and the line never runs past its limit. */
    w->limit--;
    put_escaped(w, s, n, json);
    w->limit++;
    put_tail(w, "\"");
}

static void put_key(struct w *w, const char *key, int json, int first)
{
    if (json) {
        if (!first)
            put(w, ",", 1);
        put_quoted(w, key, strlen(key), 1);
        put(w, ":", 1);
    } else {
        if (!first)
            put(w, " ", 1);
        put(w, key, strlen(key));
        put(w, "=", 1);
    }
}

static void put_value(struct w *w, const struct log_field *f, int json)
{
    if (f->type == LOG_F_INT) {
        char num[24];
        int n = snprintf(num, sizeof num, "%lld", f->i);
        put(w, num, (size_t)n);
    } else {
        const char *s = f->s ? f->s : "";
        size_t n = strlen(s);
        if (!json && bare_ok(s, n))
            put(w, s, n);
        else
            put_quoted(w, s, n, json);
    }
}

static void put_field(struct w *w, const struct log_field *f, int json)
{
    /* A field is written whole or not at all: rewind when it did not fit. */
    size_t start = w->len;
    put_key(w, f->key, json, 0);
    put_value(w, f, json);
    if (w->full)
        w->len = start;
}

size_t log_format_line(char *out, size_t cap, enum log_format format, const char *ts, const char *level,
                       const char *msg, size_t msglen, const struct log_field *fields, size_t nfields,
                       long long suppressed)
{
    int json = format == LOG_FORMAT_JSON;
    struct w w = {out, 0, cap - LOG_TAIL_RESERVE, 0};
    if (cap < LOG_LINE_MIN) {
        if (cap)
            out[0] = '\0';
        return 0;
    }
    if (json)
        put(&w, "{", 1);
    /* ts and level as any string field (bare in logfmt when they can be). */
    struct log_field head[2] = {LOG_STR("ts", ts), LOG_STR("level", level)};
    put_key(&w, "ts", json, 1);
    put_value(&w, &head[0], json);
    put_field(&w, &head[1], json);
    put_key(&w, "msg", json, 0);
    /* The message is cut rather than dropped: it is the line's point. */
    put_quoted(&w, msg, msglen, json);
    for (size_t i = 0; i < nfields && !w.full; i++)
        put_field(&w, &fields[i], json);
    if (suppressed > 0 && !w.full) {
        struct log_field f = LOG_INT("suppressed", suppressed);
        put_field(&w, &f, json);
    }
    if (w.full)
        put_tail(&w, json ? ",\"truncated\":true" : " truncated=true");
    if (json)
        put_tail(&w, "}");
    put_tail(&w, "\n");
    out[w.len] = '\0';
    return w.len;
}
