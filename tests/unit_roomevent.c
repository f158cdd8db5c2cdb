/* unit_roomevent.c - room events between nodes (rooms/roomevent.c): the
 * explicit kind, the pub/sub message that carries it, and the bodies of
 * notices, gifts and tips. */
#include <stdio.h>
#include <string.h>

#include "mpack.h"
#include "roomevent.h"
#include "unit.h"

/* The value of key `k` of a body map as a string ("" when absent or not a
 * string) or an integer (-1 when absent or not an integer). */
static int body_find(const uint8_t *b, size_t len, const char *k, struct mpack_item *out)
{
    struct mpack m = mpack_of(b, len);
    uint32_t n;
    if (mpack_map(&m, &n) < 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *key;
        size_t kl;
        if (mpack_str(&m, &key, &kl) < 0 || mpack_next(&m, out) == MP_BAD)
            return -1;
        if (mpack_is(key, kl, k))
            return 0;
        if (out->kind == MP_MAP || out->kind == MP_ARRAY)
            return -1; /* bodies are flat */
    }
    return -1;
}

static const char *body_str(const uint8_t *b, size_t len, const char *k, char *buf, size_t cap)
{
    struct mpack_item it;
    if (body_find(b, len, k, &it) < 0 || it.kind != MP_STR || it.len >= cap)
        return "";
    memcpy(buf, it.data, it.len);
    buf[it.len] = '\0';
    return buf;
}

static long long body_int(const uint8_t *b, size_t len, const char *k)
{
    struct mpack_item it;
    return body_find(b, len, k, &it) < 0 || it.kind != MP_INT ? -1 : (long long)it.i;
}

static int body_pairs(const uint8_t *b, size_t len)
{
    struct mpack m = mpack_of(b, len);
    uint32_t n;
    return mpack_map(&m, &n) < 0 ? -1 : (int)n;
}

static void test_kinds(void)
{
    CHECK_STR(event_kind_name(EVENT_GIFT), "gift");
    CHECK_STR(event_kind_name(EVENT_TIP), "tip");
    CHECK_STR(event_kind_name(EVENT_NOTICE), "notice");
    CHECK_STR(event_kind_name(EVENT_OTHER), "");
    CHECK_INT(event_kind_of("gift", 4), EVENT_GIFT);
    CHECK_INT(event_kind_of("tip", 3), EVENT_TIP);
    CHECK_INT(event_kind_of("notice", 6), EVENT_NOTICE);
    CHECK_INT(event_kind_of("gifts", 5), EVENT_OTHER);
    CHECK_INT(event_kind_of("gif", 3), EVENT_OTHER);
    CHECK_INT(event_kind_of("", 0), EVENT_OTHER);
    CHECK(event_moves_board(EVENT_GIFT) && event_moves_board(EVENT_TIP));
    CHECK(!event_moves_board(EVENT_NOTICE) && !event_moves_board(EVENT_OTHER));
}

static void test_messages(void)
{
    int64_t seq;
    enum event_kind kind;
    const uint8_t *body;
    size_t n;
    const char msg[] = "42:gift:\x81\xa1k\x01";
    CHECK_INT(event_message_read(msg, sizeof msg - 1, &seq, &kind, &body, &n), 0);
    CHECK_INT(seq, 42);
    CHECK_INT(kind, EVENT_GIFT);
    CHECK_INT(n, 4);
    CHECK(body == (const uint8_t *)msg + 8);
    /* A body may hold ':' bytes: only the first two colons separate. */
    const char colons[] = "7:notice:\x81\xa1:\xa1:";
    CHECK_INT(event_message_read(colons, sizeof colons - 1, &seq, &kind, &body, &n), 0);
    CHECK_INT(seq, 7);
    CHECK_INT(kind, EVENT_NOTICE);
    CHECK_INT(n, 5);
    /* An unknown kind is carried as EVENT_OTHER, not refused. */
    const char other[] = "9:combo_end:\x80";
    CHECK_INT(event_message_read(other, sizeof other - 1, &seq, &kind, &body, &n), 0);
    CHECK_INT(kind, EVENT_OTHER);
    CHECK_INT(n, 1);
    /* An older node's "<seq>:<body>": the body starts with a map header. */
    const char old[] = "5:\x81\xa1k\x01";
    CHECK_INT(event_message_read(old, sizeof old - 1, &seq, &kind, &body, &n), 0);
    CHECK_INT(seq, 5);
    CHECK_INT(kind, EVENT_OTHER);
    CHECK_INT(n, 4);
    /* Malformed. */
    static const char *const bad[] = {"", ":gift:\x80", "x:gift:\x80", "12", "12;gift:\x80", "12:gift",
                                      "1234567890123456789:gift:\x80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_INT(event_message_read(bad[i], strlen(bad[i]), &seq, &kind, &body, &n), -1);
    /* A body past EVENT_BODY_MAX is refused, in both forms. */
    static char big[EVENT_BODY_MAX + 32];
    memset(big, 'a', sizeof big);
    memcpy(big, "3:tip:", 6);
    CHECK_INT(event_message_read(big, 6 + EVENT_BODY_MAX, &seq, &kind, &body, &n), 0);
    CHECK_INT(event_message_read(big, 6 + EVENT_BODY_MAX + 1, &seq, &kind, &body, &n), -1);
    memcpy(big, "3:\x80", 3);
    CHECK_INT(event_message_read(big, 2 + EVENT_BODY_MAX, &seq, &kind, &body, &n), 0);
    CHECK_INT(event_message_read(big, 2 + EVENT_BODY_MAX + 1, &seq, &kind, &body, &n), -1);
}

static void test_notice(void)
{
    uint8_t b[EVENT_BODY_MAX];
    char s[128];
    int n = event_body_notice(b, sizeof b, "alice", ROLE_CREATOR, "hello\0there", 11, 1700000000123);
    CHECK(n > 0);
    CHECK_INT(body_pairs(b, (size_t)n), 5);
    CHECK_STR(body_str(b, (size_t)n, "kind", s, sizeof s), "notice");
    CHECK_STR(body_str(b, (size_t)n, "from", s, sizeof s), "alice");
    CHECK_STR(body_str(b, (size_t)n, "role", s, sizeof s), "creator");
    struct mpack_item it;
    CHECK_INT(body_find(b, (size_t)n, "text", &it), 0);
    CHECK(it.kind == MP_STR && it.len == 11 && memcmp(it.data, "hello\0there", 11) == 0);
    CHECK_INT(body_int(b, (size_t)n, "ts"), 1700000000123);
    /* The first key is "kind" (clients and older nodes expect it there). */
    CHECK(b[0] == 0x85 && memcmp(b + 1, "\xa4kind", 5) == 0);
    CHECK_INT(event_body_notice(b, 10, "alice", ROLE_CREATOR, "hi", 2, 1), -1);
}

static struct entry_str str(const char *s) { return (struct entry_str){s, strlen(s)}; }

static void test_orders(void)
{
    uint8_t b[EVENT_BODY_MAX];
    char s[128];
    struct entry e;
    memset(&e, 0, sizeof e);
    e.shard = 3;
    e.kind = ENTRY_GIFT;
    e.gift_id = 7;
    e.count = 5;
    e.amount = 50;
    e.ts_ms = 1700000000999;
    e.user = str("bob");
    e.room = str("alice");
    e.gift_name = str("Rose");
    e.animation = str("rose");
    e.combo = str("c1");
    e.text = str("");
    e.role = str("viewer");
    int n = event_body_order(b, sizeof b, &e, "3-1700000000999-0", 0);
    CHECK(n > 0);
    CHECK_INT(body_pairs(b, (size_t)n), 11);
    CHECK_STR(body_str(b, (size_t)n, "kind", s, sizeof s), "gift");
    CHECK_STR(body_str(b, (size_t)n, "from", s, sizeof s), "bob");
    CHECK_STR(body_str(b, (size_t)n, "role", s, sizeof s), "viewer");
    CHECK_STR(body_str(b, (size_t)n, "order", s, sizeof s), "3-1700000000999-0");
    CHECK_INT(body_int(b, (size_t)n, "gift"), 7);
    CHECK_STR(body_str(b, (size_t)n, "name", s, sizeof s), "Rose");
    CHECK_STR(body_str(b, (size_t)n, "animation", s, sizeof s), "rose");
    CHECK_INT(body_int(b, (size_t)n, "count"), 5);
    CHECK_STR(body_str(b, (size_t)n, "combo", s, sizeof s), "c1");
    CHECK_INT(body_int(b, (size_t)n, "amount"), 50);
    CHECK_INT(body_int(b, (size_t)n, "ts"), 1700000000999);

    e.kind = ENTRY_TIP;
    e.text = str("great show");
    n = event_body_order(b, sizeof b, &e, "3-1-0", 0);
    CHECK(n > 0);
    CHECK_INT(body_pairs(b, (size_t)n), 6);
    CHECK_STR(body_str(b, (size_t)n, "kind", s, sizeof s), "tip");
    CHECK_STR(body_str(b, (size_t)n, "text", s, sizeof s), "great show");
    CHECK_INT(body_int(b, (size_t)n, "amount"), 50);
    CHECK_INT(body_int(b, (size_t)n, "gift"), -1); /* a tip names no gift */

    e.kind = ENTRY_CREDIT;
    CHECK_INT(event_body_order(b, sizeof b, &e, "3-1-0", 0), -1);
    e.kind = ENTRY_TIP;
    CHECK_INT(event_body_order(b, 16, &e, "3-1-0", 0), -1);
}

int main(void)
{
    test_kinds();
    test_messages();
    test_notice();
    test_orders();
    return unit_finish("unit_roomevent");
}
