/* recon_job.c - the scheduled reconciliation thread (see recon_job.h). */
#include "recon_job.h"

#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "log.h"
#include "recon.h"

/* One round: the lock, the run, its outcome. It logs errors, infos and
 * debug lines only: a warning goes through the log's repeat filter, whose
 * state belongs to the loop's thread (core/log.c). */
static void recon_job_round(struct recon_job *j)
{
    const struct config *cfg = j->cfg;
    char conninfo[CONFIG_STR_MAX + 32];
    snprintf(conninfo, sizeof conninfo, "%s connect_timeout=%d", cfg->pg_conninfo, RECON_JOB_CONNECT_S);
    PGconn *pg = PQconnectdb(conninfo);
    if (PQstatus(pg) != CONNECTION_OK) {
        log_msg(LOG_ERROR, "reconcile: postgresql: %s", PQerrorMessage(pg));
        PQfinish(pg);
        j->stats.error++;
        return;
    }
    PGresult *res = PQexec(pg, "SELECT pg_try_advisory_lock(" RECON_JOB_LOCK_KEY ")");
    int locked = PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!locked) {
        log_msg(LOG_DEBUG, "reconcile: another node is running it");
        PQfinish(pg);
        return;
    }
    struct rsync rc;
    if (rsync_connect(&rc, cfg->redis_host, cfg->redis_port, cfg->redis_cluster, RECON_JOB_CONNECT_S) < 0) {
        log_msg(LOG_ERROR, "reconcile: %s", rc.err);
        rsync_close(&rc);
        PQfinish(pg); /* the lock goes with the session */
        j->stats.error++;
        return;
    }
    struct recon_opts o = {.source = "scheduled",
                           .node = j->node,
                           .shards = cfg->wallet_shards,
                           .idle_ms = RECON_IDLE_MS_DEFAULT,
                           .store = 1,
                           .webhooks = config_webhooks_on(cfg)};
    struct recon_result r;
    int st = recon_run(pg, &rc, &o, &r);
    if (st == RECON_ERROR) {
        log_msg(LOG_ERROR, "reconcile: not done: %s", r.err);
        j->stats.error++;
    } else {
        j->stats.findings = r.findings;
        if (st == RECON_CLEAN) {
            j->stats.clean++;
            log_msg(LOG_INFO, "reconcile: clean (report %lld)", (long long)r.report_id);
        } else {
            j->stats.mismatch++;
            log_msg(LOG_ERROR, "reconcile: %d findings, %lld coins off (report %lld)", r.findings,
                    (long long)r.coins_off, (long long)r.report_id);
        }
    }
    recon_result_free(&r);
    rsync_close(&rc);
    PQfinish(pg);
}

static void *recon_job_main(void *arg)
{
    struct recon_job *j = arg;
    pthread_mutex_lock(&j->mu);
    while (!j->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += j->cfg->reconcile_interval_s;
        while (!j->stop && pthread_cond_timedwait(&j->cv, &j->mu, &until) == 0)
            ;
        if (j->stop)
            break;
        pthread_mutex_unlock(&j->mu);
        recon_job_round(j);
        pthread_mutex_lock(&j->mu);
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

void recon_job_start(struct recon_job *j, const struct config *cfg, const char *node)
{
    memset(j, 0, sizeof *j);
    j->cfg = cfg;
    j->node = node;
    j->stats.findings = -1;
    if (cfg->reconcile_interval_s <= 0)
        return;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    if (pthread_create(&j->thread, NULL, recon_job_main, j) != 0) {
        log_msg(LOG_ERROR, "reconcile: cannot start its thread: no scheduled runs");
        return;
    }
    j->started = 1;
}

void recon_job_stop(struct recon_job *j)
{
    if (!j->started)
        return;
    pthread_mutex_lock(&j->mu);
    j->stop = 1;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    pthread_join(j->thread, NULL);
    j->started = 0;
}
