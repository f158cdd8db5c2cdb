/* bucket.c - rate limits per key in a fixed table (see bucket.h). */
#include "bucket.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "log.h"

#define MINUTE_US 60000000LL

int risk_buckets_init(struct risk_buckets *b, uint32_t sets, uint32_t seed)
{
    tc_assert(sets >= 1 && (sets & (sets - 1)) == 0);
    memset(b, 0, sizeof *b);
    b->e = calloc((size_t)sets * RISK_BUCKET_WAYS, sizeof *b->e);
    if (!b->e)
        return -1;
    b->sets = sets;
    b->seed = seed;
    return 0;
}

void risk_buckets_free(struct risk_buckets *b)
{
    free(b->e);
    memset(b, 0, sizeof *b);
}

int risk_buckets_take(struct risk_buckets *b, const void *key, size_t len, int64_t per_min, int64_t now_us,
                      int64_t *retry_ms)
{
    tc_assert(len >= 1 && len <= RISK_BUCKET_KEY_MAX);
    *retry_ms = 0;
    if (per_min <= 0 || !b->e)
        return 1;
    uint32_t set = (hash_fnv1a(key, len) ^ b->seed) & (b->sets - 1);
    struct risk_bucket_entry *ways = &b->e[(size_t)set * RISK_BUCKET_WAYS], *hit = NULL, *victim = &ways[0];
    for (int i = 0; i < RISK_BUCKET_WAYS; i++) {
        if (ways[i].tat_us && ways[i].len == len && memcmp(ways[i].key, key, len) == 0) {
            hit = &ways[i];
            break;
        }
        if (ways[i].tat_us < victim->tat_us)
            victim = &ways[i];
    }
    /* One token every `interval`; `tolerance` is how far ahead of now the
     * arrival time may run: a burst of per_min tokens in all. */
    int64_t interval = MINUTE_US / per_min > 0 ? MINUTE_US / per_min : 1;
    int64_t tolerance = MINUTE_US - interval;
    int64_t tat = hit && hit->tat_us > now_us ? hit->tat_us : now_us;
    if (tat - now_us > tolerance) {
        *retry_ms = (tat - tolerance - now_us + 999) / 1000;
        return 0;
    }
    if (!hit) {
        if (victim->tat_us > now_us)
            b->evicted_live++;
        hit = victim;
        hit->len = (uint8_t)len;
        memcpy(hit->key, key, len);
    }
    hit->tat_us = tat + interval;
    return 1;
}
