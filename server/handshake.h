/* handshake.h - the checks of a WebSocket upgrade's request headers, as
 * pure functions of strings: the path, the Sec-WebSocket-Protocol list and
 * the Origin against the Host and the settings. server/http.c copies the
 * headers out of lws and asks these; tests/unit_handshake.c and
 * tests/fuzz_handshake.c call them directly (docs/protocol.md, "Connecting").
 *
 * No lws calls here, so that the rules can be read, tested and fuzzed
 * without a socket. */
#ifndef TIPCAST_HANDSHAKE_H
#define TIPCAST_HANDSHAKE_H

#include "config.h"
#include "frame.h"

/* Longest Sec-WebSocket-Protocol value looked at; a longer one is refused. */
#define HANDSHAKE_LIST_MAX 256

/* 1 when `path` (without its query string) is the WebSocket endpoint. */
int handshake_path_ok(const char *path);

/* The format of the subprotocol lws will bind for this Sec-WebSocket-Protocol
 * value, or -1 when the upgrade must be refused.
 *
 * lws 4.1 binds the first listed name that names any protocol of ours,
 * "http" included (lib/roles/ws/server-ws.c): "http, tipcast.v1.json" would
 * become a WebSocket on the plain HTTP protocol, outside every limit. So the
 * same rule is applied here and the list is refused unless the name it
 * picks is tipcast.v1.msgpack or tipcast.v1.json. Names we do not serve
 * ("chat") before it are skipped, as lws skips them. To be sure lws reads
 * the list as we do, only the plainest form passes: names of RFC 7230
 * token characters separated by commas, with spaces or tabs around them;
 * anything else (quotes, empty elements, other bytes) is refused whole. */
int handshake_subprotocol(const char *list);

/* 1 when `host` (a Host header value: name or address, then maybe :port)
 * cannot be pointed at this server by someone else's DNS: an IPv4 address,
 * an [IPv6] address or localhost. DNS rebinding (a page at evil.example
 * whose name then resolves to 127.0.0.1) sends Host: evil.example. */
int handshake_host_pinned(const char *host);

/* 1 when a browser whose page has `origin` may open a WebSocket on a request
 * with Host header `host`. `origin` NULL: no Origin header, not a browser,
 * always allowed. `host` may be NULL (none sent). Allowed: allowed-origins
 * "*", an exact entry of allowed-origins, and with demo on, the server's own
 * page: Origin http(s)://HOST with HOST the Host header and pinned (above). */
int handshake_origin_allowed(const struct config *cfg, const char *origin, const char *host);

/* 1 when a browser page of `origin` may read the admin API's answers (CORS)
 * on a request with Host header `host`: allowed-origins "*" or an exact
 * entry, and with demo on, a page of the same pinned host on any port (the
 * demo dashboard at :8080 calls the admin API at :8081). 0 for no Origin. */
int handshake_cors_allowed(const struct config *cfg, const char *origin, const char *host);

#endif
