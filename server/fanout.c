/* fanout.c - handing a room's new events and leaderboard pushes to its
 * members on this node (see room.h).
 *
 * Batching at the loop's boundary: a room that got events is marked, and
 * every marked room is flushed once per loop iteration (a uv_check, after
 * the Redis replies read in that iteration), so the events that came in one
 * read reach each member in one frame. A member that can take a write now
 * is written at once; one that cannot gets the rest at WRITEABLE
 * (conn.c).
 *
 * Stalled members: a member whose socket is full (its client stopped
 * reading; conn.h) is parked when the flush comes to it, and later flushes
 * do not visit it at all, so that thousands of them cost an event nothing
 * and the healthy members' latency does not grow with their number. It
 * takes up its events from its cursor when it drains (rooms_resume). The
 * slow-consumer rule (lost events, max-queued-bytes) is applied when a
 * member is sent events, and to a stalled one by the sweep (conns_sweep),
 * never per event and member.
 *
 * Leaderboard pushes: a gift or tip event marks its room; at most once per
 * board-push-ms a room's four top lists are read (one pipelined round trip)
 * and sent to every live member, one frame per subprotocol shared by all.
 * A room that may push now reads its boards at once, and its flush waits
 * for the answer (up to ROOM_BOARD_WAIT_MS), so that the event that moved
 * the boards and the boards go out in one write: half the writes of a big
 * room. */
#include "room.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "message.h"

static void on_flush(uv_check_t *h);
static void on_flush_wait(uv_timer_t *t);
static void on_board_tick(uv_timer_t *t);

void fanout_mark(struct rooms *rs, struct room *r)
{
    if (r->flushing)
        r->flush_again = 1;
    if (r->flush_queued || !r->nmembers)
        return;
    r->flush_queued = 1;
    r->dirty_ms = uv_now(rs->loop);
    r->flush_next = rs->dirty;
    if (!rs->dirty)
        uv_check_start(&rs->flush_check, on_flush);
    rs->dirty = r;
}

/* ---- Leaderboard pushes ------------------------------------------------------- */

/* The four top lists of a room read for a push: one frame per subprotocol,
 * to go out with the room's next flush. */
static void on_board_read(void *ctx, const char *room, const struct board_top *tops,
                          const struct board_goal *goal)
{
    struct rooms *rs = ctx;
    struct room *r = room_find(rs, room);
    if (!r)
        return;
    r->board_busy = 0;
    if (!tops) {
        fanout_mark(rs, r); /* an event waiting for it goes out alone */
        return;
    }
    struct frame *fr[FMT_COUNT];
    for (int k = 0; k < FMT_COUNT; k++)
        fr[k] = board_frame((enum fmt)k, room, "", tops, goal);
    if (fr[FMT_MSGPACK] && fr[FMT_JSON]) {
        /* A newer push replaces one not yet sent. */
        for (int k = 0; k < FMT_COUNT; k++) {
            frame_unref(r->board_push[k]);
            r->board_push[k] = frame_ref(fr[k]);
        }
    } else {
        log_msg(LOG_ERROR, "room %s: out of memory building the leaderboard", room);
    }
    for (int k = 0; k < FMT_COUNT; k++)
        frame_unref(fr[k]);
    fanout_mark(rs, r);
}

static void push_boards(struct rooms *rs)
{
    int64_t now = clock_mono_ms();
    struct room **pp = &rs->board_dirty;
    while (*pp) {
        struct room *r = *pp;
        if (r->board_busy || now - r->board_pushed_ms < rs->cfg->board_push_ms) {
            pp = &r->board_next;
            continue;
        }
        *pp = r->board_next;
        r->board_next = NULL;
        r->board_queued = 0;
        if (r->nmembers == 0)
            continue; /* nobody here to tell */
        r->board_pushed_ms = now;
        /* When Redis is down there is no push: the next gift marks the
         * room again, and a member can always ask. */
        if (board_read(rs->board, r->id, on_board_read, rs) == 0)
            r->board_busy = 1;
    }
    if (!rs->board_dirty && rs->board_running) {
        uv_timer_stop(&rs->board_timer);
        rs->board_running = 0;
    }
}

static void on_board_tick(uv_timer_t *t) { push_boards(t->data); }

/* A gift or tip event of r has arrived: its members get a fresh
 * leaderboard within board-push-ms (throttled per room). */
static void board_mark(struct rooms *rs, struct room *r)
{
    if (r->board_queued)
        return;
    r->board_queued = 1;
    r->board_next = rs->board_dirty;
    rs->board_dirty = r;
    if (!rs->board_running) {
        uv_timer_start(&rs->board_timer, on_board_tick, ROOM_BOARD_TICK_MS, ROOM_BOARD_TICK_MS);
        rs->board_running = 1;
    }
    if (!r->board_busy && clock_mono_ms() - r->board_pushed_ms >= rs->cfg->board_push_ms)
        push_boards(rs);
}

/* ---- Events and the flush ------------------------------------------------------- */

void fanout_event(struct rooms *rs, struct room *r, int64_t seq, enum event_kind kind, const uint8_t *body,
                  size_t len)
{
    if (seq <= r->ring.last_seq)
        return; /* seen already (a catch-up overlapping the live stream) */
    struct frame *f[FMT_COUNT];
    for (int k = 0; k < FMT_COUNT; k++) {
        f[k] = message_event((enum fmt)k, r->id, seq, body, len);
        if (!f[k]) {
            log_msg(LOG_ERROR, "room %s: event %lld is malformed; dropped", r->id, (long long)seq);
            for (int j = 0; j < k; j++)
                frame_unref(f[j]);
            return;
        }
    }
    /* The delivery latency starts here: this node's share of an event's
     * path (its clock, unlike the event's time, is this host's own). A
     * member whose events this drops is closed when it is next sent events,
     * or by the sweep while it is stalled (ring_lost). */
    ring_push(&r->ring, seq, clock_mono_us(), f);
    if (event_moves_board(kind))
        board_mark(rs, r);
    if (kind == EVENT_GIFT)
        r->combo_until_ms = clock_mono_ms() + rs->cfg->combo_window_ms + ROOM_COMBO_SWEEP_AFTER_MS;
    fanout_mark(rs, r);
}

/* A pass begins: it will visit every live member once and send the push
 * waiting now (a newer one waits for the next pass). */
static void pass_begin(struct room *r)
{
    r->flushing = 1;
    r->flush_again = 0;
    r->flush_at = r->nparked;
    r->pass_need = INT64_MAX;
    for (int k = 0; k < FMT_COUNT; k++) {
        r->flush_board[k] = r->board_push[k];
        r->board_push[k] = NULL;
    }
}

static void pass_end(struct room *r)
{
    r->flushing = 0;
    /* The ring keeps what the members in step still need, and no more
     * (ring.h). A ring that found no memory to shrink in tries again after
     * the next pass: it is whole meanwhile. */
    (void)ring_settle(&r->ring, r->pass_need);
    if (r->flush_board[0]) {
        r->board_gen++;
        for (int k = 0; k < FMT_COUNT; k++) {
            frame_unref(r->board_last[k]);
            r->board_last[k] = r->flush_board[k];
            r->flush_board[k] = NULL;
        }
        ring_drop_pairs(&r->ring);
    }
}

/* Parks membership m of a stalled connection; `sent_board`: this pass's push
 * went to it, so it is owed only later ones when it resumes. */
static void park(struct room *r, struct membership *m, int sent_board)
{
    m->board_gen = (uint16_t)(r->board_gen + sent_board);
    room_park(r, m);
}

/* A live member in step was visited: the pass's lowest cursor, for the
 * ring (ring_settle). */
static void note_need(struct room *r, const struct membership *m)
{
    if (m->next_seq < r->pass_need)
        r->pass_need = m->next_seq;
}

/* Hands a room's new events, and its pass's leaderboard push, to at most
 * FANOUT_CHUNK of its live members, from where the pass is: at once to
 * those that can take them, in one write each, the writes sent together
 * by the send helpers and this thread (sendpool.h). Parks the members
 * whose connection is stalled. The pass is over when flush_at reaches
 * nmembers. */
static void flush_room(struct rooms *rs, struct room *r)
{
    int has_board = r->flush_board[0] != NULL;
    uint32_t visited = 0, n = 0;
    /* A member parked here trades places with the first unparked one,
     * visited already; one closed here (a slow consumer) leaves at
     * flush_at the last member, not yet visited (room_leave). */
    while (r->flush_at < r->nmembers && visited < FANOUT_CHUNK) {
        struct conn *c = r->members[r->flush_at];
        struct membership *m = &c->rooms[room_membership(c, r)];
        int sent_board = 0;
        visited++;
        if (!c->stalled_ms && m->state == MEMBER_LIVE && (has_board || m->next_seq <= r->ring.last_seq)) {
            int queued = conn_deliver_prepare(c, m, r->flush_board[c->fmt], &rs->writes[n], &rs->sends[n]);
            if (room_membership(c, r) < 0)
                continue;
            if (queued) { /* parked, if need be, once its write is known */
                note_need(r, m);
                n++;
                r->flush_at++;
                continue;
            }
            sent_board = has_board;
        }
        if (c->stalled_ms)
            park(r, m, sent_board);
        else if (m->state == MEMBER_LIVE)
            note_need(r, m);
        r->flush_at++;
    }
    if (!n)
        return;
    sendpool_run(rs->pool, rs->sends, n);
    /* The members written are among the visited [nparked, flush_at):
     * parking one there keeps them so. */
    for (uint32_t i = 0; i < n; i++) {
        struct conn_write *w = &rs->writes[i];
        conn_deliver_finish(w, &rs->sends[i]);
        if (w->c->stalled_ms)
            park(r, w->m, has_board);
    }
}

static void on_flush_more(uv_idle_t *h) { (void)h; }

/* Flushes the marked rooms for FANOUT_SLICE_US per loop iteration at
 * most: a big room's pass goes on in the next iteration, after the loop
 * has read its sockets (acks, requests), and events that arrive meanwhile
 * join the frames of the members not yet reached. A room whose boards are
 * being read for a push waits for them (up to ROOM_BOARD_WAIT_MS) before
 * its pass begins; the answer is a loop event, so the check runs again
 * when it comes. */
static void flush_rooms(struct rooms *rs)
{
    uint64_t now = uv_now(rs->loop);
    int64_t until_us = clock_mono_us() + FANOUT_SLICE_US;
    int slice_left = 1;
    struct room *wait = NULL, **tail = &wait;
    while (rs->dirty && slice_left) {
        struct room *r = rs->dirty;
        rs->dirty = r->flush_next;
        r->flush_next = NULL;
        if (!r->flushing) {
            if (r->board_busy && !r->board_push[0] && now - r->dirty_ms < ROOM_BOARD_WAIT_MS) {
                *tail = r;
                tail = &r->flush_next;
                continue;
            }
            pass_begin(r);
        }
        while (r->flush_at < r->nmembers && slice_left) {
            flush_room(rs, r);
            slice_left = clock_mono_us() < until_us;
        }
        if (r->flush_at < r->nmembers) {
            /* Cut short: first in line next time. */
            r->flush_next = rs->dirty;
            rs->dirty = r;
            break;
        }
        pass_end(r);
        if (r->flush_again || r->board_push[0]) {
            /* Members visited early missed what came since: once more. */
            r->dirty_ms = now;
            *tail = r;
            tail = &r->flush_next;
        } else {
            r->flush_queued = 0;
        }
    }
    /* The rooms not reached (a pass cut short first), then those that wait
     * or go again: a room's new pass never goes ahead of another's first. */
    struct room **end = &rs->dirty;
    while (*end)
        end = &(*end)->flush_next;
    *end = wait;
    int more = 0;
    for (struct room *r = rs->dirty; r; r = r->flush_next)
        more |= r->flushing || !(r->board_busy && !r->board_push[0] && now - r->dirty_ms < ROOM_BOARD_WAIT_MS);
    if (!rs->dirty) {
        uv_check_stop(&rs->flush_check);
        uv_timer_stop(&rs->flush_wait);
        uv_idle_stop(&rs->flush_more);
        return;
    }
    if (more)
        uv_idle_start(&rs->flush_more, on_flush_more);
    else
        uv_idle_stop(&rs->flush_more);
    if (!uv_is_active((uv_handle_t *)&rs->flush_wait))
        uv_timer_start(&rs->flush_wait, on_flush_wait, ROOM_BOARD_WAIT_MS, 0);
}

static void on_flush(uv_check_t *h) { flush_rooms(h->data); }
static void on_flush_wait(uv_timer_t *t) { flush_rooms(t->data); }
