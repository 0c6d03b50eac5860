# Shared by docker/up.sh, docker/down.sh and docker/test.sh (sourced, not run).
#
# cluster_setup single|three  sets, for that layout:
#   COMPOSE_FILE_PATH  docker/compose-….yml          PROJECT   compose project (COMPOSE_PROJECT_NAME)
#   NODES              node ids                      REGION_OF region of each node id
#   PORT_PREFIX        host ports: API ${PORT_PREFIX}0N, internal ${PORT_PREFIX}1N
#   STATE_ENV          env file written by up.sh (credential, endpoints; mode 0600)
#   TLS_DIR            the cluster's CA, node and admin certificates (make_certificates), exported
#                      as RAFTKMS_TLS_DIR for the compose file, which mounts it at /etc/raftkms/tls
# Overrides: COMPOSE_PROJECT_NAME, RAFTKMS_PORT_PREFIX, RAFTKMS_STATE_DIR, RAFTKMS_IMAGE.

DOCKER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_DIR=$(cd "$DOCKER_DIR/.." && pwd -P)
RAFTKMS_IMAGE=${RAFTKMS_IMAGE:-raftkms:latest}
export RAFTKMS_IMAGE
# The admin certificate the scripts administer the cluster with: admin-dev.pem/.key in TLS_DIR.
ADMIN_NAME=dev

cluster_setup() {
    declare -gA REGION_OF=()
    case ${1:-} in
        single)
            COMPOSE_FILE_PATH=$DOCKER_DIR/compose-single-region.yml
            PORT_PREFIX=${RAFTKMS_PORT_PREFIX:-350}
            NODES=(1 2 3)
            REGION_OF=([1]=ap-guangzhou [2]=ap-guangzhou [3]=ap-guangzhou)
            ;;
        three)
            COMPOSE_FILE_PATH=$DOCKER_DIR/compose-three-regions.yml
            PORT_PREFIX=${RAFTKMS_PORT_PREFIX:-351}
            NODES=(1 2 3 4 5)
            REGION_OF=([1]=ap-guangzhou [2]=ap-guangzhou [3]=ap-shanghai [4]=ap-shanghai [5]=ap-singapore)
            ;;
        *)
            echo "usage: $0 single|three" >&2
            exit 2
            ;;
    esac
    LAYOUT=$1
    PROJECT=${COMPOSE_PROJECT_NAME:-raftkms-$1}
    # Absolute: the compose file bind-mounts TLS_DIR.
    STATE_DIR=$(realpath -m "${RAFTKMS_STATE_DIR:-$DOCKER_DIR/.state}")
    STATE_ENV=$STATE_DIR/$PROJECT.env
    TLS_DIR=$STATE_DIR/$PROJECT-tls
    export RAFTKMS_PORT_PREFIX=$PORT_PREFIX RAFTKMS_TLS_DIR=$TLS_DIR
    DC_CMD=(docker-compose --ansi never -f "$COMPOSE_FILE_PATH" -p "$PROJECT")
}

# docker-compose for this cluster (bounded: a wedged engine fails the caller instead of hanging).
dc() {
    timeout "${DC_TIMEOUT:-300}" "${DC_CMD[@]}" "$@"
}

# Runs a raftkms admin command inside node N's container (where the peers' names resolve), with
# that node's own configuration (address, cluster id, CA) and the admin certificate the compose file
# names in RAFTKMS_ADMIN_CERT/RAFTKMS_ADMIN_KEY. As root: the admin key belongs to whoever made it on
# the host, so the node's own user (raftkms) cannot read it.
node_admin() {
    local n=$1
    shift
    dc exec -T -u 0 "node$n" raftkms "$@" --config /etc/raftkms/node.toml
}

# Makes what is missing of the cluster's TLS files in TLS_DIR, with the image's raftkms in a
# throw-away container (the host needs no binary): the CA, a certificate per node, valid for the
# names clients dial (the service names on the compose networks, and 127.0.0.1/localhost for the
# published ports), and the admin certificate ADMIN_NAME. A new CA reissues everything. The node keys
# (0600) go to the image's user raftkms, which the nodes run as; everything else to the caller.
# Prints what it made (nothing if all was there).
make_certificates() {
    local cid n reissue=0 made=() script="set -e"
    cid=$(config_value cluster-id)
    mkdir -p "$TLS_DIR"
    # The nodes' user must reach the files; the keys in it are 0600.
    chmod 0755 "$TLS_DIR"
    if [[ ! -s $TLS_DIR/ca.pem || ! -s $TLS_DIR/ca.key ]]; then
        reissue=1
        made+=(ca)
        script+="; raftkms cert ca --dir /tls --cluster-id $cid --force"
    fi
    for n in "${NODES[@]}"; do
        if ((reissue)) || [[ ! -s $TLS_DIR/node$n.pem || ! -s $TLS_DIR/node$n.key ]]; then
            made+=("node$n")
            script+="; raftkms cert node --dir /tls --cluster-id $cid --id $n --force"
            script+=" --host node$n --host node$n-raft --host localhost --host 127.0.0.1"
        fi
    done
    if ((reissue)) || [[ ! -s $TLS_DIR/admin-$ADMIN_NAME.pem || ! -s $TLS_DIR/admin-$ADMIN_NAME.key ]]; then
        made+=("admin-$ADMIN_NAME")
        script+="; raftkms cert admin --dir /tls --cluster-id $cid --name $ADMIN_NAME --force"
    fi
    ((${#made[@]})) || return 0
    script+="; chown $(id -u):$(id -g) /tls/*; chown raftkms:raftkms /tls/node*.key"
    docker run --rm --network none --user 0 --entrypoint /bin/bash -v "$TLS_DIR:/tls" \
        "$RAFTKMS_IMAGE" -c "$script" >/dev/null
    echo "${made[*]}"
}

api_port() { echo "${PORT_PREFIX}0$1"; }
internal_port() { echo "${PORT_PREFIX}1$1"; }

# The container id of service nodeN.
container_of() { dc ps -q "node$1"; }

# A value of the (flat, top-level) `key = "value"` TOML line in node N's config.
config_value() {
    local key=$1 n=${2:-1} dir
    dir=$(sed -n 's#.*\.\./cluster-config/\([^/]*\)/node1\.toml.*#\1#p' "$COMPOSE_FILE_PATH" | head -n1)
    sed -n "s/^$key = \"\\(.*\\)\"$/\\1/p" "$REPO_DIR/cluster-config/$dir/node$n.toml" | head -n1
}

# The --rewrite arguments that map the membership's container addresses to the published ports.
rewrite_args() {
    local n
    for n in "${NODES[@]}"; do
        printf -- '--rewrite node%s:8080=127.0.0.1:%s --rewrite node%s-raft:9080=127.0.0.1:%s ' \
            "$n" "$(api_port "$n")" "$n" "$(internal_port "$n")"
    done
}

# The cluster status as node N sees it (JSON of `raftkms cluster status --json`).
status_json() { node_admin "${1:-1}" cluster status --json 2>/dev/null; }

# Waits until node N knows a leader and every member reports ready; fails after TIMEOUT seconds.
wait_ready() {
    local n=${1:-1} timeout=${2:-90} deadline
    deadline=$((SECONDS + timeout))
    until status_json "$n" | python3 -c '
import json, sys
s = json.load(sys.stdin)
rows = s["nodes"]
ok = s.get("leader") is not None and rows and all((r.get("status") or {}).get("ready") for r in rows)
sys.exit(0 if ok else 1)' 2>/dev/null; do
        ((SECONDS > deadline)) && return 1
        sleep 1
    done
}

# The leader's id as node N sees it (empty if none).
leader_of() {
    status_json "${1:-1}" | python3 -c 'import json,sys; l=json.load(sys.stdin).get("leader"); print("" if l is None else l)' 2>/dev/null
}

# The compose network `raft` of this project.
raft_network() {
    docker network ls -q --filter "label=com.docker.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.network=raft"
}
