/* wire.h - what the bench reads from and writes to tipcastd (docs/protocol.md).
 *
 * Reading takes only what the bench needs from a server frame: its type, the
 * request id and error code of replies, and the `combo` of every gift event,
 * single or inside an `events` batch. msgpack frames are walked with the
 * codec's bounded reader (core/mpack.h); JSON frames (which tipcastd writes
 * compactly, `type` first) are scanned for the few keys. Nothing is
 * allocated.
 *
 * Writing builds the few requests the bench sends, in either format, with
 * the codec's writer (core/enc.h): each is a frame, with the headroom that
 * lws_write needs in front of its payload.
 */
#ifndef TIPCAST_BENCH_WIRE_H
#define TIPCAST_BENCH_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

/* Request ids and codes longer than this are cut (never by tipcastd). */
#define WIRE_ID_MAX 64
#define WIRE_CODE_MAX 40
/* Deepest msgpack nesting walked; tipcastd writes at most 4 levels. */
#define WIRE_DEPTH_MAX 8

enum wire_type { WIRE_OTHER, WIRE_WELCOME, WIRE_JOINED, WIRE_ACK, WIRE_ERROR, WIRE_EVENT, WIRE_EVENTS };

struct wire_msg {
    enum wire_type type;
    char id[WIRE_ID_MAX + 1];     /* "" when absent */
    char code[WIRE_CODE_MAX + 1]; /* error code, "" when absent */
};

/* Called for the combo of every event of an `event` or `events` frame
 * (combo points into the frame, len bytes, not NUL-terminated). */
typedef void (*wire_combo_cb)(void *ctx, const char *combo, size_t len);

/* Reads one frame. Returns 0, or -1 when the frame is malformed (then `m`
 * may be partly filled and some combos may have been reported). */
int wire_read(int json, const uint8_t *buf, size_t len, struct wire_msg *m, wire_combo_cb on_combo, void *ctx);

/* Builders: one request as a new frame (the caller's reference; its fmt
 * says binary or text), or NULL when out of memory. Strings must be plain
 * ids ([A-Za-z0-9_.-]). */
struct frame *wire_join(int json, const char *id, const char *room);
struct frame *wire_gift(int json, const char *id, const char *room, int gift, const char *combo);
struct frame *wire_credit(int json, const char *id, const char *user, int64_t amount);

#endif
