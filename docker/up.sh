#!/usr/bin/env bash
# Start a raftkms cluster in containers and make it usable:
#
#   docker/up.sh single|three [--build]
#
#   single  docker/compose-single-region.yml: 3 voters in ap-guangzhou
#   three   docker/compose-three-regions.yml: 2+2+1 voters in ap-guangzhou, ap-shanghai, ap-singapore
#
# Builds the image with docker/build.sh if it is missing (--build: always, incremental), makes the
# cluster's TLS files that are missing (CA, node and admin certificates, in
# docker/.state/<project>-tls/, mounted into the containers), starts the containers, initializes the
# cluster once (`raftkms cluster init` in node1), waits until every node is ready, creates a dev
# account and credential (kept across runs), writes them with the endpoints, the CA and the admin
# certificate to docker/.state/<project>.env (mode 0600) and prints how to call the cluster. Running
# it again on a running or stopped cluster resumes it with its data and certificates.
# docker/down.sh removes everything.
set -euo pipefail
# shellcheck source=docker/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

layout=${1:-}
build=0
[[ ${2:-} == --build ]] && build=1
[[ $layout == -h || $layout == --help ]] && {
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
}
cluster_setup "$layout"
say() { echo "up.sh: $*"; }
fail() {
    echo "up.sh: $*" >&2
    exit 1
}

if ((build)) || ! docker image inspect "$RAFTKMS_IMAGE" >/dev/null 2>&1; then
    "$DOCKER_DIR/build.sh" --tag "$RAFTKMS_IMAGE"
fi

made=$(make_certificates) || fail "could not make the TLS files in $TLS_DIR (see above)"
recreate=()
if [[ -n $made ]]; then
    say "made TLS files in $TLS_DIR: $made"
    # A node reads its CA only at start: containers left from an earlier CA must start again.
    [[ $made == ca* ]] && recreate=(--force-recreate)
fi

say "starting project $PROJECT ($(basename "$COMPOSE_FILE_PATH"), ${#NODES[@]} nodes)"
# The host ports lie in Linux's ephemeral range: a port briefly held by some outgoing connection
# makes `up` fail for one container, so try again a few times (compose starts what is missing).
uplog=$(mktemp /tmp/raftkms-up.XXXXXX)
trap 'rm -f "$uplog"' EXIT
for attempt in 1 2 3 4; do
    if dc up -d --no-build "${recreate[@]}" >"$uplog" 2>&1; then
        sed 's/^/  /' "$uplog"
        break
    fi
    sed 's/^/  /' "$uplog" | grep -iE 'error|in use' | head -n 3 || true
    ((attempt < 4)) || fail "docker-compose up failed 4 times (see above)"
    say "docker-compose up failed (attempt $attempt), retrying in 3 s"
    sleep 3
done

# Every node answers on its internal listener (through its own container).
deadline=$((SECONDS + 90))
for n in "${NODES[@]}"; do
    until node_admin "$n" cluster status --json >/dev/null 2>&1; do
        if ((SECONDS > deadline)); then
            dc logs --tail 20 "node$n" >&2 || true
            fail "node$n does not answer after 90 s (logs above)"
        fi
        sleep 1
    done
done
say "all ${#NODES[@]} nodes answer"

members=$(node_admin 1 cluster status --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["nodes"]))')
if [[ $members == 0 ]]; then
    say "initializing the cluster (raftkms cluster init in node1)"
    node_admin 1 cluster init | sed 's/^/  /'
else
    say "cluster already initialized ($members members)"
fi

wait_ready 1 90 || fail "the cluster is not ready after 90 s; see: docker-compose -f $COMPOSE_FILE_PATH -p $PROJECT logs"
say "every node is ready"

# --- dev account and credential, reused while the cluster's volumes live ---------------------------
mkdir -p "$STATE_DIR"
secret_id="" secret_key=""
if [[ -f $STATE_ENV ]]; then
    secret_id=$(sed -n 's/^KMS_SECRET_ID=//p' "$STATE_ENV")
    secret_key=$(sed -n 's/^KMS_SECRET_KEY=//p' "$STATE_ENV")
    if [[ -z $secret_id ]] || ! node_admin 1 credential list | grep -q -- " $secret_id "; then
        secret_id="" secret_key=""
    fi
fi
if [[ -z $secret_id ]]; then
    uin=$(node_admin 1 account list | awk '$3 == "dev" { print $1; exit }')
    if [[ -z $uin ]]; then
        uin=$(node_admin 1 account create --name dev | sed -n 's/.*Uin \([0-9]*\).*/\1/p')
        [[ -n $uin ]] || fail "could not create the dev account"
    fi
    created=$(node_admin 1 credential create --uin "$uin")
    secret_id=$(sed -n 's/^SecretId: *//p' <<<"$created")
    secret_key=$(sed -n 's/^SecretKey: *//p' <<<"$created")
    [[ -n $secret_id && -n $secret_key ]] || fail "could not create a credential for the dev account"
    say "created a credential for the dev account (Uin $uin): $secret_id"
else
    say "reusing the dev credential $secret_id"
fi

endpoints=()
for n in "${NODES[@]}"; do endpoints+=("https://127.0.0.1:$(api_port "$n")"); done
region=${REGION_OF[1]}
(
    umask 077
    cat >"$STATE_ENV" <<EOF
# Written by docker/up.sh $layout: the dev credential and how to reach cluster $PROJECT from this host.
KMS_ENDPOINTS=$(IFS=,; echo "${endpoints[*]}")
KMS_CA_BUNDLE=$TLS_DIR/ca.pem
KMS_REGION=$region
KMS_SECRET_ID=$secret_id
KMS_SECRET_KEY=$secret_key
RAFTKMS_NODE=127.0.0.1:$(internal_port 1)
RAFTKMS_CLUSTER_ID=$(config_value cluster-id)
RAFTKMS_CA=$TLS_DIR/ca.pem
RAFTKMS_ADMIN_CERT=$TLS_DIR/admin-$ADMIN_NAME.pem
RAFTKMS_ADMIN_KEY=$TLS_DIR/admin-$ADMIN_NAME.key
RAFTKMS_COMPOSE_FILE=$COMPOSE_FILE_PATH
RAFTKMS_COMPOSE_PROJECT=$PROJECT
RAFTKMS_DRILL_REWRITE="$(rewrite_args)"
EOF
)

echo
node_admin 1 cluster status
rel_env=${STATE_ENV#"$PWD"/}
rel_tls=${TLS_DIR#"$PWD"/}
cat <<EOF

raftkms cluster $PROJECT is up. Regions: $(for n in "${NODES[@]}"; do echo "${REGION_OF[$n]}"; done | sort -u | tr '\n' ' ')
API (Tencent Cloud KMS API 3.0): $(for n in "${NODES[@]}"; do printf 'node%s=127.0.0.1:%s ' "$n" "$(api_port "$n")"; done)
Credentials and endpoints:       $rel_env
TLS (CA, node and admin certificates): $rel_tls   (clients trust ca.pem: \$KMS_CA_BUNDLE)

Call it with tccli. It has no CA option and trusts only the certifi bundle of its Python
environment: install it in a virtualenv of its own and append this cluster's CA to that bundle
(the CA is not name-constrained and its key lies in the TLS directory: add it to no other trust
store). tccli speaks HTTPS by default, so give the endpoint without a scheme:
  python3 -m venv ~/.venvs/tccli && ~/.venvs/tccli/bin/pip install tccli
  set -a; . $rel_env; set +a
  cat "\$KMS_CA_BUNDLE" >> "\$(~/.venvs/tccli/bin/python -m certifi)"
  export PATH=~/.venvs/tccli/bin:\$PATH
  tccli kms CreateKey --Alias demo --secretId "\$KMS_SECRET_ID" --secretKey "\$KMS_SECRET_KEY" \\
      --region $region --endpoint 127.0.0.1:$(api_port 1)
  tccli kms Encrypt --KeyId <KeyId> --Plaintext aGVsbG8= --secretId "\$KMS_SECRET_ID" \\
      --secretKey "\$KMS_SECRET_KEY" --region $region --endpoint 127.0.0.1:$(api_port "${NODES[-1]}")
or once: tccli configure set secretId "\$KMS_SECRET_ID" secretKey "\$KMS_SECRET_KEY" region $region,
then pass only --endpoint. Stale reads in a region cut off from the quorum: header X-Raftkms-Consistency: stale.
Python SDK: HttpProfile(protocol="https", endpoint="127.0.0.1:$(api_port 1)", certification=os.environ["KMS_CA_BUNDLE"]).
curl:        curl --cacert "\$KMS_CA_BUNDLE" https://127.0.0.1:$(api_port 1)/readyz

Administer:  docker-compose -f $COMPOSE_FILE_PATH -p $PROJECT exec -u 0 node1 raftkms cluster status --config /etc/raftkms/node.toml
SDK tests:   tests/sdk/run.sh $rel_env
Stop/remove: docker/down.sh $layout   (containers, networks, volumes, $rel_env and $rel_tls)
EOF
