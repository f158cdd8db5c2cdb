#!/usr/bin/env bash
# deps.sh - install the Debian 12 packages tipcast needs to build, test and run.
#
#   scripts/deps.sh [PACKAGE...]   extra Debian packages on top of the list
#                                  below (the benchmark, bench/run.py, passes
#                                  its own, so that CI does not install them)
#
# Idempotent: when every package is already installed it only asks dpkg and
# returns (well under a second). Otherwise it runs `apt-get update` once and
# installs the missing ones. Needs root, or sudo when not root.
#
# Installing redis-server / postgresql would normally start Debian's system
# services; a temporary /usr/sbin/policy-rc.d (exit 101) prevents that, so
# nothing system-wide is left running. tipcast starts its own instances with
# scripts/services.sh.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libwebsockets-dev libwebsockets-evlib-uv libuv1-dev libhiredis-dev libpq-dev
  libmsgpack-dev libssl-dev libjemalloc-dev libjansson-dev
  redis-server postgresql postgresql-client postgresql-15-partman
  python3 python3-pytest python3-msgpack python3-jsonschema python3-yaml
  clang libclang-rt-14-dev
  openssl procps iproute2 valgrind
  prometheus
  chromium fonts-noto-color-emoji
)
# The browser test (tests/browser) runs under Node.js and drives Debian's
# chromium (the emoji font draws the demo page's gifts). A Node.js installed
# another way (e.g. from nodesource, which bundles npm) is used as it is:
# Debian's nodejs/npm packages would conflict with it.
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)
for p in "$@"; do
  [[ $p =~ ^[a-z0-9][a-z0-9.+-]+$ ]] || { printf 'deps: error: bad package name %s\n' "$p" >&2; exit 2; }
  PACKAGES+=("$p")
done

log() { printf 'deps: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script supports Debian 12 only"

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  log "all ${#PACKAGES[@]} packages present"
  exit 0
fi

log "missing: ${missing[*]}"

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
    # With no terminal (CI), never wait for a password prompt.
    [[ -t 0 ]] || SUDO=(sudo -n)
  else
    die "not root and sudo is not installed; as root run: apt-get install ${missing[*]}"
  fi
fi

# Keep package maintainer scripts from starting system services.
POLICY=/usr/sbin/policy-rc.d
POLICY_BACKUP=""
restore_policy() {
  if [[ -n $POLICY_BACKUP ]]; then
    "${SUDO[@]}" mv -f "$POLICY_BACKUP" "$POLICY"
  else
    "${SUDO[@]}" rm -f "$POLICY"
  fi
}
if [[ -e $POLICY ]]; then
  POLICY_BACKUP="$POLICY.tipcast-saved.$$"
  "${SUDO[@]}" mv -f "$POLICY" "$POLICY_BACKUP"
fi
trap restore_policy EXIT
printf '#!/bin/sh\n# written by tipcast scripts/deps.sh during apt-get install\nexit 101\n' |
  "${SUDO[@]}" tee "$POLICY" >/dev/null
"${SUDO[@]}" chmod 755 "$POLICY"

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

log "apt-get update"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" update -q ||
  die "apt-get update failed"
log "apt-get install ${missing[*]}"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" install -y -q \
  --no-install-recommends "${missing[@]}" </dev/null ||
  die "apt-get install failed"

# Verify.
still=()
for p in "${missing[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || still+=("$p")
done
((${#still[@]} == 0)) || die "still not installed: ${still[*]}"
log "installed ${#missing[@]} package(s)"
