/* unit_handshake.c - tests of server/handshake.c: which Sec-WebSocket-Protocol
 * lists pass and with which format (lws 4.1's pick of the first name it
 * knows, "http" among them, and the plain form only), the demo's own-origin
 * rule against DNS rebinding, and the path. */
#include <string.h>

#include "config.h"
#include "handshake.h"
#include "unit.h"

#define MP FMT_MSGPACK
#define JS FMT_JSON

static void test_subprotocol(void)
{
    /* One name of ours. */
    CHECK_INT(handshake_subprotocol("tipcast.v1.msgpack"), MP);
    CHECK_INT(handshake_subprotocol("tipcast.v1.json"), JS);
    /* The first known name decides; unknown names before it are skipped. */
    CHECK_INT(handshake_subprotocol("chat, tipcast.v1.msgpack"), MP);
    CHECK_INT(handshake_subprotocol("tipcast.v1.json, tipcast.v1.msgpack"), JS);
    CHECK_INT(handshake_subprotocol("tipcast.v1.json, http"), JS);
    CHECK_INT(handshake_subprotocol(" \ttipcast.v1.json\t ,chat "), JS);
    CHECK_INT(handshake_subprotocol("x-1!#$%&'*+-.^_`|~, tipcast.v1.json"), JS);
    /* The case: lws would bind "http", so refused, in any position
     * before ours. */
    CHECK_INT(handshake_subprotocol("http, tipcast.v1.json"), -1);
    CHECK_INT(handshake_subprotocol("http,tipcast.v1.msgpack"), -1);
    CHECK_INT(handshake_subprotocol("chat, http, tipcast.v1.json"), -1);
    CHECK_INT(handshake_subprotocol("http"), -1);
    /* None of ours, or none at all. */
    CHECK_INT(handshake_subprotocol(NULL), -1);
    CHECK_INT(handshake_subprotocol(""), -1);
    CHECK_INT(handshake_subprotocol("   "), -1);
    CHECK_INT(handshake_subprotocol("chat"), -1);
    CHECK_INT(handshake_subprotocol("TIPCAST.V1.JSON"), -1);
    CHECK_INT(handshake_subprotocol("tipcast.v1.json2"), -1);
    CHECK_INT(handshake_subprotocol("tipcast.v1"), -1);
    CHECK_INT(handshake_subprotocol("HTTP, tipcast.v1.json"), JS); /* lws compares case-sensitively */
    /* Not the plain form: refused whole, even with ours first. */
    CHECK_INT(handshake_subprotocol("tipcast.v1.json,"), -1);
    CHECK_INT(handshake_subprotocol(",tipcast.v1.json"), -1);
    CHECK_INT(handshake_subprotocol("tipcast.v1.json,,chat"), -1);
    CHECK_INT(handshake_subprotocol("\"tipcast.v1.json\""), -1);
    CHECK_INT(handshake_subprotocol("tipcast.v1.json http"), -1);
    CHECK_INT(handshake_subprotocol("tipcast.v1.json;q=1"), -1);
    CHECK_INT(handshake_subprotocol("tipcast.v1.json/x"), -1);
    CHECK_INT(handshake_subprotocol("a=b, tipcast.v1.json"), -1);
    CHECK_INT(handshake_subprotocol("tipcast.v1.json\r\n"), -1);
    CHECK_INT(handshake_subprotocol("t\xc3\xa9, tipcast.v1.json"), -1);
    /* Names lws reads as numbers, and then refuses the list. */
    CHECK_INT(handshake_subprotocol("12, tipcast.v1.json"), -1);
    CHECK_INT(handshake_subprotocol("1.5, tipcast.v1.json"), -1);
    CHECK_INT(handshake_subprotocol("1a, tipcast.v1.json"), JS);
    /* The length bound. */
    char list[HANDSHAKE_LIST_MAX + 2];
    memset(list, 'a', sizeof list);
    memcpy(list, "tipcast.v1.json,", 16);
    list[HANDSHAKE_LIST_MAX - 1] = '\0';
    CHECK_INT(handshake_subprotocol(list), JS);
    list[HANDSHAKE_LIST_MAX - 1] = 'a';
    list[HANDSHAKE_LIST_MAX] = '\0';
    CHECK_INT(handshake_subprotocol(list), -1);
}

static void test_host_pinned(void)
{
    CHECK(handshake_host_pinned("127.0.0.1"));
    CHECK(handshake_host_pinned("127.0.0.1:8080"));
    CHECK(handshake_host_pinned("127.8.9.10:1"));
    CHECK(handshake_host_pinned("10.0.0.5:8080"));
    CHECK(handshake_host_pinned("localhost:8080"));
    CHECK(handshake_host_pinned("LocalHost"));
    CHECK(handshake_host_pinned("[::1]:8080"));
    CHECK(handshake_host_pinned("[::1]"));
    CHECK(handshake_host_pinned("[fe80::1]:80"));
    /* Names: anyone's DNS can point them here. */
    CHECK(!handshake_host_pinned("evil.example:8080"));
    CHECK(!handshake_host_pinned("evil.example"));
    CHECK(!handshake_host_pinned("localhost.evil.example"));
    CHECK(!handshake_host_pinned("localhost."));
    CHECK(!handshake_host_pinned("127.0.0.1.evil.example"));
    CHECK(!handshake_host_pinned("127.1"));
    CHECK(!handshake_host_pinned("0x7f.0.0.1"));
    /* Malformed. */
    CHECK(!handshake_host_pinned(NULL));
    CHECK(!handshake_host_pinned(""));
    CHECK(!handshake_host_pinned(":8080"));
    CHECK(!handshake_host_pinned("127.0.0.1:"));
    CHECK(!handshake_host_pinned("127.0.0.1:80x"));
    CHECK(!handshake_host_pinned("127.0.0.1:80:80"));
    CHECK(!handshake_host_pinned("::1"));
    CHECK(!handshake_host_pinned("[::1"));
    CHECK(!handshake_host_pinned("[::1]x"));
    CHECK(!handshake_host_pinned("[evil.example]"));
    CHECK(!handshake_host_pinned("127.0.0.1 "));
}

static void test_origin(void)
{
    struct config cfg;
    config_defaults(&cfg);
    /* No Origin: not a browser. */
    CHECK(handshake_origin_allowed(&cfg, NULL, NULL));
    CHECK(handshake_origin_allowed(&cfg, NULL, "evil.example"));
    /* Empty allowlist, demo off: every browser refused, its own page too. */
    CHECK(!handshake_origin_allowed(&cfg, "http://127.0.0.1:8080", "127.0.0.1:8080"));
    strcpy(cfg.origins[0], "https://app.example");
    cfg.origins_count = 1;
    CHECK(handshake_origin_allowed(&cfg, "https://app.example", "whatever"));
    CHECK(handshake_origin_allowed(&cfg, "https://app.example", NULL));
    CHECK(!handshake_origin_allowed(&cfg, "https://app.example:443", "app.example"));
    CHECK(!handshake_origin_allowed(&cfg, "http://app.example", "app.example"));

    /* Demo: the page's own origin at an address or localhost. */
    cfg.demo = 1;
    CHECK(handshake_origin_allowed(&cfg, "http://127.0.0.1:8080", "127.0.0.1:8080"));
    CHECK(handshake_origin_allowed(&cfg, "http://localhost:8080", "localhost:8080"));
    CHECK(handshake_origin_allowed(&cfg, "https://[::1]:8443", "[::1]:8443"));
    CHECK(handshake_origin_allowed(&cfg, "http://192.168.1.5:8080", "192.168.1.5:8080"));
    /* DNS rebinding: Origin and Host agree on a name. */
    CHECK(!handshake_origin_allowed(&cfg, "http://evil.example:8080", "evil.example:8080"));
    CHECK(!handshake_origin_allowed(&cfg, "http://evil.example", "evil.example"));
    /* Mismatches and odd forms. */
    CHECK(!handshake_origin_allowed(&cfg, "http://localhost:8080", "127.0.0.1:8080"));
    CHECK(!handshake_origin_allowed(&cfg, "http://127.0.0.1:8080", "127.0.0.1:8081"));
    CHECK(!handshake_origin_allowed(&cfg, "http://127.0.0.1:8080", NULL));
    CHECK(!handshake_origin_allowed(&cfg, "ftp://127.0.0.1:8080", "127.0.0.1:8080"));
    CHECK(!handshake_origin_allowed(&cfg, "null", "127.0.0.1:8080"));
    CHECK(!handshake_origin_allowed(&cfg, "http://127.0.0.1:8080/", "127.0.0.1:8080"));
    /* A listed name is allowed with demo too. */
    strcpy(cfg.origins[1], "http://devbox:8080");
    cfg.origins_count = 2;
    CHECK(handshake_origin_allowed(&cfg, "http://devbox:8080", "devbox:8080"));

    cfg.origins_any = 1;
    CHECK(handshake_origin_allowed(&cfg, "http://evil.example:8080", "evil.example:8080"));
}

static void test_path(void)
{
    CHECK(handshake_path_ok("/ws"));
    CHECK(!handshake_path_ok("/ws/"));
    CHECK(!handshake_path_ok("/WS"));
    CHECK(!handshake_path_ok("/"));
    CHECK(!handshake_path_ok(""));
    CHECK(!handshake_path_ok(NULL));
}

int main(void)
{
    test_subprotocol();
    test_host_pinned();
    test_origin();
    test_path();
    return unit_finish("unit_handshake");
}
