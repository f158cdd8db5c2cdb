/* unit_ring.c - tests of server/ring.c: push order and eviction, the search with gaps, single,
 * batch and pair frames and their sharing, the batch limits, byte counters and references, and the ring's
 * growth for a burst the members in step still need (ring_settle). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "board.h"
#include "message.h"
#include "ring.h"
#include "unit.h"

#define ROOM "r1"

/* A frame of n bytes, all `fill`, as an event frame would be. */
static struct frame *raw(enum fmt fmt, size_t n, uint8_t fill)
{
    struct frame *f = frame_new(fmt, n);
    memset(frame_payload(f), fill, n);
    f->len = (uint32_t)n;
    return f;
}

/* Pushes seq with frames of n (msgpack) and 2n + 1 (JSON) bytes. */
static int64_t push_raw(struct ring *r, int64_t seq, size_t n)
{
    struct frame *f[FMT_COUNT] = {raw(FMT_MSGPACK, n, (uint8_t)seq), raw(FMT_JSON, 2 * n + 1, (uint8_t)seq)};
    return ring_push(r, seq, 0, f);
}

/* Pushes seq as a real event {type, room, seq, n: seq} in both formats. */
static int64_t push_event(struct ring *r, int64_t seq)
{
    uint8_t body[12] = {0x81, 0xa1, 'n', 0xd3};
    for (int i = 0; i < 8; i++)
        body[4 + i] = (uint8_t)((uint64_t)seq >> (56 - 8 * i));
    struct frame *f[FMT_COUNT];
    for (int k = 0; k < FMT_COUNT; k++)
        f[k] = message_event((enum fmt)k, ROOM, seq, body, sizeof body);
    return ring_push(r, seq, 0, f);
}

/* The first event with seq >= s, by a linear walk. */
static int64_t linear_next(struct ring *r, int64_t s)
{
    for (uint32_t i = 0; i < r->count; i++) {
        struct ring_event *e = &r->ev[(r->head + i) % r->cap];
        if (e->seq >= s)
            return e->seq;
    }
    return -1;
}

static int64_t next_seq(struct ring *r, int64_t s)
{
    struct ring_event *e = ring_next(r, s);
    return e ? e->seq : -1;
}

static int same_bytes(struct frame *a, struct frame *b)
{
    return a && b && a->len == b->len && memcmp(frame_payload(a), frame_payload(b), a->len) == 0;
}

static int starts_with(struct frame *f, const char *s)
{
    return f && f->len >= strlen(s) && memcmp(frame_payload(f), s, strlen(s)) == 0;
}

static int ends_with(struct frame *f, const char *s)
{
    return f && f->len >= strlen(s) && memcmp(frame_payload(f) + f->len - strlen(s), s, strlen(s)) == 0;
}

static void test_push_next(void)
{
    struct ring r;
    CHECK_INT(ring_init(&r, ROOM), 0);
    CHECK(ring_next(&r, 0) == NULL);
    CHECK(ring_next(&r, 1) == NULL);

    /* Seqs with gaps: 1 2 5 9 10. */
    static const int64_t seqs[] = {1, 2, 5, 9, 10};
    uint64_t cum[FMT_COUNT] = {0, 0};
    for (int i = 0; i < 5; i++) {
        CHECK_INT(push_raw(&r, seqs[i], 10 + (size_t)i), 0);
        cum[FMT_MSGPACK] += 10 + (uint64_t)i;
        cum[FMT_JSON] += 2 * (10 + (uint64_t)i) + 1;
        struct ring_event *e = ring_next(&r, seqs[i]);
        CHECK(e && e->seq == seqs[i]);
        CHECK(e && e->cum[FMT_MSGPACK] == cum[FMT_MSGPACK] && e->cum[FMT_JSON] == cum[FMT_JSON]);
        CHECK(e && e->frame[FMT_MSGPACK]->refs == 1); /* the ring holds the only reference */
    }
    CHECK_INT(r.count, 5);
    CHECK_INT(r.last_seq, 10);
    CHECK_INT(r.cum[FMT_MSGPACK], 60);
    CHECK_INT(r.cum[FMT_JSON], 125);
    static const struct {
        int64_t ask, want;
    } v[] = {{INT64_MIN, 1}, {-5, 1}, {0, 1}, {1, 1}, {2, 2}, {3, 5}, {4, 5}, {5, 5},
             {6, 9},         {8, 9},  {9, 9}, {10, 10}, {11, -1}, {INT64_MAX, -1}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        CHECK_INT(next_seq(&r, v[i].ask), v[i].want);
    ring_free(&r);
    CHECK(r.ev == NULL);
}

static void test_eviction(void)
{
    struct ring r;
    ring_init(&r, ROOM);
    /* Fill with seqs 3, 6, 9...: nothing is dropped until the ring is full. */
    int64_t s = 0, dropped = 0;
    for (int i = 0; i < RING_EVENTS; i++)
        dropped |= push_raw(&r, s += 3, 1);
    CHECK_INT(dropped, 0);
    CHECK_INT(r.count, RING_EVENTS);
    CHECK(!ring_lost(&r, 1));
    /* Then each push drops the oldest and says which. */
    struct frame *held = frame_ref(ring_next(&r, 0)->frame[FMT_JSON]);
    CHECK_INT(push_raw(&r, s += 3, 1), 3);
    CHECK_INT(held->refs, 1); /* the ring let go; ours is the last */
    frame_unref(held);
    CHECK_INT(push_raw(&r, s += 1000, 1), 6);
    CHECK_INT(r.count, RING_EVENTS);
    CHECK_INT(next_seq(&r, 0), 9);
    /* A member whose next event is 6 or below lost events; 7 and 8 were
     * never events (a gap), so a member at 7 lost none. */
    CHECK_INT(r.evicted_seq, 6);
    CHECK(ring_lost(&r, 1) && ring_lost(&r, 6));
    CHECK(!ring_lost(&r, 7) && !ring_lost(&r, 9));
    /* Push around the array's end several times, then compare the search
     * with a walk for every seq around what the ring holds. */
    for (int i = 0; i < 3 * RING_EVENTS + 17; i++) {
        int64_t oldest = next_seq(&r, INT64_MIN);
        s += 1 + (i % 7 == 0 ? 50 : i % 3);
        CHECK_INT(push_raw(&r, s, 1), oldest);
    }
    CHECK_INT(r.count, RING_EVENTS);
    CHECK(r.head != 0);
    int64_t first = next_seq(&r, INT64_MIN);
    long bad = 0;
    for (int64_t q = first - 5; q <= r.last_seq + 5; q++)
        bad += next_seq(&r, q) != linear_next(&r, q);
    CHECK_INT(bad, 0);
    /* The byte counters never go back: they count every event pushed. */
    uint64_t pushed = (uint64_t)RING_EVENTS + 2 + 3 * RING_EVENTS + 17;
    CHECK_INT(r.cum[FMT_MSGPACK], pushed);
    CHECK_INT(r.cum[FMT_JSON], 3 * pushed);
    struct ring_event *last = ring_next(&r, r.last_seq);
    CHECK(last->cum[FMT_MSGPACK] == r.cum[FMT_MSGPACK]);
    CHECK(ring_next(&r, first)->cum[FMT_MSGPACK] == r.cum[FMT_MSGPACK] - RING_EVENTS + 1);
    ring_free(&r);
}

/* A burst past RING_EVENTS that the members in step still need (the last
 * pass's lowest cursor is at or before it) is kept: the ring grows, up to
 * RING_EVENTS_MAX; a pass that finds them caught up gives the room back. */
static void test_burst(void)
{
    struct ring r;
    ring_init(&r, ROOM);
    /* No pass yet: the latest RING_EVENTS, as before. */
    int64_t s = 0, dropped = 0;
    for (int i = 0; i < RING_EVENTS + 10; i++)
        dropped = push_raw(&r, ++s, 1);
    CHECK_INT(dropped, 10);
    CHECK_INT(r.count, RING_EVENTS);
    CHECK_INT(r.cap, RING_EVENTS);
    /* A pass ends with every member in step (next seq s + 1): the burst
     * that follows is needed whole, so nothing is dropped while it fits. */
    CHECK_INT(ring_settle(&r, s + 1), 0);
    CHECK_INT(r.count, RING_EVENTS);
    int64_t burst_first = s + 1;
    int64_t last_dropped = 0;
    for (int i = 0; i < 3 * RING_EVENTS; i++) {
        dropped = push_raw(&r, ++s, 1);
        last_dropped = dropped ? dropped : last_dropped;
    }
    /* The RING_EVENTS older than the burst made room for its first ones
     * (nobody needed them); then the ring doubled twice. */
    CHECK_INT(last_dropped, burst_first - 1);
    CHECK_INT(r.cap, 4 * RING_EVENTS);
    CHECK_INT(r.count, 3 * RING_EVENTS);
    CHECK(!ring_lost(&r, burst_first));
    CHECK_INT(next_seq(&r, INT64_MIN), burst_first);
    long bad = 0;
    for (int64_t q = burst_first - 3; q <= s + 3; q++)
        bad += next_seq(&r, q) != linear_next(&r, q);
    CHECK_INT(bad, 0);
    /* A pass in which the slowest member in step got 64 of them: the older
     * ones past the latest RING_EVENTS go; the ring stays grown. */
    int64_t need = burst_first + 64;
    CHECK_INT(ring_settle(&r, need), 0);
    CHECK_INT(next_seq(&r, INT64_MIN), need);
    CHECK(!ring_lost(&r, need) && ring_lost(&r, need - 1));
    CHECK_INT(r.cap, 4 * RING_EVENTS);
    /* Up to RING_EVENTS_MAX and no further: then the oldest is dropped all
     * the same (its member is a slow consumer). */
    while (r.count < RING_EVENTS_MAX)
        CHECK_INT(push_raw(&r, ++s, 1), 0);
    CHECK_INT(r.cap, RING_EVENTS_MAX);
    CHECK_INT(push_raw(&r, ++s, 1), need);
    CHECK_INT(r.count, RING_EVENTS_MAX);
    CHECK(ring_lost(&r, need));
    /* Every member caught up: back to the latest RING_EVENTS, in an array
     * of RING_EVENTS, and the search still agrees with a walk. */
    CHECK_INT(ring_settle(&r, s + 1), 0);
    CHECK_INT(r.count, RING_EVENTS);
    CHECK_INT(r.cap, RING_EVENTS);
    CHECK_INT(r.head, 0);
    CHECK_INT(next_seq(&r, INT64_MIN), s - RING_EVENTS + 1);
    CHECK_INT(r.evicted_seq, s - RING_EVENTS);
    bad = 0;
    for (int64_t q = s - RING_EVENTS - 3; q <= s + 3; q++)
        bad += next_seq(&r, q) != linear_next(&r, q);
    CHECK_INT(bad, 0);
    /* Members none (a pass that visited nobody live): no more than the latest
     * RING_EVENTS, as without passes. */
    CHECK_INT(ring_settle(&r, INT64_MAX), 0);
    CHECK_INT(push_raw(&r, ++s, 1), s - RING_EVENTS);
    CHECK_INT(r.cap, RING_EVENTS);
    ring_free(&r);
}

static void test_single_and_batch(void)
{
    struct ring r;
    ring_init(&r, ROOM);
    for (int64_t s = 1; s <= 3; s++)
        push_event(&r, s);
    for (int k = 0; k < FMT_COUNT; k++) {
        enum fmt fmt = (enum fmt)k;
        struct ring_event *e3 = ring_next(&r, 3), *last = NULL;
        /* The last event alone: its own frame. */
        struct frame *f = ring_frame_from(&r, e3, fmt, &last, NULL);
        CHECK(f == e3->frame[k]);
        CHECK(last == e3);
        CHECK_INT(e3->frame[k]->refs, 2);
        frame_unref(f);
        /* From the first: one `events` frame of all three, as message_events
         * writes it. */
        struct ring_event *e1 = ring_next(&r, 1);
        struct frame *want = message_events(fmt, ROOM, (struct frame *[]){e1->frame[k], ring_next(&r, 2)->frame[k],
                                                                         e3->frame[k]},
                                            3);
        f = ring_frame_from(&r, e1, fmt, &last, NULL);
        CHECK(same_bytes(f, want));
        CHECK(last == e3);
        CHECK(f == r.batch[k]);
        /* A member in step gets the very same frame. */
        struct ring_event *last2 = NULL;
        struct frame *g = ring_frame_from(&r, e1, fmt, &last2, NULL);
        CHECK(g == f);
        CHECK(last2 == e3);
        CHECK_INT(f->refs, 3); /* the ring's and two members' */
        frame_unref(g);
        /* One starting later gets another batch (and the cache moves on). */
        g = ring_frame_from(&r, ring_next(&r, 2), fmt, &last2, NULL);
        CHECK(g != f && g == r.batch[k]);
        CHECK(last2 == e3);
        CHECK_INT(f->refs, 1); /* ours alone now */
        frame_unref(g);
        frame_unref(f);
        frame_unref(want);
    }
    /* A new event: the batch from the same start (cached from 2 to 3) now
     * ends at it, and so does one from the first. */
    CHECK(r.batch[FMT_JSON] && r.batch_first[FMT_JSON] == 2 && r.batch_last[FMT_JSON] == 3);
    push_event(&r, 4);
    struct ring_event *last = NULL;
    struct frame *f = ring_frame_from(&r, ring_next(&r, 2), FMT_JSON, &last, NULL);
    CHECK(last && last->seq == 4);
    CHECK(starts_with(f, "{\"type\":\"events\",\"room\":\"r1\",\"events\":["
                         "{\"type\":\"event\",\"room\":\"r1\",\"seq\":2,"));
    CHECK(ends_with(f, ",\"seq\":4,\"n\":4}]}"));
    frame_unref(f);
    f = ring_frame_from(&r, ring_next(&r, 1), FMT_JSON, &last, NULL);
    CHECK(last && last->seq == 4);
    CHECK(starts_with(f, "{\"type\":\"events\",\"room\":\"r1\",\"events\":["
                         "{\"type\":\"event\",\"room\":\"r1\",\"seq\":1,"));
    CHECK(ends_with(f, ",\"seq\":4,\"n\":4}]}"));
    frame_unref(f);
    ring_free(&r);
}

static void test_batch_limits(void)
{
    struct ring r;
    struct ring_event *last;
    struct frame *f;

    /* RING_BATCH_EVENTS: 100 small events give batches of 64 then 36. */
    ring_init(&r, ROOM);
    for (int64_t s = 1; s <= 100; s++)
        push_raw(&r, s, 3);
    f = ring_frame_from(&r, ring_next(&r, 1), FMT_MSGPACK, &last, NULL);
    CHECK_INT(last->seq, RING_BATCH_EVENTS);
    /* 0x83, "type", "events", "room", "r1", "events", array16 header, 64 x 3 bytes. */
    CHECK(f && f->len == 1 + 5 + 7 + 5 + 3 + 7 + 3 + RING_BATCH_EVENTS * 3);
    frame_unref(f);
    f = ring_frame_from(&r, ring_next(&r, RING_BATCH_EVENTS + 1), FMT_MSGPACK, &last, NULL);
    CHECK_INT(last->seq, 100);
    frame_unref(f);
    ring_free(&r);

    /* RING_BATCH_BYTES, counted on the events' own bytes: 8 KiB events fit
     * four to a batch exactly (JSON's, 16 KiB + 1, one); 10000-byte ones
     * three. */
    ring_init(&r, ROOM);
    for (int64_t s = 1; s <= 6; s++)
        push_raw(&r, s, RING_BATCH_BYTES / 4);
    f = ring_frame_from(&r, ring_next(&r, 1), FMT_MSGPACK, &last, NULL);
    CHECK_INT(last->seq, 4);
    frame_unref(f);
    f = ring_frame_from(&r, ring_next(&r, 1), FMT_JSON, &last, NULL);
    CHECK_INT(last->seq, 1);
    CHECK(f == ring_next(&r, 1)->frame[FMT_JSON]); /* one event: its own frame */
    frame_unref(f);
    ring_free(&r);
    ring_init(&r, ROOM);
    push_raw(&r, 1, 10000);
    push_raw(&r, 2, 10000);
    push_raw(&r, 3, 10000);
    push_raw(&r, 4, 10000);
    push_raw(&r, 5, 40000); /* larger than a batch on its own */
    push_raw(&r, 6, 10);
    f = ring_frame_from(&r, ring_next(&r, 1), FMT_MSGPACK, &last, NULL);
    CHECK_INT(last->seq, 3);
    frame_unref(f);
    f = ring_frame_from(&r, ring_next(&r, 4), FMT_MSGPACK, &last, NULL);
    CHECK_INT(last->seq, 4); /* the big one waits for the next frame */
    CHECK(f == ring_next(&r, 4)->frame[FMT_MSGPACK]);
    frame_unref(f);
    f = ring_frame_from(&r, ring_next(&r, 5), FMT_MSGPACK, &last, NULL);
    CHECK_INT(last->seq, 5); /* alone, whatever its size */
    CHECK(f == ring_next(&r, 5)->frame[FMT_MSGPACK]);
    frame_unref(f);
    ring_free(&r);

    /* A batch that crosses the end of the ring's array. */
    ring_init(&r, ROOM);
    for (int64_t s = 1; s <= RING_EVENTS + 10; s++)
        push_event(&r, s);
    int64_t from = RING_EVENTS - 20; /* stored 21 slots before the array's end */
    struct ring_event *e = ring_next(&r, from);
    CHECK(e && e->seq == from);
    struct frame *parts[RING_BATCH_EVENTS];
    for (int i = 0; i < 31; i++)
        parts[i] = ring_next(&r, from + i)->frame[FMT_JSON];
    struct frame *want = message_events(FMT_JSON, ROOM, parts, 31);
    f = ring_frame_from(&r, e, FMT_JSON, &last, NULL);
    CHECK_INT(last->seq, RING_EVENTS + 10);
    CHECK(same_bytes(f, want));
    frame_unref(f);
    frame_unref(want);
    ring_free(&r);
}

static struct frame *board_of(enum fmt fmt, int64_t total)
{
    struct board_top tops[BOARD_PERIODS];
    memset(tops, 0, sizeof tops);
    tops[BOARD_ALL].n = 1;
    strcpy(tops[BOARD_ALL].user[0], "alice");
    tops[BOARD_ALL].total[0] = total;
    return board_frame(fmt, ROOM, "", tops, NULL);
}

static void test_pairs(void)
{
    struct ring r;
    ring_init(&r, ROOM);
    push_event(&r, 1);
    push_event(&r, 2);
    for (int k = 0; k < FMT_COUNT; k++) {
        enum fmt fmt = (enum fmt)k;
        struct frame *board = board_of(fmt, 500), *board2 = board_of(fmt, 600);
        struct ring_event *last;
        /* Events and board in one wire frame: the two WebSocket frames. */
        struct frame *batch = ring_frame_from(&r, ring_next(&r, 1), fmt, &last, NULL);
        struct frame *want = frame_join(batch, board);
        struct frame *p = ring_frame_from(&r, ring_next(&r, 1), fmt, &last, board);
        CHECK(same_bytes(p, want));
        CHECK(p && p->wire && p == r.pair[k]);
        CHECK_INT(last->seq, 2);
        CHECK_INT(board->refs, 2); /* ours and the ring's cache */
        /* Shared by the members in step. */
        struct frame *q = ring_frame_from(&r, ring_next(&r, 1), fmt, &last, board);
        CHECK(q == p);
        frame_unref(q);
        /* Another start or another board: another pair. */
        q = ring_frame_from(&r, ring_next(&r, 2), fmt, &last, board);
        struct frame *want2 = frame_join(ring_next(&r, 2)->frame[k], board);
        CHECK(q != p && same_bytes(q, want2));
        frame_unref(want2);
        frame_unref(q);
        q = ring_frame_from(&r, ring_next(&r, 2), fmt, &last, board2);
        want2 = frame_join(ring_next(&r, 2)->frame[k], board2);
        CHECK(same_bytes(q, want2));
        CHECK_INT(board->refs, 1);
        CHECK_INT(board2->refs, 2);
        frame_unref(want2);
        frame_unref(q);
        frame_unref(p);
        /* Dropped: the ring lets go of the board and the pair. */
        ring_drop_pairs(&r);
        CHECK(r.pair[k] == NULL && r.pair_events[k] == NULL && r.pair_board[k] == NULL);
        CHECK_INT(board2->refs, 1);
        CHECK_INT(ring_next(&r, 2)->frame[k]->refs, 1);
        frame_unref(board);
        frame_unref(board2);
        frame_unref(want);
        frame_unref(batch);
    }
    /* ring_free drops pairs and batches still held: the sanitizer checks
     * that nothing leaks. */
    struct frame *board = board_of(FMT_MSGPACK, 1);
    struct ring_event *last;
    frame_unref(ring_frame_from(&r, ring_next(&r, 1), FMT_MSGPACK, &last, board));
    frame_unref(board);
    CHECK(r.pair[FMT_MSGPACK] && r.batch[FMT_MSGPACK]);
    ring_free(&r);
    CHECK(r.pair[FMT_MSGPACK] == NULL && r.batch[FMT_MSGPACK] == NULL);
}

/* ring_run: the gapless run of events after a seq, for history served by
 * the node; -1 whenever the ring cannot say (Redis must). */
static void test_run(void)
{
    struct ring r;
    struct frame *out[8];
    CHECK_INT(ring_init(&r, ROOM), 0);
    CHECK_INT(ring_run(&r, 0, FMT_JSON, out, 8), -1); /* empty: nothing known */
    for (int64_t seq = 5; seq <= 9; seq++)
        push_raw(&r, seq, 10);
    push_raw(&r, 12, 10); /* 10 and 11 were missed */
    push_raw(&r, 13, 10);
    CHECK_INT(ring_run(&r, 3, FMT_JSON, out, 8), -1);  /* 4 is not held */
    CHECK_INT(ring_run(&r, 14, FMT_JSON, out, 8), -1); /* past the latest */
    CHECK_INT(ring_run(&r, 13, FMT_JSON, out, 8), 0);  /* at the latest */
    CHECK_INT(ring_run(&r, 4, FMT_JSON, out, 8), 5);   /* 5..9, up to the gap */
    CHECK(out[0] == ring_next(&r, 5)->frame[FMT_JSON] && out[4] == ring_next(&r, 9)->frame[FMT_JSON]);
    CHECK_INT(out[0]->len, 21);
    CHECK_INT(ring_run(&r, 6, FMT_MSGPACK, out, 2), 2); /* at most max */
    CHECK(out[0] == ring_next(&r, 7)->frame[FMT_MSGPACK] && out[1] == ring_next(&r, 8)->frame[FMT_MSGPACK]);
    CHECK_INT(ring_run(&r, 9, FMT_JSON, out, 8), -1);  /* 10 is missing */
    CHECK_INT(ring_run(&r, 11, FMT_JSON, out, 8), 2);  /* 12, 13 */
    ring_free(&r);
}

int main(void)
{
    test_push_next();
    test_run();
    test_eviction();
    test_burst();
    test_single_and_batch();
    test_batch_limits();
    test_pairs();
    return unit_finish("unit_ring");
}
