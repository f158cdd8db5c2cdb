#!/usr/bin/env bash
# cluster_suites.sh - the money and room suites again, with every tipcastd on
# a Redis Cluster (issue 15): the instance `suites` of scripts/cluster.sh (3
# masters, 3 replicas) on free ports, TIPCAST_REDIS_CLUSTER set for
# tests/conftest.py, the cluster stopped and removed at the end. Run by ctest
# (cluster_suites) with the environment of the other end-to-end tests.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PY=${PYTHON3:-/usr/bin/python3}
NAME=suites
STATE=$REPO/.state/cluster-$NAME

# A first port whose six ports and cluster bus ports (+10000) are free.
TIPCAST_CLUSTER_PORT=$("$PY" - <<'PY'
import random, socket
def free(p):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", p))
            return True
        except OSError:
            return False
for _ in range(500):
    b = random.randrange(30000, 40000)
    if all(free(p) and free(p + 10000) for p in range(b, b + 6)):
        print(b)
        break
PY
)
export TIPCAST_CLUSTER_PORT
[[ -n $TIPCAST_CLUSTER_PORT ]] || { echo "cluster_suites: no six free ports" >&2; exit 1; }
rm -rf "$STATE"
trap 'bash "$REPO/scripts/cluster.sh" stop "$NAME" >/dev/null 2>&1; rm -rf "$STATE"' EXIT
bash "$REPO/scripts/cluster.sh" start "$NAME" || exit 1
eval "$(bash "$REPO/scripts/cluster.sh" env "$NAME")"
cd "$REPO/tests" || exit 1
"$PY" -m pytest -q -p no:cacheprovider test_money.py test_rooms.py test_roomfeed.py test_room_features.py
