#!/usr/bin/env bash
# archive-month.sh - writes one closed month of orders and ledger rows to an
# archive file, checks the file by restoring it, and with --apply removes the
# month from the live database (storage/migrations/017_archive.sql;
# docs/operations.md, "Archiving a month").
#
#   scripts/archive-month.sh [--pg CONNINFO] [--apply] [--actor NAME] YYYY-MM DIR
#
# Writes DIR/tipcast-YYYY-MM.dump (pg_dump's custom format: the two
# partitions orders_pYYYY_MM and ledger_pYYYY_MM as plain tables) and
# DIR/tipcast-YYYY-MM.json (the plan, each table's row count and digest, the
# file's SHA-256). The check restores the file into a scratch database
# (created and dropped here: the role needs CREATEDB) and compares every
# row's text with the live partitions. --apply then calls
# tipcast_archive_detach, which refuses if a row changed since.
#
# CONNINFO (keyword=value form) defaults to $TIPCAST_PG. Exit status: 0 done, 1 refused or the
# check failed (nothing removed), 2 usage.
set -euo pipefail

usage() {
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

PG=${TIPCAST_PG:-}
APPLY=0
ACTOR=${USER:-operator}
while (($#)); do
  case $1 in
    --pg) PG=${2:?--pg needs a value}; shift 2 ;;
    --pg=*) PG=${1#--pg=}; shift ;;
    --apply) APPLY=1; shift ;;
    --actor) ACTOR=${2:?--actor needs a value}; shift 2 ;;
    -h | --help) usage ;;
    --*) echo "archive-month: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
(($# == 2)) || usage
MONTH=$1
DIR=$2
[[ $MONTH =~ ^[0-9]{4}-(0[1-9]|1[0-2])$ ]] || { echo "archive-month: the month is YYYY-MM, not '$MONTH'" >&2; exit 2; }
[[ -n $PG ]] || { echo "archive-month: no database: --pg CONNINFO or TIPCAST_PG" >&2; exit 2; }
[[ $ACTOR =~ ^[A-Za-z0-9_.@-]{1,64}$ ]] || { echo "archive-month: --actor is 1-64 of [A-Za-z0-9_.@-]" >&2; exit 2; }
mkdir -p "$DIR"

# Row text as the digests compare it: UTC, ISO dates.
export PGOPTIONS="-c TimeZone=UTC -c DateStyle=ISO,YMD -c extra_float_digits=3"
log() { echo "archive-month: $*" >&2; }
q() { psql "$1" -X -v ON_ERROR_STOP=1 -qAt -c "$2"; }

# 1. The plan: refused months stop here, with PostgreSQL's reason.
if ! plan=$(q "$PG" "SELECT tipcast_archive_plan('$MONTH-01')" 2>&1); then
  log "refused: $(grep -o 'DETAIL: .*' <<<"$plan" | sed 's/^DETAIL:  *//' || true)"
  log "$plan"
  exit 1
fi
suffix="p${MONTH/-/_}"
orders_t=orders_$suffix
ledger_t=ledger_$suffix
digest_sql() { printf '%s\n' "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') FROM $1 t"; }
orders_d=$(q "$PG" "SELECT tipcast_archive_digest('$orders_t')")
ledger_d=$(q "$PG" "SELECT tipcast_archive_digest('$ledger_t')")
log "plan: $plan"

# 2. The file.
file=$DIR/tipcast-$MONTH.dump
# (With ledger's id sequence, which the partition's id default names, so
# that the file restores on its own.)
pg_dump "$PG" --format=custom --no-owner --no-privileges --table="public.$orders_t" --table="public.$ledger_t" \
  --table=public.ledger_id_seq --file="$file.tmp"
mv "$file.tmp" "$file"
sha=$(sha256sum "$file" | cut -d' ' -f1)
log "wrote $file ($(stat -c %s "$file") bytes, sha256 $sha)"

# 3. The check: restored into a scratch database, row for row. The dump's
# partition attachments (to parents the scratch database does not have)
# are left out; the tables come back whole, with their own indexes.
scratch=tipcast_archive_check_$$_$RANDOM
admin_pg="$PG dbname=postgres"
q "$admin_pg" "CREATE DATABASE $scratch" >/dev/null
cleanup() { q "$admin_pg" "DROP DATABASE IF EXISTS $scratch WITH (FORCE)" >/dev/null 2>&1 || true; }
trap cleanup EXIT
list=$(mktemp)
pg_restore --list "$file" | grep -v -E ' (TABLE ATTACH|INDEX ATTACH) ' >"$list"
pg_restore --no-owner --no-privileges --exit-on-error --use-list="$list" --dbname="$PG dbname=$scratch" "$file"
rm -f "$list"
got_o=$(q "$PG dbname=$scratch" "$(digest_sql "$orders_t")")
got_l=$(q "$PG dbname=$scratch" "$(digest_sql "$ledger_t")")
if [[ $got_o != "$orders_d" || $got_l != "$ledger_d" ]]; then
  log "check FAILED: the restored rows differ from the live ones"
  log "  orders: live $orders_d, file $got_o"
  log "  ledger: live $ledger_d, file $got_l"
  exit 1
fi
log "checked: the file restores to the same rows (orders $orders_d, ledger $ledger_d)"

manifest=$DIR/tipcast-$MONTH.json
printf '{"month": "%s", "file": "%s", "sha256": "%s", "orders_digest": "%s", "ledger_digest": "%s", "plan": %s}\n' \
  "$MONTH" "$(basename "$file")" "$sha" "$orders_d" "$ledger_d" "$plan" >"$manifest"
log "wrote $manifest"

# 4. The month leaves the live database.
if ((APPLY == 0)); then
  log "not applied: run again with --apply to remove $MONTH from the live database"
  exit 0
fi
if ! out=$(q "$PG" "SELECT tipcast_archive_detach('$MONTH-01', '$(basename "$file")', '$sha', '$orders_d', \
    '$ledger_d', '$ACTOR')" 2>&1); then
  log "refused: $out"
  exit 1
fi
log "archived: $out"
