/* example.c - libtipcast in one page: watch a room and send it a gift.
 *   cc example.c -ltipcast $(pkg-config --cflags --libs libwebsockets msgpack)
 *   ./example ws://127.0.0.1:8080/ws "$TOKEN" alice 1 */
#include <stdio.h>
#include <stdlib.h>

#include "libtipcast.h"

static void on_event(tc_client *c, const tc_msg *ev, void *ud)
{
    char kind[16], from[65];
    (void)c, (void)ud;
    printf("#%lld %s from %s\n", (long long)tc_msg_int_or(ev, "seq", 0),
           tc_msg_strcpy(ev, "kind", kind, sizeof kind), tc_msg_strcpy(ev, "from", from, sizeof from));
}

static void on_snapshot(tc_client *c, const tc_msg *joined, int reset, void *ud)
{
    (void)c, (void)ud;
    printf("joined at seq %lld%s\n", (long long)tc_msg_int_or(joined, "seq", 0), reset ? " (events were missed)" : "");
}

/* The gift's answer: the ack, or an error code ("insufficient_balance", "timeout", ...). */
static void on_gift(tc_client *c, const tc_msg *ack, const char *code, void *ud)
{
    (void)c, (void)ud;
    if (code) {
        printf("gift refused: %s\n", code);
        return;
    }
    char *json = tc_msg_json(ack); /* the ack lives until we return: copy what we keep */
    printf("gift ack: %s\n", json);
    free(json);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s URL TOKEN ROOM GIFT_ID\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* a line as soon as it is printed */
    struct tc_config cfg = {
        .url = argv[1],
        .token = argv[2],
        .reconnect = 1, /* reconnect with backoff; rooms resume from their last seq */
        .on_event = on_event,
        .on_snapshot = on_snapshot,
    };
    tc_client *c = tc_client_new(&cfg);
    if (!c)
        return 2;
    tc_join(c, argv[3], NULL, NULL); /* requests may be made before the connection opens */
    char id[64];
    tc_client_new_id(c, "gift", id, sizeof id); /* keep the id: a retry with it never pays twice */
    struct tc_gift g = {.room = argv[3], .gift = atoll(argv[4]), .count = 1, .id = id};
    tc_gift(c, &g, on_gift, NULL);
    tc_client_connect(c);
    while (tc_client_service(c) == 0) /* every callback runs in here, on this thread */
        ;
    tc_client_free(c);
    return 0;
}
