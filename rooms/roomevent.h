/* roomevent.h - a room event as it travels between nodes: its kind, its
 * body (a msgpack map, docs/protocol.md "event" without type/room/seq) and
 * the pub/sub message "<seq>:<kind>:<body>" that carries both.
 *
 * The kind is an explicit field next to the body, so a node knows a gift or
 * tip (which moves the leaderboards) without looking into the body. The
 * bodies of notices and of the outbox's gifts and tips are built here.
 * Pure functions. */
#ifndef TIPCAST_ROOMEVENT_H
#define TIPCAST_ROOMEVENT_H

#include <stddef.h>
#include <stdint.h>

#include "entry.h"
#include "jwt.h"

/* Bound on an event body. */
#define EVENT_BODY_MAX 4096

enum event_kind { EVENT_OTHER, EVENT_NOTICE, EVENT_GIFT, EVENT_TIP };

/* "notice", "gift", "tip"; "" for EVENT_OTHER. */
const char *event_kind_name(enum event_kind k);
/* The kind named s[0..len); EVENT_OTHER for any other name. */
enum event_kind event_kind_of(const char *s, size_t len);
/* 1 for the kinds that move the room's leaderboards (gift, tip). */
int event_moves_board(enum event_kind k);

/* Reads a pub/sub message "<seq>:<kind>:<body>" (or "<seq>:<body>", of
 * older nodes: kind EVENT_OTHER). Returns 0, or -1 when it is malformed or
 * the body is larger than EVENT_BODY_MAX. The body points into `msg`. */
int event_message_read(const char *msg, size_t len, int64_t *seq, enum event_kind *kind, const uint8_t **body,
                       size_t *body_len);

/* The body of a notice: {kind:"notice", from, role, text, ts}. Writes into
 * out (cap bytes); returns its length, or -1 when it does not fit. */
int event_body_notice(uint8_t *out, size_t cap, const char *from, enum role role, const char *text,
                      size_t text_len, int64_t ts_ms);

/* The pairs the room script (rooms/lua/room_apply.lua) appends to a gift's
 * body (combo_id, combo_count, level, badge) and to a tip's (level, badge,
 * pinned_until). */
#define EVENT_GIFT_APPENDED 4
#define EVENT_TIP_APPENDED 3

/* The body of a gift or tip entry of the outbox, `order` its order id:
 *   gift: {kind:"gift", from, role, order, gift, name, animation, count,
 *          combo, amount, ts}
 *   tip:  {kind:"tip", from, order, amount, text, ts}
 * `open` 1: the map's header also counts the pairs the room script appends
 * (EVENT_*_APPENDED), which the body is missing until it does.
 * Returns its length, or -1 when it does not fit or the entry is neither. */
int event_body_order(uint8_t *out, size_t cap, const struct entry *e, const char *order, int open);

#endif
