#!/usr/bin/env bash
# The restore drill (docs/operations.md, "Backups and restore"; issue 21): a 3-node cluster
# (`raftkms dev`, TLS) with PRELOAD keys made by `raftkms bench` and KEYS keys with one ciphertext
# each recorded as acknowledged; a backup taken through a follower while `raftkms bench --workload
# mix` keeps writing and reading; `raftkms backup verify`; a new cluster (new cluster id, new CA
# and certificates, the same unseal key) restored from the file with `raftkms restore` and started
# with `raftkms serve`; then every recorded key must be Enabled and every ciphertext decrypt to its
# plaintext through the restored node, and its state digest must be the one restore printed.
# Prints the backup's size, the time to back up, to restore and to serve, and the items verified.
#
#   benches/restore-drill.sh [KEYS] [PRELOAD]     (default 300 and 5000; release build unless
#                                                  PROFILE=dev; ports 28081-28084, 29081-29084)
set -euo pipefail
KEYS=${1:-300}
PRELOAD=${2:-5000}
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/raftkms/target}
# shellcheck source=benches/lib.sh
. benches/lib.sh
build_raftkms
dev_cluster restore-drill
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# Room for the drill's keys in the dev account (Tencent's default limit is 200 per account).
for n in 1 2 3; do
  if grep -q '^cmk-limit' "$DIR/node$n.toml"; then sed -i 's/^cmk-limit *=.*/cmk-limit = 100000/' "$DIR/node$n.toml"
  else sed -i '/^\[kms\]/a cmk-limit = 100000' "$DIR/node$n.toml"; fi
done
for n in 1 2 3; do dev_start $n; done
dev_wait_leader restore-drill-warm
F=$(( L % 3 + 1 ))
echo "source cluster $RAFTKMS_CLUSTER_ID: leader node $L; the backup is taken through node $F"

"$BIN" bench --workload create --requests "$PRELOAD" --connections 16 --duration 600 --json >"$DIR/preload.json"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["ok"] > 0 and not s["errors"], s; print("preloaded %d keys" % s["ok"])' "$DIR/preload.json"
python3 benches/restore_drill.py record --keys "$KEYS" --out "$DIR/recorded.json"

# The backup, while a mixed load keeps writing (1 % CreateKey) and reading.
"$BIN" bench --workload mix --rate 400 --duration 12 --json >"$DIR/load.json" &
LOAD=$!
DEV_PIDS+=("$LOAD")
sleep 3
t0=$(now_ms)
"$BIN" backup create --node "127.0.0.1:2908$F" --out "$DIR/kms.rkbak" | tee "$DIR/backup.out"
backup_ms=$(( $(now_ms) - t0 ))
wait "$LOAD"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["ok"] > 0, s; print("load during the backup: %d requests acknowledged, errors %s" % (s["ok"], s["errors"] or "none"))' "$DIR/load.json"
"$BIN" backup verify "$DIR/kms.rkbak"
size=$(stat -c %s "$DIR/kms.rkbak")

# The new cluster: its own id, CA and certificates; the source cluster's unseal key.
NEW=restored-$RAFTKMS_CLUSTER_ID
"$BIN" cert ca --dir "$DIR/new-tls" --cluster-id "$NEW" >/dev/null
"$BIN" cert node --dir "$DIR/new-tls" --cluster-id "$NEW" --id 1 --host 127.0.0.1 >/dev/null
"$BIN" cert admin --dir "$DIR/new-tls" --cluster-id "$NEW" --name drill >/dev/null
cat >"$DIR/new.toml" <<TOML
node-id = 1
cluster-id = "$NEW"
region = "$KMS_REGION"
data-dir = "$DIR/new-data"
api-listen = "127.0.0.1:28084"
raft-listen = "127.0.0.1:29084"

[tls]
cert-file = "$DIR/new-tls/node1.pem"
key-file = "$DIR/new-tls/node1.key"
ca-file = "$DIR/new-tls/ca.pem"

[kms]
unseal-key-file = "$DIR/unseal.key"
cmk-limit = 100000

[[peers]]
id = 1
raft-addr = "127.0.0.1:29084"
api-addr = "127.0.0.1:28084"
region = "$KMS_REGION"
TOML
chmod 600 "$DIR/new.toml"
t0=$(now_ms)
"$BIN" restore --config "$DIR/new.toml" "$DIR/kms.rkbak" | tee "$DIR/restore.out"
restore_ms=$(( $(now_ms) - t0 ))
digest=$(sed -n 's/^state digest after restore \([0-9a-f]*\).*/\1/p' "$DIR/restore.out")
[ -n "$digest" ] || { echo "restore printed no digest"; exit 1; }
"$BIN" serve --config "$DIR/new.toml" >>"$DIR/new.log" 2>&1 &
DEV_PIDS+=($!)
python3 benches/restore_drill.py verify --recorded "$DIR/recorded.json" --endpoint 127.0.0.1:28084 \
  --ca "$DIR/new-tls/ca.pem" --admin-addr 127.0.0.1:29084 --cluster-id "$NEW" \
  --admin-cert "$DIR/new-tls/admin-drill.pem" --admin-key "$DIR/new-tls/admin-drill.key" \
  --digest "$digest" | tee "$DIR/verify.out"
keys=$(sed -n "s/.*, keys \([0-9]*\),.*/\1/p" "$DIR/backup.out" | head -1)
echo "restore drill: backup of $keys keys, $size bytes, taken in $backup_ms ms under load; restore (checks and the new data directory) $restore_ms ms; $(sed -n 's/^restored node \(answering [0-9]* ms after it was started\).*/\1/p' "$DIR/verify.out"); $KEYS keys and $KEYS ciphertexts acknowledged before the backup verified, 0 lost"
