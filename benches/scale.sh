#!/usr/bin/env bash
# raftkms at scale: a 3-node cluster loaded with 1,000,000 entries. Measures the load rate, RSS
# per node, Encrypt at 1k keys vs after the load, snapshot build time, the time a joining fourth
# node needs to install the snapshot and catch up, and cold start (all nodes stopped, started
# again, until the first Encrypt is answered). Writes the scale block of docs/benchmarks.md.
#
#   benches/scale.sh [--records N] [--keys N] [--duration S] [--no-doc]
#
#   --records N   entries loaded through the batch path, POST /admin/records (1,000 per Raft
#                 command; 300-byte values, the order of an encoded KeyRecord). Default 1000000.
#   --keys N      real CreateKey calls after the first 1,000 keys (reported per chunk of 5,000,
#                 or N/20 when larger: shows how the create rate depends on the number of keys).
#                 Default 20000.
#   --duration S  seconds per Encrypt measurement (default 10)
#   --no-doc      leave docs/benchmarks.md alone
#
# Ports (loopback): API 32281-32284, internal 32381-32384. Everything is killed and the temp dir
# removed on exit or Ctrl-C; a watchdog bounds the run to 40 minutes.
set -euo pipefail

RECORDS=1000000 KEYS=20000 DURATION=10 WRITE_DOC=1
while [ $# -gt 0 ]; do
  case "$1" in
    --records) RECORDS=$2; shift ;;
    --keys) KEYS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --no-doc) WRITE_DOC=0 ;;
    -h|--help) sed -n 2,17p "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
CMDLINE="benches/scale.sh"
[ "$RECORDS" != 1000000 ] && CMDLINE+=" --records $RECORDS"
[ "$KEYS" != 20000 ] && CMDLINE+=" --keys $KEYS"
[ "$DURATION" != 10 ] && CMDLINE+=" --duration $DURATION"
true

cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/raftkms/target}
DIR=$(mktemp -d /tmp/raftkms-scale.XXXXXX)
RES=$DIR/results
mkdir -p "$RES"
PIDS_FILE=$DIR/pids
: >"$PIDS_FILE"
T_START=$(date +%s)
log() { printf '[%4ds] %s\n' $(( $(date +%s) - T_START )) "$*" >&2; }
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "${WATCHDOG:-}" ] && { kill "$WATCHDOG" 2>/dev/null || true; }
  while read -r p; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done <"$PIDS_FILE"
  { wait; } 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $DIR" >&2; else rm -rf "$DIR"; fi
  exit $rc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM
( trap 'kill $s 2>/dev/null; exit 0' TERM; sleep 2400 & s=$!; wait $s; echo "scale.sh: watchdog: over 2400 s, stopping" >&2; kill -TERM $$ ) &
WATCHDOG=$!
track() { echo "$1" >>"$PIDS_FILE"; }

log "building raftkms"
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
build_raftkms

ports_free() { local p; for p in "$@"; do [ -z "$(ss -Htn "( sport = :$p )")" ] || return 1; done; }
wait_ports() { local _; for _ in $(seq 100); do ports_free "$@" && return 0; sleep 0.1; done; }
wait_until() { local n=$(( $1 * 10 )); shift; for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
rss_mib() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo 0; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

KDIR=$DIR/raftkms
mkdir -p "$KDIR"
SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
ADMIN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$KDIR/unseal.key")
api() { echo "127.0.0.1:$(( 32280 + $1 ))"; }
raft() { echo "127.0.0.1:$(( 32380 + $1 ))"; }
for i in 1 2 3 4; do
  {
    echo "node-id = $i"
    echo 'cluster-id = "bench-scale"'
    echo "cluster-secret = \"$SECRET\""
    echo "admin-token = \"$ADMIN\""
    echo 'region = "ap-guangzhou"'
    echo "data-dir = \"$KDIR/node$i\""
    echo "api-listen = \"$(api $i)\""
    echo "raft-listen = \"$(raft $i)\""
    echo "insecure-plaintext = true"
    echo '[snapshot]'
    # A snapshot every 500 Raft entries (500,000 records at 1,000 per command), few entries kept
    # behind it: the joining node has to be fed by a snapshot.
    echo 'logs-since-last = 500'
    echo 'max-logs-to-keep = 50'
    # Benchmarks measure the node, not its abuse limits.
    echo '[rate-limits]'
    echo 'credential-crypto-per-second = 0'
    echo 'credential-management-per-second = 0'
    echo 'account-crypto-per-second = 0'
    echo 'account-management-per-second = 0'
    echo '[kms]'
    echo 'cmk-limit = 100000000'
    echo "unseal-key-file = \"$KDIR/unseal.key\""
    kms_timing_toml
    if [ "$i" -le 3 ]; then
      for j in 1 2 3; do
        printf '[[peers]]\nid = %d\nraft-addr = "%s"\napi-addr = "%s"\nregion = "ap-guangzhou"\nvoter = true\n' "$j" "$(raft $j)" "$(api $j)"
      done
    fi
  } >"$KDIR/node$i.toml"
  chmod 600 "$KDIR/node$i.toml"
done
declare -a PID
start() { wait_ports $(( 32280 + $1 )) $(( 32380 + $1 )); "$BIN" serve --config "$KDIR/node$1.toml" >>"$KDIR/node$1.log" 2>&1 & PID[$1]=$!; track "${PID[$1]}"; }
admin() { local n=$1 path=$2; shift 2; curl -sf -m 30 -H "authorization: Bearer $ADMIN" -H "x-raftkms-cluster: bench-scale" "$@" "http://$(raft "$n")$path"; }
status() { admin "$1" /admin/status; }
ready() { status "$1" | jq -e '.ready and (.leader != null)'; }
leader() { local i l; for i in 1 2 3; do l=$(status $i 2>/dev/null | jq -r '.leader // empty') && [ -n "$l" ] && { echo "$l"; return 0; }; done; return 1; }

log "starting 3 nodes"
for i in 1 2 3; do start $i; done
for i in 1 2 3; do wait_until 60 status $i || { tail "$KDIR/node$i.log"; exit 1; }; done
"$BIN" cluster init --config "$KDIR/node1.toml" >/dev/null
for i in 1 2 3; do wait_until 60 ready $i || exit 1; done
UIN=$("$BIN" account create --name scale --config "$KDIR/node1.toml" | sed -n 's/.*Uin \([0-9]*\).*/\1/p')
CRED=$("$BIN" credential create --uin "$UIN" --config "$KDIR/node1.toml")
export KMS_SECRET_ID KMS_SECRET_KEY
KMS_SECRET_ID=$(sed -n 's/^SecretId: *//p' <<<"$CRED")
KMS_SECRET_KEY=$(sed -n 's/^SecretKey: *//p' <<<"$CRED")
unset CRED
L=$(leader)
LE=http://$(api "$L")

{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc=$(nproc)"
  echo "cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "ram=$(free -g | awk '/^Mem:/ { print $2 " GiB" }')"
  echo "kernel=$(uname -r)"
  echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "raftkms=$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo '+uncommitted')"
  echo "records=$RECORDS"
  echo "keys=$KEYS"
  echo "duration=$DURATION"
  echo "cmdline=$CMDLINE"
  kms_meta
} >"$RES/meta.env"

# bench NAME [args]: a closed-loop run against the leader, JSON into $RES/NAME.json.
bench() {
  local name=$1; shift
  log "bench $name: raftkms bench --json --endpoints $LE $*"
  "$BIN" bench --json --endpoints "$LE" "$@" >"$RES/$name.json" 2>"$RES/$name.err" \
    || { log "bench $name failed: $(tail -2 "$RES/$name.err")"; return 0; }
  jq -r '"    \(.throughput | floor) req/s  p50 \(.latency_ms.p50) ms  p99 \(.latency_ms.p99) ms  errors \(.errors)"' "$RES/$name.json" >&2
}
rss_all() { local i; for i in 1 2 3; do echo "rss_$1_$i=$(rss_mib "${PID[$i]}")"; done >>"$RES/meta.env"; }

rss_all empty
# 1,000 real keys (CreateKey), then Encrypt at 1k keys.
bench create-1k --workload create --requests 1000 --connections 16 --duration 600
bench encrypt-1k --workload encrypt --connections 16 --duration "$DURATION"
rss_all 1k

# More real keys in chunks of 5,000 (a twentieth of --keys when that is larger): the CreateKey
# rate as the key count grows.
CHUNK=$(( KEYS / 20 )); [ "$CHUNK" -lt 5000 ] && CHUNK=5000
done_keys=1000
chunk=0
while [ "$done_keys" -lt $(( 1000 + KEYS )) ]; do
  chunk=$(( chunk + 1 ))
  n=$(( 1000 + KEYS - done_keys )); [ "$n" -gt "$CHUNK" ] && n=$CHUNK
  bench "create-chunk-$chunk" --workload create --requests "$n" --connections 16 --duration 900
  done_keys=$(( done_keys + n ))
  echo "chunk_${chunk}_keys_after=$done_keys" >>"$RES/meta.env"
done
echo "chunks=$chunk" >>"$RES/meta.env"
bench encrypt-keys --workload encrypt --connections 16 --duration "$DURATION"

# The batch path: $RECORDS entries, 1,000 per Raft command.
log "loading $RECORDS records through POST /admin/records (1,000 per command)"
t0=$(now_ms)
python3 - "$(raft "$L")" "$ADMIN" "$RECORDS" <<'EOF'
import json, sys, urllib.request
addr, secret, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
value = "v" * 300
done = 0
while done < total:
    n = min(1000, total - done)
    body = json.dumps({"records": {f"scale/{done + i:08d}": value for i in range(n)}}).encode()
    req = urllib.request.Request(f"http://{addr}/admin/records", data=body, method="POST", headers={
        "authorization": f"Bearer {secret}", "x-raftkms-cluster": "bench-scale", "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()
    done += n
    if done % 100000 == 0:
        print(f"  {done} records", file=sys.stderr, flush=True)
EOF
t1=$(now_ms)
echo "load_ms=$(( t1 - t0 ))" >>"$RES/meta.env"
# Wait until the three nodes have applied the same index (/admin/status is cheap; /admin/digest
# dumps and hashes the whole state under the state lock, too heavy to poll at this size).
applied() { status "$1" | jq -r '.applied_index // "none"'; }
for _ in $(seq 1200); do
  d=$( (for i in 1 2 3; do applied $i || echo "down-$i"; done) | sort -u | wc -l) || d=0
  [ "$d" = 1 ] && break; sleep 0.5
done
t2=$(now_ms)
echo "converge_ms=$(( t2 - t0 ))" >>"$RES/meta.env"
status "$L" | jq -c . >"$RES/status.json" || true
log "loaded in $(( t1 - t0 )) ms, all nodes converged after $(( t2 - t0 )) ms"
rss_all 1m
bench encrypt-1m --workload encrypt --connections 16 --duration "$DURATION"
rss_all after
grep -h "built snapshot" "$KDIR"/node[123].log | tail -12 >"$RES/snapshots.txt" || true

# A fourth node joins: it must be fed the snapshot. Bounded: the join is retried while there is no
# leader, for at most JOIN_LIMIT seconds in all; then node 4 gets the rest of that time to catch up.
JOIN_LIMIT=300
log "node 4 joins"
start 4
wait_until 60 status 4 || exit 1
t0=$(now_ms)
join_status=failed
while [ $(( $(now_ms) - t0 )) -lt $(( JOIN_LIMIT * 1000 )) ]; do
  if timeout $(( JOIN_LIMIT - ($(now_ms) - t0) / 1000 + 1 )) "$BIN" cluster join --config "$KDIR/node1.toml" --id 4 \
      --raft-addr "$(raft 4)" --api-addr "$(api 4)" --region ap-guangzhou >"$RES/join.out" 2>&1; then
    join_status=ok; break
  fi
  log "join attempt: $(tail -1 "$RES/join.out" | cut -c1-160)"
  grep -q "not the leader\|no leader\|503" "$RES/join.out" || break
  sleep 2
done
t1=$(now_ms)
echo "join_status=$join_status" >>"$RES/meta.env"
echo "join_ms=$(( t1 - t0 ))" >>"$RES/meta.env"
L=$(leader || echo 1)
target=$(applied "$L")
caught_up() { [ "$(applied 4)" -ge "$target" ]; }
remaining=$(( JOIN_LIMIT - (t1 - t0) / 1000 )); [ "$remaining" -lt 10 ] && remaining=10
if wait_until "$remaining" caught_up; then
  echo "join_caught_up_ms=$(( $(now_ms) - t0 ))" >>"$RES/meta.env"
else
  echo "join_caught_up_ms=none" >>"$RES/meta.env"
fi
log "join: $join_status after $(( t1 - t0 )) ms"
for i in 1 2 3 4; do
  echo "leader_changes_$i=$(grep -c 'leader changed' "$KDIR/node$i.log" || true)"
  echo "term_$i=$(status $i | jq -r '.term // "?"' 2>/dev/null || echo '?')"
  echo "state_$i=$(status $i | jq -r '.state // "?"' 2>/dev/null || echo '?')"
done >>"$RES/meta.env"
grep -h "installed snapshot" "$KDIR/node4.log" | tail -3 >"$RES/install.log" || true
echo "rss_join_4=$(rss_mib "${PID[4]}")" >>"$RES/meta.env"
du -sm "$KDIR/node1" | awk '{ print "disk_mib_1=" $1 }' >>"$RES/meta.env"

# Cold start: stop all four nodes (SIGTERM, graceful), start them, time until the first Encrypt.
log "cold start"
for i in 1 2 3 4; do kill -TERM "${PID[$i]}" 2>/dev/null || true; done
for i in 1 2 3 4; do { wait "${PID[$i]}"; } 2>/dev/null || true; done
t0=$(now_ms)
for i in 1 2 3 4; do start $i; done
for i in 1 2 3 4; do wait_until 300 status $i || true; echo "cold_answer_ms_$i=$(( $(now_ms) - t0 ))" >>"$RES/meta.env"; done
# The first Encrypt through any node (each try bounded by 10 s; the whole wait by COLD_LIMIT).
COLD_LIMIT=180
cold=none
while [ $(( $(now_ms) - t0 )) -lt $(( COLD_LIMIT * 1000 )) ]; do
  for i in 1 2 3; do
    if timeout 10 "$BIN" bench --json --endpoints "http://$(api $i)" --workload encrypt --connections 1 --requests 1 --duration 5 2>/dev/null | jq -e '.ok == 1' >/dev/null 2>&1; then
      cold=$(( $(now_ms) - t0 )); break 2
    fi
  done
  sleep 0.2
done
echo "cold_first_encrypt_ms=$cold" >>"$RES/meta.env"
for i in 1 2 3 4; do echo "cold_state_$i=$(status $i | jq -r '"\(.state) term \(.term)"' 2>/dev/null || echo '?')"; done >>"$RES/meta.env"
for i in 1 2 3 4; do echo "rss_cold_$i=$(rss_mib "${PID[$i]}")"; done >>"$RES/meta.env"
echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RES/meta.env"
echo "elapsed_s=$(( $(date +%s) - T_START ))" >>"$RES/meta.env"
log "cold start: first Encrypt answered after $cold ms"

# The raw output goes into the repository (benches/results/<date>-scale unless OUT is set): the
# report is made from that copy and names it, so every figure in docs/ has its raw file.
OUT=${OUT:-$ROOT/benches/results/$(date -u +%Y-%m-%d)-scale}
rm -rf "$OUT"; mkdir -p "$(dirname "$OUT")"; cp -r "$RES" "$OUT"
python3 "$ROOT/benches/report.py" --scale "$OUT" >"$OUT/scale.md"
cat "$OUT/scale.md"
if [ "$WRITE_DOC" = 1 ]; then
  python3 "$ROOT/benches/report.py" --splice "$ROOT/docs/benchmarks.md" scale <"$OUT/scale.md"
  log "wrote docs/benchmarks.md"
fi
mkdir -p /var/cache/raftkms/scale-results
rm -rf /var/cache/raftkms/scale-results/last; cp -r "$RES" /var/cache/raftkms/scale-results/last
log "done in $(( $(date +%s) - T_START )) s"
