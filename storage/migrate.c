/* migrate.c - applies the embedded schema migrations (see migrate.h). */
#include "migrate.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "log.h"

static int64_t migrate_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void migrate_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    /* libpq messages span lines (a hint follows the reason): the first one
     * says what happened, and the caller prints one line. */
    err[strcspn(err, "\n")] = '\0';
    size_t n = strlen(err);
    while (n > 0 && err[n - 1] == ' ')
        err[--n] = '\0';
}

/* Server notices (e.g. "relation already exists, skipping") are not news. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    log_msg(LOG_DEBUG, "postgres: %s", message);
}

/* Connects, retrying while PostgreSQL is not reachable. Returns the
 * connection (the caller PQfinish-es it), or NULL with err set. */
static PGconn *migrate_connect(const char *conninfo, char *err, size_t errlen)
{
    /* connect_timeout first: the expanded conninfo comes after it and wins
     * when it names its own. */
    const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *vals[] = {MIGRATE_CONNECT_TIMEOUT_S, "tipcastd-migrate", conninfo, NULL};
    int64_t start = migrate_now_ms(), reported = 0;
    for (;;) {
        PGconn *pg = PQconnectdbParams(keys, vals, 1);
        if (pg && PQstatus(pg) == CONNECTION_OK)
            return pg;
        set_err(err, errlen, "%s", pg ? PQerrorMessage(pg) : "out of memory");
        PQfinish(pg);
        int64_t now = migrate_now_ms();
        if (now - start >= MIGRATE_WAIT_MS) {
            char why[512];
            snprintf(why, sizeof why, "%s", err);
            set_err(err, errlen, "PostgreSQL not reachable within %d s: %s", MIGRATE_WAIT_MS / 1000, why);
            return NULL;
        }
        if (reported == 0 || now - reported >= MIGRATE_REPORT_MS) {
            log_msg(LOG_WARN, "schema: waiting for PostgreSQL (%d s left): %s",
                    (int)((MIGRATE_WAIT_MS - (now - start)) / 1000), err);
            reported = now;
        }
        migrate_sleep_ms(MIGRATE_RETRY_MS);
    }
}

/* Runs a statement; 0 when it succeeded, else -1 with err set to
 * "<what>: <server message>". */
static int exec_ok(PGconn *pg, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        set_err(err, errlen, "%s: %s", what, r ? PQresultErrorMessage(r) : PQerrorMessage(pg));
    PQclear(r);
    return ok ? 0 : -1;
}

/* Applies one migration and records it, in one transaction. */
static int apply_one(PGconn *pg, const struct migrate_file *m, char *err, size_t errlen)
{
    char what[160];
    snprintf(what, sizeof what, "migration %03d_%s", m->version, m->name);
    int64_t t0 = migrate_now_ms();
    if (exec_ok(pg, "BEGIN", what, err, errlen) < 0)
        return -1;
    if (exec_ok(pg, m->sql, what, err, errlen) < 0)
        goto rollback;
    char version[16];
    snprintf(version, sizeof version, "%d", m->version);
    const char *params[] = {version, m->name};
    PGresult *r = PQexecParams(pg, "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, now())",
                               2, NULL, params, NULL, NULL, 0);
    int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        set_err(err, errlen, "%s: recording it: %s", what, r ? PQresultErrorMessage(r) : PQerrorMessage(pg));
    PQclear(r);
    if (!ok)
        goto rollback;
    /* COMMIT of a transaction that failed answers "ROLLBACK" without an
     * error; nothing failed here, so a plain success is a real commit. */
    if (exec_ok(pg, "COMMIT", what, err, errlen) < 0)
        return -1;
    log_msg(LOG_INFO, "schema: applied %03d_%s in %lld ms", m->version, m->name,
            (long long)(migrate_now_ms() - t0));
    return 0;
rollback:
    PQclear(PQexec(pg, "ROLLBACK"));
    return -1;
}

/* With the lock held: reads what is applied, applies what is missing. */
static int migrate_locked(PGconn *pg, char *err, size_t errlen)
{
    if (exec_ok(pg,
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version int PRIMARY KEY,"
                " name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())",
                "creating schema_migrations", err, errlen) < 0)
        return -1;
    PGresult *r = PQexec(pg, "SELECT version, name FROM schema_migrations ORDER BY version");
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK) {
        set_err(err, errlen, "reading schema_migrations: %s", r ? PQresultErrorMessage(r) : PQerrorMessage(pg));
        PQclear(r);
        return -1;
    }
    int rows = PQntuples(r);
    if (rows > MIGRATE_VERSIONS_MAX) {
        set_err(err, errlen, "schema_migrations has %d rows, more than the %d this tipcastd reads", rows,
                MIGRATE_VERSIONS_MAX);
        PQclear(r);
        return -1;
    }
    int newest_db = 0, newest_ours = 0, applied = 0;
    for (int i = 0; i < migrate_files_count; i++) {
        const struct migrate_file *m = &migrate_files[i];
        /* The build sorts the files; a table out of order is a build bug. */
        tc_assert(i == 0 || migrate_files[i - 1].version < m->version);
        newest_ours = m->version;
        const char *have = NULL;
        for (int k = 0; k < rows; k++)
            if (atoi(PQgetvalue(r, k, 0)) == m->version)
                have = PQgetvalue(r, k, 1);
        if (have && strcmp(have, m->name) != 0) {
            set_err(err, errlen,
                    "schema_migrations records version %d as '%s' but this tipcastd's migration %03d is '%s': "
                    "the database and the binary come from different histories",
                    m->version, have, m->version, m->name);
            PQclear(r);
            return -1;
        }
        if (!have) {
            if (apply_one(pg, m, err, errlen) < 0) {
                PQclear(r);
                return -1;
            }
            applied++;
        }
    }
    for (int k = 0; k < rows; k++) {
        int v = atoi(PQgetvalue(r, k, 0));
        if (v > newest_db)
            newest_db = v;
    }
    PQclear(r);
    if (newest_db > newest_ours)
        log_msg(LOG_WARN, "schema: the database is at version %d, newer than this tipcastd's %d "
                "(a newer node migrated it; running on)", newest_db, newest_ours);
    else
        log_msg(LOG_INFO, "schema: at version %d (%d applied now)", newest_ours, applied);
    return 0;
}

int migrate_run(const char *conninfo, char *err, size_t errlen)
{
    PGconn *pg = migrate_connect(conninfo, err, errlen);
    if (!pg)
        return -1;
    PQsetNoticeProcessor(pg, on_notice, NULL);
    int rc = -1;
    char lock_sql[96];
    snprintf(lock_sql, sizeof lock_sql, "SELECT pg_advisory_lock(%d)", MIGRATE_LOCK_KEY);
    if (exec_ok(pg, "SET client_min_messages = warning", "session setup", err, errlen) == 0 &&
        exec_ok(pg, lock_sql, "taking the migration lock", err, errlen) == 0) {
        rc = migrate_locked(pg, err, errlen);
        /* Closing the session would release the lock too; saying so keeps
         * the next node from waiting on a connection teardown. */
        char unlock_sql[96];
        snprintf(unlock_sql, sizeof unlock_sql, "SELECT pg_advisory_unlock(%d)", MIGRATE_LOCK_KEY);
        PQclear(PQexec(pg, unlock_sql));
    }
    PQfinish(pg);
    return rc;
}
