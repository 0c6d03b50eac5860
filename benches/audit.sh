#!/usr/bin/env bash
# What the audit trail and policy evaluation cost raftkms, in one run on this machine: two 3-node
# clusters side by side, one with `[audit] enabled = false`, one with the trail on (the default),
# driven by the same load generator (`raftkms bench`, keep-alive connections) with Encrypt of
# 32 bytes: on the first as the account's root, on the second as the account's root (the trail
# alone) and as a sub-user with 100 policies attached (the trail and policy evaluation; 99 of them
# allow Encrypt on other keys, one allows kms:* on everything, so every request matches the action
# of all 100 and the resource of all but one). Writes docs/benchmarks.md (the block between the
# audit markers) and the raw output to benches/results/<date>-audit/.
#
#   benches/audit.sh [--short] [--duration S] [--connections N] [--no-doc]
#
#   --short        3 s per workload instead of 20 (about 2 minutes)
#   --duration S   seconds per workload (default 20)
#   --connections  closed-loop connections (default 16)
#   --no-doc       leave docs/benchmarks.md alone
#
# Runs the release build unless PROFILE=dev. Plaintext clusters (the trail's cost, not TLS's).
# Ports (loopback only): audit off 38081-38083/38181-38183, audit on 39081-39083/39181-39183. Every
# process is killed and the temp dir removed on exit; a watchdog bounds the run (15 min; 5 min with
# --short).
set -euo pipefail

DURATION=20 CONNS=16 WRITE_DOC=1 SHORT=0
while [ $# -gt 0 ]; do
  case "$1" in
    --short) SHORT=1; DURATION=3 ;;
    --duration) DURATION=$2; shift ;;
    --connections) CONNS=$2; shift ;;
    --no-doc) WRITE_DOC=0 ;;
    -h|--help) sed -n 2,21p "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/raftkms/target}
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
start_run audit $(( SHORT ? 300 : 900 ))
log "building raftkms (${PROFILE:-release} profile)"
build_raftkms

# kms_cluster MODE API_BASE RAFT_BASE: the configs of a 3-node plaintext cluster, trail on or off.
kms_cluster() {
  local mode=$1 api=$2 raft=$3 d=$DIR/kms-$1 i j secret admin
  mkdir -p "$d"
  (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$d/unseal.key")
  secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  admin=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  for i in 1 2 3; do
    {
      echo "node-id = $i"
      echo "cluster-id = \"bench-audit-$mode\""
      echo "cluster-secret = \"$secret\""
      echo "admin-token = \"$admin\""
      echo 'region = "ap-guangzhou"'
      echo "data-dir = \"$d/node$i\""
      echo "api-listen = \"127.0.0.1:$(( api + i ))\""
      echo "raft-listen = \"127.0.0.1:$(( raft + i ))\""
      echo "insecure-plaintext = true"
      printf '[rate-limits]\ncredential-crypto-per-second = 0\ncredential-management-per-second = 0\n'
      printf 'account-crypto-per-second = 0\naccount-management-per-second = 0\n'
      printf '[kms]\ncmk-limit = 100000000\nunseal-key-file = "%s"\n' "$d/unseal.key"
      if [ "$mode" = off ]; then printf '[audit]\nenabled = false\n'; fi
      kms_timing_toml
      for j in 1 2 3; do
        printf '[[peers]]\nid = %d\nraft-addr = "127.0.0.1:%d"\napi-addr = "127.0.0.1:%d"\nregion = "ap-guangzhou"\nvoter = true\n' \
          "$j" $(( raft + j )) $(( api + j ))
      done
    } >"$d/node$i.toml"
    chmod 600 "$d/node$i.toml"
  done
}
kms_admin() { local mode=$1; shift; "$BIN" "$@" --config "$DIR/kms-$mode/node1.toml"; }
kms_leader() { kms_admin "$1" cluster status --json 2>/dev/null | jq -e -r '.leader // empty'; }
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
# credential_of TEXT: "SECRETID SECRETKEY" from `credential create` output.
credential_of() { echo "$(sed -n 's/^SecretId: *//p' <<<"$1") $(sed -n 's/^SecretKey: *//p' <<<"$1")"; }

declare -a OFFPID ONPID
log "starting raftkms with the audit trail off and on (3 nodes each)"
kms_cluster off 38080 38180
kms_cluster on 39080 39180
kms_start off OFFPID 38080 38180
kms_start on ONPID 39080 39180

UIN_OFF=$(kms_admin off account create --name bench | sed -n 's/.*Uin \([0-9]*\).*/\1/p')
read -r ID_OFF KEY_OFF <<<"$(credential_of "$(kms_admin off credential create --uin "$UIN_OFF")")"
UIN_ON=$(kms_admin on account create --name bench | sed -n 's/.*Uin \([0-9]*\).*/\1/p')
read -r ID_ON KEY_ON <<<"$(credential_of "$(kms_admin on credential create --uin "$UIN_ON")")"
# The sub-user and its 100 policies.
log "creating a sub-user with 100 policies"
kms_admin on user create --uin "$UIN_ON" --name bench-user >/dev/null
for n in $(seq 1 99); do
  printf '{"version":"2.0","statement":[{"effect":"allow","action":["kms:Encrypt","kms:Decrypt"],"resource":"qcs::kms:ap-guangzhou:uin/%s:key/00000000-0000-0000-0000-%012d"}]}' \
    "$UIN_ON" "$n" >"$DIR/p$n.json"
done
printf '{"version":"2.0","statement":[{"effect":"allow","action":"kms:*","resource":"*"}]}' >"$DIR/p100.json"
for n in $(seq 1 100); do
  kms_admin on policy create --uin "$UIN_ON" --name "p$n" --file "$DIR/p$n.json" >/dev/null
  kms_admin on policy attach --uin "$UIN_ON" --policy "p$n" --user bench-user >/dev/null
done
read -r ID_USER KEY_USER <<<"$(credential_of "$(kms_admin on user credential --uin "$UIN_ON" --name bench-user)")"

{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc=$(nproc)"
  echo "cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "kernel=$(uname -r)"
  echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "raftkms=$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo '+uncommitted')"
  echo "rustc=$(rustc --version)"
  echo "duration=$DURATION"
  echo "connections=$CONNS"
  echo "policies=$(kms_admin on policy list --uin "$UIN_ON" | grep -c 'user/bench-user')"
  kms_meta
} >"$RES/meta.env"
OFFL=$(kms_leader off); ONL=$(kms_leader on)
echo "off_leader=$OFFL on_leader=$ONL" >>"$RES/meta.env"
OFFE=http://127.0.0.1:$(( 38080 + OFFL ))
ONE=http://127.0.0.1:$(( 39080 + ONL ))

log "warm-up"
KMS_SECRET_ID=$ID_OFF KMS_SECRET_KEY=$KEY_OFF "$BIN" bench --target kms --endpoints "$OFFE" --workload encrypt --connections "$CONNS" --duration 2 >/dev/null 2>&1 || true
KMS_SECRET_ID=$ID_ON KMS_SECRET_KEY=$KEY_ON "$BIN" bench --target kms --endpoints "$ONE" --workload encrypt --connections "$CONNS" --duration 2 >/dev/null 2>&1 || true

export KMS_SECRET_ID KMS_SECRET_KEY
# Two rounds, interleaved, so that load drift on the shared machine hits all three alike.
for round in 1 2; do
  KMS_SECRET_ID=$ID_OFF KMS_SECRET_KEY=$KEY_OFF bench "off-root-$round" OFFPID kms encrypt "$OFFE" --payload 32
  KMS_SECRET_ID=$ID_ON KMS_SECRET_KEY=$KEY_ON bench "on-root-$round" ONPID kms encrypt "$ONE" --payload 32
  KMS_SECRET_ID=$ID_USER KMS_SECRET_KEY=$KEY_USER bench "on-user100-$round" ONPID kms encrypt "$ONE" --payload 32
done
# The trail really recorded the load (and verifies).
records=0
for i in 1 2 3; do
  n=$("$BIN" audit verify --offline --json --dir "$DIR/kms-on/node$i/audit" | jq -r '.records')
  records=$(( records + n ))
done
echo "audit_records=$records" >>"$RES/meta.env"

echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RES/meta.env"
echo "elapsed_s=$(( $(date +%s) - T_START ))" >>"$RES/meta.env"
CMDLINE=benches/audit.sh
if [ "$SHORT" = 1 ]; then CMDLINE+=" --short"; elif [ "$DURATION" != 20 ]; then CMDLINE+=" --duration $DURATION"; fi
if [ "$CONNS" != 16 ]; then CMDLINE+=" --connections $CONNS"; fi
echo "cmdline=$CMDLINE" >>"$RES/meta.env"
SUFFIX=audit
if [ "$SHORT" = 1 ]; then SUFFIX=audit-short; fi
OUT=${OUT:-$ROOT/benches/results/$(date -u +%Y-%m-%d)-$SUFFIX}
rm -rf "$OUT"; mkdir -p "$(dirname "$OUT")"; cp -r "$RES" "$OUT"
python3 "$ROOT/benches/report.py" --audit "$OUT" >"$OUT/audit.md"
cat "$OUT/audit.md"
if [ "$WRITE_DOC" = 1 ]; then
  python3 "$ROOT/benches/report.py" --splice "$ROOT/docs/benchmarks.md" audit <"$OUT/audit.md"
  log "wrote docs/benchmarks.md"
fi
log "done in $(( $(date +%s) - T_START )) s"
