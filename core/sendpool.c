/* sendpool.c - helper threads for batches of socket writes (see sendpool.h). */
#include "sendpool.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"

struct helper {
    struct sendpool *p;
    pthread_t thread;
    sem_t start, done;
    struct send_job *jobs;
    size_t n;
};

struct sendpool {
    int threads;
    int stopping;
    struct helper h[];
};

static void send_all(struct send_job *jobs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct send_job *j = &jobs[i];
        ssize_t k;
        do
            k = send(j->fd, j->bytes, j->len, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (k < 0 && errno == EINTR);
        if (k >= 0)
            j->sent = k;
        else
            j->sent = errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
    }
}

static void *helper_main(void *arg)
{
    struct helper *h = arg;
    for (;;) {
        while (sem_wait(&h->start) < 0 && errno == EINTR)
            ;
        if (h->p->stopping)
            return NULL;
        send_all(h->jobs, h->n);
        sem_post(&h->done);
    }
}

struct sendpool *sendpool_new(int threads)
{
    if (threads < 0 || threads > SENDPOOL_THREADS_MAX)
        return NULL;
    struct sendpool *p = calloc(1, sizeof *p + (size_t)threads * sizeof p->h[0]);
    if (!p)
        return NULL;
    /* The helpers take no signals: they go to the loop's thread, as
     * before there were helpers. The mask is inherited at creation. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (int i = 0; i < threads; i++) {
        struct helper *h = &p->h[i];
        h->p = p;
        sem_init(&h->start, 0, 0);
        sem_init(&h->done, 0, 0);
        int rc = pthread_create(&h->thread, NULL, helper_main, h);
        if (rc != 0) {
            log_msg(LOG_ERROR, "fan-out: cannot start a send thread: %s", strerror(rc));
            sem_destroy(&h->start);
            sem_destroy(&h->done);
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            sendpool_free(p);
            return NULL;
        }
        p->threads = i + 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return p;
}

void sendpool_run(struct sendpool *p, struct send_job *jobs, size_t n)
{
    int helpers = p->threads;
    if (n < SENDPOOL_SPLIT_MIN)
        helpers = 0;
    /* Slice 0 is the caller's; slice i the helper i-1's. */
    size_t parts = (size_t)helpers + 1, at = n / parts;
    for (int i = 0; i < helpers; i++) {
        struct helper *h = &p->h[i];
        size_t end = n * (size_t)(i + 2) / parts;
        h->jobs = jobs + at;
        h->n = end - at;
        at = end;
        sem_post(&h->start);
    }
    send_all(jobs, n / parts);
    for (int i = 0; i < helpers; i++)
        while (sem_wait(&p->h[i].done) < 0 && errno == EINTR)
            ;
}

void sendpool_free(struct sendpool *p)
{
    if (!p)
        return;
    p->stopping = 1;
    for (int i = 0; i < p->threads; i++)
        sem_post(&p->h[i].start);
    for (int i = 0; i < p->threads; i++) {
        pthread_join(p->h[i].thread, NULL);
        sem_destroy(&p->h[i].start);
        sem_destroy(&p->h[i].done);
    }
    free(p);
}
