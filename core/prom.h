/* prom.h - a writer of the Prometheus text exposition format, version
 * 0.0.4, into a caller's buffer of fixed size.
 *
 * A page is a run of metric families: prom_family writes a family's
 * "# HELP" and "# TYPE" lines, then its samples follow. A sample has at most
 * two labels (name and value, NULL for none): every label set of tipcastd is
 * small and fixed. Label values and help text are escaped as the format
 * asks (backslash, double quote, newline).
 *
 * Past the buffer's end nothing more is written and the page is marked
 * overflowed: prom_finish says so, so that a truncated page is never served
 * as if whole.
 *
 * Pure: no I/O, no allocation. */
#ifndef TIPCAST_PROM_H
#define TIPCAST_PROM_H

#include <stddef.h>
#include <stdint.h>

#include "histogram.h"

/* The Content-Type of a page. */
#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct prom {
    char *buf;
    size_t cap, len;
    int overflow;
};

/* One label of a sample; a NULL name ends the set. */
struct prom_label {
    const char *name, *value;
};

void prom_init(struct prom *p, char *buf, size_t cap);

/* "# HELP name help" and "# TYPE name type" (type: counter, gauge,
 * histogram). */
void prom_family(struct prom *p, const char *name, const char *type, const char *help);

/* One sample: name{l1="v1",l2="v2"} value. Either label may have a NULL
 * name (then it, and l2 after a NULL l1, is left out). */
void prom_u64(struct prom *p, const char *name, struct prom_label l1, struct prom_label l2, uint64_t v);
void prom_i64(struct prom *p, const char *name, struct prom_label l1, struct prom_label l2, int64_t v);
void prom_f64(struct prom *p, const char *name, struct prom_label l1, struct prom_label l2, double v);

/* A family of one sample without labels: its HELP and TYPE lines and
 * "name v". Most of a page is these. */
void prom_single(struct prom *p, const char *name, const char *type, const char *help, int64_t v);

/* A histogram's samples (after its family line, TYPE histogram): the
 * cumulative buckets name_bucket{l1,le="..."} in seconds, the +Inf one,
 * name_sum in seconds and name_count. */
void prom_histogram(struct prom *p, const char *name, struct prom_label l1, const struct histogram *h);

/* The page's length, or -1 when it did not fit in the buffer. The buffer
 * is NUL-terminated either way (cap must be at least 1). */
long prom_finish(struct prom *p);

/* No label. */
#define PROM_NONE ((struct prom_label){NULL, NULL})
#define PROM_L(n, v) ((struct prom_label){(n), (v)})

#endif
