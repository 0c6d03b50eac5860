#!/usr/bin/env bash
# Losing the leader's whole region: a 5-node `raftkms dev` cluster in three regions (2+2+1
# voters); each round finds the leader's region and runs `raftkms drill` on it (the region's
# processes are frozen with SIGSTOP, then resumed). Prints each RTO (cut -> first acknowledged
# write through a survivor) and min/median/max; every round must also report RPO 0.
#
#   benches/region-loss.sh [ROUNDS]     (default 5; API ports 38081-38085, internal 39081-39085)
set -euo pipefail
ROUNDS=${1:-5}
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/raftkms/target}
# shellcheck source=benches/lib.sh
. benches/lib.sh
build_raftkms  # release unless PROFILE=dev
DIR=$(mktemp -d /tmp/raftkms-region-loss.XXXXXX)
DEV=""
cleanup() {
  if [ -n "$DEV" ]; then
    for f in "$DIR"/node*.pid; do [ -e "$f" ] && kill -CONT "$(cat "$f")" 2>/dev/null || true; done
    kill -TERM "$DEV" 2>/dev/null || true; wait "$DEV" 2>/dev/null || true
  fi
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

"$BIN" dev --nodes 5 --region ap-guangzhou,ap-shanghai,ap-singapore --data-dir "$DIR" --port 38081 >"$DIR/dev.out" 2>&1 &
DEV=$!
for _ in $(seq 600); do grep -q RAFTKMS_ADMIN_KEY "$DIR/dev.env" 2>/dev/null && break; sleep 0.1; done
set -a; . "$DIR/dev.env"; set +a

rtos=()
for round in $(seq "$ROUNDS"); do
  sleep 2
  region=$("$BIN" cluster status --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(next(n["region"] for n in s["nodes"] if n["id"] == s["leader"]))')
  report=$("$BIN" drill --dev "$DIR" --region "$region" --keys 4 --outage-secs 1 --json)
  rto=$(python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["passed"] and r["lost"] == 0, r; print(r["rto_ms"])' <<<"$report")
  echo "round $round: cut $region (leader's region): RTO $rto ms, RPO 0"
  rtos+=("$rto")
done
printf '%s\n' "${rtos[@]}" | sort -n | python3 -c '
import sys
v = [int(x) for x in sys.stdin.read().split()]
print("region loss RTO over %d rounds: min %d ms, median %d ms, max %d ms" % (len(v), v[0], v[len(v)//2], v[-1]))'
