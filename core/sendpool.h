/* sendpool.h - helper threads that share a batch of socket writes with the
 * calling thread: the writes of one flush of a big room go out on two (or
 * more) cores at once.
 *
 * A batch is fork-join: sendpool_run hands each helper a slice of the jobs,
 * writes the first slice itself and returns once every helper is done, so
 * the jobs (and the bytes they point at) are only read by the helpers while
 * the caller waits in sendpool_run. A helper does nothing but send(2): it
 * never touches a library's state, only the file descriptor and the bytes
 * it was given. A write that does not go out whole is left to the caller
 * (its `sent` says how far it got).
 *
 * With 0 helpers, or a batch too small to be worth waking them, the caller
 * writes the whole batch itself. */
#ifndef TIPCAST_SENDPOOL_H
#define TIPCAST_SENDPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Most helper threads. */
#define SENDPOOL_THREADS_MAX 16
/* A batch smaller than this is written by the caller alone. */
#define SENDPOOL_SPLIT_MIN 32

struct send_job {
    int fd;
    const uint8_t *bytes;
    size_t len;
    /* Set by the write: the bytes written (0 when the socket was full), or
     * -errno when it failed. */
    ssize_t sent;
};

struct sendpool;

/* A pool of `threads` helpers (0..SENDPOOL_THREADS_MAX). Returns NULL when
 * out of memory or a thread could not be started (the error is logged). */
struct sendpool *sendpool_new(int threads);
/* Writes every job (non-blocking, no SIGPIPE), on the helpers and the
 * calling thread. */
void sendpool_run(struct sendpool *p, struct send_job *jobs, size_t n);
/* Stops and joins the helpers, frees the pool. NULL is ignored. */
void sendpool_free(struct sendpool *p);

#endif
