/* connlog.c - the line a WebSocket connection leaves when it ends, and the
 * peer address it names (see connlog.h).
 *
 * The line is info, one per connection, written from LWS_CALLBACK_CLOSED:
 *
 *   msg="connection closed" code=4001 reason="authentication timeout"
 *   by=server duration_ms=5003 bytes_in=0 bytes_out=112 peer=10.0.0.7 conn=...
 *
 * by says who ended it: server (tipcastd sent the close: its code and
 * reason), client (the peer's close frame came first: its code), or
 * network (no close frame either way: the TCP connection ended, code 1006).
 * The counts are message payload bytes as tipcastd handed them to and got
 * them from lws: no WebSocket frame headers (except those of the event
 * batches, which carry their own), no TLS, no pings. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "connlog.h"

#include "clock.h"
#include "log.h"

void connlog_opened(struct conn *c)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = lws_get_socket_fd(c->wsi);
    if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        c->peer_family = AF_INET;
        memcpy(c->peer_addr, &in->sin_addr, 4);
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
        /* An IPv4 client of a dual-stack listener reads as IPv4. */
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            c->peer_family = AF_INET;
            memcpy(c->peer_addr, in6->sin6_addr.s6_addr + 12, 4);
        } else {
            c->peer_family = AF_INET6;
            memcpy(c->peer_addr, &in6->sin6_addr, 16);
        }
    }
}

void connlog_closed(const struct conn *c)
{
    char peer[INET6_ADDRSTRLEN] = "";
    char id[20];
    int code;
    const char *by, *reason = "";
    if (c->peer_family && !inet_ntop(c->peer_family, c->peer_addr, peer, sizeof peer))
        peer[0] = '\0';
    snprintf(id, sizeof id, "%llx", (unsigned long long)c->id);
    code = conn_end_code(c, &by);
    if (c->close_reason)
        reason = c->close_reason;
    struct log_field f[] = {
        LOG_INT("code", code),
        LOG_STR("reason", reason),
        LOG_STR("by", by),
        LOG_INT("duration_ms", clock_mono_ms() - c->opened_ms),
        LOG_INT("bytes_in", c->bytes_in),
        LOG_INT("bytes_out", c->bytes_out),
        LOG_STR("peer", peer),
        LOG_STR("conn", id),
        LOG_STR("user", c->user.sub), /* last: left out when not authenticated */
    };
    log_fields(LOG_INFO, "connection closed", f, sizeof f / sizeof f[0] - (c->authed ? 0 : 1));
}
