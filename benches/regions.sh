#!/usr/bin/env bash
# Latency across regions (docs/benchmarks.md "regions", docs/multi-region.md): a 5-node cluster in
# three regions (2+2+1 voters) in network namespaces, with a latency proxy on every Raft connection
# adding the one-way delay between the two nodes' regions (ap-guangzhou/ap-shanghai 30 ms,
# ap-guangzhou/ap-singapore 50 ms, ap-shanghai/ap-singapore 80 ms; round trips twice that).
# Through each node in turn, `raftkms bench` (open loop, from the host, as a client in that node's
# region): Encrypt linearizable, Encrypt stale, CreateKey; once with follower read leases
# (holder-lease-ms 1200: holders use 600 of it) and once without. Prints p50/p99 per node and writes the raw runs.
#
#   benches/regions.sh [--duration S] [--rate R] [--create-rate R] [--no-doc]
#
# Needs root (namespaces, iptables) and iproute2, as jepsen/run. About 6 minutes with the defaults
# (10 s per run, 15 runs per phase, two phases). Raw output: benches/results/<date>-regions/
# (runs.jsonl, meta.json, the nodes' logs are left out), or $OUT.
set -euo pipefail
CMDLINE="benches/regions.sh $*"
WRITE_DOC=1 ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-doc) WRITE_DOC=0 ;;
    --duration|--rate|--create-rate) ARGS+=("$1" "$2"); shift ;;
    -h|--help) sed -n 2,15p "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/raftkms/target}
# shellcheck source=benches/lib.sh
. benches/lib.sh
build_raftkms
OUT=${OUT:-benches/results/$(date -u +%F)-regions}
if [ -e "$OUT" ]; then echo "$OUT exists: set OUT to a new directory" >&2; exit 2; fi
mkdir -p "$OUT"
export RAFTKMS_COMMIT PROFILE=$BUILD_PROFILE REGIONS_CMDLINE="$CMDLINE"
RAFTKMS_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
# The whole run is bounded: it stops by itself (and tears the namespaces down) after 20 minutes.
timeout --signal=INT --kill-after=30 1200 python3 benches/regions.py --binary "$BIN" --out "$OUT" "${ARGS[@]}" \
  | tee "$OUT/regions.txt"
# The node logs stay out of the committed results (they are large); a failed run keeps them.
rm -rf "$OUT"/logs-*
block=$(python3 benches/report.py --regions "$OUT")
echo "$block"
if [ "$WRITE_DOC" = 1 ]; then
  python3 benches/report.py --splice docs/benchmarks.md regions <<<"$block"
  python3 benches/report.py --splice docs/multi-region.md regions <<<"$block"
fi
