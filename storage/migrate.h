/* migrate.h - versioned schema migrations, applied by tipcastd at start.
 *
 * The files storage/migrations/NNN_name.sql are compiled into tipcastd
 * (storage/migrations.cmake builds migrate_files from them), so the daemon
 * needs no file at run time. migrate_run applies the ones not yet recorded
 * in schema_migrations, in version order, each in its own transaction
 * together with its schema_migrations row: a migration is applied entirely
 * or not at all. A migration file must therefore not contain BEGIN/COMMIT.
 *
 * Several tipcastd starting at once are safe: they queue on one advisory
 * lock and the later ones find the work done.
 *
 * migrate_run BLOCKS (plain libpq calls, sleeps while PostgreSQL is not
 * reachable): it is for main() before the loop starts, never for the loop.
 */
#ifndef TIPCAST_MIGRATE_H
#define TIPCAST_MIGRATE_H

#include <stddef.h>

struct migrate_file {
    int version;      /* NNN of the file name; versions ascend, no gaps needed */
    const char *name; /* the rest of the file name, without ".sql" */
    const char *sql;  /* the file's text, NUL-terminated */
};

/* Generated at build time, in version order. */
extern const struct migrate_file migrate_files[];
extern const int migrate_files_count;

/* How long migrate_run keeps trying to reach PostgreSQL, and how often it
 * says so on stderr meanwhile. */
#define MIGRATE_WAIT_MS 30000
#define MIGRATE_RETRY_MS 1000
#define MIGRATE_REPORT_MS 5000
/* Connect timeout of each attempt, unless the conninfo sets one. */
#define MIGRATE_CONNECT_TIMEOUT_S "5"
/* Key of the advisory lock that serializes migrating nodes ("tipc"). */
#define MIGRATE_LOCK_KEY 1953067107
/* Bound on the versions read back from schema_migrations. */
#define MIGRATE_VERSIONS_MAX 4096

/* Connects to `conninfo` (retrying for up to MIGRATE_WAIT_MS, with a line on
 * stderr every MIGRATE_REPORT_MS), applies the pending migrations and
 * disconnects. Returns 0, or -1 with the reason in err (errlen bytes): not
 * reachable in time, a migration failed (it and the later ones are then not
 * applied, the earlier ones stay), or the database's history of migrations
 * disagrees with this binary's (same version, different name). */
int migrate_run(const char *conninfo, char *err, size_t errlen);

#endif
