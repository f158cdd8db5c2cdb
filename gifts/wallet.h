/* wallet.h - money requests of a connection: gift, tip, credit, balance.
 *
 * Each movement is one call of wallet_move.lua on the user's wallet shard
 * (all checks, then the debit or credit, the outbox entry and the stored
 * result under the request id, atomically). The reply (ack or error) goes to
 * the connection when the script returns; a connection gone by then is
 * skipped, the movement stands and is in the outbox. */
#ifndef TIPCAST_WALLET_H
#define TIPCAST_WALLET_H

#include "conn.h"
#include "proto.h"

/* Handles REQ_GIFT, REQ_TIP, REQ_CREDIT and REQ_BALANCE. */
void wallet_request(struct conn *c, const struct request *req);

/* Checks that Redis keeps what it acknowledges: appendonly on and a
 * maxmemory-policy that never evicts. Calls done(1) when it does (or when
 * redis-unsafe is set), done(0) with the reason logged when it does not.
 * Returns -1 (done never called) when the command connection is down. */
int wallet_check_redis(void (*done)(int safe));

#endif
