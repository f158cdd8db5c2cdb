#!/usr/bin/env bash
# run.sh - the entry point of the benchmark suite: runs bench/run.py, whose top lists what it does and its BENCH_* settings.
#
#   bench/run.sh                 full run (about 15 minutes on 2 cores)
#   BENCH_QUICK=1 bench/run.sh   small N and short steps (about 3 minutes)
exec python3 "$(dirname "${BASH_SOURCE[0]}")/run.py" "$@"
