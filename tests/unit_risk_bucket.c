/* unit_risk_bucket.c - tests of risk/bucket.c: the rate per key, its burst
 * and refill, keys kept apart, eviction in a full set, and "off". */
#include <stdio.h>
#include <string.h>

#include "bucket.h"
#include "unit.h"

#define MIN_US 60000000LL

static int take(struct risk_buckets *b, const char *key, int64_t per_min, int64_t now, int64_t *retry)
{
    return risk_buckets_take(b, key, strlen(key), per_min, now, retry);
}

static void test_burst_and_refill(void)
{
    struct risk_buckets b;
    CHECK(risk_buckets_init(&b, 16, 7) == 0);
    int64_t retry, now = 1000000;
    for (int i = 0; i < 60; i++)
        CHECK(take(&b, "alice", 60, now, &retry) == 1);
    /* The 61st within the minute is refused, due one second later. */
    CHECK(take(&b, "alice", 60, now, &retry) == 0);
    CHECK_INT(retry, 1000);
    CHECK(take(&b, "alice", 60, now + 999000, &retry) == 0);
    CHECK(take(&b, "alice", 60, now + 1000000, &retry) == 1);
    CHECK(take(&b, "alice", 60, now + 1000000, &retry) == 0);
    /* Another key has its own bucket. */
    CHECK(take(&b, "bob", 60, now, &retry) == 1);
    /* After a quiet minute the whole burst is back. */
    int ok = 0;
    for (int i = 0; i < 100; i++)
        ok += take(&b, "alice", 60, now + 2 * MIN_US, &retry);
    CHECK_INT(ok, 60);
    /* Off: everything passes, nothing is recorded. */
    for (int i = 0; i < 1000; i++)
        CHECK(take(&b, "carol", 0, now, &retry) == 1);
    risk_buckets_free(&b);
}

static void test_eviction(void)
{
    struct risk_buckets b;
    CHECK(risk_buckets_init(&b, 1, 1) == 0); /* one set of RISK_BUCKET_WAYS */
    int64_t retry, now = 5000000;
    char key[16];
    /* Keys whose buckets are full again cost nothing to forget. */
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "k%d", i);
        CHECK(take(&b, key, 1, now + i * MIN_US, &retry) == 1);
    }
    CHECK_INT((int)b.evicted_live, 0);
    /* A full set of limited keys: a newcomer evicts the least limited. */
    for (int i = 0; i < RISK_BUCKET_WAYS + 1; i++) {
        snprintf(key, sizeof key, "x%d", i);
        CHECK(take(&b, key, 1, 1000 * MIN_US + i, &retry) == 1);
    }
    CHECK_INT((int)b.evicted_live, 1);
    /* The one still held is still limited. */
    snprintf(key, sizeof key, "x%d", RISK_BUCKET_WAYS);
    CHECK(take(&b, key, 1, 1000 * MIN_US + 100, &retry) == 0);
    risk_buckets_free(&b);
}

int main(void)
{
    test_burst_and_refill();
    test_eviction();
    return unit_finish("unit_risk_bucket");
}
