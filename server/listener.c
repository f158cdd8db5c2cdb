/* listener.c - our own SO_REUSEPORT listener (see listener.h). */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

static void on_readable(uv_poll_t *h, int status, int events)
{
    struct listener *l = h->data;
    (void)events;
    if (status < 0)
        return;
    for (int i = 0; i < LISTENER_ACCEPTS_MAX; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                log_msg(LOG_WARN, "accept: %s", strerror(errno));
            return;
        }
        /* On failure lws has closed the socket already. */
        if (!lws_adopt_socket_vhost(l->vhost, fd))
            log_msg(LOG_WARN, "lws refused an accepted connection");
    }
}

/* Fills ss/len with addr:port. Returns 0, or -1 when addr is not an IP
 * address. */
static int sockaddr_of(const char *addr, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *len = sizeof *in4;
    } else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof *in6;
    } else {
        return -1;
    }
    return 0;
}

int listener_probe(const char *addr, int port, int reuse_port, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (sockaddr_of(addr, port, &ss, &len) < 0) {
        snprintf(err, errlen, "listen-addr %s is not an IP address", addr);
        return -1;
    }
    int one = 1;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open a socket: %s", strerror(errno));
        return -1;
    }
    int rc = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (rc == 0 && reuse_port)
        rc = setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (rc == 0)
        rc = bind(fd, (struct sockaddr *)&ss, len);
    int e = errno;
    close(fd);
    if (rc == 0)
        return 0;
    if (e == EADDRINUSE)
        snprintf(err, errlen,
                 "port %d is in use on %s (another process listens there); set TIPCAST_PORT or --port to a "
                 "free port%s",
                 port, addr, reuse_port ? ", or start the other process with reuse-port too" : "");
    else if (e == EACCES)
        snprintf(err, errlen, "port %d on %s: permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)",
                 port, addr);
    else if (e == EADDRNOTAVAIL)
        snprintf(err, errlen, "listen-addr %s is not an address of this host", addr);
    else
        snprintf(err, errlen, "cannot listen on %s:%d: %s", addr, port, strerror(e));
    return -1;
}

int listener_start(struct listener *l, uv_loop_t *loop, struct lws_vhost *vhost, const char *addr, int port,
                   int reuse_port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (sockaddr_of(addr, port, &ss, &len) < 0) {
        log_msg(LOG_ERROR, "listen-addr %s is not an IP address", addr);
        return -1;
    }
    int one = 1;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
        bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, LISTENER_BACKLOG) < 0) {
        log_msg(LOG_ERROR, "cannot listen on %s:%d: %s", addr, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    l->fd = fd;
    l->vhost = vhost;
    uv_poll_init(loop, &l->poll, fd);
    l->poll.data = l;
    uv_poll_start(&l->poll, UV_READABLE, on_readable);
    l->polling = 1;
    return 0;
}

int listener_parse(const char *spec, char *addr, size_t cap, int *port)
{
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec)
        return -1;
    const char *a = spec, *a_end = colon;
    if (spec[0] == '[') {
        if (colon[-1] != ']')
            return -1;
        a = spec + 1;
        a_end = colon - 1;
    }
    size_t n = (size_t)(a_end - a);
    char digits[8];
    size_t pn = strlen(colon + 1);
    if (n == 0 || n >= cap || pn == 0 || pn > 5 || strspn(colon + 1, "0123456789") != pn)
        return -1;
    memcpy(digits, colon + 1, pn + 1);
    int p = atoi(digits);
    if (p < 1 || p > 65535)
        return -1;
    memcpy(addr, a, n);
    addr[n] = '\0';
    *port = p;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    struct listener *l = h->data;
    close(l->fd);
    l->fd = -1;
}

void listener_stop(struct listener *l)
{
    if (!l->polling)
        return;
    l->polling = 0;
    uv_poll_stop(&l->poll);
    uv_close((uv_handle_t *)&l->poll, on_closed);
}
