#!/usr/bin/env bash
# Container test (run by .ci/run when a Docker engine is usable; about 3-5 minutes when the host has
# already built this source):
#
#   docker/test.sh
#
# Builds the image from source (docker/build.sh), starts the 3-region compose cluster
# (docker/compose-three-regions.yml, 2+2+1 voters, TLS on both listeners with certificates docker/up.sh
# makes) as its own project on its own host ports, and drives it through the Tencent Cloud SDK over
# HTTPS (docker/container_check.py), and its internal listener with mutual TLS:
#   1. keys and ciphertexts through every node; the internal listener takes the admin certificate
#      on admin routes, refuses a node certificate there (401) and a client without a certificate
#   2. `docker stop` the leader's container: writes continue through the others, every earlier
#      ciphertext decrypts; restart it; all nodes converge to the same state digest
#   3. `docker network disconnect` the leader's whole region from the internal network: writes
#      continue through the other regions; in the cut-off region stale Encrypt/Decrypt work and
#      report the lag headers, writes and linearizable reads fail within a bound
#   4. reconnect the region: all nodes converge to the same digest, everything decrypts everywhere
#   5. `raftkms drill` against the compose cluster (stops a region's containers and starts them
#      again), when the binary has the drill
# Everything (containers, networks, volumes, temp files) is removed at the end, also on failure or
# Ctrl-C. One progress line per phase; PASS or FAIL last; non-zero exit on failure.
set -euo pipefail
# shellcheck source=docker/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export COMPOSE_PROJECT_NAME=${RAFTKMS_TEST_PROJECT:-raftkms-ctest}
export RAFTKMS_PORT_PREFIX=${RAFTKMS_TEST_PORT_PREFIX:-352}
work=$(mktemp -d /tmp/raftkms-ctest.XXXXXX)
export RAFTKMS_STATE_DIR=$work
cluster_setup three
export DC_TIMEOUT=120
venv=${RAFTKMS_VENV:-/var/cache/raftkms/venv}
state=$work/state.json
log=$work/log
started=$SECONDS
phase_no=0
PHASES=9

phase() {
    phase_no=$((phase_no + 1))
    printf '[%d/%d %3ds] %s\n' "$phase_no" "$PHASES" "$((SECONDS - started))" "$*"
}
note() { echo "      $*"; }

# The running phase command, in its own process group so that an interrupt stops all of it.
child=""
finish() {
    local status=$?
    trap - EXIT INT TERM HUP
    if [[ -n $child ]]; then
        kill -TERM -- "-$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    if ((status != 0 && status != 130)); then
        echo "docker/test.sh: failed in phase $phase_no; last output:" >&2
        tail -n 25 "$log" 2>/dev/null | sed 's/^/  | /' >&2 || true
        echo "docker/test.sh: node logs (last lines):" >&2
        dc logs --no-color --tail 8 2>/dev/null | sed 's/^/  | /' >&2 || true
    fi
    echo "cleanup: removing project $PROJECT (containers, networks, volumes)"
    DC_TIMEOUT=120 dc down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 || true
    rm -rf "$work"
    if ((status == 0)); then
        echo "PASS: container test ($((SECONDS - started)) s)"
    else
        echo "FAIL: container test ($((SECONDS - started)) s)"
    fi
    exit "$status"
}
trap finish EXIT
trap 'echo "docker/test.sh: interrupted" >&2; exit 130' INT TERM HUP

# Runs a command in its own process group and waits for it (a trapped signal interrupts the wait
# at once, and finish() stops the group).
run() {
    local rc=0
    setsid "$@" &
    child=$!
    wait "$child" || rc=$?
    child=""
    return "$rc"
}
# The same with the output in $log; on failure finish() shows its end.
quiet() { run "$@" >>"$log" 2>&1; }
check() { run "$venv/bin/python" "$DOCKER_DIR/container_check.py" "$state" "$@"; }
cluster_env() {
    set -a
    # shellcheck disable=SC1090
    . "$STATE_ENV"
    set +a
}
csv() { local IFS=,; echo "$*"; }

# --- 0. prerequisites -----------------------------------------------------------------------------
docker info >/dev/null 2>&1 || {
    echo "docker/test.sh: no usable Docker engine" >&2
    exit 1
}
command -v docker-compose >/dev/null || {
    echo "docker/test.sh: docker-compose is not installed" >&2
    exit 1
}
# The SDK virtualenv tests/sdk/run.sh builds (same pinned versions).
stamp="$venv/.raftkms-sdk-stamp"
eval "$(sed -n '/^PINNED=(/,/^)/p' "$REPO_DIR/tests/sdk/run.sh")"
if ! [[ -x $venv/bin/python && -f $stamp && "$(cat "$stamp")" == "$(printf '%s\n' "${PINNED[@]}")" ]]; then
    echo "docker/test.sh: preparing the SDK virtualenv $venv"
    [[ -x $venv/bin/python ]] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${PINNED[@]}"
    printf '%s\n' "${PINNED[@]}" >"$stamp"
fi
# Both the SDK and urllib would send 127.0.0.1 traffic through a proxy.
unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY all_proxy

# --- 1. image -------------------------------------------------------------------------------------
phase "build the image from source (docker/build.sh)"
quiet "$DOCKER_DIR/build.sh" --tag "$RAFTKMS_IMAGE"
note "$(grep -E 'build.sh: (compiled|image)' "$log" | sed 's/^build.sh: //' | paste -sd ';' | sed 's/;/; /')"

# --- 2. cluster -----------------------------------------------------------------------------------
phase "start the 3-region cluster (project $PROJECT, API ports ${PORT_PREFIX}01-${PORT_PREFIX}05)"
quiet timeout 120 "${DC_CMD[@]}" down --volumes --remove-orphans --timeout 5
quiet "$DOCKER_DIR/up.sh" three
cluster_env
note "$(node_admin 1 cluster status | head -n1)"

phase "keys and ciphertexts through every node (SDK, HTTPS)"
check setup --via "$(csv "${NODES[@]}")"

phase "mutual TLS: admin certificate accepted, node certificate and no certificate refused"
check tls --via "$(csv "${NODES[@]}")"

# --- 3. one container stopped ---------------------------------------------------------------------
leader=$(leader_of 1)
[[ -n $leader ]] || {
    echo "no leader" >&2
    exit 1
}
others=()
for n in "${NODES[@]}"; do [[ $n == "$leader" ]] || others+=("$n"); done
phase "docker stop node$leader (the leader): writes continue, old ciphertexts decrypt"
quiet timeout 120 "${DC_CMD[@]}" stop --timeout 5 "node$leader"
check writes --via "$(csv "${others[@]}")"
quiet timeout 120 "${DC_CMD[@]}" start "node$leader"
wait_ready "${others[0]}" 90 || {
    echo "the cluster is not ready 90 s after restarting node$leader" >&2
    exit 1
}
check converge --via "$(csv "${NODES[@]}")"

# --- 4. one region cut off ------------------------------------------------------------------------
leader=$(leader_of 1)
region=${REGION_OF[$leader]}
cut=() survivors=()
for n in "${NODES[@]}"; do
    if [[ ${REGION_OF[$n]} == "$region" ]]; then cut+=("$n"); else survivors+=("$n"); fi
done
net=$(raft_network)
phase "cut region $region (nodes $(csv "${cut[@]}"), the leader's) off the internal network"
for n in "${cut[@]}"; do
    quiet docker network disconnect "$net" "$(container_of "$n")"
done
note "stale reads and refusals in the cut-off region:"
check cut --cut "$(csv "${cut[@]}")"
note "writes through the other regions (nodes $(csv "${survivors[@]}")):"
check writes --via "$(csv "${survivors[@]}")"

phase "heal region $region; every node converges"
for n in "${cut[@]}"; do
    quiet docker network connect --alias "node$n-raft" "$net" "$(container_of "$n")"
done
wait_ready "${survivors[0]}" 90 || {
    echo "the cluster is not ready 90 s after healing $region" >&2
    exit 1
}
check converge --via "$(csv "${NODES[@]}")"

# --- 5. DR drill ----------------------------------------------------------------------------------
# The same binary as in the image, run on the host: the drill runs docker-compose itself.
drill_bin=$work/raftkms
cid=$(docker create "$RAFTKMS_IMAGE")
quiet docker cp "$cid:/usr/local/bin/raftkms" "$drill_bin"
quiet docker rm "$cid"
if "$drill_bin" drill --help >/dev/null 2>&1; then
    # The leader's region: the worst case, the drill then also measures a leader election.
    leader=$(leader_of 1)
    drill_region=${REGION_OF[${leader:-1}]}
    phase "raftkms drill --region $drill_region (docker-compose stop/start of its containers)"
    compose="${DC_CMD[*]}"
    # shellcheck disable=SC2046
    if ! run "$drill_bin" drill --region "$drill_region" \
        --node "127.0.0.1:$(internal_port 1)" \
        --cluster-id "$RAFTKMS_CLUSTER_ID" --admin-cert "$RAFTKMS_ADMIN_CERT" \
        --admin-key "$RAFTKMS_ADMIN_KEY" --cluster-ca "$RAFTKMS_CA" --ca "$KMS_CA_BUNDLE" \
        $(rewrite_args) \
        --cut "$compose stop --timeout 5 {services}" \
        --heal "$compose start {services}" \
        --keys 4 --outage-secs 3 --timeout-secs 60 >"$work/drill.log" 2>&1; then
        cat "$work/drill.log" >>"$log"
        echo "the drill failed" >&2
        exit 1
    fi
    sed 's/^/      | /' "$work/drill.log"
    check converge --via "$(csv "${NODES[@]}")"
else
    phase "raftkms drill: not in this binary, skipped"
fi

phase "all checks passed; tearing down"
