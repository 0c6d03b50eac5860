#!/usr/bin/env bash
# The rolling-upgrade test (docs/operations.md, "Rolling upgrades"; issue 21): a 3-node cluster
# (`raftkms dev`, mutual TLS) of the previous release, PREV_TAG, upgraded node by node to this
# build while tests/upgrade/load.py keeps creating keys, encrypting, decrypting and describing
# through every node. On the way:
#   - one node is upgraded and then rolled back to the previous release (the feature level has
#     not risen, so it rejoins), then upgraded again;
#   - `raftkms cluster upgrade finalize` is refused while a member is down, and while a member
#     runs the previous release (naming it);
#   - with every node upgraded, BindCloudResource and a hosted GenerateDataKey (level-2 commands)
#     are refused; finalize raises the cluster's feature level from 1 to 2, and then they are
#     accepted;
#   - after that, the previous release refuses to start on an upgraded node's data directory.
# At the end every key and ciphertext the load saw acknowledged must be there on every node, no
# request may have failed beyond the client's retries, and the nodes' state digests must agree.
#
#   tests/upgrade/run.sh [--out FILE]    (dev build of this checkout; the previous release is
#                                         built once from git into $CACHE/prev and reused; ports
#                                         28181-28183, 29181-29183; about 3 minutes)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=""
[ "${1:-}" = "--out" ] && OUT=$2
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/raftkms/target}
CACHE=${RAFTKMS_CACHE:-/var/cache/raftkms}
# The previous release: the first tagged one (v0.1.0 = this commit of main).
PREV_TAG=v0.1.0
PREV_COMMIT=57f88fe1965bb48eea7f86645d271ea90c9a52a8
PORT=28181
T0=$(date +%s)
say() { printf '[%4ds] %s\n' $(( $(date +%s) - T0 )) "$*"; }
fail() { say "FAIL: $*"; exit 1; }

# --- the two builds ---------------------------------------------------------------------------
# The same build as `cargo test` (and .ci/run) makes: a bin-only build resolves the dependencies'
# features without the dev-dependencies and would compile them again.
cargo build --quiet --tests --bins
NEW=$CARGO_TARGET_DIR/debug/raftkms
PREV=$CACHE/prev/raftkms-$PREV_COMMIT
if [ ! -x "$PREV" ]; then
  git cat-file -e "$PREV_COMMIT^{commit}" 2>/dev/null ||
    fail "the previous release $PREV_TAG ($PREV_COMMIT) is not in this clone's history (a shallow clone?): git fetch --tags --unshallow"
  say "building the previous release $PREV_TAG ($PREV_COMMIT) once into $CACHE/prev"
  rm -rf "$CACHE/prev/src" && mkdir -p "$CACHE/prev/src"
  git archive "$PREV_COMMIT" | tar -x -C "$CACHE/prev/src"
  ptarget=$CACHE/prev/target
  # Seeded with this checkout's dependencies (same Cargo.lock and profile: only raftkms itself is
  # compiled). Its own target directory: cargo would take one checkout's raftkms for the other's.
  if [ ! -d "$ptarget/debug/deps" ] && [ -d "$CARGO_TARGET_DIR/debug/deps" ]; then
    mkdir -p "$ptarget/debug"
    for d in deps build .fingerprint; do cp -a "$CARGO_TARGET_DIR/debug/$d" "$ptarget/debug/"; done
    rm -rf "$ptarget"/debug/.fingerprint/raftkms-* "$ptarget"/debug/deps/raftkms-* \
      "$ptarget"/debug/deps/libraftkms-*
  fi
  (cd "$CACHE/prev/src" && CARGO_TARGET_DIR=$ptarget cargo build --quiet --locked --bin raftkms)
  cp "$ptarget/debug/raftkms" "$PREV.tmp" && mv "$PREV.tmp" "$PREV"
fi
say "previous: $("$PREV" --version); new: $("$NEW" --version)"
[ "$("$PREV" --version)" != "$("$NEW" --version)" ] || fail "both builds report the same release"

# --- the cluster ------------------------------------------------------------------------------
DIR=$(mktemp -d /tmp/raftkms-upgrade.XXXXXX)
declare -A PIDS=()
LOAD=""
dev=""
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}" $LOAD $dev; do kill -9 "$p" 2>/dev/null || true; done
  { wait; } 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then
    for n in 1 2 3; do echo "--- node $n log (last 15 lines)"; tail -15 "$DIR/node$n.log" 2>/dev/null || true; done
    echo "kept $DIR (exit $rc)"
  else
    rm -rf "$DIR"
  fi
}
trap cleanup EXIT
"$PREV" dev --data-dir "$DIR" --port "$PORT" >"$DIR/dev.out" 2>&1 &
dev=$!
for _ in $(seq 600); do grep -q RAFTKMS_ADMIN_KEY "$DIR/dev.env" 2>/dev/null && break; sleep 0.1; done
kill -INT "$dev"; wait "$dev" || true
dev=""
set -a; . "$DIR/dev.env"; set +a
# Room for the load's keys in the dev account (Tencent's default limit is 200 per account).
for n in 1 2 3; do
  if grep -q '^cmk-limit' "$DIR/node$n.toml"; then sed -i 's/^cmk-limit *=.*/cmk-limit = 100000/' "$DIR/node$n.toml"
  elif grep -q '^\[kms\]' "$DIR/node$n.toml"; then sed -i '/^\[kms\]/a cmk-limit = 100000' "$DIR/node$n.toml"
  else printf '\n[kms]\ncmk-limit = 100000\n' >>"$DIR/node$n.toml"; fi
done
api() { echo "127.0.0.1:$(( PORT + $1 - 1 ))"; }
internal() { echo "127.0.0.1:$(( PORT + 1000 + $1 - 1 ))"; }
curl_admin() { curl -s -m 3 --cacert "$RAFTKMS_CA" --cert "$RAFTKMS_ADMIN_CERT" --key "$RAFTKMS_ADMIN_KEY" -H "x-raftkms-cluster: $RAFTKMS_CLUSTER_ID" "$@"; }
json_field() { python3 -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print("" if v is None else v)' "$1" 2>/dev/null; }
leader_of() { curl_admin "https://$(internal "$1")/admin/status" | json_field leader || true; }
declare -A RUNNING=()
start() { # start N prev|new
  local bin=$PREV; [ "$2" = new ] && bin=$NEW
  "$bin" serve --config "$DIR/node$1.toml" >>"$DIR/node$1.log" 2>&1 &
  PIDS[$1]=$!; RUNNING[$1]=$2
}
stop() { # stop N: SIGTERM, then wait (SIGKILL after 15 s)
  local p=${PIDS[$1]} _
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true
  unset "PIDS[$1]"
}
ready() { # ready N: until node N answers /readyz and knows a leader (30 s)
  local _
  for _ in $(seq 300); do
    if curl -s -m 2 -o /dev/null -w '%{http_code}' --cacert "$RAFTKMS_CA" "https://$(api "$1")/readyz" | grep -q 200 &&
       [ -n "$(leader_of "$1")" ]; then return 0; fi
    sleep 0.1
  done
  fail "node $1 (${RUNNING[$1]}) not ready after 30 s"
}
leader() { local n l; for n in 1 2 3; do [ -n "${PIDS[$n]:-}" ] || continue; l=$(leader_of "$n"); [ -n "$l" ] && { echo "$l"; return 0; }; done; return 0; }
replace() { # replace N prev|new: one step of a rolling upgrade (or rollback)
  say "node $1: ${RUNNING[$1]} -> $2"
  stop "$1"; start "$1" "$2"; ready "$1"
  sleep 2
}
finalize() { "$NEW" cluster upgrade finalize --node "$(internal "$1")" 2>&1; }
for n in 1 2 3; do start "$n" prev; done
for n in 1 2 3; do ready "$n"; done
L=$(leader)
[ -n "$L" ] || fail "no leader"
say "cluster of $PREV_TAG up; leader node $L"

python3 tests/upgrade/load.py run --out "$DIR/load.json" --stop "$DIR/stop" --max-seconds 400 \
  >"$DIR/load.out" 2>&1 &
LOAD=$!
sleep 4

# One follower: upgraded, rolled back (the level has not risen), upgraded again.
A=$(( L % 3 + 1 )); B=$(( A % 3 + 1 ))   # the two followers
replace "$A" new
replace "$A" prev
say "rolled back node $A to $PREV_TAG before the feature level rose: it rejoined"
replace "$A" new
replace "$B" new
# The node still on the previous release (the leader, L, unless it moved meanwhile).
C=$(( 6 - A - B ))
say "node $C (leader: node $(leader)) still runs $PREV_TAG; stopping it"
stop "$C"
sleep 2
N=$(leader); [ -n "$N" ] || fail "no leader after stopping node $C"
out=$(finalize "$N") && fail "finalize succeeded with node $C down: $out"
case "$out" in *"did not answer"*) ;; *) fail "finalize with node $C down: $out" ;; esac
say "finalize refused while node $C is down: $(echo "$out" | tail -1 | cut -c1-160)"
# Node C back on the previous release. (Should it win an election, restart it: the refusal
# below must come from a leader of this build.)
for try in 1 2 3; do
  start "$C" prev; ready "$C"; sleep 1
  N=$(leader)
  [ -n "$N" ] && [ "$N" != "$C" ] && break
  say "node $C ($PREV_TAG) leads; restarting it (attempt $try)"
  stop "$C"; sleep 1
done
[ "$N" != "$C" ] || fail "node $C on $PREV_TAG keeps winning elections"
out=$(finalize "$N") && fail "finalize succeeded with node $C on $PREV_TAG: $out"
case "$out" in *"node $C runs raftkms 0.1.0"*) ;; *) fail "finalize with node $C on $PREV_TAG: $out" ;; esac
say "finalize refused while node $C runs $PREV_TAG: $(echo "$out" | tail -1 | cut -c1-200)"
"$NEW" cluster upgrade status --node "$(internal "$N")" | sed 's/^/    /'
replace "$C" new
"$NEW" cluster upgrade status --node "$(internal "$N")" >"$DIR/status.out" || fail "upgrade status"
sed 's/^/    /' "$DIR/status.out"
grep -q "cluster feature level: 1" "$DIR/status.out" || fail "the level rose before finalize"
python3 tests/upgrade/load.py bind --expect UnsupportedOperation | sed 's/^/    /'
say "every node runs the new release, level 1: BindCloudResource, hosted data keys and post-quantum keys (level 2) refused on every node"
out=$(finalize "$N") || fail "finalize: $out"
case "$out" in *"raised from 1 to 2"*) ;; *) fail "finalize: $out" ;; esac
say "$out"
"$NEW" cluster upgrade status --node "$(internal "$N")" >"$DIR/status.out" || fail "upgrade status"
grep -q "cluster feature level: 2" "$DIR/status.out" || fail "level not 2: $(cat "$DIR/status.out")"
python3 tests/upgrade/load.py bind --expect ok | sed 's/^/    /'
say "level 2: BindCloudResource, hosted data keys and post-quantum keys accepted on every node (the bound key refuses DisableKey; the data key reads back)"
sleep 3
touch "$DIR/stop"
wait "$LOAD" || fail "the load ended with an error: $(tail -5 "$DIR/load.out")"
LOAD=""
cat "$DIR/load.out"

# After the raise the previous release must refuse an upgraded node's data directory.
X=$(( N % 3 + 1 ))
stop "$X"
set +e
timeout 30 "$PREV" serve --config "$DIR/node$X.toml" >"$DIR/prev-after.log" 2>&1
rc=$?
set -e
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "unsupported format version 70 for registry key prefix" "$DIR/prev-after.log" ||
  fail "the previous release did not refuse node $X's data directory after the raise (exit $rc): $(tail -3 "$DIR/prev-after.log")"
say "after the raise, $PREV_TAG refuses node $X's data directory (exit $rc): $(grep -o 'unsupported format version 70 for registry key prefix' "$DIR/prev-after.log" | head -1)"
start "$X" new; ready "$X"

# Nothing acknowledged is lost, nothing failed beyond the retries, and the nodes agree.
failed=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["failed"]))' "$DIR/load.json")
[ "$failed" = 0 ] || fail "$failed requests failed after the client's retries"
python3 tests/upgrade/load.py check --recorded "$DIR/load.json"
digests=""
for _ in $(seq 50); do
  all=$(for n in 1 2 3; do curl_admin "https://$(internal "$n")/admin/digest" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["applied_index"], d["digest"])' 2>/dev/null || true; done)
  digests=$(echo "$all" | sort -u)
  [ "$(echo "$all" | grep -c .)" = 3 ] && [ "$(echo "$digests" | wc -l)" = 1 ] && break
  sleep 0.2
done
[ "$(echo "$all" | grep -c .)" = 3 ] && [ "$(echo "$digests" | wc -l)" = 1 ] || fail "state digests of the 3 nodes differ or are missing: $all"
say "state digests agree on all 3 nodes at index $(echo "$digests" | cut -d' ' -f1)"
summary="upgrade test PASS: $PREV_TAG -> $("$NEW" --version | awk '{print $2}') node by node under load, one rollback before the raise, finalize refused with a member down and with a member on $PREV_TAG, a level-2 action refused before and accepted after the raise, level 1 -> 2, $PREV_TAG refused afterwards; $(sed -n 's/^load: //p' "$DIR/load.out")"
say "$summary"
[ -z "$OUT" ] || echo "$summary" >"$OUT"
