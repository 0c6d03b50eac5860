#!/usr/bin/env bash
# Remove a cluster started by docker/up.sh: its containers, networks and volumes (all data and the
# unseal key), and its env file and TLS files (CA, node and admin certificates) under docker/.state/.
#
#   docker/down.sh single|three
set -euo pipefail
# shellcheck source=docker/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ ${1:-} == -h || ${1:-} == --help ]] && {
    sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
}
cluster_setup "${1:-}"
dc down --volumes --remove-orphans --timeout 15 2>&1 | sed 's/^/  /'
rm -f "$STATE_ENV"
rm -rf "$TLS_DIR"
echo "down.sh: removed project $PROJECT (containers, networks, volumes, TLS files)"
