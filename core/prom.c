/* prom.c - the Prometheus text format writer (see prom.h). */
#include "prom.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put(struct prom *p, const char *s, size_t n)
{
    if (p->overflow)
        return;
    /* One byte is kept for the final NUL. */
    if (n >= p->cap - p->len) {
        p->overflow = 1;
        return;
    }
    memcpy(p->buf + p->len, s, n);
    p->len += n;
}

static void puts_(struct prom *p, const char *s) { put(p, s, strlen(s)); }

static void printf_(struct prom *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void printf_(struct prom *p, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        p->overflow = 1; /* never: numbers are short */
        return;
    }
    put(p, tmp, (size_t)n);
}

/* Escapes backslash and newline (help text), and the double quote too in
 * label values (quote = 1), as the format asks. */
static void escaped(struct prom *p, const char *s, int quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = *s == '\\' ? "\\\\" : *s == '\n' ? "\\n" : quote && *s == '"' ? "\\\"" : NULL;
        if (!esc)
            continue;
        put(p, run, (size_t)(s - run));
        puts_(p, esc);
        run = s + 1;
    }
    put(p, run, (size_t)(s - run));
}

void prom_init(struct prom *p, char *buf, size_t cap)
{
    p->buf = buf;
    p->cap = cap;
    p->len = 0;
    p->overflow = cap == 0;
    if (cap)
        buf[0] = '\0';
}

void prom_family(struct prom *p, const char *name, const char *type, const char *help)
{
    puts_(p, "# HELP ");
    puts_(p, name);
    puts_(p, " ");
    escaped(p, help, 0);
    puts_(p, "\n# TYPE ");
    puts_(p, name);
    puts_(p, " ");
    puts_(p, type);
    puts_(p, "\n");
}

static void label(struct prom *p, struct prom_label l, int first)
{
    if (!first)
        puts_(p, ",");
    puts_(p, l.name);
    puts_(p, "=\"");
    escaped(p, l.value ? l.value : "", 1);
    puts_(p, "\"");
}

/* name{l1,l2} and the space before the value. */
static void sample_head(struct prom *p, const char *name, struct prom_label l1, struct prom_label l2)
{
    puts_(p, name);
    if (l1.name) {
        puts_(p, "{");
        label(p, l1, 1);
        if (l2.name)
            label(p, l2, 0);
        puts_(p, "}");
    }
    puts_(p, " ");
}

void prom_u64(struct prom *p, const char *name, struct prom_label l1, struct prom_label l2, uint64_t v)
{
    sample_head(p, name, l1, l2);
    printf_(p, "%" PRIu64 "\n", v);
}

void prom_i64(struct prom *p, const char *name, struct prom_label l1, struct prom_label l2, int64_t v)
{
    sample_head(p, name, l1, l2);
    printf_(p, "%" PRId64 "\n", v);
}

/* The format's spelling of a float: the shortest of %.15g, %.16g and
 * %.17g that reads back as the same double (Go's ParseFloat reads them
 * all), and NaN, +Inf, -Inf for the special values. */
static void float_value(struct prom *p, double v)
{
    if (isnan(v)) {
        puts_(p, "NaN");
        return;
    }
    if (isinf(v)) {
        puts_(p, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    char tmp[40];
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(tmp, sizeof tmp, "%.*g", digits, v);
        if (digits == 17 || strtod(tmp, NULL) == v)
            break;
    }
    puts_(p, tmp);
}

void prom_f64(struct prom *p, const char *name, struct prom_label l1, struct prom_label l2, double v)
{
    sample_head(p, name, l1, l2);
    float_value(p, v);
    puts_(p, "\n");
}

void prom_single(struct prom *p, const char *name, const char *type, const char *help, int64_t v)
{
    prom_family(p, name, type, help);
    prom_i64(p, name, PROM_NONE, PROM_NONE, v);
}

void prom_histogram(struct prom *p, const char *name, struct prom_label l1, const struct histogram *h)
{
    char series[128], le[32];
    snprintf(series, sizeof series, "%s_bucket", name);
    uint64_t cum = 0;
    for (int i = 0; i < h->nbounds; i++) {
        cum += h->buckets[i];
        /* Bounds are whole microseconds: %g gives their shortest decimal
         * spelling in seconds (0.00025, 1, 2.5). */
        snprintf(le, sizeof le, "%g", (double)h->bounds_us[i] / 1e6);
        if (l1.name)
            prom_u64(p, series, l1, PROM_L("le", le), cum);
        else
            prom_u64(p, series, PROM_L("le", le), PROM_NONE, cum);
    }
    cum += h->buckets[h->nbounds];
    if (l1.name)
        prom_u64(p, series, l1, PROM_L("le", "+Inf"), cum);
    else
        prom_u64(p, series, PROM_L("le", "+Inf"), PROM_NONE, cum);
    snprintf(series, sizeof series, "%s_sum", name);
    sample_head(p, series, l1, PROM_NONE);
    printf_(p, "%" PRId64 ".%06" PRId64 "\n", h->sum_us / 1000000, h->sum_us % 1000000);
    snprintf(series, sizeof series, "%s_count", name);
    prom_u64(p, series, l1, PROM_NONE, h->count);
}

long prom_finish(struct prom *p)
{
    if (p->cap)
        p->buf[p->overflow ? 0 : p->len] = '\0';
    return p->overflow ? -1 : (long)p->len;
}
