#!/usr/bin/env bash
# test.sh - run every tipcast test: what CI runs (.ci/run).
#
#   1. scripts/deps.sh (missing Debian packages), and `npm ci` in
#      tests/browser (playwright-core for the browser test) and in clients/js
#      (the SDK's test packages) unless the locked versions are already installed
#   2. builds build/ (RelWithDebInfo) and build-asan/ (gcc, -DTIPCAST_SANITIZE=ON)
#   3. starts the `test` instance empty: Redis 127.0.0.1:6392, PostgreSQL
#      127.0.0.1:5492 (scripts/services.sh reset: what an earlier run left in
#      them, even one on another commit, is gone), exports TIPCAST_REDIS_HOST/TIPCAST_REDIS_PORT/TIPCAST_PG
#   4. ctest in build/, then in build-asan/ with ASan/UBSan options; each with
#      TIPCAST_TEST_BIN=<tree>/server/tipcastd and TIPCAST_TEST_SANITIZED=0/1
#   5. builds build-fuzz/ (clang, -DTIPCAST_FUZZ=ON) and runs fuzz_proto and
#      fuzz_handshake, each for TIPCAST_FUZZ_SECONDS (default 30); the exit
#      status of each counts as one test
#   6. stops the test services (always), then prints as its last line
#      `tests: N passed, M failed` and exits non-zero if M > 0.
# A step that cannot run (package install, a build, the services) counts as
# one failed test, so a broken build can never look like success.
#
# Environment: TIPCAST_FUZZ_SECONDS (30), TIPCAST_TEST_TIMEOUT (default
# per-test ctest timeout, 600 s), TIPCAST_REDIS_PORT / TIPCAST_PG_PORT.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$REPO" || exit 1
exec </dev/null

INSTANCE="test"
FUZZ_SECONDS=${TIPCAST_FUZZ_SECONDS:-30}
TEST_TIMEOUT=${TIPCAST_TEST_TIMEOUT:-600}
[[ $FUZZ_SECONDS =~ ^[0-9]+$ ]] || { echo "test.sh: TIPCAST_FUZZ_SECONDS must be a number" >&2; exit 2; }
[[ $TEST_TIMEOUT =~ ^[0-9]+$ ]] || { echo "test.sh: TIPCAST_TEST_TIMEOUT must be a number" >&2; exit 2; }

PASSED=0
FAILED=0
PROBLEMS=()
SERVICES_STARTED=0
COMPLETED=0

step() { printf '\n==> %s\n' "$*" >&2; }
problem() { # one failed "test" for a step that could not run or failed
  FAILED=$((FAILED + 1))
  PROBLEMS+=("$*")
  printf 'test.sh: FAILED: %s\n' "$*" >&2
}

# shellcheck disable=SC2317  # trap handler
finish() {
  trap - EXIT INT TERM HUP
  if ((SERVICES_STARTED)); then
    step "stopping test services"
    bash scripts/services.sh stop "$INSTANCE" || true
  fi
  if ((${#PROBLEMS[@]})); then
    printf '\ntest.sh: failures:\n' >&2
    printf '  - %s\n' "${PROBLEMS[@]}" >&2
  fi
  # Stopped before the end without a counted failure: count that too.
  if ((!COMPLETED && FAILED == 0)); then FAILED=1; fi
  echo "tests: $PASSED passed, $FAILED failed"
  ((FAILED == 0)) && exit 0
  exit 1
}
trap finish EXIT
trap 'problem "interrupted by a signal"; exit 130' INT TERM HUP

# Sanitizer runtimes of gcc 12 / clang 14 crash at start on kernels with
# high-entropy mmap randomization (vm.mmap_rnd_bits > 28). Run sanitized
# binaries without ASLR there, when the kernel lets us.
SAN_WRAP=()
rnd_bits=$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 0)
if ((rnd_bits > 28)); then
  if setarch "$(uname -m)" -R true 2>/dev/null; then
    SAN_WRAP=(setarch "$(uname -m)" -R)
    echo "test.sh: vm.mmap_rnd_bits=$rnd_bits: running sanitizer builds with ASLR off (setarch -R)" >&2
  else
    echo "test.sh: warning: vm.mmap_rnd_bits=$rnd_bits and setarch -R is not permitted; sanitizer runtimes may crash at start (fix: sysctl vm.mmap_rnd_bits=28)" >&2
  fi
fi

# build DIR LABEL TARGETS CMAKE-ARGS...: configure and build a tree (TARGETS ""
# = everything, else names separated by spaces); 0 on success.
build() {
  local dir=$1 label=$2 target=$3
  shift 3
  step "building $label ($dir/)"
  if ! cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"; then
    problem "cmake configure of $dir/ failed"
    return 1
  fi
  # $target may name several targets, one word each: split on purpose.
  # shellcheck disable=SC2086
  if ! cmake --build "$dir" -j2 ${target:+--target $target}; then
    problem "build of $dir/ failed"
    return 1
  fi
}

# run_ctest DIR [ENV...]: runs ctest, adds its counts.
run_ctest() {
  local dir=$1
  shift
  local out=$dir/ctest-output.log
  step "ctest in $dir/"
  env "$@" "${SAN_WRAP[@]}" ctest --test-dir "$dir" --output-on-failure --no-tests=error \
    --timeout "$TEST_TIMEOUT" 2>&1 | tee "$out"
  local rc=${PIPESTATUS[0]}
  local line
  line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$out" | tail -n 1)
  if [[ $line =~ ([0-9]+)\ tests?\ failed\ out\ of\ ([0-9]+) ]]; then
    local f=${BASH_REMATCH[1]} t=${BASH_REMATCH[2]}
    PASSED=$((PASSED + t - f))
    FAILED=$((FAILED + f))
    if ((f)); then
      PROBLEMS+=("$f ctest test(s) failed in $dir/ (log: $out)")
      # The names, and pytest's one-line reasons, so that the tail of the run
      # says what failed without the log.
      while IFS= read -r l; do PROBLEMS+=("    ${l:0:400}"); done < <(
        sed -n '/The following tests FAILED:/,$p' "$out" | grep -E '^[[:space:]]+[0-9]+ - '
        grep -E '^(FAILED|ERROR) ' "$out" | head -n 20)
    fi
    if ((rc != 0 && f == 0)); then problem "ctest in $dir/ exited with status $rc"; fi
  else
    problem "ctest in $dir/ printed no summary (status $rc; log: $out)"
  fi
}

step "checking packages (scripts/deps.sh)"
if ! bash scripts/deps.sh; then
  problem "installing packages failed"
  exit 1
fi

# playwright-core, which downloads no browser (the test drives Debian's
# chromium). It is installed only when missing or not the locked version, so
# an offline machine keeps using an earlier install; without any, the browser
# test fails and says why.
step "browser test packages (npm ci in tests/browser)"
browser_deps_current() {
  (cd tests/browser && node -e '
    const want = require("./package-lock.json").packages["node_modules/playwright-core"].version;
    const have = require("./node_modules/playwright-core/package.json").version;
    process.exit(want === have ? 0 : 1);' 2>/dev/null)
}
if browser_deps_current; then
  echo "test.sh: playwright-core already installed at the locked version" >&2
elif ! (cd tests/browser && npm ci --no-audit --no-fund --prefer-offline); then
  echo "test.sh: warning: npm ci in tests/browser failed (offline?); the browser test will fail" >&2
fi

# The JavaScript SDK's dev packages (ws, @msgpack/msgpack, playwright-core,
# typescript; the SDK itself has none), for its tests (sdk_js in ctest):
# installed the same way, only when one is missing or not the locked version.
step "SDK test packages (npm ci in clients/js)"
sdk_deps_current() {
  (cd clients/js && node -e '
    const lock = require("./package-lock.json").packages;
    for (const [where, p] of Object.entries(lock)) {
      if (!where.startsWith("node_modules/") || p.optional) continue;
      let have;
      try { have = require("./" + where + "/package.json").version; } catch { process.exit(1); }
      if (have !== p.version) process.exit(1);
    }' 2>/dev/null)
}
if sdk_deps_current; then
  echo "test.sh: clients/js dev packages already installed at the locked versions" >&2
elif ! (cd clients/js && npm ci --no-audit --no-fund --prefer-offline); then
  echo "test.sh: warning: npm ci in clients/js failed (offline?); the SDK tests will fail" >&2
fi

build_ok=0 asan_ok=0
build build "normal build" "" && build_ok=1
build build-asan "ASan+UBSan build" "" -DCMAKE_C_COMPILER=gcc -DTIPCAST_SANITIZE=ON && asan_ok=1

if ((build_ok || asan_ok)); then
  step "starting test services (instance $INSTANCE)"
  SERVICES_STARTED=1
  if bash scripts/services.sh reset "$INSTANCE"; then
    eval "$(bash scripts/services.sh env "$INSTANCE")"
    # TIPCAST_TEST_BIN / TIPCAST_TEST_SANITIZED tell tests/conftest.py which
    # tipcastd to start (CTest's own ENVIRONMENT properties, if any, win).
    ((build_ok)) && run_ctest build \
      TIPCAST_TEST_BIN="$REPO/build/server/tipcastd" TIPCAST_TEST_SANITIZED=0
    ((asan_ok)) && run_ctest build-asan \
      TIPCAST_TEST_BIN="$REPO/build-asan/server/tipcastd" TIPCAST_TEST_SANITIZED=1 \
      ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  else
    problem "test services did not start; ctest skipped"
  fi
fi

# The fuzzers need no services. Each runs TIPCAST_FUZZ_SECONDS, and the exit
# status of each counts as one test: fuzz_proto (the frame decoder) and
# fuzz_handshake (the upgrade's header checks, with a dictionary of the names
# they look for).
if build build-fuzz "fuzz targets (clang, libFuzzer)" "fuzz_proto fuzz_handshake" \
    -DCMAKE_C_COMPILER=clang -DTIPCAST_FUZZ=ON; then
  for target in proto handshake; do
    step "fuzzing fuzz_$target for ${FUZZ_SECONDS}s"
    mkdir -p "build-fuzz/corpus-$target"
    extra=(-max_len=16384)
    [[ $target == handshake ]] && extra=(-max_len=1024 -dict=tests/fuzz_handshake.dict)
    # New interesting inputs accumulate in build-fuzz/corpus-<target>/; a crash
    # leaves its input as build-fuzz/crash-* (replay: build-fuzz/tests/fuzz_<target> FILE).
    env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      timeout -k 10 $((FUZZ_SECONDS + 300)) "${SAN_WRAP[@]}" \
      "build-fuzz/tests/fuzz_$target" -max_total_time="$FUZZ_SECONDS" "${extra[@]}" \
      -artifact_prefix=build-fuzz/ -print_final_stats=1 "build-fuzz/corpus-$target"
    rc=$?
    if ((rc == 0)); then
      PASSED=$((PASSED + 1))
      echo "test.sh: fuzz_$target: passed" >&2
    else
      problem "fuzz_$target exited with status $rc (crash inputs: build-fuzz/crash-*, leak-*, timeout-*)"
    fi
  done
fi

COMPLETED=1
