#!/usr/bin/env bash
# Where the server's time goes under load: a 3-node raftkms cluster on loopback, `raftkms bench`
# against one node, and `perf record` of the node(s) during the run. Prints the hottest symbols
# (self time) per process and the split by crate/area.
#
#   benches/profile.sh [--workload encrypt|decrypt|datakey|create] [--via leader|follower]
#                      [--duration S] [--connections N] [--out DIR]
#
# Needs `perf` (Debian linux-perf). NO_BUILD=1 uses the binary already built. Ports (loopback): API 32481-32483, internal 32581-32583.
# Everything is killed and the temp dir removed on exit or Ctrl-C (the perf data and reports stay
# in --out, default /var/cache/raftkms/profile-last).
set -euo pipefail
WORKLOAD=encrypt VIA=leader DURATION=10 CONNS=16 OUT=/var/cache/raftkms/profile-last
while [ $# -gt 0 ]; do
  case "$1" in
    --workload) WORKLOAD=$2; shift ;;
    --via) VIA=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --connections) CONNS=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n 2,11p "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
command -v perf >/dev/null || { echo "perf is missing: apt-get install linux-perf" >&2; exit 1; }
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/raftkms/target}
# shellcheck source=benches/lib.sh
. benches/lib.sh
if [ "${NO_BUILD:-0}" = 1 ]; then
  BUILD_PROFILE=${PROFILE:-release}
  BIN=$CARGO_TARGET_DIR/$([ "$BUILD_PROFILE" = dev ] && echo debug || echo release)/raftkms
else
  build_raftkms  # release unless PROFILE=dev
fi
DIR=$(mktemp -d /tmp/raftkms-profile.XXXXXX)
PIDS=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  { wait; } 2>/dev/null || true
  rm -rf "$DIR"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
wait_until() { local n=$(( $1 * 10 )); shift; for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }

SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
ADMIN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/unseal.key")
api() { echo "127.0.0.1:$(( 32480 + $1 ))"; }
raft() { echo "127.0.0.1:$(( 32580 + $1 ))"; }
for i in 1 2 3; do
  {
    printf 'node-id = %d\ncluster-id = "bench-profile"\ncluster-secret = "%s"\nadmin-token = "%s"\nregion = "ap-guangzhou"\n' "$i" "$SECRET" "$ADMIN"
    printf 'data-dir = "%s"\napi-listen = "%s"\nraft-listen = "%s"\ninsecure-plaintext = true\n' "$DIR/node$i" "$(api $i)" "$(raft $i)"
    printf '[rate-limits]\ncredential-crypto-per-second = 0\ncredential-management-per-second = 0\naccount-crypto-per-second = 0\naccount-management-per-second = 0\n'
    printf '[kms]\ncmk-limit = 100000000\nunseal-key-file = "%s"\n' "$DIR/unseal.key"
    for j in 1 2 3; do
      printf '[[peers]]\nid = %d\nraft-addr = "%s"\napi-addr = "%s"\nregion = "ap-guangzhou"\nvoter = true\n' "$j" "$(raft $j)" "$(api $j)"
    done
  } >"$DIR/node$i.toml"
  chmod 600 "$DIR/node$i.toml"
done
declare -a PID
for i in 1 2 3; do "$BIN" serve --config "$DIR/node$i.toml" >>"$DIR/node$i.log" 2>&1 & PID[$i]=$!; PIDS+=("$!"); done
status() { curl -sf -m 2 -H "authorization: Bearer $ADMIN" -H "x-raftkms-cluster: bench-profile" "http://$(raft "$1")/admin/status"; }
for i in 1 2 3; do wait_until 60 status $i || { tail "$DIR/node$i.log"; exit 1; }; done
"$BIN" cluster init --config "$DIR/node1.toml" >/dev/null
wait_until 60 sh -c "curl -sf -m 2 -H 'authorization: Bearer $ADMIN' -H 'x-raftkms-cluster: bench-profile' http://$(raft 1)/admin/status | jq -e '.ready and (.leader != null)'"
UIN=$("$BIN" account create --name profile --config "$DIR/node1.toml" | sed -n 's/.*Uin \([0-9]*\).*/\1/p')
CRED=$("$BIN" credential create --uin "$UIN" --config "$DIR/node1.toml")
export KMS_SECRET_ID KMS_SECRET_KEY
KMS_SECRET_ID=$(sed -n 's/^SecretId: *//p' <<<"$CRED")
KMS_SECRET_KEY=$(sed -n 's/^SecretKey: *//p' <<<"$CRED")
L=$(status 1 | jq -r .leader)
F=$(( L % 3 + 1 ))
T=$L; [ "$VIA" = follower ] && T=$F
mkdir -p "$OUT"
rm -f "$OUT"/*.data "$OUT"/*.txt
echo "leader node $L (pid ${PID[$L]}), follower node $F (pid ${PID[$F]}), load via node $T" | tee "$OUT/setup.txt"
# Warm-up, then the measured run with perf attached to the leader and the follower.
"$BIN" bench --endpoints "http://$(api "$T")" --workload "$WORKLOAD" --duration 2 --connections "$CONNS" >/dev/null 2>&1
perf record -F 499 -g -o "$OUT/leader.data" -p "${PID[$L]}" -- sleep "$DURATION" >/dev/null 2>&1 &
P1=$!
perf record -F 499 -g -o "$OUT/follower.data" -p "${PID[$F]}" -- sleep "$DURATION" >/dev/null 2>&1 &
P2=$!
"$BIN" bench --endpoints "http://$(api "$T")" --workload "$WORKLOAD" --duration "$DURATION" --connections "$CONNS" 2>/dev/null | tee "$OUT/bench.txt"
wait $P1 $P2 || true
for who in leader follower; do
  perf report -i "$OUT/$who.data" --no-children --sort symbol --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | grep '%' | head -60 >"$OUT/$who-symbols.txt" || true
  perf report -i "$OUT/$who.data" --no-children --sort dso --stdio 2>/dev/null | grep '%' | head -15 >"$OUT/$who-dso.txt" || true
  perf report -i "$OUT/$who.data" --no-children --sort symbol --stdio -g none 2>/dev/null | python3 benches/perf-groups.py >"$OUT/$who-groups.txt" || true
  echo "== $who: self time by area ($(perf report -i "$OUT/$who.data" --stdio 2>/dev/null | sed -n 's/^# Samples: \([^ ]*\).*/\1/p' | head -1) samples)"
  cat "$OUT/$who-groups.txt"
  echo "== $who: hottest symbols (self time)"
  head -40 "$OUT/$who-symbols.txt" | cut -c1-150
done
echo "(perf data and reports in $OUT)"
