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
dev_cluster failover
# HOLDER_LEASE_MS=N: the same with follower read leases (timing.holder-lease-ms = N).
LEASE=${HOLDER_LEASE_MS:-0}
[ "$LEASE" != 0 ] && dev_timing holder-lease-ms "$LEASE"
for n in 1 2 3; do dev_start $n; done

results=()
for round in $(seq "$ROUNDS"); do
  # Wait for a stable leader and a successful write.
  dev_wait_leader "failover-warm-$round"
  sleep 1
  S=$(( L % 3 + 1 ))
  t0=$(date +%s%N)
  kill -9 "${DEV_PIDS[$L]}"
  until dev_write_ok "$S" "failover-round-$round"; do sleep 0.01; done
  t1=$(date +%s%N)
  ms=$(( (t1 - t0) / 1000000 ))
  results+=("$ms")
  echo "round $round: killed leader node $L, first acknowledged write via node $S after ${ms} ms"
  wait "${DEV_PIDS[$L]}" 2>/dev/null || true
  dev_start "$L"
  sleep 2
done
echo "failover (SIGKILL leader -> first acknowledged write), holder-lease-ms ${LEASE}, ${ROUNDS} rounds: $(min_median_max "${results[@]}")"
