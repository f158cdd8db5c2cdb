/* unit_tipcast_msg.c - libtipcast's reading of server messages (clients/c/msg.c):
 * frames decoded from msgpack written here with msgpack-c, the typed
 * accessors, and the JSON rendering the CLI prints with --json. */
#include <stdlib.h>
#include <string.h>

#include "libtipcast.h"
#include "unit.h"

static void str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* {"type":"events","room":"alice","events":[{seq 41 gift ...},{seq 42 tip, text with quote, newline, é}]} */
static void events_frame(msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    str(&pk, "type"), str(&pk, "events");
    str(&pk, "room"), str(&pk, "alice");
    str(&pk, "events");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_map(&pk, 5);
    str(&pk, "type"), str(&pk, "event");
    str(&pk, "seq"), msgpack_pack_uint64(&pk, 41);
    str(&pk, "kind"), str(&pk, "gift");
    str(&pk, "amount"), msgpack_pack_int64(&pk, 9007199254740993LL); /* past 2^53: exact */
    str(&pk, "live"), msgpack_pack_true(&pk);
    msgpack_pack_map(&pk, 5);
    str(&pk, "seq"), msgpack_pack_uint64(&pk, 42);
    str(&pk, "kind"), str(&pk, "tip");
    str(&pk, "text"), str(&pk, "say \"gg\"\n\xc3\xa9\x01");
    str(&pk, "delta"), msgpack_pack_int64(&pk, -5);
    str(&pk, "raw"), msgpack_pack_bin(&pk, 4), msgpack_pack_bin_body(&pk, "\x00\xff\x10\x20", 4);
}

int main(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    events_frame(&sb);

    tc_frame f;
    CHECK_INT(tc_frame_decode(sb.data, sb.size, &f), 0);
    CHECK(tc_msg_is(&f.msg, "type", "events"));
    CHECK(!tc_msg_is(&f.msg, "type", "event"));
    char room[8];
    CHECK_STR(tc_msg_strcpy(&f.msg, "room", room, sizeof room), "alice");
    CHECK_STR(tc_msg_strcpy(&f.msg, "room", room, 4), "ali"); /* truncated, still a C string */
    CHECK_STR(tc_msg_strcpy(&f.msg, "nope", room, sizeof room), "");
    tc_msg evs = tc_msg_get(&f.msg, "events");
    CHECK_INT(tc_msg_len(evs), 2);
    CHECK(!tc_msg_ok(tc_msg_at(evs, 2)));
    tc_msg e0 = tc_msg_at(evs, 0), e1 = tc_msg_at(evs, 1);
    int64_t v = 0;
    CHECK(tc_msg_int(&e0, "seq", &v) && v == 41);
    CHECK_INT(tc_msg_int_or(&e0, "amount", 0), 9007199254740993LL);
    CHECK_INT(tc_msg_int_or(&e1, "delta", 0), -5);
    CHECK(!tc_msg_int(&e1, "kind", &v)); /* a string is not an integer */
    CHECK_INT(tc_msg_int_or(&e1, "kind", 7), 7);
    CHECK(tc_msg_str(&e0, "seq", NULL) == NULL); /* an integer is not a string */
    size_t n = 0;
    const char *t = tc_msg_str(&e1, "text", &n);
    CHECK(t && n == 12 && memcmp(t, "say \"gg\"\n\xc3\xa9\x01", 12) == 0);
    CHECK_INT(tc_msg_len(tc_msg_get(&f.msg, "room")), 0); /* not an array */

    char *json = tc_msg_json(&f.msg);
    CHECK_STR(json, "{\"type\":\"events\",\"room\":\"alice\",\"events\":["
                    "{\"type\":\"event\",\"seq\":41,\"kind\":\"gift\",\"amount\":9007199254740993,\"live\":true},"
                    "{\"seq\":42,\"kind\":\"tip\",\"text\":\"say \\\"gg\\\"\\n\xc3\xa9\\u0001\",\"delta\":-5,"
                    "\"raw\":\"AP8QIA==\"}]}");
    free(json);
    tc_frame_release(&f);

    /* Not one whole map: trailing bytes, a truncated frame, an array, nothing. */
    CHECK_INT(tc_frame_decode(sb.data, sb.size - 1, &f), -1);
    char more[4096];
    memcpy(more, sb.data, sb.size);
    more[sb.size] = (char)0xc0;
    CHECK_INT(tc_frame_decode(more, sb.size + 1, &f), -1);
    CHECK_INT(tc_frame_decode("\x91\x01", 2, &f), -1);
    CHECK_INT(tc_frame_decode("", 0, &f), -1);
    CHECK(tc_msg_json(NULL) == NULL);
    msgpack_sbuffer_destroy(&sb);
    return unit_finish("unit_tipcast_msg");
}
