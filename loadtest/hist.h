/* hist.h - fixed log-linear latency histograms (HdrHistogram-like).
 *
 * Values are microseconds from 1 us to HIST_MAX_US (60 s); larger values are
 * recorded as HIST_MAX_US. Values below HIST_LINEAR_US have a bucket each;
 * above, every power of two is split into HIST_SUB sub-buckets, so a
 * reported value is within 1/HIST_SUB (< 1%) of the true one. A histogram is
 * a plain struct of fixed size: no allocation, no failure.
 */
#ifndef TIPCAST_BENCH_HIST_H
#define TIPCAST_BENCH_HIST_H

#include <stdint.h>

#define HIST_MAX_US 60000000ULL
#define HIST_LINEAR_US 256
#define HIST_SUB 128
/* 60 s < 2^26 us: exponents 8..25 each take HIST_SUB buckets. */
#define HIST_BUCKETS (HIST_LINEAR_US + 18 * HIST_SUB)

struct hist {
    uint64_t count;
    uint64_t max_us;
    uint64_t sum_us;
    uint32_t buckets[HIST_BUCKETS];
};

void hist_reset(struct hist *h);
void hist_record(struct hist *h, uint64_t us);
/* The value at percentile p (0..100) in microseconds, 0 when empty. p=100
 * answers the exact maximum. */
uint64_t hist_percentile(const struct hist *h, double p);

#endif
