/* rlink_ev.h - hiredis's event hooks on the libuv loop, in place of
 * hiredis's libuv adapter (internal to rlink). */
#ifndef TIPCAST_RLINK_EV_H
#define TIPCAST_RLINK_EV_H

#include <hiredis/async.h>
#include <uv.h>

/* Hooks `ac` to `loop`. Returns 0, or -1 (out of memory, bad fd) with
 * nothing hooked. The hooks' state is freed after hiredis's cleanup. */
int rlink_ev_attach(uv_loop_t *loop, redisAsyncContext *ac);

/* Writes the commands queued on `ac` since the last flush, in one write. */
void rlink_ev_flush(redisAsyncContext *ac);

#endif
