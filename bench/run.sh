#!/usr/bin/env bash
# run.sh - the entry point of the benchmark suite: runs bench/run.py, whose top lists what it does and its BENCH_* settings.
#
#   bench/run.sh                 full run (about 25 minutes on 2 cores)
#   BENCH_QUICK=1 bench/run.sh   small N and short steps (about 5 minutes)
#
# Debian's python3 first: the packages scripts/deps.sh installs (python3-msgpack,
# used by scenario 8's WebSocket client) are its.
py=/usr/bin/python3
[ -x "$py" ] || py=python3
exec "$py" "$(dirname "${BASH_SOURCE[0]}")/run.py" "$@"
