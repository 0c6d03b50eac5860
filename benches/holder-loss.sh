#!/usr/bin/env bash
# Losing a follower read-lease holder on loopback: a 3-node cluster with follower read leases
# (`timing.holder-lease-ms`, default here 300), each round checks that a follower serves reads
# under its lease, SIGKILLs it, and times how long until the next write is acknowledged through the
# leader (the leader waits out the lease it counts for that holder: at most holder-lease-ms; the
# holder itself uses half of it).
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
dev_cluster holder-loss
dev_timing holder-lease-ms "$LEASE"

for n in 1 2 3; do dev_start $n; done

read_ok() { [ "$(curl_admin -o /dev/null -w '%{http_code}' -H 'x-raftkms-consistency: linearizable' "https://127.0.0.1:2908$1/admin/records/$2")" = 200 ]; }
holder_reads() { curl -s -m 2 --cacert "$RAFTKMS_CA" "https://127.0.0.1:2808$1/metrics" | awk '/^raftkms_holder_reads_total / { print $2 }'; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

results=()
for round in $(seq "$ROUNDS"); do
  # A stable leader, a write, and the follower to lose serving a read under its lease.
  dev_wait_leader "holder-loss-warm-$round"
  H=$(( L % 3 + 1 ))
  held=no
  for _ in $(seq 100); do
    before=$(holder_reads "$H"); read_ok "$H" "holder-loss-warm-$round" || true; after=$(holder_reads "$H")
    if [ -n "$before" ] && [ -n "$after" ] && awk -v a="$after" -v b="$before" 'BEGIN { exit !(a > b) }'; then held=yes; break; fi
    sleep 0.1
  done
  [ "$held" = yes ] || { echo "round $round: node $H served no read under a lease (holder_reads_total did not move)"; exit 1; }
  sleep 0.5
  t0=$(now_ms); dev_write_ok "$L" "holder-loss-before-$round"; t1=$(now_ms)
  before_ms=$(( t1 - t0 ))
  t0=$(now_ms)
  kill -9 "${DEV_PIDS[$H]}"
  until dev_write_ok "$L" "holder-loss-round-$round"; do sleep 0.005; done
  t1=$(now_ms)
  ms=$(( t1 - t0 ))
  results+=("$ms")
  echo "round $round: holder node $H (serving reads under its lease) killed, first acknowledged write via leader node $L after ${ms} ms (a write just before: ${before_ms} ms)"
  wait "${DEV_PIDS[$H]}" 2>/dev/null || true
  dev_start "$H"
  sleep 2
done
echo "holder loss (SIGKILL of a lease holder -> first acknowledged write), holder-lease-ms ${LEASE}, ${ROUNDS} rounds: $(min_median_max "${results[@]}") (bound: the lease, ${LEASE} ms, plus a write)"
