/* unit_sendpool.c - tests of core/sendpool.c on real sockets: every job's
 * bytes reach its own socket whole and once, with 0, 1 and 3 helpers and
 * batches below and above the split; a full socket reports how far it got,
 * a socket whose peer is gone reports -EPIPE, and nothing raises SIGPIPE. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sendpool.h"
#include "unit.h"

#define SOCKS 200

static int pairs[SOCKS][2];

static void open_pairs(int n)
{
    for (int i = 0; i < n; i++) {
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, pairs[i]) == 0);
        fcntl(pairs[i][0], F_SETFL, O_NONBLOCK);
    }
}

static void close_pairs(int n)
{
    for (int i = 0; i < n; i++) {
        close(pairs[i][0]);
        close(pairs[i][1]);
    }
}

/* n jobs, each to its own socket: "job <i>" then i bytes of 'a' + i % 26;
 * every socket must hold exactly its job's bytes. */
static void run_batch(struct sendpool *p, int n)
{
    struct send_job jobs[SOCKS];
    uint8_t bytes[SOCKS][300];
    open_pairs(n);
    for (int i = 0; i < n; i++) {
        int head = snprintf((char *)bytes[i], sizeof bytes[i], "job %d:", i);
        memset(bytes[i] + head, 'a' + i % 26, (size_t)i);
        jobs[i] = (struct send_job){.fd = pairs[i][0], .bytes = bytes[i], .len = (size_t)head + (size_t)i, .sent = -1};
    }
    sendpool_run(p, jobs, (size_t)n);
    for (int i = 0; i < n; i++) {
        uint8_t got[400];
        CHECK_INT(jobs[i].sent, (long long)jobs[i].len);
        ssize_t k = recv(pairs[i][1], got, sizeof got, MSG_DONTWAIT);
        CHECK_INT(k, (long long)jobs[i].len);
        CHECK(k > 0 && memcmp(got, bytes[i], (size_t)k) == 0);
    }
    close_pairs(n);
}

int main(void)
{
    for (int threads = 0; threads <= 3; threads += threads ? 2 : 1) {
        struct sendpool *p = sendpool_new(threads);
        CHECK(p != NULL);
        run_batch(p, 1);
        run_batch(p, SENDPOOL_SPLIT_MIN - 1);
        run_batch(p, SENDPOOL_SPLIT_MIN);
        run_batch(p, SOCKS);
        run_batch(p, SOCKS); /* the helpers wait and go again */
        sendpool_free(p);
    }

    /* A full socket takes what fits, then nothing; a socket whose peer is
     * closed fails with EPIPE (and no SIGPIPE ends this program). */
    struct sendpool *p = sendpool_new(1);
    int full[2], gone[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, full) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, gone) == 0);
    int small = 4096;
    setsockopt(full[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    close(gone[1]);
    static uint8_t big[1 << 20];
    struct send_job jobs[2] = {{.fd = full[0], .bytes = big, .len = sizeof big, .sent = -1},
                               {.fd = gone[0], .bytes = big, .len = 10, .sent = 0}};
    sendpool_run(p, jobs, 2);
    CHECK(jobs[0].sent > 0 && (size_t)jobs[0].sent < sizeof big);
    CHECK_INT(jobs[1].sent, -EPIPE);
    jobs[0].sent = -1;
    sendpool_run(p, jobs, 1);
    CHECK_INT(jobs[0].sent, 0);
    sendpool_free(p);
    sendpool_free(NULL);
    CHECK(sendpool_new(-1) == NULL && sendpool_new(SENDPOOL_THREADS_MAX + 1) == NULL);
    close(full[0]);
    close(full[1]);
    close(gone[0]);
    return unit_finish("unit_sendpool");
}
