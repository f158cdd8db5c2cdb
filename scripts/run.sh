#!/usr/bin/env bash
# run.sh - run tipcast for real on this machine.
#
# Installs missing Debian packages, builds (build/, RelWithDebInfo), starts the
# `run` instance of Redis (127.0.0.1:6391) and PostgreSQL (127.0.0.1:5491)
# under .state/run/, prints where to connect and two demo tokens, then runs
# build/server/tipcastd in the foreground with the demo page (clients/web/, served at
# http://127.0.0.1:PORT/) and demo tokens on (--demo: development only).
# Once tipcastd is ready it seeds the demo: the gift catalog and the creator
# alice (scripts/demo.sql) and 10000 coins for each demo viewer
# (scripts/seed_demo.py); both are idempotent. Extra arguments go to
# tipcastd.
#
# Whatever ends this script stops what it started: tipcastd, then the
# services (when they were not already running). Ctrl-C, SIGTERM and SIGHUP
# stop it in order; so does a reader that went away (`run.sh | tee log`,
# then Ctrl-C: SIGPIPE is ignored, so writes just fail); and a guard process
# started first does it if run.sh itself dies without running its cleanup
# (SIGKILL). The guard logs to .state/INSTANCE/run-guard.log.
#
# Environment: TIPCAST_PORT (default 8080), TIPCAST_ADMIN_PORT (the admin
# API, default 8081), TIPCAST_REDIS_PORT,
# TIPCAST_PG_PORT (see scripts/services.sh), TIPCAST_INSTANCE (the
# services.sh instance, default `run`; another name needs both ports).
set -euo pipefail
trap '' PIPE

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$REPO"

PORT=${TIPCAST_PORT:-8080}
ADMIN_PORT=${TIPCAST_ADMIN_PORT:-8081}
# The demo payment provider's callback secret (docs/admin-api.md).
DEV_PAYMENT_SECRET=dev-payment-secret-0123456789
# The demo's JWT secret: 32 bytes, the least tipcastd accepts.
DEV_SECRET=dev-secret-change-me-0123456789ab
INSTANCE=${TIPCAST_INSTANCE:-run}
STATE=$REPO/.state/$INSTANCE

# Output may go to a pipe whose reader has gone: a failed write is not an
# error of ours.
log() { printf '==> %s\n' "$*" >&2 || true; }
die() { printf 'run.sh: error: %s\n' "$*" >&2 || true; exit 1; }

[[ $PORT =~ ^[0-9]+$ ]] && ((PORT > 0 && PORT < 65536)) || die "TIPCAST_PORT must be a port number (got '$PORT')"
[[ $INSTANCE =~ ^[A-Za-z0-9_-]+$ ]] || die "TIPCAST_INSTANCE must be a name of letters, digits, - and _"
# Said first, before anything is installed, built or started.
[[ $ADMIN_PORT =~ ^[0-9]+$ ]] && ((ADMIN_PORT > 0 && ADMIN_PORT < 65536 && ADMIN_PORT != PORT)) ||
  die "TIPCAST_ADMIN_PORT must be a port number other than TIPCAST_PORT (got '$ADMIN_PORT')"
if timeout 3 bash -c ": <>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null; then
  die "port $PORT is in use (something listens on 127.0.0.1:$PORT); set TIPCAST_PORT to a free port"
fi
if timeout 3 bash -c ": <>/dev/tcp/127.0.0.1/$ADMIN_PORT" 2>/dev/null; then
  die "port $ADMIN_PORT is in use (something listens on 127.0.0.1:$ADMIN_PORT); set TIPCAST_ADMIN_PORT to a free port"
fi

log "checking packages (scripts/deps.sh)"
bash scripts/deps.sh || die "installing packages failed"

log "building (build/, RelWithDebInfo)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo || die "cmake configure failed (see above)"
cmake --build build -j2 || die "build failed (see above)"
TIPCASTD=build/server/tipcastd
TOKEN=build/server/tipcast-token
[[ -x $TIPCASTD ]] || die "$TIPCASTD was not built"
[[ -x $TOKEN ]] || die "$TOKEN was not built"

STARTED_SERVICES=0
TIPCASTD_PID=""
GUARD_PID=""
mkdir -p "$STATE"
PIDFILE=$STATE/tipcastd.pid
rm -f "$PIDFILE"

# stop_started: stops tipcastd (its pid is in PIDFILE) and, when
# STARTED_SERVICES is 1, this instance's Redis and PostgreSQL. Used by the
# cleanup below and by the guard.
# shellcheck disable=SC2317  # called from traps and the guard
stop_started() {
  local pid i
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
    log "stopping tipcastd (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    # tipcastd drains its clients for up to 2 s, then stops its backends.
    for ((i = 0; i < 150; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "tipcastd (pid $pid) did not stop in 15 s: killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$PIDFILE"
  if ((STARTED_SERVICES)); then
    log "stopping Redis and PostgreSQL (instance $INSTANCE)"
    bash scripts/services.sh stop "$INSTANCE" || true
  fi
}

# The guard: a process of its own that waits for this script to end and
# then stops what it started, for when this script is killed before its
# cleanup can run. The cleanup below ends the guard once it has done the
# work itself.
start_guard() {
  local parent=$$
  (
    trap '' INT HUP PIPE
    trap 'exit 0' TERM
    exec </dev/null >>"$STATE/run-guard.log" 2>&1
    while kill -0 "$parent" 2>/dev/null; do sleep 0.5; done
    log "$(date -u +%FT%TZ) run.sh (pid $parent) ended without its cleanup; stopping what it started"
    stop_started
  ) &
  GUARD_PID=$!
}

# shellcheck disable=SC2317  # trap handler
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  # When stderr is a pipe whose reader is gone, say nothing more.
  printf '\n' >&2 2>/dev/null || exec >/dev/null 2>&1
  stop_started
  if [[ -n $GUARD_PID ]]; then
    kill -TERM "$GUARD_PID" 2>/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT

if bash scripts/services.sh status "$INSTANCE" >/dev/null 2>&1; then
  log "Redis and PostgreSQL (instance $INSTANCE) already running; leaving them running on exit"
else
  STARTED_SERVICES=1
fi
start_guard
log "starting Redis and PostgreSQL (instance $INSTANCE)"
bash scripts/services.sh start "$INSTANCE" || die "services did not start"
eval "$(bash scripts/services.sh env "$INSTANCE")"

VIEWER_TOKEN=$("$TOKEN" --secret "$DEV_SECRET" --sub bob --role viewer --ttl 86400) ||
  die "tipcast-token failed"
CREATOR_TOKEN=$("$TOKEN" --secret "$DEV_SECRET" --sub alice --role creator --ttl 86400) ||
  die "tipcast-token failed"
FINANCE_TOKEN=$("$TOKEN" --secret "$DEV_SECRET" --sub demo-finance --role finance --ttl 86400) ||
  die "tipcast-token failed"
OVERLAY_TOKEN=$("$TOKEN" --secret "$DEV_SECRET" --sub alice --role overlay --ttl 86400) ||
  die "tipcast-token failed"
# Only for seeding the demo wallets below; not printed.
ADMIN_TOKEN=$("$TOKEN" --secret "$DEV_SECRET" --sub demo-seed --role admin --ttl 600) ||
  die "tipcast-token failed"

cat <<EOF

tipcast is starting.
  Demo page:  http://127.0.0.1:$PORT/   (open it in two windows, e.g. ?user=bob and ?user=carol)
  Dashboard:  http://127.0.0.1:$PORT/dashboard.html?user=alice   (the creator alice's dashboard)
  Overlays (OBS browser sources; docs/clients.md):
    http://127.0.0.1:$PORT/overlay-alerts.html?token=$OVERLAY_TOKEN
    http://127.0.0.1:$PORT/overlay-board.html?period=day&n=5&token=$OVERLAY_TOKEN
    http://127.0.0.1:$PORT/overlay-goal.html?target=5000&period=day&title=Daily%20goal&token=$OVERLAY_TOKEN
  JS SDK:     http://127.0.0.1:$PORT/sdk/tipcast.js   (clients/js; docs/clients.md)
  WebSocket:  ws://127.0.0.1:$PORT/ws   (subprotocol tipcast.v1.json or tipcast.v1.msgpack)
  Health:     http://127.0.0.1:$PORT/healthz   readiness: http://127.0.0.1:$PORT/readyz
  Metrics:    http://127.0.0.1:$PORT/metrics   (Prometheus; docs/operations.md)
  Admin API:  http://127.0.0.1:$ADMIN_PORT/api/v1/   (docs/admin-api.md; payment-secret $DEV_PAYMENT_SECRET)
  Redis:      127.0.0.1:$TIPCAST_REDIS_PORT     PostgreSQL: $TIPCAST_PG
  JWT secret: $DEV_SECRET   (development only; tokens below are valid for 24 h)

  viewer token (sub=bob, role=viewer):
    $VIEWER_TOKEN
  creator token (sub=alice, role=creator):
    $CREATOR_TOKEN
  finance token for the admin API (sub=demo-finance, role=finance):
    $FINANCE_TOKEN

  Connect with e.g. ws://127.0.0.1:$PORT/ws?token=<token>; see docs/protocol.md.
  Mint more: $TOKEN --secret $DEV_SECRET --sub NAME --role ROLE --ttl 86400
    (ROLE: viewer, creator, admin, overlay; staff roles of the admin API: finance, operations, support, auditor)
  Press Ctrl-C to stop.

EOF

# tipcastd runs in its own session so that it gets exactly one SIGTERM from
# us (not also the terminal's SIGINT); we wait for it and forward signals.
setsid "$TIPCASTD" \
  --port "$PORT" \
  --redis-host 127.0.0.1 --redis-port "$TIPCAST_REDIS_PORT" \
  --pg "$TIPCAST_PG" \
  --jwt-secret "$DEV_SECRET" \
  --web-root "$REPO/clients/web" --web-sdk-root "$REPO/clients/js/src" --demo \
  --admin-listen "127.0.0.1:$ADMIN_PORT" --payment-secret "$DEV_PAYMENT_SECRET" \
  "$@" &
TIPCASTD_PID=$!
echo "$TIPCASTD_PID" >"$PIDFILE"
# shellcheck disable=SC2317  # trap handler
forward() {
  log "stopping tipcastd (pid $TIPCASTD_PID)"
  kill -TERM "$TIPCASTD_PID" 2>/dev/null || true
}
trap forward INT TERM HUP

# The demo's catalog, creator and wallets. tipcastd has applied the schema
# migrations once /readyz answers 200. A failed seeding leaves tipcastd
# running (it is fine; the demo page then shows what is missing).
if python3 scripts/seed_demo.py wait-ready --port "$PORT" --timeout 60 --pid "$TIPCASTD_PID"; then
  if psql "$TIPCAST_PG" -X -q -v ON_ERROR_STOP=1 -f scripts/demo.sql &&
    python3 scripts/seed_demo.py credit --port "$PORT" --admin-token "$ADMIN_TOKEN" --target 10000; then
    log "demo ready: open http://127.0.0.1:$PORT/"
  else
    log "warning: seeding the demo failed (see above); tipcastd keeps running"
  fi
else
  log "warning: tipcastd did not become ready; the demo is not seeded"
fi

rc=0
while :; do
  rc=0
  wait "$TIPCASTD_PID" || rc=$?
  # wait returns early (status > 128) when a trapped signal arrives; a
  # process not yet reaped still answers kill -0, so keep waiting for it.
  kill -0 "$TIPCASTD_PID" 2>/dev/null || break
done
TIPCASTD_PID=""
rm -f "$PIDFILE"
log "tipcastd exited with status $rc"
exit "$rc"
