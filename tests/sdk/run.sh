#!/usr/bin/env bash
# Run the Tencent Cloud SDK / tccli compatibility tests against a running raftkms cluster.
#
#   tests/sdk/run.sh PATH/TO/dev.env [extra pytest args...]
#
# dev.env holds shell-sourceable KEY=VALUE lines: KMS_ENDPOINTS (comma-separated http:// or https://
# URLs), KMS_CA_BUNDLE (the CA file, for https), KMS_REGION, KMS_SECRET_ID, KMS_SECRET_KEY. The virtualenv lives in ${RAFTKMS_VENV} (default
# /var/cache/raftkms/venv) and is reused as long as it holds exactly the pinned versions below.
set -euo pipefail

PINNED=(
    "tencentcloud-sdk-python-kms==3.1.192"
    "tencentcloud-sdk-python-common==3.1.195"
    # LookUpEvents (the audit trail's query) through CloudAudit's own client.
    "tencentcloud-sdk-python-cloudaudit==3.1.39"
    "tccli==3.1.189.1"
    # The legacy KMS API (v2) through Tencent's legacy SDK (module `kms`, HTTPS only).
    "qcloudapi-sdk-python==2.0.15"
    # The Huawei Cloud KMS API through Huawei's SDK.
    "huaweicloudsdkkms==3.1.219"
    "huaweicloudsdkcore==3.1.219"
    # The web console in Debian's headless Chromium (tests/sdk/test_console.py).
    "selenium==4.45.0"
    "pytest==9.2.0"
)

if [[ $# -lt 1 ]]; then
    echo "usage: $0 PATH/TO/dev.env [pytest args...]" >&2
    exit 2
fi
env_file=$1
shift
if [[ ! -f "$env_file" ]]; then
    echo "$0: no such file: $env_file" >&2
    exit 2
fi
env_file=$(cd "$(dirname "$env_file")" && pwd)/$(basename "$env_file")

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
venv=${RAFTKMS_VENV:-/var/cache/raftkms/venv}

# --- virtualenv with the pinned client versions --------------------------------------------------
stamp="$venv/.raftkms-sdk-stamp"
wanted=$(printf '%s\n' "${PINNED[@]}")
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    echo "sdk tests: reusing virtualenv $venv"
else
    echo "sdk tests: preparing virtualenv $venv"
    mkdir -p "$(dirname "$venv")"
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${PINNED[@]}"
    # The stamp is written only after a successful install, so a broken install is retried.
    printf '%s\n' "${PINNED[@]}" >"$stamp"
fi

# Both clients honour proxy variables even for 127.0.0.1 (and NO_PROXY does not reliably help);
# pip above may still have needed them.
unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY all_proxy

# --- cluster coordinates --------------------------------------------------------------------------
set -a
# shellcheck disable=SC1090
. "$env_file"
set +a
for var in KMS_ENDPOINTS KMS_REGION KMS_SECRET_ID KMS_SECRET_KEY; do
    if [[ -z "${!var:-}" ]]; then
        echo "$0: $var is not set in $env_file" >&2
        exit 2
    fi
done
export KMS_ENDPOINTS KMS_REGION KMS_SECRET_ID KMS_SECRET_KEY
# The Huawei project id of the credential's account in KMS_REGION (raftkms dev writes it).
export HWC_PROJECT_ID="${HWC_PROJECT_ID:-}"
# The cluster CA, for https:// endpoints (raftkms dev writes it into dev.env).
export KMS_CA_BUNDLE="${KMS_CA_BUNDLE:-}"

# --- run -----------------------------------------------------------------------------------------
# No .pytest_cache or __pycache__ left in the work tree.
export PYTHONDONTWRITEBYTECODE=1
cd "$repo_root"
# RAFTKMS_SDK_TESTS (from the environment or dev.env) picks other tests than the whole directory,
# e.g. tests/sdk/console_failover.py, which kills nodes and so runs on a cluster of its own.
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "${RAFTKMS_SDK_TESTS:-tests/sdk}" "$@"
