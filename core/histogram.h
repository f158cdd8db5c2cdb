/* histogram.h - a latency histogram for the metrics page: a fixed array of
 * bucket counts with fixed upper bounds, in the shape Prometheus exposes
 * (cumulative buckets, a sum and a count).
 *
 * Recording is a short scan of at most HISTOGRAM_BOUNDS_MAX bounds and two
 * additions: no allocation, no lock, no clock (the caller measures). The
 * counts are kept per bucket, not cumulative, so one observation touches
 * one counter; the writer (prom.h) sums them up when the page is made.
 *
 * Pure: no I/O. */
#ifndef TIPCAST_HISTOGRAM_H
#define TIPCAST_HISTOGRAM_H

#include <stdint.h>

/* Most upper bounds of one histogram (the +Inf bucket comes on top). */
#define HISTOGRAM_BOUNDS_MAX 20
/* Bounds of the latency histograms: 100 us to 10 s, 1-2.5-5 steps. */
#define HISTOGRAM_LATENCY_BOUNDS 16

extern const int64_t histogram_latency_us[HISTOGRAM_LATENCY_BOUNDS];

struct histogram {
    const int64_t *bounds_us;                   /* increasing upper bounds */
    int nbounds;
    uint64_t buckets[HISTOGRAM_BOUNDS_MAX + 1]; /* per bucket; the last is +Inf */
    uint64_t count;
    int64_t sum_us;
};

/* An empty histogram over `n` increasing upper bounds (microseconds), which
 * must outlive it. */
void histogram_init(struct histogram *h, const int64_t *bounds_us, int n);
/* An empty histogram over histogram_latency_us. */
void histogram_init_latency(struct histogram *h);

/* Records one value in microseconds; a negative one (a clock step seen
 * between two readings of different clocks) counts as 0. */
static inline void histogram_observe(struct histogram *h, int64_t us)
{
    if (us < 0)
        us = 0;
    int i = 0;
    while (i < h->nbounds && us > h->bounds_us[i])
        i++;
    h->buckets[i]++;
    h->count++;
    h->sum_us += us;
}

/* Observations at or below bound i (i == nbounds: all of them). */
uint64_t histogram_cumulative(const struct histogram *h, int i);

#endif
