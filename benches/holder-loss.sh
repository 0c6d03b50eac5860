#!/usr/bin/env bash
# Losing a follower read-lease holder on loopback: a 3-node cluster with follower read leases
# (`timing.holder-lease-ms`, default here 300), each round checks that a follower serves reads
# under its lease, SIGKILLs it, and times how long until the next write is acknowledged through the
# leader (the leader waits out the lease it counts for that holder: at most twice its length).
# Also times one write right before the kill, for comparison. Repeats N times (default 5),
# restarting the killed node between rounds, and prints each figure plus min/median/max.
#
#   benches/holder-loss.sh [ROUNDS]     (builds with cargo first; ports 28081-28083/29081-29083)
#   HOLDER_LEASE_MS=500 benches/holder-loss.sh
set -euo pipefail
ROUNDS=${1:-5}
LEASE=${HOLDER_LEASE_MS:-300}
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/raftkms/target}
# shellcheck source=benches/lib.sh
. benches/lib.sh
build_raftkms  # release unless PROFILE=dev
DIR=$(mktemp -d /tmp/raftkms-holder-loss.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT

# Let `raftkms dev` create configs and initialize the cluster, then stop it and drive the nodes here.
"$BIN" dev --data-dir "$DIR" --port 28081 >"$DIR/dev.out" 2>&1 &
DEV=$!
for _ in $(seq 600); do grep -q RAFTKMS_ADMIN_KEY "$DIR/dev.env" 2>/dev/null && break; sleep 0.1; done
kill -INT $DEV; wait $DEV || true
set -a; . "$DIR/dev.env"; set +a
for n in 1 2 3; do
  cfg="$DIR/node$n.toml"
  if grep -q '^holder-lease-ms' "$cfg"; then
    sed -i "s/^holder-lease-ms *=.*/holder-lease-ms = $LEASE/" "$cfg"
  elif grep -q '^\[timing\]' "$cfg"; then
    sed -i "/^\[timing\]/a holder-lease-ms = $LEASE" "$cfg"
  else
    printf '\n[timing]\nholder-lease-ms = %d\n' "$LEASE" >>"$cfg"
  fi
done

start() { "$BIN" serve --config "$DIR/node$1.toml" >>"$DIR/node$1.log" 2>&1 & PIDS[$1]=$!; }
for n in 1 2 3; do start $n; done

# Mutual TLS with the dev admin certificate (the dev node certificates name 127.0.0.1).
curl_admin() { curl -s -m 2 --cacert "$RAFTKMS_CA" --cert "$RAFTKMS_ADMIN_CERT" --key "$RAFTKMS_ADMIN_KEY" -H "x-raftkms-cluster: $RAFTKMS_CLUSTER_ID" "$@"; }
leader() { curl_admin "https://127.0.0.1:2908$1/admin/status" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("leader") or "")' 2>/dev/null; }
write_ok() { [ "$(curl_admin -o /dev/null -w '%{http_code}' -X PUT --data x "https://127.0.0.1:2908$1/admin/records/holder-loss-$2")" = 200 ]; }
read_ok() { [ "$(curl_admin -o /dev/null -w '%{http_code}' -H 'x-raftkms-consistency: linearizable' "https://127.0.0.1:2908$1/admin/records/holder-loss-$2")" = 200 ]; }
holder_reads() { curl -s -m 2 --cacert "$RAFTKMS_CA" "https://127.0.0.1:2808$1/metrics" | awk '/^raftkms_holder_reads_total / { print $2 }'; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

results=()
for round in $(seq "$ROUNDS"); do
  # A stable leader, a write, and the follower to lose serving a read under its lease.
  L=""; for _ in $(seq 300); do L=$(leader 1 || true); [ -z "$L" ] && L=$(leader 2 || true); [ -n "$L" ] && write_ok "$L" "warm-$round" && break; sleep 0.05; done
  [ -n "$L" ] || { echo "no leader before round $round"; exit 1; }
  H=$(( L % 3 + 1 ))
  held=no
  for _ in $(seq 100); do
    before=$(holder_reads "$H"); read_ok "$H" "warm-$round" || true; after=$(holder_reads "$H")
    if [ -n "$before" ] && [ -n "$after" ] && awk -v a="$after" -v b="$before" 'BEGIN { exit !(a > b) }'; then held=yes; break; fi
    sleep 0.1
  done
  [ "$held" = yes ] || { echo "round $round: node $H served no read under a lease (holder_reads_total did not move)"; exit 1; }
  sleep 0.5
  t0=$(now_ms); write_ok "$L" "before-$round"; t1=$(now_ms)
  before_ms=$(( t1 - t0 ))
  t0=$(now_ms)
  kill -9 "${PIDS[$H]}"
  until write_ok "$L" "round-$round"; do sleep 0.005; done
  t1=$(now_ms)
  ms=$(( t1 - t0 ))
  results+=("$ms")
  echo "round $round: holder node $H (serving reads under its lease) killed, first acknowledged write via leader node $L after ${ms} ms (a write just before: ${before_ms} ms)"
  wait "${PIDS[$H]}" 2>/dev/null || true
  start "$H"
  sleep 2
done
sorted=($(printf '%s\n' "${results[@]}" | sort -n))
echo "holder loss (SIGKILL of a lease holder -> first acknowledged write), holder-lease-ms ${LEASE}, ${ROUNDS} rounds: min ${sorted[0]} ms, median ${sorted[$((ROUNDS/2))]} ms, max ${sorted[$((ROUNDS-1))]} ms (bound: twice the lease, $(( 2 * LEASE )) ms, plus a write)"
