/* hist.c - fixed log-linear latency histograms (see hist.h). */
#include "hist.h"

#include <assert.h>
#include <string.h>

_Static_assert((1ULL << 26) > HIST_MAX_US, "the top exponent must hold HIST_MAX_US");

void hist_reset(struct hist *h) { memset(h, 0, sizeof *h); }

static int bucket_of(uint64_t v)
{
    if (v < HIST_LINEAR_US)
        return (int)v;
    int msb = 63 - __builtin_clzll(v); /* >= 8 */
    int shift = msb - 7;               /* keeps 8 significant bits: 128..255 */
    int sub = (int)(v >> shift) - HIST_SUB;
    int i = HIST_LINEAR_US + (shift - 1) * HIST_SUB + sub;
    assert(i >= HIST_LINEAR_US && i < HIST_BUCKETS);
    return i;
}

/* The middle of bucket i: half its width is the largest error. */
static uint64_t value_of(int i)
{
    if (i < HIST_LINEAR_US)
        return (uint64_t)i;
    int shift = (i - HIST_LINEAR_US) / HIST_SUB + 1;
    uint64_t sub = (uint64_t)((i - HIST_LINEAR_US) % HIST_SUB + HIST_SUB);
    return (sub << shift) + ((1ULL << shift) >> 1);
}

void hist_record(struct hist *h, uint64_t us)
{
    if (us > HIST_MAX_US)
        us = HIST_MAX_US;
    h->buckets[bucket_of(us)]++;
    h->count++;
    h->sum_us += us;
    if (us > h->max_us)
        h->max_us = us;
}

uint64_t hist_percentile(const struct hist *h, double p)
{
    if (!h->count)
        return 0;
    if (p >= 100.0)
        return h->max_us;
    uint64_t rank = (uint64_t)(p / 100.0 * (double)h->count + 0.999999);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t v = value_of(i);
            return v > h->max_us ? h->max_us : v;
        }
    }
    return h->max_us;
}
