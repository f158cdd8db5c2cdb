/* connlog.h - the line a WebSocket connection leaves when it ends
 * (connlog.c). The session layer calls both (session.c), so the
 * connections (conn.c) never call up into it. */
#ifndef TIPCAST_CONNLOG_H
#define TIPCAST_CONNLOG_H

#include "conn.h"

/* Notes the peer's address when the connection opens: the socket may be
 * gone by the time it closes. */
void connlog_opened(struct conn *c);
/* Writes the info line of an ended connection: close code, reason, who
 * closed, duration, bytes, user, peer. */
void connlog_closed(const struct conn *c);

#endif
