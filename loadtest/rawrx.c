/* rawrx.c - the bench's connections (all but --idle's), read and written
 * by the bench itself on libuv TCP handles instead of lws's client.
 *
 * Why: a receiver of a hot room is sent one frame per event batch on each
 * of thousands of sockets, and lws 4.1's client spends about 4 us of CPU on
 * each frame it reads here (its service loop and byte-wise parser), as much
 * as the server spends writing it. A sender's every request also cost lws
 * two epoll_ctl calls (asking for WRITEABLE, then dropping the ask) where a
 * libuv write goes out at once. On a machine whose cores the bench shares
 * with the server, that cost is latency charged to the server, and gifts/s
 * it takes from the server. This client does the least a WebSocket client
 * may: one HTTP upgrade, frames parsed in place from one shared read buffer
 * (the tail of a frame cut by a read is kept per connection), pongs to
 * pings, and its requests (tipcast's join, gifts and credits; the peers'
 * published frames) masked with a zero key. What it hands on is the same
 * (run.h: struct conn_events), so the latencies are measured as before.
 * --idle keeps lws's client: what an idle connection costs the server is
 * measured with a common client.
 *
 * It checks that the server switched protocols (101), not the accept hash:
 * it talks to the servers under test, on loopback. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run.h"

/* One read of the loop: frames are parsed from it in place. */
#define RAWRX_READ_BYTES (256 * 1024)
/* The upgrade's answer, at most. */
#define RAWRX_HEAD_MAX 4096
/* The biggest frame taken (tipcastd's batches are at most 32 KiB). */
#define RAWRX_FRAME_MAX (256 * 1024)

struct rawconn {
    uv_tcp_t tcp;
    uv_connect_t connect;
    struct bconn *c;
    const struct conn_events *ev;
    int upgraded, closing;
};

struct rawwrite {
    uv_write_t req;
    char data[];
};

static char read_buf[RAWRX_READ_BYTES];

static void on_closed(uv_handle_t *h)
{
    struct rawconn *rc = h->data;
    struct bconn *c = rc->c;
    rc->ev->closed(c);
    c->raw = NULL;
    free(rc);
}

static void raw_close(struct rawconn *rc)
{
    if (rc->closing)
        return;
    rc->closing = 1;
    uv_read_stop((uv_stream_t *)&rc->tcp);
    uv_close((uv_handle_t *)&rc->tcp, on_closed);
}

static void on_written(uv_write_t *req, int status)
{
    (void)status; /* a failed write shows as a closed socket on the read side */
    free(req);
}

/* Queues head[0..nhead) then data[0..len) as one write (one copy, which
 * libuv tries to send at once: no wait for the socket to be writable). */
static int raw_write2(struct rawconn *rc, const void *head, size_t nhead, const void *data, size_t len)
{
    struct rawwrite *w = malloc(sizeof *w + nhead + len);
    if (!w)
        return -1;
    memcpy(w->data, head, nhead);
    if (len)
        memcpy(w->data + nhead, data, len);
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)(nhead + len));
    if (uv_write(&w->req, (uv_stream_t *)&rc->tcp, &buf, 1, on_written) < 0) {
        free(w);
        return -1;
    }
    return 0;
}

static int raw_write(struct rawconn *rc, const void *data, size_t len)
{
    return raw_write2(rc, data, len, NULL, 0);
}

/* A client frame: FIN, the opcode, a mask key of zero (the payload as it
 * is). */
static int raw_write_frame(struct rawconn *rc, int opcode, const uint8_t *payload, size_t len)
{
    uint8_t head[14];
    size_t n = 0;
    head[n++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        head[n++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        head[n++] = 0x80 | 126;
        head[n++] = (uint8_t)(len >> 8);
        head[n++] = (uint8_t)len;
    } else {
        head[n++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            head[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memset(head + n, 0, 4);
    n += 4;
    return raw_write2(rc, head, n, payload, len);
}

int rawrx_send(struct bconn *c, int text, const uint8_t *payload, size_t len)
{
    struct rawconn *rc = c->raw;
    if (!rc || rc->closing)
        return -1;
    return raw_write_frame(rc, text ? 1 : 2, payload, len);
}

/* Frames from buf, as many as are whole; returns the bytes used, or -1 when
 * the connection must close. */
static long parse_frames(struct rawconn *rc, const uint8_t *buf, size_t len)
{
    struct bconn *c = rc->c;
    size_t at = 0;
    while (len - at >= 2) {
        const uint8_t *p = buf + at;
        int fin = p[0] & 0x80, opcode = p[0] & 0x0f;
        uint64_t plen = p[1] & 0x7f;
        size_t head = 2;
        if (p[1] & 0x80)
            return -1; /* a server's frames are not masked */
        if (plen == 126) {
            if (len - at < 4)
                break;
            plen = (uint64_t)p[2] << 8 | p[3];
            head = 4;
        } else if (plen == 127) {
            if (len - at < 10)
                break;
            plen = 0;
            for (int i = 2; i < 10; i++)
                plen = plen << 8 | p[i];
            head = 10;
        }
        if (plen > RAWRX_FRAME_MAX) {
            bench_error(c->b, "bench_frame_too_big");
            return -1;
        }
        if (len - at < head + plen)
            break;
        const uint8_t *payload = p + head;
        at += head + (size_t)plen;
        switch (opcode) {
        case 1:
        case 2:
            if (!fin) {
                bench_error(c->b, "bench_fragmented_frame");
                return -1;
            }
            rc->ev->received(c, payload, (size_t)plen);
            if (rc->closing)
                return -1;
            break;
        case 8:
            if (plen >= 2)
                rc->ev->peer_closed(c, payload[0] << 8 | payload[1]);
            return -1;
        case 9:
            if (plen <= 125 && raw_write_frame(rc, 10, payload, (size_t)plen) < 0)
                return -1;
            break;
        case 10:
            break;
        default:
            bench_error(c->b, "bench_unexpected_opcode");
            return -1;
        }
    }
    return (long)at;
}

/* The upgrade's answer, from the front of the kept bytes; returns the bytes
 * it took, 0 when it is not whole yet, -1 when it is not a 101. */
static long parse_upgrade(struct rawconn *rc, const uint8_t *buf, size_t len)
{
    const uint8_t *end = NULL;
    for (size_t i = 3; i < len && !end; i++)
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r')
            end = buf + i + 1;
    if (!end)
        return len > RAWRX_HEAD_MAX ? -1 : 0;
    if (len < 12 || memcmp(buf, "HTTP/1.1 101", 12) != 0)
        return -1;
    rc->upgraded = 1;
    rc->ev->established(rc->c);
    return end - buf;
}

/* Keeps len bytes from buf (maybe inside c->rx) for the next read. */
static int keep(struct bconn *c, const uint8_t *buf, size_t len)
{
    if (len > c->rx_cap) {
        uint8_t *p = realloc(c->rx, len);
        if (!p)
            return -1;
        c->rx = p;
        c->rx_cap = (uint32_t)len;
    }
    memmove(c->rx, buf, len);
    c->rx_len = (uint32_t)len;
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    *buf = uv_buf_init(read_buf, sizeof read_buf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *in)
{
    struct rawconn *rc = s->data;
    struct bconn *c = rc->c;
    if (n <= 0) {
        if (n < 0)
            raw_close(rc);
        return;
    }
    const uint8_t *buf = (const uint8_t *)in->base;
    size_t len = (size_t)n;
    if (c->rx_len) { /* a frame's head came in an earlier read */
        size_t total = c->rx_len + len;
        if (total > c->rx_cap) {
            uint8_t *p = realloc(c->rx, total);
            if (!p) {
                raw_close(rc);
                return;
            }
            c->rx = p;
            c->rx_cap = (uint32_t)total;
        }
        memcpy(c->rx + c->rx_len, buf, len);
        buf = c->rx;
        len = total;
        c->rx_len = 0;
    }
    size_t at = 0;
    long used;
    if (!rc->upgraded) {
        used = parse_upgrade(rc, buf, len);
        if (used < 0) {
            bench_error(c->b, "bench_upgrade_refused");
            raw_close(rc);
            return;
        }
        at = (size_t)used;
    }
    if (rc->upgraded) {
        used = parse_frames(rc, buf + at, len - at);
        if (used < 0) {
            raw_close(rc);
            return;
        }
        at += (size_t)used;
    }
    if (at < len) {
        if (keep(c, buf + at, len - at) < 0)
            raw_close(rc);
    } else if (c->rx_cap > 4096) {
        /* Thousands of idle connections should not each keep a big buffer. */
        free(c->rx);
        c->rx = NULL;
        c->rx_cap = 0;
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    struct rawconn *rc = req->data;
    if (status < 0 || rc->closing) {
        raw_close(rc);
        return;
    }
    uv_read_start((uv_stream_t *)&rc->tcp, on_alloc, on_read);
}

int rawrx_open(struct bconn *c, const char *path, const char *protocol, const struct conn_events *ev)
{
    struct bench *b = c->b;
    struct sockaddr_in src, dst;
    const char *iface = b->src[b->o.src_lo + (int)(c->idx % (uint32_t)(b->o.src_hi - b->o.src_lo + 1))];
    if (uv_ip4_addr(iface, 0, &src) < 0 || uv_ip4_addr(b->o.host, b->o.port, &dst) < 0)
        return -1;
    struct rawconn *rc = calloc(1, sizeof *rc);
    if (!rc)
        return -1;
    rc->c = c;
    rc->ev = ev;
    uv_tcp_init(&b->loop, &rc->tcp);
    rc->tcp.data = rc;
    rc->connect.data = rc;
    c->raw = rc;
    char req[2048];
    /* The key: 16 bytes in base64, as RFC 6455 asks (Node's ws refuses
     * any other length); the same for every connection. */
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGlwY2FzdC1iZW5jaC1rZQ==\r\nSec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                     path, b->o.host, b->o.port, protocol ? "Sec-WebSocket-Protocol: " : "",
                     protocol ? protocol : "", protocol ? "\r\n" : "");
    uv_tcp_nodelay(&rc->tcp, 1);
    /* From here a failure closes the handle, and its close callback counts
     * the connection as failed (ev->closed). The request is queued behind
     * the connect: libuv writes it once connected. */
    if (n <= 0 || (size_t)n >= sizeof req || uv_tcp_bind(&rc->tcp, (const struct sockaddr *)&src, 0) < 0 ||
        uv_tcp_connect(&rc->connect, &rc->tcp, (const struct sockaddr *)&dst, on_connect) < 0 ||
        raw_write(rc, req, (size_t)n) < 0)
        raw_close(rc);
    return 0;
}

void rawrx_close(struct bconn *c)
{
    if (c->raw)
        raw_close(c->raw);
}
