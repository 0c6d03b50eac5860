#!/usr/bin/env bash
# Leader failover on loopback: SIGKILL the leader of a 3-node cluster and time how long until the
# next write is acknowledged (through a surviving node). Repeats N times (default 5), restarting
# the killed node between rounds, and prints each figure plus min/median/max.
#
#   benches/failover.sh [ROUNDS]        (builds with cargo first; uses ports 28081-28083/29081-29083)
set -euo pipefail
ROUNDS=${1:-5}
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/raftkms/target}
# shellcheck source=benches/lib.sh
. benches/lib.sh
build_raftkms  # release unless PROFILE=dev
DIR=$(mktemp -d /tmp/raftkms-failover.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT

# Let `raftkms dev` create configs and initialize the cluster, then stop it and drive the nodes here.
"$BIN" dev --data-dir "$DIR" --port 28081 >"$DIR/dev.out" 2>&1 &
DEV=$!
for _ in $(seq 600); do grep -q RAFTKMS_ADMIN_KEY "$DIR/dev.env" 2>/dev/null && break; sleep 0.1; done
kill -INT $DEV; wait $DEV || true
set -a; . "$DIR/dev.env"; set +a

start() { "$BIN" serve --config "$DIR/node$1.toml" >>"$DIR/node$1.log" 2>&1 & PIDS[$1]=$!; }
for n in 1 2 3; do start $n; done

# Mutual TLS with the dev admin certificate (the dev node certificates name 127.0.0.1).
curl_admin() { curl -s -m 2 --cacert "$RAFTKMS_CA" --cert "$RAFTKMS_ADMIN_CERT" --key "$RAFTKMS_ADMIN_KEY" -H "x-raftkms-cluster: $RAFTKMS_CLUSTER_ID" "$@"; }
leader() { curl_admin "https://127.0.0.1:2908$1/admin/status" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("leader") or "")' 2>/dev/null; }
write_ok() { [ "$(curl_admin -o /dev/null -w '%{http_code}' -X PUT --data x "https://127.0.0.1:2908$1/admin/records/failover-$2")" = 200 ]; }

results=()
for round in $(seq "$ROUNDS"); do
  # Wait for a stable leader and a successful write.
  L=""; for _ in $(seq 300); do L=$(leader 1 || true); [ -z "$L" ] && L=$(leader 2 || true); [ -n "$L" ] && write_ok "$L" "warm-$round" && break; sleep 0.05; done
  [ -n "$L" ] || { echo "no leader before round $round"; exit 1; }
  sleep 1
  S=$(( L % 3 + 1 ))
  t0=$(date +%s%N)
  kill -9 "${PIDS[$L]}"
  until write_ok "$S" "round-$round"; do sleep 0.01; done
  t1=$(date +%s%N)
  ms=$(( (t1 - t0) / 1000000 ))
  results+=("$ms")
  echo "round $round: killed leader node $L, first acknowledged write via node $S after ${ms} ms"
  wait "${PIDS[$L]}" 2>/dev/null || true
  start "$L"
  sleep 2
done
sorted=($(printf '%s\n' "${results[@]}" | sort -n))
echo "failover (SIGKILL leader -> first acknowledged write), ${ROUNDS} rounds: min ${sorted[0]} ms, median ${sorted[$((ROUNDS/2))]} ms, max ${sorted[$((ROUNDS-1))]} ms"
