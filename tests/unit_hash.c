/* unit_hash.c - tests of core/hash.c (FNV-1a, CRC16, the cluster key slot, known vectors), core/hex.c and
 * core/text.c (against snprintf's output, and the key names written with it), and of
 * the invariant that lets Redis be a cluster: the keys each Lua script is called with share one
 * slot. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "board.h"
#include "calendar.h"
#include "hash.h"
#include "hex.h"
#include "outbox.h"
#include "roomkeys.h"
#include "text.h"
#include "unit.h"

static int slot(const char *key) { return hash_keyslot(key, strlen(key)); }

static void test_hex(void)
{
    const unsigned char d[] = {0x00, 0x0f, 0xa5, 0xff, 0x10};
    char out[2 * sizeof d + 1];
    memset(out, 'x', sizeof out);
    hex_lower(d, sizeof d, out);
    CHECK_STR(out, "000fa5ff10");
    hex_lower(d, 0, out);
    CHECK_STR(out, "");
}

static void test_text(void)
{
    static const int64_t v[] = {0, 1, 9, 10, 99, 100, 12345, -1, -10, 4294967296LL, INT64_MAX, INT64_MIN};
    char got[64], want[64];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        snprintf(want, sizeof want, "x%lldy", (long long)v[i]);
        size_t n = text_cat(got, sizeof got, text_cat_i64(got, sizeof got, text_cat(got, sizeof got, 0, "x"), v[i]), "y");
        CHECK_STR(got, want);
        CHECK_INT(n, strlen(want));
    }
    CHECK_INT(text_cat_i64(got, sizeof got, 0, INT64_MIN), TEXT_I64_MAX);
    /* Zero-padding, and a value wider than the width written whole. */
    static const struct {
        uint64_t v;
        int width;
        const char *want;
    } pad[] = {{7, 2, "07"}, {2026, 4, "2026"}, {12, 4, "0012"}, {12345, 4, "12345"}, {0, 1, "0"}, {5, 0, "5"},
               {UINT64_MAX, 2, "18446744073709551615"}, {3, 99, "00000000000000000003"}};
    for (size_t i = 0; i < sizeof pad / sizeof pad[0]; i++) {
        text_cat_pad(got, sizeof got, 0, pad[i].v, pad[i].width);
        CHECK_STR(got, pad[i].want);
    }
    /* Cut to the buffer, always ending in a NUL; appending after a cut
     * writes nothing more. */
    char small[6];
    size_t n = text_cat(small, sizeof small, 0, "abc");
    n = text_cat(small, sizeof small, n, "defgh");
    CHECK_STR(small, "abcde");
    CHECK_INT(n, 5);
    CHECK_INT(text_cat_i64(small, sizeof small, n, 42), 5);
    CHECK_STR(small, "abcde");
    CHECK_INT(text_cat_i64(small, sizeof small, 0, -123456), 5);
    CHECK_STR(small, "-1234");
    /* Bytes, NULs included, by length. */
    n = text_catn(got, sizeof got, 0, "a\0b", 3);
    CHECK_INT(n, 3);
    CHECK(memcmp(got, "a\0b", 4) == 0);
}

static void test_fnv1a(void)
{
    CHECK_INT(hash_fnv1a("", 0), 0x811c9dc5u);
    CHECK_INT(hash_fnv1a("a", 1), 0xe40c292cu);
    CHECK_INT(hash_fnv1a("foobar", 6), 0xbf9cf968u);
    /* len, not the NUL, ends the input; bytes above 0x7f count unsigned. */
    CHECK_INT(hash_fnv1a("foobarXYZ", 6), 0xbf9cf968u);
    CHECK(hash_fnv1a("a\0", 2) != hash_fnv1a("a", 1));
    CHECK_INT(hash_fnv1a("\xff", 1), (0x811c9dc5u ^ 0xffu) * 16777619u);
    /* Python's helpers.py shard_of(uid, shards), computed there. */
    CHECK_INT(hash_fnv1a("u42", 3), 0x0bf5bcbau);
    CHECK_INT(hash_fnv1a("alice", 5), 0x872213e7u);
}

static void test_shards(void)
{
    static const struct {
        const char *uid;
        int shards, want;
    } v[] = {
        {"u42", 4, 2},        {"alice", 4, 3},       {"creator-7", 4, 3},   {"viewer_001", 4, 3},
        {"a", 4, 0},          {"u42", 16, 10},       {"alice", 16, 7},      {"creator-7", 16, 11},
        {"viewer_001", 16, 3}, {"u42", 1024, 186},   {"alice", 1024, 999},  {"creator-7", 1024, 891},
        {"viewer_001", 1024, 1011}, {"foobar", 64, 40}, {"u42", 1, 0},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        struct outbox ob = {.shards = v[i].shards};
        CHECK_INT(outbox_shard_of(&ob, v[i].uid), v[i].want);
    }
}

static void test_crc16_and_slots(void)
{
    CHECK_INT(hash_crc16("123456789", 9), 0x31c3);
    CHECK_INT(hash_crc16("", 0), 0);
    /* Redis Cluster's own examples (cluster-spec) and python3's
     * binascii.crc_hqx(key, 0) % 16384. */
    CHECK_INT(slot("foo"), 12182);
    CHECK_INT(slot("bar"), 5061);
    CHECK_INT(slot(""), 0);
    CHECK_INT(slot("user1000"), 3443);
    CHECK_INT(slot("{user1000}.following"), 3443);
    CHECK_INT(slot("{user1000}.followers"), 3443);
    /* The tag is the bytes between the first '{' and the next '}'. */
    CHECK_INT(slot("foo{bar}{zap}"), slot("bar"));
    CHECK_INT(slot("a{b}c"), 3300);
    CHECK_INT(slot("a{b}c"), slot("b"));
    /* An empty tag hashes the whole key: "foo{}{bar}" is not "bar". */
    CHECK_INT(slot("foo{}{bar}"), 8363);
    CHECK_INT(slot("foo{}{bar}"), hash_crc16("foo{}{bar}", 10) % HASH_SLOTS);
    CHECK(slot("foo{}{bar}") != slot("bar"));
    CHECK_INT(slot("{}"), 15257);
    CHECK_INT(slot("{}"), hash_crc16("{}", 2) % HASH_SLOTS);
    CHECK_INT(slot("{}x"), 10595);
    /* The tag of "foo{{bar}}zap" is "{bar". */
    CHECK_INT(slot("foo{{bar}}zap"), 4015);
    CHECK_INT(slot("foo{{bar}}zap"), slot("{bar"));
    /* No closing brace: the whole key; len bounds the search. */
    CHECK_INT(slot("foo{bar"), 15278);
    CHECK_INT(hash_keyslot("{ab}", 3), 7174);
    CHECK_INT(hash_keyslot("{ab}", 3), hash_crc16("{ab", 3) % HASH_SLOTS);
    CHECK_INT(hash_keyslot("{ab}", 4), slot("ab"));
    CHECK_INT(hash_keyslot("{}", 1), hash_crc16("{", 1) % HASH_SLOTS);
    /* Every slot is in range. */
    char key[16];
    int lo = HASH_SLOTS, hi = -1;
    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        int s = slot(key);
        lo = s < lo ? s : lo;
        hi = s > hi ? s : hi;
    }
    CHECK(lo >= 0 && hi < HASH_SLOTS);
    CHECK(lo < 10 && hi > HASH_SLOTS - 10);
}

/* ---- One slot per script ------------------------------------------------- */

static const char *const users[] = {"u42", "alice", "creator-7", "x",
                                    "a-user-id-of-sixty-four-characters-exactly-0123456789abcdefghijk"};
static const char *const reqs[] = {"req-1", "7f3c9e20-1b2a-4c5d-8e9f-0a1b2c3d4e5f", "r"};

static void test_wallet_slots(void)
{
    CHECK_INT(strlen(users[4]), ID_MAX);
    char bal[OUTBOX_KEY_MAX], idem[OUTBOX_KEY_MAX * 2], ob[OUTBOX_KEY_MAX], lease[OUTBOX_KEY_MAX], tag[16];

    /* The exact names, once. */
    outbox_balance_key(3, "u42", bal, sizeof bal);
    CHECK_STR(bal, "tc:{w:3}:bal:u42");
    outbox_idem_key(3, "u42", "req-1", idem, sizeof idem);
    CHECK_STR(idem, "tc:{w:3}:idem:u42:req-1");
    outbox_key(3, ob, sizeof ob);
    CHECK_STR(ob, "tc:{w:3}:outbox");
    outbox_lease_key(3, OUTBOX_GROUP_LEDGER, lease, sizeof lease);
    CHECK_STR(lease, "tc:{w:3}:lease:ledger");
    CHECK_INT(outbox_user_key(3, "risk", "u42", lease, sizeof lease), strlen("tc:{w:3}:risk:u42"));
    CHECK_STR(lease, "tc:{w:3}:risk:u42");
    char order[OUTBOX_ORDER_ID_MAX + 1];
    outbox_order_id(12, "1700000000000-7", order, sizeof order);
    CHECK_STR(order, "12-1700000000000-7");
    CHECK_INT(slot(ob), 12790);

    /* wallet_move.lua: KEYS = balance, idempotency, outbox of the user's
     * shard. outbox_lease.lua and outbox_trim.lua: one key each, but the
     * lease and the stream it guards live together. */
    int shard_counts[] = {1, 4, 16, OUTBOX_SHARDS_MAX};
    for (size_t c = 0; c < sizeof shard_counts / sizeof shard_counts[0]; c++) {
        struct outbox o = {.shards = shard_counts[c]};
        for (size_t u = 0; u < sizeof users / sizeof users[0]; u++)
            for (size_t q = 0; q < sizeof reqs / sizeof reqs[0]; q++) {
                int shard = outbox_shard_of(&o, users[u]);
                outbox_balance_key(shard, users[u], bal, sizeof bal);
                outbox_idem_key(shard, users[u], reqs[q], idem, sizeof idem);
                outbox_key(shard, ob, sizeof ob);
                snprintf(tag, sizeof tag, "w:%d", shard);
                CHECK_INT(slot(bal), slot(ob));
                CHECK_INT(slot(idem), slot(ob));
                CHECK_INT(slot(ob), slot(tag));
            }
    }
    int distinct = 0, seen[HASH_SLOTS] = {0};
    for (int s = 0; s < OUTBOX_SHARDS_MAX; s++) {
        outbox_key(s, ob, sizeof ob);
        const char *groups[] = {OUTBOX_GROUP_LEDGER, OUTBOX_GROUP_ROOMS};
        for (int g = 0; g < 2; g++) {
            outbox_lease_key(s, groups[g], lease, sizeof lease);
            CHECK_INT(slot(lease), slot(ob));
        }
        /* The key a stream is read from maps back to its shard. */
        struct outbox o = {.shards = OUTBOX_SHARDS_MAX};
        CHECK_INT(outbox_key_shard(&o, ob, strlen(ob)), s);
        distinct += !seen[slot(ob)]++;
    }
    /* Shards spread over the cluster rather than piling on a few slots. */
    CHECK(distinct > OUTBOX_SHARDS_MAX * 9 / 10);
}

static void test_room_slots(void)
{
    static const char *const rooms[] = {"room1", "creator-7", "a.b_c-D", "z",
                                        "a-room-id-of-sixty-four-characters-exactly-0123456789abcdefghijk"};
    /* Instants around the turn of a day, a week, a month and a year. */
    static const int64_t at_ms[] = {0, 1704067199999LL, 1704067200000LL, 1709251199000LL, 1732240000123LL,
                                    253402300799999LL};
    struct room_keys k;
    struct board_keys bk;

    room_keys("room1", &k);
    CHECK_STR(k.seq, "tc:{r:room1}:seq");
    CHECK_STR(k.hist, "tc:{r:room1}:hist");
    CHECK_STR(k.nodes, "tc:{r:room1}:nodes");
    CHECK_STR(k.chan, "tc:{r:room1}:ev");
    CHECK_STR(k.wm, "tc:{r:room1}:wm");
    CHECK_STR(k.board, "tc:{r:room1}:board:all");
    CHECK_STR(k.combo, "tc:{r:room1}:combo");
    CHECK_STR(k.combo_due, "tc:{r:room1}:combo:due");
    CHECK_STR(k.pins, "tc:{r:room1}:pins");
    CHECK_STR(k.pin, "tc:{r:room1}:pin");
    CHECK_STR(k.mods, "tc:{r:room1}:mods");
    CHECK_INT(slot(k.seq), 13675);

    CHECK_INT(strlen(rooms[4]), ID_MAX);
    for (size_t r = 0; r < sizeof rooms / sizeof rooms[0]; r++) {
        room_keys(rooms[r], &k);
        char tag[ID_MAX + 8], want[BOARD_KEY_MAX + ROOM_KEY_MAX];
        snprintf(tag, sizeof tag, "r:%s", rooms[r]);
        int s = slot(tag);
        /* room_apply, room_presence, room_publish, room_history: any of seq,
         * hist, nodes, wm and the boards; the channel goes with them. */
        const char *keys[] = {k.seq, k.hist, k.nodes, k.chan, k.wm, k.board};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
            CHECK_INT(slot(keys[i]), s);
        /* A 64-byte id is not cut off. */
        snprintf(want, sizeof want, "tc:{r:%s}:nodes", rooms[r]);
        CHECK_STR(k.nodes, want);
        for (size_t t = 0; t < sizeof at_ms / sizeof at_ms[0]; t++) {
            board_keys(rooms[r], at_ms[t], &bk);
            CHECK_STR(bk.key[BOARD_ALL], k.board);
            /* The names as printf wrote them before text.h. */
            struct calendar_date cd;
            calendar_date_of(at_ms[t] / 1000, &cd);
            char day[BOARD_KEY_MAX];
            snprintf(want, sizeof want, "tc:{r:%s}:board:d:%04lld%02d%02d", rooms[r], (long long)cd.y, cd.m, cd.d);
            CHECK_STR(bk.key[BOARD_DAY], want);
            board_day_key(rooms[r], at_ms[t], day);
            CHECK_STR(day, want);
            snprintf(want, sizeof want, "tc:{r:%s}:sum:w:%04lld%02d%02d", rooms[r], (long long)cd.wy, cd.wm, cd.wd);
            CHECK_STR(bk.sum[BOARD_WEEK], want);
            snprintf(want, sizeof want, "tc:{r:%s}:board:m:%04lld%02d", rooms[r], (long long)cd.y, cd.m);
            CHECK_STR(bk.key[BOARD_MONTH], want);
            snprintf(want, sizeof want, "tc:{r:%s}:sum:all", rooms[r]);
            CHECK_STR(bk.sum[BOARD_ALL], want);
            snprintf(want, sizeof want, "tc:{r:%s}:goal", rooms[r]);
            CHECK_STR(bk.goal, want);
            for (int p = 0; p < BOARD_PERIODS; p++) {
                CHECK_INT(slot(bk.key[p]), s);
                CHECK(strlen(bk.key[p]) + 1 < BOARD_KEY_MAX);
                CHECK_INT(slot(bk.sum[p]), s);
                CHECK(strlen(bk.sum[p]) + 1 < BOARD_KEY_MAX);
            }
        }
        /* The channel names its room back. */
        char id[ID_MAX + 1];
        CHECK_INT(room_channel_id(k.chan, strlen(k.chan), id), 1);
        CHECK_STR(id, rooms[r]);
    }
}

int main(void)
{
    char err[256];
    if (calendar_tz_init("UTC", err, sizeof err) != 0)
        fprintf(stderr, "%s\n", err);
    test_hex();
    test_text();
    test_fnv1a();
    test_shards();
    test_crc16_and_slots();
    test_wallet_slots();
    test_room_slots();
    return unit_finish("unit_hash");
}
