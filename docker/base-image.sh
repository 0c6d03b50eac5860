#!/usr/bin/env bash
# Make the raftkms base images offline, without any image registry:
#
#   docker/base-image.sh [base|builder|all] [--force]
#
#   raftkms-base:bookworm     debootstrap --variant=minbase bookworm: the runtime stage's parent.
#   raftkms-builder:bookworm  the same plus clang, libclang-dev and g++ (RocksDB's C++ and its
#                             bindgen bindings); the Rust toolchain is not inside, docker/build.sh
#                             mounts the host's.
#
# Each image is debootstrapped into a temporary directory from a Debian mirror (the one this machine's
# apt uses, or $RAFTKMS_DEBIAN_MIRROR), packed with `tar | docker import`, and the directory removed.
# An image that already exists is kept unless --force is given. Needs root (debootstrap) and Docker.
set -euo pipefail

what=all
force=0
for arg in "$@"; do
    case $arg in
        base | builder | all) what=$arg ;;
        --force) force=1 ;;
        -h | --help)
            sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "base-image.sh: unknown argument $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

SUITE=bookworm
BASE_IMAGE=${RAFTKMS_BASE_IMAGE:-raftkms-base:$SUITE}
BUILDER_IMAGE=${RAFTKMS_BUILDER_IMAGE:-raftkms-builder:$SUITE}
# What RocksDB's build script and bindgen need; the versions match the host's Debian bookworm.
BUILDER_PACKAGES=clang,libclang-dev,g++,make,pkg-config,ca-certificates

if [[ $(id -u) -ne 0 ]]; then
    echo "base-image.sh: debootstrap needs root" >&2
    exit 1
fi
for tool in debootstrap docker tar; do
    command -v "$tool" >/dev/null || {
        echo "base-image.sh: $tool is not installed" >&2
        exit 1
    }
done

# The mirror this machine's apt already uses (Debian's own, reachable without a registry).
mirror() {
    if [[ -n ${RAFTKMS_DEBIAN_MIRROR:-} ]]; then
        echo "$RAFTKMS_DEBIAN_MIRROR"
        return
    fi
    local uri
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
        grep -v '^\s*#' | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ' || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

# Two concurrent runs would debootstrap twice and race on the tag.
exec 9>/var/lock/raftkms-base-image.lock
flock -w 1800 9 || {
    echo "base-image.sh: another run holds /var/lock/raftkms-base-image.lock" >&2
    exit 1
}

workdir=""
cleanup() {
    if [[ -n $workdir && -d $workdir ]]; then
        # debootstrap mounts /proc, /sys (and may bind /dev) inside the target: unmount them all
        # before removing anything, and never cross into another file system.
        findmnt -R -n -o TARGET --list "$workdir" 2>/dev/null | sort -r | while read -r m; do
            umount -l "$m" 2>/dev/null || true
        done || true
        rm -rf --one-file-system "$workdir"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# make IMAGE [--include=PKGS]
make_image() {
    local image=$1
    shift
    if [[ $force -eq 0 ]] && docker image inspect "$image" >/dev/null 2>&1; then
        echo "base-image.sh: $image exists, kept (--force rebuilds it)"
        return
    fi
    local started=$SECONDS mirror_uri
    mirror_uri=$(mirror)
    workdir=$(mktemp -d /var/tmp/raftkms-rootfs.XXXXXX)
    local root=$workdir/rootfs
    echo "base-image.sh: debootstrap $SUITE from $mirror_uri into $root $*"
    if ! debootstrap --variant=minbase "$@" "$SUITE" "$root" "$mirror_uri" >"$workdir/debootstrap.log" 2>&1; then
        tail -n 30 "$workdir/debootstrap.log" >&2
        [[ -f $root/debootstrap/debootstrap.log ]] && tail -n 30 "$root/debootstrap/debootstrap.log" >&2
        echo "base-image.sh: debootstrap failed" >&2
        exit 1
    fi
    # No package lists, caches, documentation or logs in the image.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
        "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
    # apt inside the image uses the same mirror.
    echo "deb $mirror_uri $SUITE main" >"$root/etc/apt/sources.list"
    tar --numeric-owner --xattrs -C "$root" -c . |
        docker import \
            -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            -c 'ENV LANG=C.UTF-8' \
            -c 'CMD ["/bin/bash"]' \
            -m "debootstrap --variant=minbase $* $SUITE $mirror_uri" \
            - "$image" >/dev/null
    cleanup
    workdir=""
    echo "base-image.sh: made $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'), $((SECONDS - started)) s)"
}

case $what in
    base) make_image "$BASE_IMAGE" ;;
    builder) make_image "$BUILDER_IMAGE" --include="$BUILDER_PACKAGES" ;;
    all)
        make_image "$BASE_IMAGE"
        make_image "$BUILDER_IMAGE" --include="$BUILDER_PACKAGES"
        ;;
esac
