/* listener.h - tipcastd's own listening socket, for --reuse-port.
 *
 * lws 4.1 sets SO_REUSEPORT only when it runs several service threads, so
 * with reuse-port tipcastd listens itself (SO_REUSEPORT: several processes
 * on one port, the kernel spreading new connections among them) and hands
 * every accepted socket to lws with lws_adopt_socket_vhost(). */
#ifndef TIPCAST_LISTENER_H
#define TIPCAST_LISTENER_H

#include <libwebsockets.h>
#include <uv.h>

/* Most connections accepted in one readiness callback, so that a burst of
 * connects cannot hold the loop. */
#define LISTENER_ACCEPTS_MAX 256
#define LISTENER_BACKLOG 4096

struct listener {
    int fd;
    int polling;
    uv_poll_t poll;
    struct lws_vhost *vhost;
};

/* Checks, before anything else starts, that addr:port can be bound (with
 * SO_REUSEPORT when reuse_port is set): a bind and a close. Returns 0, or
 * -1 with a plain sentence in err ("port 8080 is in use ...; set
 * TIPCAST_PORT ..."). */
int listener_probe(const char *addr, int port, int reuse_port, char *err, size_t errlen);

/* Binds addr:port with SO_REUSEADDR (and SO_REUSEPORT when reuse_port is
 * set), listens, and adopts every connection into `vhost`. Returns 0, or -1
 * with the reason logged (nothing is left open). */
int listener_start(struct listener *l, uv_loop_t *loop, struct lws_vhost *vhost, const char *addr, int port,
                   int reuse_port);

/* Splits "ADDR:PORT" or "[IPv6]:PORT" into addr (cap bytes) and port.
 * Returns 0, or -1 when spec is not of that form. */
int listener_parse(const char *spec, char *addr, size_t cap, int *port);
/* Stops accepting and closes the socket (asynchronously; idempotent). */
void listener_stop(struct listener *l);

#endif
