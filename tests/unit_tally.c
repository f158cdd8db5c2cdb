/* unit_tally.c - tests of core/tally.c: counting up to a cap, giving back,
 * entries freed at zero, keys that differ only in length, collisions. */
#include <stdio.h>
#include <string.h>

#include "tally.h"
#include "unit.h"

static void test_cap(void)
{
    struct tally t;
    CHECK_INT(tally_init(&t, 10, 12345), 0);
    CHECK_INT(tally_take(&t, "alice", 5, 3), 1);
    CHECK_INT(tally_take(&t, "alice", 5, 3), 2);
    CHECK_INT(tally_take(&t, "alice", 5, 3), 3);
    CHECK_INT(tally_take(&t, "alice", 5, 3), 0); /* at the cap: refused, unchanged */
    CHECK_INT(tally_count(&t, "alice", 5), 3);
    CHECK_INT(tally_take(&t, "alic", 4, 3), 1);  /* a prefix is another key */
    CHECK_INT(tally_take(&t, "bob", 3, 0), 0);   /* a cap of 0 admits none */
    CHECK_INT(tally_count(&t, "bob", 3), 0);
    CHECK_INT(t.entries, 2);
    tally_give(&t, "alice", 5);
    CHECK_INT(tally_take(&t, "alice", 5, 3), 3); /* a place given back is taken again */
    for (int i = 0; i < 3; i++)
        tally_give(&t, "alice", 5);
    CHECK_INT(tally_count(&t, "alice", 5), 0);
    CHECK_INT(t.entries, 1); /* freed at zero */
    uint8_t long_key[TALLY_KEY_MAX + 1] = {0};
    CHECK_INT(tally_take(&t, long_key, sizeof long_key, 5), -1);
    tally_free(&t);
}

/* Many keys in a small table: every chain is walked right. */
static void test_many(void)
{
    struct tally t;
    CHECK_INT(tally_init(&t, 1, 7), 0); /* 64 buckets for 5000 keys */
    char key[16];
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(key, sizeof key, "u%d", i);
        CHECK_INT(tally_take(&t, key, (size_t)n, 2), 1);
    }
    for (int i = 0; i < 5000; i += 2) {
        int n = snprintf(key, sizeof key, "u%d", i);
        tally_give(&t, key, (size_t)n);
    }
    CHECK_INT(t.entries, 2500);
    int wrong = 0;
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(key, sizeof key, "u%d", i);
        wrong += tally_count(&t, key, (size_t)n) != (uint32_t)(i % 2);
    }
    CHECK_INT(wrong, 0);
    tally_free(&t); /* frees what is left (the leak check of the sanitizer build) */
}

int main(void)
{
    test_cap();
    test_many();
    return unit_finish("unit_tally");
}
