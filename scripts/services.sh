#!/usr/bin/env bash
# services.sh - project-local Redis 7 and PostgreSQL 15 instances on loopback.
#
#   scripts/services.sh start  NAME   start (or confirm running) both servers
#   scripts/services.sh stop   NAME   stop both, keep their data
#   scripts/services.sh env    NAME   print `export` lines for tipcastd/tests
#   scripts/services.sh status NAME   exit 0 when both are running
#   scripts/services.sh reset  NAME   start both, then empty them: Redis
#                                     FLUSHALL, database tipcast dropped and
#                                     created again (scripts/test.sh does this,
#                                     so that no earlier run's rows count)
#
# NAME is an instance: `run` (redis 6391, postgres 5491) or `test` (redis 6392,
# postgres 5492). Environment TIPCAST_REDIS_PORT / TIPCAST_PG_PORT override the
# ports (required for any other NAME). Nothing system-wide is used: state lives
# in $REPO/.state/NAME/; see docs/operations.md ("State directories").
set -euo pipefail

PGBIN=/usr/lib/postgresql/15/bin
WAIT_S=${TIPCAST_SERVICES_WAIT_S:-30}   # bound on every wait below

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() {
  echo "usage: $0 start|stop|stop-postgres|reset|env|status NAME   (NAME: run, test, or any [A-Za-z0-9_-] name with ports in env)" >&2
  exit 2
}

(($# == 2)) || usage
CMD=$1
NAME=$2
[[ $NAME =~ ^[A-Za-z0-9_-]+$ ]] || die "bad instance name '$NAME'"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
STATE=$REPO/.state/$NAME

case $NAME in
  run) def_redis=6391 def_pg=5491 ;;
  test) def_redis=6392 def_pg=5492 ;;
  *) def_redis="" def_pg="" ;;
esac
REDIS_PORT=${TIPCAST_REDIS_PORT:-$def_redis}
PG_PORT=${TIPCAST_PG_PORT:-$def_pg}
[[ -n $REDIS_PORT && -n $PG_PORT ]] ||
  die "instance '$NAME' has no default ports; set TIPCAST_REDIS_PORT and TIPCAST_PG_PORT"
[[ $REDIS_PORT =~ ^[0-9]+$ && $PG_PORT =~ ^[0-9]+$ ]] || die "ports must be numbers"

print_env() {
  echo "export TIPCAST_REDIS_HOST=127.0.0.1"
  echo "export TIPCAST_REDIS_PORT=$REDIS_PORT"
  echo "export TIPCAST_PG='host=127.0.0.1 port=$PG_PORT user=postgres dbname=tipcast'"
  # For tests that stop and start this instance's PostgreSQL (outages).
  echo "export TIPCAST_PG_PORT=$PG_PORT"
  echo "export TIPCAST_TEST_INSTANCE=$NAME"
}
if [[ $CMD == env ]]; then
  print_env
  exit 0
fi

# --- who runs PostgreSQL, and where its data lives --------------------------
# PostgreSQL refuses to run as root. As root we run it as Debian's `postgres`
# user, with the data directory under /tmp (the checkout may sit where that
# user cannot enter, e.g. /root) and a symlink .state/NAME/pg pointing at it.
IS_ROOT=0
[[ $(id -u) -eq 0 ]] && IS_ROOT=1
PG_LINK=$STATE/pg
if ((IS_ROOT)); then
  getent passwd postgres >/dev/null || die "user 'postgres' missing (run scripts/deps.sh)"
  HASH=$(printf '%s' "$REPO" | sha256sum | cut -c1-12)
  PGDATA_DIR=/tmp/tipcast-pg-$HASH-$NAME
else
  PGDATA_DIR=$PG_LINK
fi
PG_LOG=$PGDATA_DIR/server.log

as_pg() {
  if ((IS_ROOT)); then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# --- helpers ----------------------------------------------------------------
port_open() { timeout 3 bash -c ": <>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# proc_is PID COMM DIR: PID is alive, is COMM, and its cwd is DIR.
# (redis-server and postgres both chdir to their data directory, so this
# tells our process from an unrelated one that reused a stale pid.)
proc_is() {
  local pid=$1 comm=$2 dir=$3 c cwd
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  c=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [[ $c == "$comm"* ]] || return 1
  cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || return 1
  [[ $cwd == "$(readlink -f "$dir")" ]]
}

wait_gone() { # PID SECONDS
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
  return 1
}

tail_log() { # FILE
  if [[ -r $1 ]]; then
    log "last lines of $1:"
    tail -n 25 "$1" | sed 's/^/    /' >&2
  else
    log "(no log at $1)"
  fi
}

lock_state() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock -w "$WAIT_S" 9 || die "another services.sh is working on $STATE"
}

# --- Redis ------------------------------------------------------------------
REDIS_CONF=$STATE/redis.conf
REDIS_PID=$STATE/redis.pid
REDIS_LOG=$STATE/redis.log

redis_pid() { [[ -f $REDIS_PID ]] && tr -dc 0-9 <"$REDIS_PID"; }
redis_running() {
  local pid
  pid=$(redis_pid) || return 1
  proc_is "$pid" redis-server "$STATE"
}
redis_conf_port() { awk '$1 == "port" { print $2 }' "$REDIS_CONF" 2>/dev/null; }

start_redis() {
  if redis_running; then
    local p
    p=$(redis_conf_port)
    [[ $p == "$REDIS_PORT" ]] ||
      die "redis of instance '$NAME' is running on port $p, not $REDIS_PORT; run: $0 stop $NAME"
    if [[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; then
      log "redis already running on 127.0.0.1:$REDIS_PORT (pid $(redis_pid))"
      return 0
    fi
  else
    rm -f "$REDIS_PID"
    if port_open "$REDIS_PORT"; then
      die "port $REDIS_PORT is already in use by another process; stop it or set TIPCAST_REDIS_PORT"
    fi
    cat >"$REDIS_CONF" <<EOF
# Generated by scripts/services.sh for instance '$NAME'; rewritten on every start.
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
daemonize yes
supervised no
pidfile "$REDIS_PID"
logfile "$REDIS_LOG"
dir "$STATE"
# tipcastd refuses a Redis that could silently lose balances:
appendonly yes
appendfsync everysec
# A gift writes about 2.3 KB of AOF: with the default 64mb, a busy node's
# AOF was rewritten (a fork writing the whole dataset) every few seconds
# (docs/operations.md, "Redis").
auto-aof-rewrite-min-size 1gb
maxmemory-policy noeviction
save ""
# DEBUG from loopback only (handy in tests).
enable-debug-command local
EOF
    local out
    if ! out=$(redis-server "$REDIS_CONF" 2>&1 9>&-); then
      log "redis-server failed to start: $out"
      tail_log "$REDIS_LOG"
      die "redis did not start"
    fi
  fi
  local i
  for ((i = 0; i < WAIT_S * 10; i++)); do
    if [[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; then
      # AOF loading answers -LOADING to everything but PING; wait for it too.
      if [[ $(redis-cli -p "$REDIS_PORT" config get appendonly 2>/dev/null | tail -n 1) == yes ]]; then
        log "redis up on 127.0.0.1:$REDIS_PORT (pid $(redis_pid), dir $STATE)"
        return 0
      fi
    fi
    sleep 0.1
  done
  tail_log "$REDIS_LOG"
  die "redis did not answer PING on 127.0.0.1:$REDIS_PORT within ${WAIT_S}s"
}

stop_redis() {
  if ! redis_running; then
    rm -f "$REDIS_PID"
    log "redis not running"
    return 0
  fi
  local pid port
  pid=$(redis_pid)
  port=$(redis_conf_port)
  redis-cli -p "${port:-$REDIS_PORT}" shutdown >/dev/null 2>&1 || true
  if ! wait_gone "$pid" "$WAIT_S"; then
    log "redis (pid $pid) ignored SHUTDOWN; sending SIGTERM"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 10; then
      log "redis (pid $pid) still running; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone "$pid" 5 || die "could not stop redis pid $pid"
    fi
  fi
  rm -f "$REDIS_PID"
  log "redis stopped"
}

# --- PostgreSQL -------------------------------------------------------------
pg_pidfile_pid() { [[ -f $PGDATA_DIR/postmaster.pid ]] && head -n 1 "$PGDATA_DIR/postmaster.pid" | tr -dc 0-9; }
pg_pidfile_port() { sed -n 4p "$PGDATA_DIR/postmaster.pid" 2>/dev/null | tr -dc 0-9; }
pg_running() {
  local pid
  pid=$(pg_pidfile_pid) || return 1
  proc_is "$pid" postgres "$PGDATA_DIR"
}

# Creates the data directory (and, as root, the .state/NAME/pg symlink).
prepare_pg_dir() {
  if ((IS_ROOT)); then
    if [[ -e $PG_LINK && ! -L $PG_LINK ]]; then
      die "$PG_LINK is a directory (made by a non-root run); as root the data must live in $PGDATA_DIR. Remove $PG_LINK or run as its owner."
    fi
    if [[ -L $PGDATA_DIR ]]; then
      die "$PGDATA_DIR is a symlink; refusing to use it"
    fi
    if [[ -e $PGDATA_DIR ]]; then
      [[ -d $PGDATA_DIR && $(stat -c %U "$PGDATA_DIR") == postgres ]] ||
        die "$PGDATA_DIR exists but is not a directory owned by postgres; remove it"
    else
      if [[ -L $PG_LINK ]]; then
        log "note: $PGDATA_DIR is gone (e.g. /tmp was cleaned); creating a new, empty database"
      fi
      mkdir -m 700 "$PGDATA_DIR"
      chown postgres:postgres "$PGDATA_DIR"
    fi
    chmod 700 "$PGDATA_DIR"
    ln -sfn "$PGDATA_DIR" "$PG_LINK"
  else
    if [[ -L $PG_LINK ]]; then
      die "$PG_LINK is a symlink (made by a root run) to $(readlink "$PG_LINK"); run as root, or remove it"
    fi
    mkdir -p "$PGDATA_DIR"
    chmod 700 "$PGDATA_DIR"
  fi
}

init_pg() {
  [[ -f $PGDATA_DIR/PG_VERSION ]] && return 0
  if [[ -n $(ls -A "$PGDATA_DIR") ]]; then
    die "$PGDATA_DIR is not empty but holds no database; remove it and start again"
  fi
  log "initdb $PGDATA_DIR"
  if ! as_pg "$PGBIN/initdb" -D "$PGDATA_DIR" -A trust -U postgres --encoding=UTF8 --no-locale \
    >"$STATE/initdb.log" 2>&1; then
    tail_log "$STATE/initdb.log"
    die "initdb failed"
  fi
  as_pg sh -c "echo \"include_if_exists = 'tipcast.conf'\" >>'$PGDATA_DIR/postgresql.conf'"
}

write_pg_conf() {
  # Unix sockets live in the data directory when its path is short enough
  # (sun_path is 108 bytes); clients here use TCP anyway.
  local sockdir=$PGDATA_DIR
  ((${#sockdir} + 16 < 107)) || sockdir=""
  as_pg tee "$PGDATA_DIR/tipcast.conf" >/dev/null <<EOF
# Generated by scripts/services.sh for instance '$NAME'; rewritten on every start.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$sockdir'
EOF
}

start_pg() {
  prepare_pg_dir
  init_pg
  if pg_running; then
    local p
    p=$(pg_pidfile_port)
    [[ $p == "$PG_PORT" ]] ||
      die "postgres of instance '$NAME' is running on port $p, not $PG_PORT; run: $0 stop $NAME"
    log "postgres already running on 127.0.0.1:$PG_PORT (pid $(pg_pidfile_pid))"
  else
    if [[ -e $PGDATA_DIR/postmaster.pid ]]; then
      log "removing stale $PGDATA_DIR/postmaster.pid"
      rm -f "$PGDATA_DIR/postmaster.pid"
    fi
    if port_open "$PG_PORT"; then
      die "port $PG_PORT is already in use by another process; stop it or set TIPCAST_PG_PORT"
    fi
    write_pg_conf
    if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$PG_LOG" -w -t "$WAIT_S" start >/dev/null 2>"$STATE/pg_ctl.err" 9>&-; then
      cat "$STATE/pg_ctl.err" >&2
      tail_log "$PG_LOG"
      die "postgres did not start on 127.0.0.1:$PG_PORT"
    fi
    log "postgres up on 127.0.0.1:$PG_PORT (pid $(pg_pidfile_pid), data $PGDATA_DIR)"
  fi
  local conn="host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres connect_timeout=5"
  local have
  have=$(psql -X -q -v ON_ERROR_STOP=1 "$conn" -tAc "SELECT 1 FROM pg_database WHERE datname = 'tipcast'") ||
    die "cannot query postgres on 127.0.0.1:$PG_PORT"
  if [[ $have != 1 ]]; then
    psql -X -q -v ON_ERROR_STOP=1 "$conn" -c "CREATE DATABASE tipcast" ||
      die "CREATE DATABASE tipcast failed"
    log "created database tipcast"
  fi
}

stop_pg() {
  if [[ ! -d $PGDATA_DIR ]] || ! pg_running; then
    log "postgres not running"
    return 0
  fi
  if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t "$WAIT_S" stop >/dev/null 2>"$STATE/pg_ctl.err"; then
    cat "$STATE/pg_ctl.err" >&2
    tail_log "$PG_LOG"
    die "pg_ctl stop failed"
  fi
  log "postgres stopped"
}

# Both servers must be running. Every key of this instance's Redis goes, and
# the database tipcast is dropped (its sessions cut) and created empty; the
# schema comes back with the next tipcastd's migrations.
reset_data() {
  [[ $(redis-cli -p "$REDIS_PORT" flushall 2>/dev/null) == OK ]] || die "FLUSHALL on 127.0.0.1:$REDIS_PORT failed"
  local conn="host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres connect_timeout=5"
  psql -X -q -v ON_ERROR_STOP=1 "$conn" -c "DROP DATABASE IF EXISTS tipcast WITH (FORCE)" \
    -c "CREATE DATABASE tipcast" || die "re-creating database tipcast failed"
  log "emptied: redis 127.0.0.1:$REDIS_PORT, database tipcast on 127.0.0.1:$PG_PORT"
}

# --- commands ---------------------------------------------------------------
case $CMD in
  start | reset)
    for b in redis-server redis-cli psql "$PGBIN/initdb" "$PGBIN/pg_ctl"; do
      command -v "$b" >/dev/null 2>&1 || die "$b not found (run scripts/deps.sh)"
    done
    lock_state
    start_redis
    start_pg
    if [[ $CMD == reset ]]; then reset_data; fi
    ;;
  stop)
    [[ -d $STATE ]] || { log "no state for instance '$NAME'"; exit 0; }
    lock_state
    rc=0
    stop_redis || rc=1
    stop_pg || rc=1
    exit $rc
    ;;
  stop-postgres)
    # For outage tests: PostgreSQL alone goes down; `start` brings it back.
    [[ -d $STATE ]] || { log "no state for instance '$NAME'"; exit 0; }
    lock_state
    stop_pg
    ;;
  status)
    r=down p=down
    if [[ -d $STATE ]]; then
      redis_running && r="up (port $(redis_conf_port), pid $(redis_pid))"
      pg_running && p="up (port $(pg_pidfile_port), pid $(pg_pidfile_pid))"
    fi
    echo "instance $NAME: redis $r; postgres $p; state $STATE"
    [[ $r != down && $p != down ]]
    ;;
  *) usage ;;
esac
