/* histogram.c - latency histograms for the metrics page (see histogram.h). */
#include "histogram.h"

#include <string.h>

#include "log.h"

/* Wide enough for a loopback ack (~100 us) and a stalled PostgreSQL flush
 * (seconds); the 1-2.5-5 steps are those of Prometheus's client libraries,
 * so dashboards built for them read these too. */
const int64_t histogram_latency_us[HISTOGRAM_LATENCY_BOUNDS] = {
    100,    250,    500,     1000,    2500,    5000,    10000,   25000,
    50000,  100000, 250000,  500000,  1000000, 2500000, 5000000, 10000000,
};

void histogram_init(struct histogram *h, const int64_t *bounds_us, int n)
{
    tc_assert(n >= 0 && n <= HISTOGRAM_BOUNDS_MAX);
    for (int i = 1; i < n; i++)
        tc_assert(bounds_us[i] > bounds_us[i - 1]);
    memset(h, 0, sizeof *h);
    h->bounds_us = bounds_us;
    h->nbounds = n;
}

void histogram_init_latency(struct histogram *h)
{
    histogram_init(h, histogram_latency_us, HISTOGRAM_LATENCY_BOUNDS);
}

uint64_t histogram_cumulative(const struct histogram *h, int i)
{
    tc_assert(i >= 0 && i <= h->nbounds);
    uint64_t n = 0;
    for (int k = 0; k <= i; k++)
        n += h->buckets[k];
    return n;
}
