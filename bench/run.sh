#!/usr/bin/env bash
# run.sh - the benchmark suite of issue 4: tipcast side by side with its
# references on this machine, in one run, written to docs/benchmarks.md.
#
#   bench/run.sh                 full run (about 15 minutes on 2 cores)
#   BENCH_QUICK=1 bench/run.sh   small N and short steps (about 3 minutes),
#                                for trying the script; its figures mean little
#
# From a clean clone it: installs what the benchmarks need (scripts/deps.sh
# with nginx-light, libnginx-mod-nchan, redis-tools, postgresql-contrib, and
# `npm install ws@8` into a scratch folder, never into the repo); builds
# tipcastd and tipcast-bench (RelWithDebInfo); starts its own Redis and
# PostgreSQL (scripts/services.sh instance `bench`, wiped at start); seeds
# creators bench-room-0.. and gift 1 (price 1); then runs the scenarios:
#   1 gift throughput   tipcast-bench --find-max (ack p99 <= 50 ms), against the
#                       Redis ceiling (redis-benchmark -P 16 EVALSHA of tipcast's
#                       own wallet_move.lua) and pgbench with pg-gift.sql
#   4 durability lag    at scenario 1's maximum: outbox backlog and PostgreSQL
#                       lag; then the ledger's drain rate after a PostgreSQL
#                       outage against a plain COPY of the same rows (orders
#                       and ledger rows), and of the order rows alone
#   2 hot-room fan-out  one room, 10,000 subscribers, tipcast / Nchan / Node ws
#                       at one steady rate, then each one's maximum rate
#   3 connections       idle authenticated connections over several tipcastd
#                       processes sharing one port (--reuse-port), RSS per conn
# Results go to $BENCH_OUT (JSON, logs); bench/report.py turns them into
# docs/benchmarks.md and copies the SVG charts to docs/bench/. Everything the
# script started is stopped on exit (trap), and every step has a time bound.
#
# Environment (defaults in brackets; quick-mode defaults after the slash):
#   BENCH_QUICK [0]            1: small N, short durations
#   BENCH_ONLY [1 4 2 3]       the scenarios to run, e.g. "1 2"
#   BENCH_BUILD_DIR [build]    cmake build tree
#   BENCH_OUT [/tmp/tipcast-bench-out]   raw results
#   BENCH_PEERS [../shared/peers]        nchan.conf, ws-broadcast.js, pg-gift.sql
#   BENCH_NODE_DIR [/tmp/tipcast-bench-peers]  scratch folder for `ws`
#   BENCH_INSTANCE [bench]     services.sh instance (its own data directories)
#   BENCH_REDIS_PORT [6396] BENCH_PG_PORT [5496] BENCH_PORT [8096] (tipcastd)
#   BENCH_NCHAN_PORT [8091] BENCH_NODE_PORT [8092]  the peers' ports
#   BENCH_IDLE_CONNS [100000/4000]   scenario 3's connections
#   BENCH_FANOUT_SUBS [10000/1000]   scenario 2's subscribers
#   BENCH_FANOUT_RATE [1/2]          scenario 2's steady events/s (whole room)
#   BENCH_S4_RATE [scenario 1's maximum, else 1000]  scenario 4's gifts/s
#   BENCH_TIPCASTD_ARGS []           extra tipcastd flags (e.g. for tuning)
#   BENCH_NO_DOC [0]           1: write the report (and charts) to $BENCH_OUT only
#   BENCH_BIN []               a tipcast-bench to use instead of the built one
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$REPO"

QUICK=${BENCH_QUICK:-0}
ONLY=${BENCH_ONLY:-1 4 2 3}
BUILD=${BENCH_BUILD_DIR:-build}
OUT=${BENCH_OUT:-/tmp/tipcast-bench-out}
PEERS=${BENCH_PEERS:-$REPO/../shared/peers}
NODE_DIR=${BENCH_NODE_DIR:-/tmp/tipcast-bench-peers}
NCHAN_PREFIX=/tmp/tipcast-bench-nchan
INSTANCE=${BENCH_INSTANCE:-bench}          # scripts/services.sh instance name
REDIS_PORT=${BENCH_REDIS_PORT:-6396}
PG_PORT=${BENCH_PG_PORT:-5496}
TC_PORT=${BENCH_PORT:-8096}
NCHAN_PORT=${BENCH_NCHAN_PORT:-8091} # nchan.conf's port (rewritten in our copy)
NODE_PORT=${BENCH_NODE_PORT:-8092}   # ws-broadcast.js's default
SECRET=bench-secret-not-for-production-0123456789abcdef
PG_CONN="host=127.0.0.1 port=$PG_PORT user=postgres dbname=tipcast"
PG_ADMIN="host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres"
PG_GIFT="host=127.0.0.1 port=$PG_PORT user=postgres dbname=pgbench_gift"
read -r -a EXTRA_TC_ARGS <<<"${BENCH_TIPCASTD_ARGS:-}"

# Sizes: full / quick.
pick() { if ((QUICK)); then echo "$2"; else echo "$1"; fi; }
ROOMS=$(pick 100 10)                        # creators seeded; scenario 1 and 3 rooms
S1_CONNS=$(pick 200 40)                     # scenario 1: connections, all senders
S1_ROOMS=$(pick 50 10)                      #   over this many rooms (4 members each)
S1_START=$(pick 1000 300)                   #   find-max starts here (gifts/s)
S1_STEP_S=$(pick 5 2)                       #   seconds per step
S1_MAX_STEPS=$(pick 16 8)                   #   bound on the steps (--duration)
CEIL_N=$(pick 400000 40000)                 # redis-benchmark requests
PGB_T=$(pick 20 5)                          # pgbench seconds
S2_SUBS=${BENCH_FANOUT_SUBS:-$(pick 10000 1000)}
S2_RATE=${BENCH_FANOUT_RATE:-$(pick 1 2)}
S2_P99_MS=100                               # the delivery latency bound
S2_PROCS=2                                  # bench processes sharing the room
S2_WARM=$(pick 6 3)
S2_DUR=$(pick 15 5)
S2_MAX_STEPS=$(pick 12 2)                   # x1.5 steps above the steady rate
S2_STEP_DUR=$(pick 6 3)
S3_CONNS=${BENCH_IDLE_CONNS:-$(pick 100000 4000)}
S3_PER_SERVER=$(pick 17000 2000)            # average per tipcastd (limit 19500)
S3_PER_CLIENT=$(pick 19000 2000)            # per bench process (fd limit 20000)
S3_HOLD=$(pick 30 15)                       # hold after opening (and bound on the plateau)
S3_OPEN_RATE=${BENCH_IDLE_OPEN_RATE:-1500}  # connections/s opened, all bench processes together
S4_DUR=$(pick 20 5)
S4_OUTAGE_S=$(pick 10 4)
TC_MAX_CONNS=19500                          # below ulimit -n 20000 with backend fds

BENCH_BIN=${BENCH_BIN:-}
TIPCASTD=""
STARTED_SERVICES=0
TC_PIDS=()
NCHAN_STARTED=0
NODE_PID=""
BG_PIDS=()

log() { printf '==> [%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
warn() { printf 'bench: warning: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }
has() { [[ " $ONLY " == *" $1 "* ]]; }

# fig KEY VALUE: one figure for the report (bench/report.py reads them).
fig() { printf '%s\t%s\n' "$1" "$2" >>"$OUT/figures.tsv"; }
# jnum FILE FILTER: a value from a bench JSON file, empty when absent.
jnum() {
  if [[ -s $1 ]]; then jq -r "($2) // empty" "$1" 2>/dev/null || true; fi
}
# calc EXPR: floating point arithmetic (awk), "" when an operand is empty.
calc() { awk "BEGIN { printf \"%.6g\", ($1) }" 2>/dev/null || true; }

rcli() { timeout 30 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
pg() { timeout "${PG_TIMEOUT:-60}" psql -X -q -v ON_ERROR_STOP=1 -tA "$@"; }

# ---------------------------------------------------------------------------
# Stopping what we started
# ---------------------------------------------------------------------------
stop_pid() { # PID: TERM, then KILL after 10 s
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
stop_tipcastd() {
  local p
  for p in "${TC_PIDS[@]}"; do stop_pid "$p"; done
  TC_PIDS=()
}
stop_nchan() {
  ((NCHAN_STARTED)) || return 0
  local master
  master=$(tr -dc 0-9 <"$NCHAN_PREFIX/nginx.pid" 2>/dev/null || true)
  timeout 10 nginx -c "$NCHAN_PREFIX/nchan.conf" -p "$NCHAN_PREFIX/" -s quit 2>/dev/null || true
  if [[ -n $master ]]; then
    local i
    for ((i = 0; i < 100; i++)); do kill -0 "$master" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$master" 2>/dev/null || true
  fi
  NCHAN_STARTED=0
}
stop_node() {
  [[ -n $NODE_PID ]] && stop_pid "$NODE_PID"
  NODE_PID=""
}
# shellcheck disable=SC2317  # trap handler
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  local p
  for p in "${BG_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  stop_tipcastd
  stop_nchan
  stop_node
  if ((STARTED_SERVICES)); then
    log "stopping Redis and PostgreSQL (instance $INSTANCE)"
    TIPCAST_REDIS_PORT=$REDIS_PORT TIPCAST_PG_PORT=$PG_PORT \
      timeout 90 bash scripts/services.sh stop "$INSTANCE" >/dev/null 2>&1 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# ---------------------------------------------------------------------------
# Setup: packages, build, services
# ---------------------------------------------------------------------------
setup_packages() {
  log "packages (scripts/deps.sh + the benchmark's own)"
  timeout 900 bash scripts/deps.sh nginx-light libnginx-mod-nchan redis-tools postgresql-contrib jq curl ||
    die "installing packages failed"
  if [[ -f $PEERS/ws-broadcast.js ]]; then
    if [[ ! -f $NODE_DIR/node_modules/ws/package.json ]]; then
      log "npm install ws@8 into $NODE_DIR (scratch, not in the repo)"
      mkdir -p "$NODE_DIR"
      (cd "$NODE_DIR" && timeout 300 npm install --no-audit --no-fund --silent ws@8) ||
        die "npm install ws@8 failed"
    fi
    cp -f "$PEERS/ws-broadcast.js" "$NODE_DIR/ws-broadcast.js"
  fi
}

setup_build() {
  log "building $BUILD (RelWithDebInfo)"
  timeout 300 cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$OUT/cmake.log" 2>&1 ||
    { tail -n 30 "$OUT/cmake.log" >&2; die "cmake configure failed"; }
  timeout 1200 cmake --build "$BUILD" -j"$(nproc)" >>"$OUT/cmake.log" 2>&1 ||
    { tail -n 30 "$OUT/cmake.log" >&2; die "build failed"; }
  TIPCASTD=$BUILD/server/tipcastd
  BENCH_BIN=${BENCH_BIN:-$BUILD/loadtest/tipcast-bench}
  [[ -x $TIPCASTD ]] || die "$TIPCASTD was not built"
  [[ -x $BENCH_BIN ]] || die "$BENCH_BIN was not built (loadtest/ missing?)"
}

setup_services() {
  if TIPCAST_REDIS_PORT=$REDIS_PORT TIPCAST_PG_PORT=$PG_PORT \
    bash scripts/services.sh status "$INSTANCE" >/dev/null 2>&1; then
    log "instance $INSTANCE already running; it is left running on exit"
  else
    STARTED_SERVICES=1
  fi
  log "Redis 127.0.0.1:$REDIS_PORT and PostgreSQL 127.0.0.1:$PG_PORT (instance $INSTANCE)"
  TIPCAST_REDIS_PORT=$REDIS_PORT TIPCAST_PG_PORT=$PG_PORT \
    timeout 120 bash scripts/services.sh start "$INSTANCE" || die "services did not start"
  # A clean slate: the instance is the benchmark's own.
  rcli flushall >/dev/null || die "FLUSHALL failed"
  pg "$PG_ADMIN" -c "DROP DATABASE IF EXISTS tipcast WITH (FORCE)" -c "CREATE DATABASE tipcast" ||
    die "recreating database tipcast failed"
}

# ---------------------------------------------------------------------------
# Servers under test
# ---------------------------------------------------------------------------
# start_tipcastd COUNT MAXCONNS [TOLERATE]: COUNT processes on TC_PORT
# (SO_REUSEPORT when more than one); the first applies the migrations before
# the others start. With TOLERATE=1 a process after the first that does not
# come up is dropped from TC_PIDS (with a warning) instead of failing the run.
start_tipcastd() {
  local count=$1 maxc=$2 tolerate=${3:-0} i reuse=0
  ((count > 1)) && reuse=1
  for ((i = 0; i < count; i++)); do
    "$TIPCASTD" --port "$TC_PORT" --reuse-port "$reuse" \
      --redis-host 127.0.0.1 --redis-port "$REDIS_PORT" --pg "$PG_CONN" \
      --jwt-secret "$SECRET" --max-msgs-per-s 100000 --max-burst 1000000 \
      --max-connections "$maxc" --log-level warn "${EXTRA_TC_ARGS[@]}" \
      >>"$OUT/tipcastd-$i.log" 2>&1 &
    TC_PIDS+=($!)
    if ((i == 0)); then
      wait_ready "${TC_PIDS[0]}" || die "tipcastd did not become ready (see $OUT/tipcastd-0.log)"
    fi
  done
  sleep 1
  local alive=()
  for i in "${!TC_PIDS[@]}"; do
    if kill -0 "${TC_PIDS[$i]}" 2>/dev/null; then
      alive+=("${TC_PIDS[$i]}")
    elif ((i > 0 && tolerate)); then
      warn "tipcastd $i exited (see $OUT/tipcastd-$i.log); going on with the others"
      wait "${TC_PIDS[$i]}" 2>/dev/null || true
    else
      die "tipcastd $i exited (see $OUT/tipcastd-$i.log)"
    fi
  done
  TC_PIDS=("${alive[@]}")
  wait_ready "${TC_PIDS[0]}" || die "tipcastd not ready"
}
wait_ready() { # PID [PORT]
  local i port=${2:-$TC_PORT}
  for ((i = 0; i < 300; i++)); do
    kill -0 "$1" 2>/dev/null || return 1
    [[ $(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz" || true) == 200 ]] && return 0
    sleep 0.1
  done
  return 1
}

seed() {
  log "seeding gift 1 (price 1) and $ROOMS live creators bench-room-0..$((ROOMS - 1))"
  pg "$PG_CONN" -c "INSERT INTO gifts (id, name, price, animation) VALUES (1, 'Rose', 1, 'rose')
      ON CONFLICT (id) DO UPDATE SET price = 1, enabled = true" \
    -c "INSERT INTO creators (id, display_name, live)
      SELECT 'bench-room-' || g, 'Bench ' || g, true FROM generate_series(0, $((ROOMS - 1))) g
      ON CONFLICT (id) DO UPDATE SET live = true" || die "seeding failed"
  sleep 1.5 # the catalog reloads on NOTIFY
}

port_busy() { timeout 2 bash -c ": <>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
start_nchan() {
  [[ -f $PEERS/nchan.conf ]] || return 1
  if port_busy "$NCHAN_PORT"; then
    warn "port $NCHAN_PORT is in use by another process (set BENCH_NCHAN_PORT)"
    return 1
  fi
  mkdir -p "$NCHAN_PREFIX/tmp"
  sed "s/127\.0\.0\.1:8091/127.0.0.1:$NCHAN_PORT/" "$PEERS/nchan.conf" >"$NCHAN_PREFIX/nchan.conf"
  timeout 20 nginx -c "$NCHAN_PREFIX/nchan.conf" -p "$NCHAN_PREFIX/" >"$OUT/nchan.log" 2>&1 || {
    cat "$OUT/nchan.log" >&2
    return 1
  }
  NCHAN_STARTED=1
  local i
  for ((i = 0; i < 100; i++)); do
    port_busy "$NCHAN_PORT" && return 0
    sleep 0.1
  done
  return 1
}
nchan_worker_pid() {
  local master
  master=$(tr -dc 0-9 <"$NCHAN_PREFIX/nginx.pid")
  pgrep -P "$master" | head -n 1
}
start_node() {
  [[ -f $NODE_DIR/ws-broadcast.js ]] || return 1
  if port_busy "$NODE_PORT"; then
    warn "port $NODE_PORT is in use by another process (set BENCH_NODE_PORT)"
    return 1
  fi
  node "$NODE_DIR/ws-broadcast.js" "$NODE_PORT" >"$OUT/node.log" 2>&1 &
  NODE_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    port_busy "$NODE_PORT" && return 0
    kill -0 "$NODE_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------------------
# Running the load generator
# ---------------------------------------------------------------------------
# bench NAME BOUND_S ARGS...: one tipcast-bench run in the foreground, JSON
# and SVG under $OUT/NAME.*; returns its exit status.
bench() {
  local name=$1 bound=$2
  shift 2
  local rc=0
  # In the background and waited for, so that Ctrl-C reaches the trap at once
  # (bash runs traps only after a foreground command ends).
  timeout -k 5 "$bound" "$BENCH_BIN" --quiet --json "$OUT/$name.json" --svg "$OUT/$name.svg" \
    "$@" >"$OUT/$name.log" 2>&1 &
  BG_PIDS+=($!)
  wait_bg || rc=$?
  ((rc == 0)) || warn "tipcast-bench $name exited with $rc (see $OUT/$name.log)"
  return "$rc"
}
# bench_bg NAME BOUND_S ARGS...: the same in the background (pid in BG_PIDS).
bench_bg() {
  local name=$1 bound=$2
  shift 2
  timeout -k 5 "$bound" "$BENCH_BIN" --quiet --json "$OUT/$name.json" --svg "$OUT/$name.svg" \
    "$@" >"$OUT/$name.log" 2>&1 &
  BG_PIDS+=($!)
}
wait_bg() {
  local p rc=0
  for p in "${BG_PIDS[@]}"; do wait "$p" || rc=$?; done
  BG_PIDS=()
  return "$rc"
}

# ---------------------------------------------------------------------------
# Scenario 1: gift throughput
# ---------------------------------------------------------------------------
S1_MAX=""
scenario1() {
  log "scenario 1: tipcast --find-max (ack p99 <= 50 ms), $S1_CONNS senders over $S1_ROOMS rooms"
  bench s1-tipcast $((S1_STEP_S * S1_MAX_STEPS + 120)) --target tipcast --port "$TC_PORT" --secret "$SECRET" \
    --connections "$S1_CONNS" --senders "$S1_CONNS" --rooms "$S1_ROOMS" \
    --rate "$S1_START" --find-max --p99-bound-ms 50 --step-seconds "$S1_STEP_S" \
    --warmup 2 --duration $((S1_STEP_S * S1_MAX_STEPS)) --server-pid "${TC_PIDS[0]}" \
    --redis "127.0.0.1:$REDIS_PORT" --pg "$PG_CONN" || true
  S1_MAX=$(jnum "$OUT/s1-tipcast.json" .find_max.max_rate)
  fig s1.tipcast_max "$S1_MAX"
  log "  tipcast max: ${S1_MAX:-?} gifts/s"

  redis_ceiling
  pgbench_baseline
}

# The Redis ceiling: tipcast's own wallet script with EVALSHA, pipelined,
# on the same Redis. Keys live in database 9 (tipcastd uses 0, so its outbox
# consumers never see these entries); FLUSHDB removes them afterwards.
redis_ceiling() {
  local lua=server/lua/wallet_move.lua sha db=9 u=bench-ceiling
  sha=$(rcli -x script load <"$lua") || { warn "SCRIPT LOAD failed"; return 0; }
  rcli -n "$db" flushdb >/dev/null
  rcli -n "$db" set "tc:{w:0}:bal:$u" 1000000000000000 >/dev/null # 1e15 < 2^53
  log "scenario 1: Redis ceiling, redis-benchmark -P 16 -c 50 -n $CEIL_N EVALSHA ${sha:0:12}.."
  # ARGV: kind uid room gift name animation count price amount combo text
  #       request-id ts fingerprint idem-ttl-ms backlog-bound role
  local out rc=0
  out=$(timeout 300 redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" --dbnum "$db" -P 16 -c 50 \
    -n "$CEIL_N" -r 1000000000 --csv \
    evalsha "$sha" 3 "tc:{w:0}:bal:$u" "tc:{w:0}:idem:$u:__rand_int__" "tc:{w:0}:outbox" \
    gift "$u" bench-room-0 1 Rose rose 1 1 1 c1 "" "req-__rand_int__" "$(date +%s%3N)" fp1 \
    600000 1000000000000 viewer 2>&1) || rc=$?
  printf '%s\n' "$out" >"$OUT/s1-redis-ceiling.log"
  local rps xlen bal
  rps=$(printf '%s\n' "$out" | awk -F'","' '/^"(evalsha|EVALSHA)/ { print $2 }' | tr -d '"' | tail -n 1)
  xlen=$(rcli -n "$db" xlen "tc:{w:0}:outbox" || true)
  bal=$(rcli -n "$db" get "tc:{w:0}:bal:$u" || true)
  rcli -n "$db" flushdb >/dev/null || true
  ((rc == 0)) || warn "redis-benchmark exited with $rc (see $OUT/s1-redis-ceiling.log)"
  # Every call must have been a real debit (not an error reply): the outbox
  # grew by about N (a few request ids repeat and are replays).
  if [[ -n $xlen ]] && ((xlen < CEIL_N * 9 / 10)); then
    warn "only $xlen of $CEIL_N EVALSHA calls debited (see $OUT/s1-redis-ceiling.log)"
  fi
  fig s1.redis_ceiling "$rps"
  fig s1.redis_ceiling_debits "$xlen"
  fig s1.redis_ceiling_calls "$CEIL_N"
  log "  Redis ceiling: ${rps:-?} calls/s ($xlen debits, balance left $bal)"
}

pgbench_baseline() {
  local sql=$PEERS/pg-gift.sql
  if [[ ! -f $sql ]]; then
    warn "$sql missing: no pgbench baseline"
    return 0
  fi
  log "scenario 1: pgbench -c 16 -j 2 -T $PGB_T with pg-gift.sql (database pgbench_gift)"
  if ! pg "$PG_ADMIN" -c "DROP DATABASE IF EXISTS pgbench_gift WITH (FORCE)" \
    -c "CREATE DATABASE pgbench_gift" ||
    ! pg "$PG_GIFT" -c "CREATE TABLE wallet(uid bigint primary key, bal bigint not null)" \
      -c "INSERT INTO wallet SELECT g, 1000000000 FROM generate_series(1,10000) g" \
      -c "CREATE TABLE orders(id bigserial primary key, uid bigint, room bigint, gift int, cost bigint, at timestamptz default now())" \
      -c "VACUUM ANALYZE"; then
    warn "pgbench tables failed"
    return 0
  fi
  local out tps
  out=$(timeout $((PGB_T + 60)) pgbench -n -f "$sql" -c 16 -j 2 -T "$PGB_T" "$PG_GIFT" 2>&1) ||
    warn "pgbench failed (see $OUT/s1-pgbench.log)"
  printf '%s\n' "$out" >"$OUT/s1-pgbench.log"
  tps=$(printf '%s\n' "$out" | awk '/^tps = / { print $3; exit }')
  fig s1.pgbench_tps "$tps"
  log "  pgbench: ${tps:-?} tps"
  pg "$PG_ADMIN" -c "DROP DATABASE IF EXISTS pgbench_gift WITH (FORCE)" || true
}

# ---------------------------------------------------------------------------
# Scenario 4: durability lag
# ---------------------------------------------------------------------------
orders_count() { PG_TIMEOUT=10 pg "$PG_CONN" -c "SELECT count(*) FROM orders" 2>/dev/null || true; }
outbox_backlog() { # sum of XLEN over the 16 default shards
  local s sum=0 n
  for ((s = 0; s < 16; s++)); do
    n=$(rcli xlen "tc:{w:$s}:outbox" 2>/dev/null || echo 0)
    sum=$((sum + ${n:-0}))
  done
  echo "$sum"
}
# wait_orders TARGET BOUND_S: polls until PostgreSQL holds TARGET orders;
# prints the seconds it took (or nothing after the bound).
wait_orders() {
  local target=$1 bound=$2 t0 n
  t0=$(date +%s%N)
  while (($(date +%s%N) - t0 < bound * 1000000000)); do
    n=$(orders_count)
    if [[ -n $n ]] && ((n >= target)); then
      calc "($(date +%s%N) - $t0) / 1e9"
      return 0
    fi
    sleep 0.1
  done
}

scenario4() {
  local rate=${BENCH_S4_RATE:-${S1_MAX:-}}
  [[ -n $rate && $rate != 0 ]] || rate=$S1_START
  rate=${rate%.*}
  log "scenario 4: $S4_DUR s at $rate gifts/s (scenario 1's maximum), backlog and PostgreSQL lag"
  local before
  before=$(orders_count)
  bench s4-steady $((S4_DUR + 60)) --target tipcast --port "$TC_PORT" --secret "$SECRET" \
    --connections "$S1_CONNS" --senders "$S1_CONNS" --rooms "$S1_ROOMS" --rate "$rate" \
    --warmup 2 --duration "$S4_DUR" --server-pid "${TC_PIDS[0]}" \
    --redis "127.0.0.1:$REDIS_PORT" --pg "$PG_CONN" || true
  local acked lag
  acked=$(jnum "$OUT/s4-steady.json" .totals.acked)
  lag=""
  [[ -n $acked && -n $before ]] && lag=$(wait_orders $((before + acked)) 60)
  fig s4.rate "$rate"
  fig s4.backlog_max "$(jnum "$OUT/s4-steady.json" .durability.backlog_max)"
  fig s4.pg_orders_per_s "$(jnum "$OUT/s4-steady.json" .durability.pg_orders_per_s)"
  fig s4.acks_per_s "$(jnum "$OUT/s4-steady.json" .rates.acks_per_s)"
  fig s4.drain_after_stop_s "$lag"
  log "  backlog max $(jnum "$OUT/s4-steady.json" .durability.backlog_max), PostgreSQL caught up ${lag:-(not within 60 s)} s after the last ack"

  # Flush capacity: with PostgreSQL down the outbox fills at the maximum
  # rate; once it is back, the ledger drains it as fast as it can.
  log "scenario 4: PostgreSQL stopped, $S4_OUTAGE_S s of gifts fill the outbox"
  local env=(TIPCAST_REDIS_PORT="$REDIS_PORT" TIPCAST_PG_PORT="$PG_PORT")
  before=$(orders_count)
  env "${env[@]}" timeout 90 bash scripts/services.sh stop-postgres "$INSTANCE" >/dev/null 2>&1 ||
    warn "stopping PostgreSQL failed"
  bench s4-outage $((S4_OUTAGE_S + 60)) --target tipcast --port "$TC_PORT" --secret "$SECRET" \
    --connections "$S1_CONNS" --senders "$S1_CONNS" --rooms "$S1_ROOMS" --rate "$rate" \
    --warmup 1 --duration "$S4_OUTAGE_S" || true
  local backlog
  backlog=$(outbox_backlog)
  acked=$(jnum "$OUT/s4-outage.json" .totals.acked)
  log "  outbox backlog $backlog entries; starting PostgreSQL"
  local t_restart
  t_restart=$(date +%s%N)
  env "${env[@]}" timeout 120 bash scripts/services.sh start "$INSTANCE" >/dev/null 2>&1 ||
    die "PostgreSQL did not come back"
  # Drain rate: from the first new row to the last one. Bounds: 90 s for the
  # ledger to reconnect, then 10 s without a new row.
  local t_first="" t_last="" n first_n="" target last_n="" now
  target=$((before + ${acked:-0}))
  while :; do
    now=$(date +%s%N)
    if [[ -z $t_first ]]; then
      ((now - t_restart < 90000000000)) || break
    else
      ((now - t_last < 10000000000)) || break
    fi
    n=$(orders_count)
    if [[ -n $n ]]; then
      if [[ -z $t_first ]] && ((n > before)); then t_first=$now first_n=$n; fi
      if [[ -n $t_first && $n != "$last_n" ]]; then t_last=$now last_n=$n; fi
      ((n >= target)) && break
    fi
    sleep 0.05
  done
  local rows drain_rps=""
  rows=$((${last_n:-$before} - before))
  if [[ -n $t_first && $t_last != "$t_first" ]]; then
    drain_rps=$(calc "(${last_n} - ${first_n}) / (($t_last - $t_first) / 1e9)")
  fi
  [[ -n $t_first ]] && fig s4.reconnect_s "$(calc "($t_first - $t_restart) / 1e9")"
  fig s4.outage_backlog "$backlog"
  # Every order the ledger drains is three rows, written in one transaction
  # with it: the orders row and two ledger rows (sender -A, creator +A).
  fig s4.drain_rows "$rows"
  fig s4.drain_rows_per_s "$drain_rps"
  fig s4.drain_all_rows_per_s "$([[ -n $drain_rps ]] && calc "3 * $drain_rps")"
  log "  ledger drained $rows orders at ${drain_rps:-?} orders/s (3 rows each)"
  copy_baseline "$((rows > 10000 ? rows : 10000))"
}

# A plain COPY of the rows the ledger writes for N orders: N order rows and
# 2N ledger rows, into scratch tables with the columns and indexes of orders
# and ledger (ledger's id from a sequence of its own, as bigserial does; no
# triggers, nothing else in the transaction). Each COPY is timed on its own:
# the order rows alone are the stricter baseline, all rows the same rows.
copy_baseline() {
  local n=$1 fo=/tmp/tipcast-bench-copy-orders.csv fl=/tmp/tipcast-bench-copy-ledger.csv t0 t1 t2
  rm -f "$fo" "$fl"
  pg "$PG_CONN" -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS bench_copy, bench_copy_ledger" \
    -c "DROP SEQUENCE IF EXISTS bench_copy_ledger_id" \
    -c "CREATE TABLE bench_copy (LIKE orders INCLUDING DEFAULTS INCLUDING INDEXES)" \
    -c "CREATE SEQUENCE bench_copy_ledger_id" \
    -c "CREATE TABLE bench_copy_ledger (LIKE ledger INCLUDING INDEXES)" \
    -c "ALTER TABLE bench_copy_ledger ALTER id SET DEFAULT nextval('bench_copy_ledger_id')" \
    -c "COPY (SELECT 'x-' || g || '-0', 'gift', 'bench-u' || (g % 1000), 'bench-room-' || (g % 50),
                     'bench-room-' || (g % 50), 1, 'Rose', 1, 1, 1, 't' || g, NULL, 'req-' || g,
                     1000000 - g, now(), now()
              FROM generate_series(1, $n) g) TO '$fo' WITH (FORMAT csv)" \
    -c "COPY (SELECT 'x-' || g || '-0', v.account, v.delta, 'gift', NULL, now()
              FROM generate_series(1, $n) g,
                   LATERAL (VALUES ('user:bench-u' || (g % 1000), -1),
                                   ('creator:bench-room-' || (g % 50), 1)) v (account, delta))
        TO '$fl' WITH (FORMAT csv)" ||
    { warn "COPY baseline setup failed"; return 0; }
  t0=$(date +%s%N)
  pg "$PG_CONN" -c "COPY bench_copy FROM '$fo' WITH (FORMAT csv)" || { warn "COPY failed"; return 0; }
  t1=$(date +%s%N)
  pg "$PG_CONN" -c "COPY bench_copy_ledger (movement_id, account, delta, kind, note, created_at)
                    FROM '$fl' WITH (FORMAT csv)" || { warn "COPY failed"; return 0; }
  t2=$(date +%s%N)
  pg "$PG_CONN" -c "DROP TABLE bench_copy, bench_copy_ledger" -c "DROP SEQUENCE bench_copy_ledger_id" || true
  rm -f "$fo" "$fl"
  local rps all_rps
  rps=$(calc "$n / (($t1 - $t0) / 1e9)")
  all_rps=$(calc "3 * $n / (($t2 - $t0) / 1e9)")
  fig s4.copy_rows "$n"
  fig s4.copy_rows_per_s "$rps"
  fig s4.copy_all_rows "$((3 * n))"
  fig s4.copy_all_rows_per_s "$all_rps"
  log "  plain COPY: $n order rows at $rps rows/s; with the $((2 * n)) ledger rows $all_rps rows/s"
}

# ---------------------------------------------------------------------------
# Scenario 2: hot-room fan-out
# ---------------------------------------------------------------------------
# fanout NAME TARGET PORT SERVER_PID RATE WARMUP DURATION: S2_PROCS bench
# processes, S2_SUBS connections in all in one room, each sending RATE/PROCS.
fanout() {
  local name=$1 target=$2 port=$3 spid=$4 rate=$5 warm=$6 dur=$7 i per lo hi
  per=$((S2_SUBS / S2_PROCS))
  local extra=()
  for ((i = 0; i < S2_PROCS; i++)); do
    lo=$((2 + 8 * i))
    hi=$((lo + 7))
    # Each process its own viewers (bench-u<base>..).
    [[ $target == tipcast ]] && extra=(--secret "$SECRET" --user-base $((i * 100000)))
    bench_bg "$name-p$i" $((warm + dur + 60)) --target "$target" --port "$port" "${extra[@]}" \
      --connections "$per" --senders 1 --rooms 1 --rate "$(calc "$rate / $S2_PROCS")" \
      --frame-bytes 100 --open-rate 5000 --warmup "$warm" --duration "$dur" \
      --source-addrs "$lo-$hi" --server-pid "$spid"
  done
  wait_bg || true
}
# fanout_sum NAME: "deliveries/s p99_ms cpu_us_per_delivery errors" over the processes
fanout_sum() {
  local name=$1 i f d p c e sum_d=0 max_p=0 cpu="" dur err=0
  for ((i = 0; i < S2_PROCS; i++)); do
    f=$OUT/$name-p$i.json
    d=$(jnum "$f" .rates.deliveries_per_s)
    p=$(jnum "$f" .delivery_latency_ms.p99)
    e=$(jnum "$f" '[.totals.errors // {} | .[]] | add')
    sum_d=$(calc "$sum_d + ${d:-0}")
    [[ -n $p ]] && max_p=$(calc "($p > $max_p) ? $p : $max_p")
    [[ -z $p ]] && max_p=999999
    err=$((err + ${e:-0}))
    if ((i == 0)); then
      c=$(jnum "$f" .server.cpu_s)
      dur=$(jnum "$f" '.rates.measured_s // .config.duration')
      [[ -n $c && -n $dur ]] && cpu=$(calc "($sum_d > 0) ? $c / $dur * 1e6 : 0")
    fi
  done
  [[ -n $cpu ]] && cpu=$(calc "($sum_d > 0) ? $cpu / $sum_d : 0")
  echo "$sum_d $max_p ${cpu:-nan} $err"
}

fanout_target() { # TARGET PORT PID
  local target=$1 port=$2 spid=$3 d p c e
  log "scenario 2: $target, $S2_SUBS subscribers in one room, $S2_RATE events/s"
  fanout "s2-$target" "$target" "$port" "$spid" "$S2_RATE" "$S2_WARM" "$S2_DUR"
  read -r d p c e < <(fanout_sum "s2-$target")
  fig "s2.$target.rate" "$S2_RATE"
  fig "s2.$target.deliveries_per_s" "$d"
  fig "s2.$target.p99_ms" "$p"
  fig "s2.$target.cpu_us_per_delivery" "$c"
  fig "s2.$target.errors" "$e"
  log "  $target: $d deliveries/s, p99 $p ms, $c us CPU per delivery, $e errors"
  # The maximum: x1.5 steps while the server keeps up (deliveries >= 90% of
  # rate x subscribers, no errors). Two maxima come out of the steps: the
  # highest rate with delivery p99 <= 100 ms, and the peak deliveries/s.
  local rate=$S2_RATE best_rate="" best_d="" peak_d=$d k keeps
  keeps() { awk "BEGIN { exit !($2 >= 0.9 * $1 * $S2_SUBS && $4 == 0) }"; }
  held() { awk "BEGIN { exit !($3 <= $S2_P99_MS && $4 == 0) }"; }
  if held "$S2_RATE" "$d" "$p" "$e"; then best_rate=$S2_RATE best_d=$d; fi
  keeps=0
  keeps "$S2_RATE" "$d" "$p" "$e" && keeps=1
  for ((k = 1; k <= S2_MAX_STEPS && keeps; k++)); do
    rate=$(calc "$rate * 1.5")
    fanout "s2-$target-max$k" "$target" "$port" "$spid" "$rate" "$S2_WARM" "$S2_STEP_DUR"
    read -r d p c e < <(fanout_sum "s2-$target-max$k")
    log "  $target at $rate events/s: $d deliveries/s, p99 $p ms, $c us CPU per delivery, $e errors"
    fig "s2.$target.step$k" "$rate $d $p $e $c"
    if held "$rate" "$d" "$p" "$e"; then best_rate=$rate best_d=$d; fi
    [[ $(calc "$d > $peak_d") == 1 ]] && peak_d=$d
    keeps "$rate" "$d" "$p" "$e" || keeps=0
  done
  fig "s2.$target.max_rate" "$best_rate"
  fig "s2.$target.max_deliveries_per_s" "$best_d"
  fig "s2.$target.peak_deliveries_per_s" "$peak_d"
  fig "s2.$target.max_capped" "$keeps"
}

scenario2() {
  fanout_target tipcast "$TC_PORT" "${TC_PIDS[0]}"
  if start_nchan; then
    fanout_target nchan "$NCHAN_PORT" "$(nchan_worker_pid)"
    stop_nchan
  else
    warn "Nchan did not start: no Nchan reference"
    fig s2.nchan.missing 1
  fi
  if start_node; then
    fanout_target ws "$NODE_PORT" "$NODE_PID"
    stop_node
  else
    warn "Node ws-broadcast did not start: no Node reference"
    fig s2.ws.missing 1
  fi
}

# ---------------------------------------------------------------------------
# Scenario 3: idle connections
# ---------------------------------------------------------------------------
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
S3_PORTS=()
established() { # server-side ESTABLISHED sockets on the tipcastd port(s)
  local ports=("${S3_PORTS[@]}") f="" p
  ((${#ports[@]})) || ports=("$TC_PORT")
  for p in "${ports[@]}"; do f+="${f:+ or }sport = :$p"; done
  ss -Htn state established "( $f )" 2>/dev/null | wc -l
}
# start_tipcastd_ports COUNT MAXCONNS: COUNT processes, each on its own free
# port from TC_PORT up (busy ports are skipped); the ports go to S3_PORTS.
start_tipcastd_ports() {
  local count=$1 maxc=$2 i port=$TC_PORT
  S3_PORTS=()
  for ((i = 0; i < count; i++)); do
    while port_busy "$port"; do port=$((port + 1)); done
    ((port < TC_PORT + 100)) || die "no free port for tipcastd from $TC_PORT"
    "$TIPCASTD" --port "$port" \
      --redis-host 127.0.0.1 --redis-port "$REDIS_PORT" --pg "$PG_CONN" \
      --jwt-secret "$SECRET" --max-msgs-per-s 100000 --max-burst 1000000 \
      --max-connections "$maxc" --log-level warn "${EXTRA_TC_ARGS[@]}" \
      >>"$OUT/tipcastd-port$i.log" 2>&1 &
    TC_PIDS+=($!)
    S3_PORTS+=("$port")
    sleep 0.3 # a bind failure shows before readyz is asked
    wait_ready "${TC_PIDS[$i]}" "$port" ||
      die "tipcastd on port $port did not become ready (see $OUT/tipcastd-port$i.log)"
    port=$((port + 1))
  done
}

scenario3() {
  local servers clients i
  servers=$(((S3_CONNS + S3_PER_SERVER - 1) / S3_PER_SERVER))
  clients=$(((S3_CONNS + S3_PER_CLIENT - 1) / S3_PER_CLIENT))
  log "scenario 3: $S3_CONNS idle connections, $servers tipcastd (--reuse-port) x $clients bench processes"
  stop_tipcastd
  start_tipcastd "$servers" "$TC_MAX_CONNS" 1
  local own_ports=0
  if ((${#TC_PIDS[@]} < servers)); then
    # Without a working --reuse-port only the first process listens: give
    # each process its own port and each bench process its own server.
    warn "only ${#TC_PIDS[@]} of $servers tipcastd processes listen (--reuse-port); one port each instead"
    fig s3.servers_failed $((servers - ${#TC_PIDS[@]}))
    stop_tipcastd
    start_tipcastd_ports "$servers" "$TC_MAX_CONNS"
    own_ports=1 clients=$servers
  fi
  sleep 1
  local rss0=() p
  for p in "${TC_PIDS[@]}"; do rss0+=("$(rss_kb "$p")"); done
  # Every connection asked for: the first S3_CONNS % clients processes
  # open one more than the others.
  local per=$((S3_CONNS / clients)) rem=$((S3_CONNS % clients)) lo pids_args=() open_rate hold
  # Opening is the expensive part (handshake, token, join): 3000 per second
  # in all starved six tipcastd on 2 cores; 1500 gets through.
  open_rate=$((S3_OPEN_RATE / clients))
  ((open_rate >= 100)) || open_rate=100
  hold=$((per / open_rate + S3_HOLD))
  for p in "${TC_PIDS[@]}"; do pids_args+=(--server-pid "$p"); done
  for ((i = 0; i < clients; i++)); do
    lo=$((40 + 4 * i))
    bench_bg "s3-idle-p$i" $((hold + 90)) --target tipcast --port "${S3_PORTS[$((i * own_ports))]:-$TC_PORT}" --secret "$SECRET" \
      --idle --connections $((per + (i < rem))) --open-rate "$open_rate" --rooms "$ROOMS" --senders 0 \
      --warmup 0 --duration "$S3_HOLD" \
      --source-addrs "$lo-$((lo + 3))" --user-base $((i * 100000)) "${pids_args[@]}"
  done
  # The plateau: the count stops growing for 5 s (or reaches the target).
  # RSS is read whenever the count is at a new high, so a bench process
  # that gives up (and closes its connections) does not spoil the figure.
  local n last=-1 still=0 t0 held=0 rss_peak=()
  t0=$SECONDS
  while ((SECONDS - t0 < hold)); do
    n=$(established)
    if ((n > held)); then
      held=$n rss_peak=()
      for p in "${TC_PIDS[@]}"; do rss_peak+=("$(rss_kb "$p")"); done
    fi
    if ((n >= S3_CONNS)); then still=5; fi
    if ((n == last)); then still=$((still + 1)); else still=0; fi
    last=$n
    ((still >= 5 && n > 0)) && break
    sleep 1
  done
  sleep 2 # joins answered, buffers settled
  n=$(established)
  local rss1=() sum_delta=0 k
  if ((n >= held)); then
    for k in "${!TC_PIDS[@]}"; do rss1+=("$(rss_kb "${TC_PIDS[$k]}")"); done
  else
    n=$held rss1=("${rss_peak[@]}")
  fi
  for k in "${!TC_PIDS[@]}"; do
    sum_delta=$((sum_delta + ${rss1[$k]:-0} - ${rss0[$k]}))
  done
  local per_conn=""
  ((n > 0)) && per_conn=$(calc "$sum_delta / $n")
  fig s3.target "$S3_CONNS"
  fig s3.servers "$servers"
  fig s3.clients "$clients"
  fig s3.held "$n"
  fig s3.rss_delta_kb "$sum_delta"
  fig s3.rss_kb_per_conn "$per_conn"
  fig s3.rss_kb_each "${rss1[*]}"
  log "  $n connections held; RSS +$sum_delta KiB = $per_conn KiB per connection"
  for p in "${BG_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait_bg || true
  fig s3.joined "$(s3_joined "$clients" "$per" "$rem")"
  stop_tipcastd
}
# s3_joined CLIENTS PER REM: connections the bench processes got authenticated and
# joined (from their JSON; a process that gave up writes none, only
# "tipcast-bench: F of N connections failed or did not get ready").
s3_joined() {
  local i j f sum=0
  for ((i = 0; i < $1; i++)); do
    j=$(jnum "$OUT/s3-idle-p$i.json" .totals.connections.joined)
    if [[ -z $j ]]; then
      f=$(sed -n 's/^tipcast-bench: \([0-9]*\) of [0-9]* connections failed.*/\1/p' "$OUT/s3-idle-p$i.log" | head -n 1)
      local n_i=$(($2 + (i < $3)))
      j=$((n_i - ${f:-$n_i}))
    fi
    sum=$((sum + j))
  done
  echo "$sum"
}

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.svg "$OUT"/*.log "$OUT/figures.tsv"
T_START=$SECONDS
setup_packages
setup_build
setup_services

fig machine.nproc "$(nproc)"
fig machine.mem_kb "$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
fig machine.kernel "$(uname -sr)"
fig machine.cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
fig machine.date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
fig run.quick "$QUICK"
fig run.commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo '+dirty')"
fig run.command "$([[ $QUICK == 1 ]] && echo 'BENCH_QUICK=1 ')bench/run.sh"
fig run.ulimit_n "$(ulimit -n)"
fig run.s2_subs "$S2_SUBS"

if has 1 || has 4 || has 2; then
  start_tipcastd 1 "$TC_MAX_CONNS"
  seed
fi
if has 1; then scenario1; fi
if has 4; then scenario4; fi
if has 2; then scenario2; fi
if has 3; then
  [[ ${#TC_PIDS[@]} -gt 0 ]] || { start_tipcastd 1 "$TC_MAX_CONNS"; seed; stop_tipcastd; }
  scenario3
fi
stop_tipcastd
fig run.seconds $((SECONDS - T_START))

DOC=docs/benchmarks.md CHARTS=docs/bench
[[ ${BENCH_NO_DOC:-0} == 1 ]] && DOC=$OUT/benchmarks.md CHARTS=$OUT/charts
[[ ${BENCH_NO_DOC:-0} == 1 ]] || rm -f "$CHARTS"/*.svg
python3 bench/report.py --out "$OUT" --doc "$DOC" --charts "$CHARTS" ||
  die "writing $DOC failed"
log "wrote $DOC ($((SECONDS - T_START)) s)"
